//! The example as a real process: repeated lookups reach the source once, with and without `CACHE_DISABLED`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use telemed_kit::testing::{ServiceProcess, Signal, http_get};

const TIMEOUT: Duration = Duration::from_secs(20);

fn start(env: &[(&str, &str)]) -> ServiceProcess {
    let mut env = env.to_vec();
    env.push(("SHUTDOWN_DELAY", "100ms"));
    let service = ServiceProcess::spawn(env!("CARGO_BIN_EXE_example-cache"), &env).unwrap();
    service
        .wait_for_log(|line| line["body"] == "listening", TIMEOUT)
        .expect("listening");
    service
}

fn get(service: &ServiceProcess, path: &str) -> (u16, Value) {
    let response = http_get(service.addr(), path, TIMEOUT).unwrap();
    (response.status, response.json().unwrap())
}

fn stop(mut service: ServiceProcess) {
    service.signal(Signal::Term).unwrap();
    let status = service
        .wait_exit(TIMEOUT)
        .unwrap()
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", service.lines());
}

/// Asks for a known code twice and an unknown code twice; returns `/stats`.
fn lookups(service: &ServiceProcess) -> Value {
    for _ in 0..2 {
        let (status, body) = get(service, "/codes/8867-4");
        assert_eq!(
            (status, body["display"].as_str()),
            (200, Some("Heart rate"))
        );
        let (status, body) = get(service, "/codes/0000-0");
        assert_eq!(
            (status, body["detail"].as_str()),
            (404, Some("no such code"))
        );
    }
    get(service, "/stats").1
}

#[test]
fn repeated_lookups_reach_the_source_once_and_not_found_is_cached_too() {
    let service = start(&[]);
    let stats = lookups(&service);
    assert_eq!(stats["enabled"], true, "{stats}");
    assert_eq!(stats["source_calls"], 2, "one call per code: {stats}");
    assert_eq!(
        (stats["hits"].as_u64(), stats["negative_hits"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
    stop(service);
}

#[test]
fn with_cache_disabled_every_lookup_reaches_the_source_and_answers_the_same() {
    let service = start(&[("CACHE_DISABLED", "true")]);
    let stats = lookups(&service);
    assert_eq!(stats["enabled"], false, "{stats}");
    assert_eq!(stats["source_calls"], 4, "{stats}");
    assert_eq!(stats["hits"], 0, "{stats}");
    stop(service);
}
