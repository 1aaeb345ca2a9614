//! Zipkin v2 JSON, written straight from the SDK's spans into the body of one post.
//!
//! A span comes out as `{"traceId","parentId","id","kind","name","timestamp","duration","localEndpoint",
//! "annotations","tags","debug"}` in that order, each key left out when it has nothing to say (a root span
//! has no `parentId`, an internal span no `kind`, a span without events no `annotations`). What the
//! [Zipkin v2 schema](https://zipkin.io/zipkin-api/#/default/post_spans) asks for, and where it departs from
//! opentelemetry-zipkin 0.33 (see the [module docs](super)):
//! - `traceId` is 16 hex digits when the upper 64 bits are zero (a trace that arrived with a 64-bit id), as
//!   the id travels in B3 and as Zipkin stores it; 32 otherwise.
//! - `duration` is at least 1: the schema's minimum, and what Zipkin does with sub-microsecond spans.
//! - `localEndpoint.serviceName` is the service's name, so that the collector files the span under it.
//! - the sampler's [`DEBUG_ATTRIBUTE`](crate::telemetry::trace::DEBUG_ATTRIBUTE) becomes `"debug":true`.
//! - every tag value, span name, status description and annotation passes through
//!   [`redact`](crate::redact::redact): a span attribute set by the service's own code reaches the
//!   collector masked, however it was recorded.
//! - a span with an error status gets the tags `otel.status_code` and `error` (the tag Zipkin marks failed
//!   spans by), as the OpenTelemetry-to-Zipkin mapping specifies; an attribute named `error` is left out, so
//!   only the status decides.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

use crate::redact::redact;
use crate::telemetry::json;
use crate::telemetry::trace::DEBUG_ATTRIBUTE;

/// Bytes a typical server span takes, to size a batch's buffer in one allocation.
pub(crate) const SPAN_SIZE_HINT: usize = 400;

/// Encodes spans for one service.
#[derive(Debug)]
pub(crate) struct Encoder {
    /// `"localEndpoint":{"serviceName":"…"}`, escaped once.
    local_endpoint: Box<[u8]>,
    /// The resource's other attributes as `"key":"value"` tags, comma-separated and escaped once: Zipkin v2
    /// has no resource, so each span carries them.
    resource_tags: Box<[u8]>,
}

impl Encoder {
    pub(crate) fn new(service_name: &str, resource_tags: &[(String, String)]) -> Self {
        let mut local_endpoint = br#""localEndpoint":{"serviceName":"#.to_vec();
        json::string(&mut local_endpoint, &redact(service_name));
        local_endpoint.push(b'}');
        let mut tags = Vec::new();
        for (key, value) in resource_tags {
            if !tags.is_empty() {
                tags.push(b',');
            }
            json::string(&mut tags, key);
            tags.push(b':');
            json::string(&mut tags, &redact(value));
        }
        Self {
            local_endpoint: local_endpoint.into_boxed_slice(),
            resource_tags: tags.into_boxed_slice(),
        }
    }

