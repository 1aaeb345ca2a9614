//! The example as a real process: readiness waits for the startup task, then follows the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;
use telemed_kit::testing::{ServiceProcess, Signal, http_get};

const TIMEOUT: Duration = Duration::from_secs(20);

fn readiness(service: &ServiceProcess) -> (u16, Value) {
    let response = http_get(service.addr(), "/healthz", TIMEOUT).unwrap();
    (response.status, response.json().unwrap())
}

fn body_is(expected: &'static str) -> impl FnMut(&Value) -> bool {
    move |line| line["body"] == expected
}

#[test]
fn readiness_waits_for_the_startup_task_then_follows_the_upstream() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let mut service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_example-readiness"),
        &[
            ("UPSTREAM_ADDR", &upstream_addr),
            // The three requests below must reach the service before the warm-up ends, which this test cannot
            // hold back (the example's warm-up is a plain delay, as a real load would be). 2 s was little room
            // between the `listening` line and the first probe on a 2-core machine running other builds; 5 s
            // costs 3 s of waiting. A probe later still fails on the 200 it gets: never a false pass.
            ("WARM_UP_DELAY", "5s"),
            ("READINESS_CHECK_INTERVAL", "200ms"),
            ("SHUTDOWN_DELAY", "100ms"),
        ],
    )
    .unwrap();
    service
        .wait_for_log(body_is("listening"), TIMEOUT)
        .expect("listening");

    let (status, body) = readiness(&service);
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("starting")),
        "{body}"
    );
    assert_eq!(
        http_get(service.addr(), "/codes/8867-4", TIMEOUT)
            .unwrap()
            .status,
        503
    );
    assert_eq!(
        http_get(service.addr(), "/livez", TIMEOUT).unwrap().status,
        200
    );

    service
        .wait_for_log(body_is("startup task finished"), TIMEOUT)
        .expect("the codes are loaded");
    let (status, body) = readiness(&service);
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    let code = http_get(service.addr(), "/codes/8867-4", TIMEOUT).unwrap();
    assert_eq!((code.status, code.body.as_str()), (200, r#""Heart rate""#));
    assert_eq!(
        http_get(service.addr(), "/codes/0000-0", TIMEOUT)
            .unwrap()
            .status,
        404
    );

    // The upstream goes away: the next check run fails and readiness follows, while liveness does not.
    drop(upstream);
    service
        .wait_for_log(body_is("readiness check failed"), TIMEOUT)
        .expect("the check notices the upstream is gone");
    let (status, body) = readiness(&service);
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("not_ready")),
        "{body}"
    );
    assert_eq!(body["checks"]["upstream"]["status"], "down", "{body}");
    assert_eq!(
        http_get(service.addr(), "/livez", TIMEOUT).unwrap().status,
        200
    );

    service.signal(Signal::Term).unwrap();
    let status = service
        .wait_exit(TIMEOUT)
        .unwrap()
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", service.lines());
}

#[test]
fn a_missing_upstream_address_exits_2_naming_the_variable() {
    let service = ServiceProcess::spawn(env!("CARGO_BIN_EXE_example-readiness"), &[]).unwrap();
    let (status, lines) = service.finish(TIMEOUT).unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(2));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("UPSTREAM_ADDR is not set: expected a host:port")),
        "{lines:#?}"
    );
}
