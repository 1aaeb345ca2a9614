//! The example as a real process: it serves its route and the probes, and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use telemed_kit::testing::{ServiceProcess, Signal, http_get};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn serves_its_route_and_probes_then_exits_0_on_sigterm() {
    let mut service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_example-minimal"),
        &[("SHUTDOWN_DELAY", "100ms")],
    )
    .unwrap();
    service
        .wait_for_log(|line| line["body"] == "listening", TIMEOUT)
        .expect("the service logs that it is listening");

    let hello = http_get(service.addr(), "/", TIMEOUT).unwrap();
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "hello from telemed-kit\n")
    );
    assert_eq!(
        http_get(service.addr(), "/healthz", TIMEOUT)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        http_get(service.addr(), "/livez", TIMEOUT).unwrap().status,
        200
    );
    assert_eq!(
        http_get(service.addr(), "/nowhere", TIMEOUT)
            .unwrap()
            .status,
        404
    );

    service.signal(Signal::Term).unwrap();
    let status = service
        .wait_exit(TIMEOUT)
        .unwrap()
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", service.lines());
}

#[test]
fn a_bad_variable_exits_2_before_binding() {
    let service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_example-minimal"),
        &[("SHUTDOWN_DELAY", "soon")],
    )
    .unwrap();
    let (status, lines) = service.finish(TIMEOUT).unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(2));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(r#"SHUTDOWN_DELAY=\"soon\": expected a duration"#),
        "{}",
        lines[0]
    );
}