    /// Appends `span` as one JSON object; a batch is these objects in a JSON array.
    pub(crate) fn span(&self, out: &mut Vec<u8>, span: &SpanData) {
        let trace_id = span.span_context.trace_id().to_bytes();
        let significant = if trace_id[..8] == [0; 8] {
            &trace_id[8..]
        } else {
            &trace_id[..]
        };
        out.extend_from_slice(br#"{"traceId":""#);
        hex(out, significant);
        if span.parent_span_id != SpanId::INVALID {
            out.extend_from_slice(br#"","parentId":""#);
            hex(out, &span.parent_span_id.to_bytes());
        }
        out.extend_from_slice(br#"","id":""#);
        hex(out, &span.span_context.span_id().to_bytes());
        out.push(b'"');
        if let Some(kind) = kind(&span.span_kind) {
            out.extend_from_slice(br#","kind":""#);
            out.extend_from_slice(kind.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(br#","name":"#);
        json::string(out, &redact(&span.name));
        out.extend_from_slice(br#","timestamp":"#);
        json::integer(out, micros_since_epoch(span.start_time));
        out.extend_from_slice(br#","duration":"#);
        let duration = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        json::integer(out, micros(duration).max(1));
        out.push(b',');
        out.extend_from_slice(&self.local_endpoint);
        annotations(out, span);
        let debug = tags(out, span, &self.resource_tags);
        if debug {
            out.extend_from_slice(br#","debug":true"#);
        }
        out.push(b'}');
    }
}

fn kind(kind: &SpanKind) -> Option<&'static str> {
    match kind {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal => None,
    }
}

fn annotations(out: &mut Vec<u8>, span: &SpanData) {
    let mut events = span.events.iter().peekable();
    if events.peek().is_none() {
        return;
    }
    out.extend_from_slice(br#","annotations":["#);
    for (index, event) in events.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"timestamp":"#);
        json::integer(out, micros_since_epoch(event.timestamp));
        out.extend_from_slice(br#","value":"#);
        json::string(out, &redact(&event.name));
        out.push(b'}');
    }
    out.push(b']');
}

/// Writes `"tags":{…}` (the span's, then the resource's) unless there are none; returns whether the span carries
/// the debug mark.
fn tags(out: &mut Vec<u8>, span: &SpanData, resource_tags: &[u8]) -> bool {
    // For the rare attribute that is neither text nor an integer; empty until one comes.
    let mut scratch = String::new();
    let mut debug = false;
    let mut first = true;
    let mut tag = |out: &mut Vec<u8>, key: &str, value: &str| {
        out.extend_from_slice(if first { br#","tags":{"# } else { b"," });
        first = false;
        json::string(out, key);
        out.push(b':');
        json::string(out, &redact(value));
    };
    for KeyValue { key, value, .. } in &span.attributes {
        match key.as_str() {
            DEBUG_ATTRIBUTE => debug = matches!(value, Value::Bool(true)),
            "error" => {}
            key => {
                let mut digits = itoa::Buffer::new();
                let text = match value {
                    Value::String(text) => text.as_str(),
                    Value::I64(number) => digits.format(*number),
                    Value::Bool(true) => "true",
                    Value::Bool(false) => "false",
                    other => {
                        scratch.clear();
                        // Writing into a String cannot fail.
                        let _ = write!(scratch, "{other}");
                        scratch.as_str()
                    }
                };
                tag(out, key, text);
            }
        }
    }
    match &span.status {
        Status::Unset => {}
        Status::Ok => tag(out, "otel.status_code", "OK"),
        Status::Error { description } => {
            tag(out, "otel.status_code", "ERROR");
            tag(out, "error", description);
        }
    }
    if !resource_tags.is_empty() {
        out.extend_from_slice(if first { br#","tags":{"# } else { b"," });
        first = false;
        out.extend_from_slice(resource_tags);
    }
    if !first {
        out.push(b'}');
    }
    debug
}

/// Microseconds as `u64`, which lasts 584,000 years and formats faster than the `u128` of `as_micros`.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn micros_since_epoch(time: SystemTime) -> u64 {
    micros(time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO))
}

/// Appends up to 16 bytes as lowercase hex digits.
fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut text = [0u8; 32];
    json::hex(&mut text, bytes);
    out.extend_from_slice(&text[..2 * bytes.len().min(16)]);
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use opentelemetry::trace::{Event, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use serde_json::{Value as Json, json};

    use super::*;

    const START: u64 = 1_764_400_000_000_000;

    fn span(trace_id: u128, parent: u64, kind: SpanKind, attributes: Vec<KeyValue>) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_micros(START);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: true,
            span_kind: kind,
            name: Cow::Borrowed("GET /settings/{key}"),
            start_time: start,
            end_time: start + Duration::from_micros(1500),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("telemed-kit").build(),
        }
    }

    fn encode(spans: &[SpanData]) -> Json {
        encode_with(spans, &[])
    }

    fn encode_with(spans: &[SpanData], resource: &[(String, String)]) -> Json {
        let encoder = Encoder::new("settings \"eu\"", resource);
        let mut body = b"[".to_vec();
        for (index, span) in spans.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            encoder.span(&mut body, span);
        }
        body.push(b']');
        serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!("{error}: {}", String::from_utf8_lossy(&body));
        })
    }

    #[test]
    fn a_server_span_has_every_field_the_schema_knows_in_its_zipkin_form() {
        let server = span(
            0x4e44_1824_ec2b_6a44_ffdc_9bb9_a645_3df3,
            0x1111_2222_3333_4444,
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("sampled", true),
                KeyValue::new("ratio", 0.5),
            ],
        );
        assert_eq!(
            encode(&[server]),
            json!([{
                "traceId": "4e441824ec2b6a44ffdc9bb9a6453df3",
                "parentId": "1111222233334444",
                "id": "00f067aa0ba902b7",
                "kind": "SERVER",
                "name": "GET /settings/{key}",
                "timestamp": START,
                "duration": 1500,
                "localEndpoint": {"serviceName": "settings \"eu\""},
                "tags": {"http.request.method": "GET", "http.response.status_code": "200",
                         "sampled": "true", "ratio": "0.5"},
            }])
        );
    }

    #[test]
    fn the_resource_goes_with_every_span_as_tags() {
        let resource = [
            ("service.version".to_owned(), "1.0.3".to_owned()),
            ("deployment.environment".to_owned(), "in\"test".to_owned()),
        ];
        let with_tags = span(
            1,
            0,
            SpanKind::Server,
            vec![KeyValue::new("http.route", "/x")],
        );
        let without = span(2, 0, SpanKind::Internal, Vec::new());
        let encoded = encode_with(&[with_tags, without], &resource);
        let resource_tags =
            json!({"service.version": "1.0.3", "deployment.environment": "in\"test"});
        let mut tags = resource_tags.clone();
        tags["http.route"] = json!("/x");
        assert_eq!(encoded[0]["tags"], tags);
        assert_eq!(encoded[1]["tags"], resource_tags);
    }

    #[test]
    fn a_root_span_has_no_parent_and_a_64_bit_trace_keeps_its_16_digits() {
        let root = span(0x00f0_67aa_0ba9_02b7, 0, SpanKind::Internal, Vec::new());
        let encoded = encode(&[root]);
        assert_eq!(encoded[0]["traceId"], "00f067aa0ba902b7");
        let fields: Vec<&str> = encoded[0]
            .as_object()
            .map(|span| span.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            fields,
            [
                "duration",
                "id",
                "localEndpoint",
                "name",
                "timestamp",
                "traceId"
            ]
        );
    }

    #[test]
    fn the_debug_mark_becomes_the_debug_flag_and_leaves_the_tags() {
        let marked = span(
            7,
            0,
            SpanKind::Server,
            vec![KeyValue::new(DEBUG_ATTRIBUTE, true)],
        );
        let plain = span(8, 0, SpanKind::Client, vec![KeyValue::new("a", "b")]);
        let encoded = encode(&[marked, plain]);
        assert_eq!(encoded[0]["debug"], true);
        assert_eq!(encoded[0].get("tags"), None);
        assert_eq!(encoded[1].get("debug"), None);
        assert_eq!(encoded[1]["kind"], "CLIENT");
        assert_eq!(encoded[1]["tags"], json!({"a": "b"}));
    }

    #[test]
    fn an_error_status_is_told_by_the_status_tags_alone() {
        let mut failed = span(9, 0, SpanKind::Server, vec![KeyValue::new("error", "no")]);
        failed.status = Status::error("upstream timed out");
        let mut ok = span(9, 0, SpanKind::Server, Vec::new());
        ok.status = Status::Ok;
        let encoded = encode(&[failed, ok]);
        assert_eq!(
            encoded[0]["tags"],
            json!({"otel.status_code": "ERROR", "error": "upstream timed out"})
        );
        assert_eq!(encoded[1]["tags"], json!({"otel.status_code": "OK"}));
    }

    #[test]
    fn sub_microsecond_spans_last_one_microsecond_and_clock_steps_back_do_not_fail() {
        let mut instant = span(10, 0, SpanKind::Server, Vec::new());
        instant.end_time = instant.start_time + Duration::from_nanos(300);
        let mut backwards = span(11, 0, SpanKind::Server, Vec::new());
        backwards.end_time = backwards.start_time - Duration::from_secs(1);
        let encoded = encode(&[instant, backwards]);
        assert_eq!(encoded[0]["duration"], 1);
        assert_eq!(encoded[1]["duration"], 1);
    }

    #[test]
    fn events_become_annotations() {
        let mut with_events = span(12, 0, SpanKind::Server, Vec::new());
        let at = with_events.start_time + Duration::from_micros(20);
        with_events.events.events = vec![Event::new("cache miss", at, Vec::new(), 0)];
        assert_eq!(
            encode(&[with_events])[0]["annotations"],
            json!([{"timestamp": START + 20, "value": "cache miss"}])
        );
    }

    #[test]
    fn credentials_and_cpr_numbers_are_masked_wherever_they_stand() {
        let mut leaky = span(
            13,
            0,
            SpanKind::Client,
            vec![
                KeyValue::new(
                    "url.full",
                    "https://kv/properties/app/0101901234?access_token=s3cret",
                ),
                KeyValue::new("patient", 1_501_901_234_i64),
                KeyValue::new("note", "line\nbreak \"quoted\" \u{1}"),
            ],
        );
        leaky.name = Cow::Owned("lookup 010190-1234".to_owned());
        leaky.status = Status::error("Bearer abc.def.ghi rejected");
        leaky.events.events = vec![Event::new(
            "retry for 0101901234",
            leaky.start_time,
            Vec::new(),
            0,
        )];
        let encoded = encode(&[leaky]);
        let text = encoded.to_string();
        for secret in [
            "0101901234",
            "010190-1234",
            "1501901234",
            "s3cret",
            "abc.def.ghi",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(encoded[0]["tags"]["patient"], crate::redact::MASK);
        assert_eq!(encoded[0]["tags"]["note"], "line\nbreak \"quoted\" \u{1}");
    }
}
