//! The service as a real process: its route and probes answer, SIGTERM turns readiness off while requests are
//! still served, and the process exits 0 after its shutdown hook; a bad variable exits 2 before anything binds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use telemed_kit::testing::{HttpResponse, ServiceProcess, Signal, http_get};

const BIN: &str = env!("CARGO_BIN_EXE_{{project-name}}");
const TIMEOUT: Duration = Duration::from_secs(20);
/// The platform's terminationGracePeriodSeconds, and the kit's default SHUTDOWN_GRACE_PERIOD.
const GRACE_PERIOD: Duration = Duration::from_secs(10);
{%- if kvstore %}

/// The kit's in-memory key-value store stand-in, served on 127.0.0.1 for the length of the test process.
fn kvstore_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let router = kvstore_standin::router();
            telemed_kit::axum::serve(listener, router).await.unwrap();
        });
    });
    url
}
{%- endif %}

fn start(env: &[(&str, &str)]) -> ServiceProcess {
{%- if kvstore %}
    let kvstore = kvstore_url();
    let mut env = env.to_vec();
    env.push(("KVSTORE_URL", &kvstore));
    let service = ServiceProcess::spawn(BIN, &env).unwrap();
{%- else %}
    let service = ServiceProcess::spawn(BIN, env).unwrap();
{%- endif %}
    service
        .wait_for_log(|line| line["body"] == "listening", TIMEOUT)
        .expect("the service logs that it is listening");
    service
}

fn get(service: &ServiceProcess, path: &str) -> HttpResponse {
    http_get(service.addr(), path, TIMEOUT).unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// Waits for a log line with this body, which may also have come before the lines waited for so far (the
/// background checks start before the service logs that it is listening).
fn wait_for_body(service: &ServiceProcess, body: &str) {
    let seen = service.lines().iter().any(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|line| line["body"] == body)
    });
    if !seen {
        service
            .wait_for_log(|line| line["body"] == body, TIMEOUT)
            .unwrap_or_else(|| panic!("no `{body}` line: {:#?}", service.lines()));
    }
}

#[test]
fn route_and_probes_answer() {
    let service = start(&[("READINESS_CHECK_INTERVAL", "100ms")]);
    assert_eq!(get(&service, "/livez").status, 200);
    wait_for_body(&service, "readiness check is up");
    let ready = get(&service, "/healthz");
    let body = ready.json().unwrap();
    assert_eq!((ready.status, body["status"].as_str()), (200, Some("ready")), "{body}");
{%- if kvstore %}
    assert_eq!(body["checks"]["kvstore"]["status"], "up", "{body}");
{%- endif %}

    let about = get(&service, "/");
    assert_eq!(about.status, 200);
    let about = about.json().unwrap();
    assert_eq!(about["name"], env!("CARGO_PKG_NAME"));
    assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&service, "/no-such-route").status, 404);
}

#[test]
fn sigterm_turns_readiness_off_keeps_serving_through_the_delay_then_exits_0() {
    let mut service = start(&[("SHUTDOWN_DELAY", "2s")]);
    assert_eq!(get(&service, "/").status, 200);

    service.signal(Signal::Term).unwrap();
    service
        .wait_for_log(|line| line["phase"] == "readiness_off", TIMEOUT)
        .expect("shutdown starts");
    let ready = get(&service, "/healthz");
    assert_eq!(
        (ready.status, ready.json().unwrap()["status"].as_str()),
        (503, Some("shutting_down"))
    );
    assert_eq!(get(&service, "/").status, 200, "requests are still served during SHUTDOWN_DELAY");

    // Inside the platform's 10 s grace period (the kit's default): by the service's own clock, its exit line
    // comes before the kit's deadline (grace period minus its 500 ms margin); the wait here adds 1 s only for
    // this test being scheduled late on a loaded machine.
    let status = service
        .wait_exit(GRACE_PERIOD + Duration::from_secs(1))
        .unwrap()
        .expect("exits inside the grace period");
    let lines = service.lines();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let exit_ms = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["phase"] == "exit")
        .and_then(|line| line["elapsed_ms"].as_u64())
        .expect("the exit phase line");
    assert!(
        exit_ms < 9_500,
        "exited {exit_ms} ms after SIGTERM, past the deadline"
    );
    assert!(
        lines.iter().any(|line| line.contains(r#""hook":"goodbye""#)),
        "the shutdown hook ran: {lines:#?}"
    );
}

#[test]
fn an_invalid_variable_exits_2_with_one_line_naming_it() {
    let service = ServiceProcess::spawn(BIN, &[("SHUTDOWN_DELAY", "soon")]).unwrap();
    let (status, lines) = service.finish(TIMEOUT).unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(2));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(r#"SHUTDOWN_DELAY=\"soon\": expected"#), "{}", lines[0]);
}
