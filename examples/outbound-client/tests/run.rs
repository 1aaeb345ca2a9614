//! The example as a real process in front of a real upstream on 127.0.0.1: what the upstream receives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use telemed_kit::testing::{ServiceProcess, Signal, free_port, http_get, http_request};

const TIMEOUT: Duration = Duration::from_secs(20);
const TRACE_ID: &str = "463ac35c9f6413ad48485a3953bb6124";
const SPAN_ID: &str = "a2fb4a1d1a96d312";
const OT_SPAN_CONTEXT: &str =
    "463ac35c9f6413ad48485a3953bb6124;a2fb4a1d1a96d312;0000000000000000;cs";
const TRACEPARENT: &str = "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01";

/// A FHIR server stand-in that records the headers of every request it gets.
fn upstream() -> (SocketAddr, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let record = seen.clone();
    let app = Router::new().route(
        "/fhir/Patient/{id}",
        get(move |headers: HeaderMap| async move {
            record.lock().unwrap().push(headers);
            (
                [("content-type", "application/fhir+json")],
                r#"{"resourceType":"Patient","id":"p1"}"#,
            )
        }),
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (addr, seen)
}

fn start(fhir_url: &str) -> ServiceProcess {
    let service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_example-outbound-client"),
        &[
            ("FHIR_URL", fhir_url),
            ("USER_AGENT", "CGI-EXAMPLE/1.0.3"),
            ("SHUTDOWN_DELAY", "100ms"),
        ],
    )
    .unwrap();
    service
        .wait_for_log(|line| line["body"] == "listening", TIMEOUT)
        .expect("listening");
    service
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

#[test]
fn the_call_carries_trace_headers_request_id_audit_header_user_agent_and_the_callers_token() {
    let (addr, seen) = upstream();
    let mut service = start(&format!("http://{addr}/fhir"));

    let answer = http_request(
        service.addr(),
        "GET",
        "/patients/p1",
        &[
            ("Authorization", "Bearer token-of-the-caller"),
            ("X-B3-TraceId", TRACE_ID),
            ("X-B3-SpanId", SPAN_ID),
            ("X-B3-Sampled", "1"),
            ("x-request-id", "req-42"),
            ("x-ot-span-context", OT_SPAN_CONTEXT),
            ("traceparent", TRACEPARENT),
            ("tracestate", "vendor=value"),
            ("x-audit-restriction-levels", "level-1"),
        ],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/fhir+json"));
    assert_eq!(answer.json().unwrap()["id"], "p1");

    let headers = seen.lock().unwrap().pop().expect("the upstream was called");
    assert_eq!(
        header(&headers, "authorization"),
        Some("Bearer token-of-the-caller")
    );
    assert_eq!(header(&headers, "x-b3-traceid"), Some(TRACE_ID));
    assert_eq!(header(&headers, "x-b3-sampled"), Some("1"));
    assert_eq!(header(&headers, "x-request-id"), Some("req-42"));
    assert_eq!(header(&headers, "x-ot-span-context"), Some(OT_SPAN_CONTEXT));
    assert_eq!(header(&headers, "traceparent"), Some(TRACEPARENT));
    assert_eq!(header(&headers, "tracestate"), Some("vendor=value"));
    assert_eq!(
        header(&headers, "x-audit-restriction-levels"),
        Some("level-1")
    );
    assert_eq!(header(&headers, "user-agent"), Some("CGI-EXAMPLE/1.0.3"));

    // Without a token from the caller, none is sent: the service never invents credentials.
    assert_eq!(
        http_get(service.addr(), "/patients/p1", TIMEOUT)
            .unwrap()
            .status,
        200
    );
    let headers = seen
        .lock()
        .unwrap()
        .pop()
        .expect("the upstream was called again");
    assert_eq!(header(&headers, "authorization"), None);

    // An id that could change the upstream path is refused before any call.
    let calls = seen.lock().unwrap().len();
    assert_eq!(
        http_get(service.addr(), "/patients/..%2Fadmin", TIMEOUT)
            .unwrap()
            .status,
        400
    );
    assert_eq!(seen.lock().unwrap().len(), calls);

    service.signal(Signal::Term).unwrap();
    let status = service
        .wait_exit(TIMEOUT)
        .unwrap()
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", service.lines());
}

#[test]
fn an_unreachable_upstream_answers_502_problem_json() {
    let closed = free_port().unwrap();
    let mut service = start(&format!("http://127.0.0.1:{closed}/fhir"));
    let answer = http_get(service.addr(), "/patients/p1", TIMEOUT).unwrap();
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.json().unwrap()["status"], 502);

    service.signal(Signal::Term).unwrap();
    let status = service
        .wait_exit(TIMEOUT)
        .unwrap()
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", service.lines());
}
