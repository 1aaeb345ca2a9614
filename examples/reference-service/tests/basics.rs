//! The reference service as a real process: what it says about itself, its probes with the store up, down and
//! back and with the issuer unreachable at startup, and a clean exit on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    StandInServer, assert_problem, call, closed_port, get_setting, launch_service, start_service,
    wait_for_lines, wait_for_store_up,
};
use serde_json::Value;
use telemed_kit::testing::Signal;

#[test]
fn root_names_the_service_and_readiness_follows_the_store_without_failing() {
    let mut store = StandInServer::start();
    let service = start_service(&store.url(), &[]);

    let about = call(&service, "GET", "/", &[], b"");
    assert_eq!(about.status, 200);
    assert_eq!(about.header("content-type"), Some("application/json"));
    assert_eq!(
        about.json().unwrap(),
        serde_json::json!({"name": "reference-service", "version": env!("CARGO_PKG_VERSION")})
    );

    wait_for_store_up(&service, 1);
    let ready = call(&service, "GET", "/healthz", &[], b"");
    assert_eq!(ready.status, 200);
    let body = ready.json().unwrap();
    assert_eq!(
        (
            body["status"].as_str(),
            body["checks"]["kvstore"]["status"].as_str()
        ),
        (Some("ready"), Some("up"))
    );
    let live = call(&service, "GET", "/livez", &[], b"");
    assert_eq!(
        (live.status, live.json().unwrap()["status"].as_str()),
        (200, Some("alive"))
    );

    // The store goes away: the kvstore check is optional by design (the other routes still work, and taking
    // every instance out of the load balancer would turn a partial outage into a total one), so readiness
    // stays 200 and says `degraded`.
    store.stop();
    wait_for_lines(&service, "the kvstore check to fail", |lines| {
        lines
            .iter()
            .any(|line| line["check"] == "kvstore" && line["body"] == "readiness check failed")
    });
    let degraded = call(&service, "GET", "/healthz", &[], b"");
    assert_eq!(
        degraded.status, 200,
        "an optional check never fails readiness"
    );
    let body = degraded.json().unwrap();
    assert_eq!(
        (
            body["status"].as_str(),
            body["checks"]["kvstore"]["status"].as_str()
        ),
        (Some("degraded"), Some("down"))
    );
    assert_no_error_text(&degraded.body);
    assert_eq!(call(&service, "GET", "/livez", &[], b"").status, 200);
    assert_eq!(call(&service, "GET", "/", &[], b"").status, 200);
    assert_eq!(call(&service, "GET", "/readyz", &[], b"").status, 200);

    store.restart();
    wait_for_store_up(&service, 2);
    let ready = call(&service, "GET", "/healthz", &[], b"");
    assert_eq!(
        (ready.status, ready.json().unwrap()["status"].as_str()),
        (200, Some("ready"))
    );
}

#[test]
fn a_store_unreachable_from_the_start_degrades_readiness_and_answers_503() {
    let port = closed_port();
    let service = start_service(&format!("http://127.0.0.1:{port}"), &[]);
    wait_for_lines(&service, "the kvstore check to fail", |lines| {
        lines
            .iter()
            .any(|line| line["check"] == "kvstore" && line["body"] == "readiness check failed")
    });
    let degraded = call(&service, "GET", "/healthz", &[], b"");
    assert_eq!(
        (degraded.status, degraded.json().unwrap()["status"].as_str()),
        (200, Some("degraded"))
    );
    assert_eq!(call(&service, "GET", "/livez", &[], b"").status, 200);
    assert_problem(
        &get_setting(&service, "greeting"),
        503,
        &[&port.to_string()],
        "GET with the store unreachable",
    );
}

#[test]
fn an_issuer_unreachable_at_startup_keeps_the_instance_unready_until_its_keys_load() {
    let store = StandInServer::start();
    let port = closed_port();
    let standin = issuer_standin::IssuerStandIn::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let issuer = standin.issuer(common::REALM);
    let token = format!(
        "Bearer {}",
        standin.token(common::REALM, "practitioner").unwrap()
    );
    let service = launch_service(&store.url(), &[("AUTH_ISSUER", issuer.as_str())]);
    wait_for_lines(&service, "the keys check to fail", |lines| {
        lines
            .iter()
            .any(|line| line["check"] == "auth-keys" && line["body"] == "readiness check failed")
    });
    let unready = call(&service, "GET", "/healthz", &[], b"");
    assert_eq!(unready.status, 503, "{}", unready.body);
    assert_no_error_text(&unready.body);
    assert_eq!(call(&service, "GET", "/", &[], b"").status, 200);
    let headers = [("Authorization", token.as_str())];
    assert_problem(
        &call(&service, "GET", "/settings/greeting", &headers, b""),
        503,
        &[&port.to_string()],
        "GET before the issuer's keys were loaded",
    );

    let _issuer = common::IssuerServer::serve(standin, port);
    wait_for_lines(&service, "the keys check to pass", |lines| {
        lines
            .iter()
            .any(|line| line["check"] == "auth-keys" && line["body"] == "readiness check is up")
    });
    assert_eq!(call(&service, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(
        call(&service, "GET", "/settings/greeting", &headers, b"").status,
        404
    );
}

#[test]
fn sigterm_exits_0_through_every_shutdown_phase() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    assert_eq!(call(&service, "GET", "/", &[], b"").status, 200);
    service.signal(Signal::Term).unwrap();
    let (status, lines) = service.finish(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(status.expect("exits within 10 s").code(), Some(0));
    let phases: Vec<String> = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|line| line["phase"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(phases, ["readiness_off", "drain", "hooks", "flush", "exit"]);
}

/// A probe body carries statuses and timings only: the failed check's error goes to the log.
fn assert_no_error_text(body: &str) {
    for needle in ["refused", "error", "127.0.0.1", "http://"] {
        assert!(
            !body.contains(needle),
            "the probe body leaks {needle:?}: {body}"
        );
    }
}
