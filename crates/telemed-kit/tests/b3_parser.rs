//! What mutation testing found unchecked in the B3 parser and propagator, through their public API and kept
//! outside their module (their own unit tests sit beside them): the parser's errors name the header and the
//! field in words, since that is what an operator reads about an ignored trace context, and the propagator
//! reports the encoding it writes.

use telemed_kit::telemetry::trace::b3::{B3Context, B3Inject, B3Propagator, MultiHeaders};

const TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const SPAN: &str = "a2fb4a1d1a96d312";

fn single_error(value: &str) -> String {
    match B3Context::parse_single(value) {
        Ok(context) => panic!("{value}: parsed as {context:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn b3_errors_name_the_header_and_the_field() {
    let zero_trace = "0".repeat(32);
    for (value, expected) in [
        (
            format!("{TRACE}-{}-1", SPAN.to_uppercase()),
            "b3: the span id is not valid",
        ),
        (
            format!("{zero_trace}-{SPAN}-1"),
            "b3: the trace id is all zeros",
        ),
        (
            format!("{TRACE}-{SPAN}-x"),
            "b3: the sampling state is not valid",
        ),
        (
            format!("{TRACE}-{SPAN}-1-zz"),
            "b3: the parent span id is not valid",
        ),
    ] {
        assert_eq!(single_error(&value), expected, "{value}");
    }
    let trace_alone = MultiHeaders {
        trace_id: Some(TRACE),
        ..MultiHeaders::default()
    };
    let error = B3Context::parse_multi(trace_alone).map(|_| ()).unwrap_err();
    assert_eq!(error.to_string(), "x-b3-spanid: the span id is missing");
}

#[test]
fn b3_propagator_reports_the_encoding_it_was_given() {
    for mode in [B3Inject::Multi, B3Inject::Single, B3Inject::Both] {
        assert_eq!(B3Propagator::new(mode).inject_mode(), mode);
    }
}
