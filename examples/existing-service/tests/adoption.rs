//! Each step of the adoption as a real process, with a real upstream and a real Zipkin collector on 127.0.0.1:
//! what every rule the service adopts looks like from outside.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::Value;
use telemed_kit::testing::{HttpResponse, ServiceProcess, Signal, http_get, http_request};

/// Generous: only reached when the behaviour is wrong.
const TIMEOUT: Duration = Duration::from_secs(20);
const TRACE_ID: &str = "463ac35c9f6413ad48485a3953bb6124";
const SPAN_ID: &str = "a2fb4a1d1a96d312";
const REQUEST_ID: &str = "req-existing-1";
const OT_SPAN_CONTEXT: &str =
    "463ac35c9f6413ad48485a3953bb6124;a2fb4a1d1a96d312;0000000000000000;cs";
const TRACEPARENT: &str = "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE";
const AUDIT: &str = "restricted";

/// A server on 127.0.0.1 for the length of the test, on a thread of its own.
fn serve(app: Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
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
    addr
}

/// The service the example calls: `GET /greeting`, recording the headers of each call.
fn upstream() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/greeting",
        get(move |headers: HeaderMap| async move {
            record.lock().unwrap().push(headers);
            "hello from upstream"
        }),
    );
    (format!("http://{}", serve(app)), seen)
}

/// A Zipkin v2 collector keeping every span posted to it.
fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let keep = spans.clone();
    let app = Router::new().route(
        "/api/v2/spans",
        post(move |body: Bytes| async move {
            let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
            keep.lock().unwrap().extend(batch);
            axum::http::StatusCode::ACCEPTED
        }),
    );
    (format!("http://{}/api/v2/spans", serve(app)), spans)
}

fn start(binary: &str, env: &[(&str, &str)]) -> ServiceProcess {
    let service = ServiceProcess::spawn(binary, env).unwrap();
    // Readiness answers once the runner serves, with its signal handlers installed.
    let ready = Instant::now();
    loop {
        if http_get(service.addr(), "/healthz", TIMEOUT).is_ok_and(|r| r.status == 200) {
            return service;
        }
        assert!(
            ready.elapsed() < TIMEOUT,
            "never ready: {:#?}",
            service.lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn b3_get(service: &ServiceProcess, path: &str) -> HttpResponse {
    http_request(
        service.addr(),
        "GET",
        path,
        &[
            ("X-B3-TraceId", TRACE_ID),
            ("X-B3-SpanId", SPAN_ID),
            ("X-B3-Sampled", "1"),
            ("x-request-id", REQUEST_ID),
            ("x-ot-span-context", OT_SPAN_CONTEXT),
            ("traceparent", TRACEPARENT),
            ("tracestate", TRACESTATE),
            ("x-audit-restriction-levels", AUDIT),
        ],
        b"",
        TIMEOUT,
    )
    .unwrap()
}

fn events_seen(service: &ServiceProcess) -> u64 {
    http_get(service.addr(), "/events", TIMEOUT)
        .unwrap()
        .body
        .parse()
        .unwrap()
}

/// Every stdout line, each checked to be one JSON object in the eHealth logging model.
fn model_lines(lines: &[String]) -> Vec<serde_json::Map<String, Value>> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .map(|line| {
            let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
                panic!("not a JSON object: {line}");
            };
            for key in ["time", "app", "body", "subject"] {
                assert!(object[key].is_string(), "{key} in {line}");
            }
            let time = object["time"].as_str().unwrap();
            assert!(time.len() == 27 && time.ends_with('Z'), "{line}");
            let severity = object["severity"].as_str().unwrap();
            assert!(
                ["informational", "low", "medium", "high", "critical"].contains(&severity),
                "{line}"
            );
            let kind = object["type"].as_str().unwrap();
            assert!(
                ["event", "alert", "alarm", "task"].contains(&kind),
                "{line}"
            );
            if let Some(id) = object.get("id") {
                assert!(id.is_string(), "{line}");
            }
            object
        })
        .collect()
}

/// SIGTERM: readiness turns 503 while liveness stays 200 and new connections are still served; then the
/// process exits 0, inside the grace period.
fn sigterm_and_exit_0_inside_the_grace_period(service: &mut ServiceProcess, grace: Duration) {
    service.signal(Signal::Term).unwrap();
    let signalled = Instant::now();
    loop {
        let readiness = http_get(service.addr(), "/healthz", TIMEOUT).unwrap();
        if readiness.status == 503 {
            break;
        }
        assert_eq!(readiness.status, 200);
        assert!(signalled.elapsed() < TIMEOUT, "readiness never turned 503");
    }
    assert_eq!(
        http_get(service.addr(), "/livez", TIMEOUT).unwrap().status,
        200
    );
    // A new connection, still inside SHUTDOWN_DELAY.
    let during_delay = http_get(service.addr(), "/", TIMEOUT).unwrap();
    assert_eq!(during_delay.status, 200);
    assert_eq!(during_delay.header("connection"), Some("close"));
    let status = service
        .wait_exit(grace)
        .unwrap()
        .expect("exited inside the grace period");
    assert!(signalled.elapsed() < grace, "{:?}", signalled.elapsed());
    assert_eq!(status.code(), Some(0), "{:#?}", service.lines());
}

#[test]
fn before_adoption_the_service_serves_its_routes() {
    let (upstream, _) = upstream();
    let service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_existing-service-before"),
        &[("UPSTREAM_URL", &upstream)],
    )
    .unwrap();
    let started = Instant::now();
    let hello = loop {
        match http_get(service.addr(), "/", TIMEOUT) {
            Ok(hello) => break hello,
            Err(_) if started.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("never served: {error}"),
        }
    };
    assert_eq!(hello.body, "hello from an existing service\n");
    assert_eq!(
        http_get(service.addr(), "/upstream", TIMEOUT).unwrap().body,
        "hello from upstream"
    );
    // No probes yet.
    assert_eq!(
        http_get(service.addr(), "/healthz", TIMEOUT)
            .unwrap()
            .status,
        404
    );
    service.signal(Signal::Kill).unwrap();
}

#[test]
fn step_1_adds_probes_and_the_shutdown_sequence_and_keeps_the_teams_subscriber() {
    let (upstream, _) = upstream();
    let grace = Duration::from_secs(4);
    let mut service = start(
        env!("CARGO_BIN_EXE_existing-service-step-1"),
        &[
            ("UPSTREAM_URL", &upstream),
            ("SHUTDOWN_GRACE_PERIOD", "4s"),
            ("SHUTDOWN_DELAY", "1s"),
            ("LIVENESS_STALL_THRESHOLD", "200ms"),
        ],
    );
    assert_eq!(http_get(service.addr(), "/", TIMEOUT).unwrap().status, 200);
    // The runner keeps the runtime heartbeat going: without it, /livez would fail once the stall threshold has
    // passed since startup. Sampled over three thresholds.
    let sampled = Instant::now();
    while sampled.elapsed() < Duration::from_millis(600) {
        let liveness = http_get(service.addr(), "/livez", TIMEOUT).unwrap();
        assert_eq!(liveness.status, 200, "{}", liveness.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        events_seen(&service) > 0,
        "the team's layer sees the events"
    );
    sigterm_and_exit_0_inside_the_grace_period(&mut service, grace);
}

/// A binary of step 2 or later, exporting its spans to a collector of the test's own, with a real upstream.
struct Exporting {
    service: ServiceProcess,
    calls: Arc<Mutex<Vec<HeaderMap>>>,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Exporting {
    fn start(binary: &str) -> Self {
        let (upstream, calls) = upstream();
        let (endpoint, spans) = collector();
        let service = start(
            binary,
            &[
                ("UPSTREAM_URL", &upstream),
                ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", &endpoint),
                ("SHUTDOWN_DELAY", "100ms"),
            ],
        );
        Self {
            service,
            calls,
            spans,
        }
    }

    /// SIGTERM, exit 0; the spans are flushed by then.
    fn stop(&mut self) {
        self.service.signal(Signal::Term).unwrap();
        let status = self.service.wait_exit(TIMEOUT).unwrap().expect("exited");
        assert_eq!(status.code(), Some(0), "{:#?}", self.service.lines());
    }
}

/// `GET /` with B3 under the team's layer, then the logs and spans it left: what steps 2 and 3 both prove.
/// `while_serving` checks more before the service stops.
fn logs_spans_and_the_teams_layer(binary: &str, while_serving: impl FnOnce(&ServiceProcess)) {
    let mut exporting = Exporting::start(binary);
    let service = &exporting.service;
    let events_before = events_seen(service);
    let hello = b3_get(service, "/");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.header("x-request-id"), Some(REQUEST_ID));
    assert!(
        events_seen(service) > events_before,
        "the team's layer still sees events"
    );
    while_serving(service);
    exporting.stop();
    assert_request_logged_with_its_trace_id(&exporting.service.lines());
    assert_handler_span_is_a_child_of_the_server_span(&exporting.spans.lock().unwrap());
}

#[test]
fn step_2_logs_in_the_model_with_the_trace_id_and_exports_the_handlers_span_as_a_child() {
    logs_spans_and_the_teams_layer(env!("CARGO_BIN_EXE_existing-service-step-2"), |service| {
        let metrics = http_get(service.addr(), "/metrics", TIMEOUT).unwrap();
        let counted = r#"http_server_requests_total{method="GET",route="/",status_class="2xx"} 1"#;
        assert!(metrics.body.contains(counted), "{}", metrics.body);
    });
}

/// The handler's own line and the access-log line carry the inbound trace id; the process's own lines do not.
fn assert_request_logged_with_its_trace_id(lines: &[String]) {
    let lines = model_lines(lines);
    let greeting = lines
        .iter()
        .find(|line| line["body"] == "greeting composed")
        .expect("the handler's line");
    assert_eq!(greeting["id"], TRACE_ID);
    let access = lines
        .iter()
        .find(|line| line["subject"] == "access" && line["uri_path"] == "/")
        .expect("an access-log line for GET /");
    assert_eq!(access["id"], TRACE_ID);
    assert_eq!(access["request_id"], REQUEST_ID);
    let listening = lines
        .iter()
        .find(|line| line["body"] == "listening")
        .unwrap();
    assert!(listening.get("id").is_none());
}

/// The server span continues the inbound trace; the span the handler made through `opentelemetry::global` is
/// its child, and the span of the `#[tracing::instrument]` function the handler calls is that one's child, all in
/// the same trace.
fn assert_handler_span_is_a_child_of_the_server_span(spans: &[Value]) {
    let server = spans
        .iter()
        .find(|span| span["kind"] == "SERVER" && span["name"] == "GET /")
        .unwrap_or_else(|| panic!("no server span for GET /: {spans:#?}"));
    assert_eq!(server["traceId"], TRACE_ID);
    assert_eq!(server["parentId"], SPAN_ID);
    let handler = spans
        .iter()
        .find(|span| span["name"] == "compose greeting")
        .unwrap_or_else(|| panic!("no span of the handler: {spans:#?}"));
    assert_eq!(handler["traceId"], TRACE_ID);
    assert_eq!(handler["parentId"], server["id"]);
    // And the span of `#[tracing::instrument]` inside it, through the tracing part's layer.
    let render = spans
        .iter()
        .find(|span| span["name"] == "render")
        .unwrap_or_else(|| panic!("no span of the instrumented function: {spans:#?}"));
    assert_eq!(render["traceId"], TRACE_ID);
    assert_eq!(render["parentId"], handler["id"]);
}

#[test]
fn the_adopted_service_forwards_b3_and_the_istio_headers_to_its_upstream() {
    let mut exporting = Exporting::start(env!("CARGO_BIN_EXE_existing-service"));
    let answer = b3_get(&exporting.service, "/upstream");
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "hello from upstream")
    );
    // A later call without inbound headers carries none of these.
    let later = http_get(exporting.service.addr(), "/upstream", TIMEOUT).unwrap();
    assert_eq!(later.status, 200);
    exporting.stop();

    let seen = exporting.calls.lock().unwrap();
    let header = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let call = &seen[0];
    assert_eq!(header(call, "x-b3-traceid").as_deref(), Some(TRACE_ID));
    assert_eq!(header(call, "x-b3-sampled").as_deref(), Some("1"));
    let client_span = header(call, "x-b3-spanid").unwrap();
    assert_ne!(client_span, SPAN_ID, "a span of the service's own");
    // The trace in W3C form too, with the same ids; the tracestate of the same trace goes on with it.
    let traceparent = format!("00-{TRACE_ID}-{client_span}-01");
    for (name, value) in [
        ("x-request-id", REQUEST_ID),
        ("x-ot-span-context", OT_SPAN_CONTEXT),
        ("traceparent", traceparent.as_str()),
        ("tracestate", TRACESTATE),
        ("x-audit-restriction-levels", AUDIT),
        ("user-agent", "example-existing-service/0.1.0"),
    ] {
        assert_eq!(header(call, name).as_deref(), Some(value), "{name}");
    }
    let later = &seen[1];
    for name in [
        "x-ot-span-context",
        "tracestate",
        "x-audit-restriction-levels",
    ] {
        assert!(
            header(later, name).is_none(),
            "{name} leaked into a later call"
        );
    }
    // A trace of its own, in both forms.
    let later_trace = header(later, "x-b3-traceid").unwrap();
    assert_ne!(later_trace, TRACE_ID);
    let later_span = header(later, "x-b3-spanid").unwrap();
    assert_eq!(
        header(later, "traceparent"),
        Some(format!("00-{later_trace}-{later_span}-01"))
    );

    // The outbound call's span is a child of the server span, and its id is the one the upstream received.
    let spans = exporting.spans.lock().unwrap();
    let server = spans
        .iter()
        .find(|span| span["kind"] == "SERVER" && span["traceId"] == TRACE_ID)
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(server["parentId"], SPAN_ID);
    let client = spans
        .iter()
        .find(|span| span["kind"] == "CLIENT" && span["traceId"] == TRACE_ID)
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(client["id"], client_span.as_str());
    assert_eq!(client["parentId"], server["id"]);
}

#[test]
fn the_adopted_service_logs_in_the_model_exports_its_handler_span_and_keeps_the_teams_layer() {
    logs_spans_and_the_teams_layer(env!("CARGO_BIN_EXE_existing-service"), |_| {});
}

#[test]
fn the_adopted_service_turns_readiness_off_on_sigterm_and_exits_0_inside_the_grace_period() {
    let (upstream, _) = upstream();
    let grace = Duration::from_secs(4);
    let mut service = start(
        env!("CARGO_BIN_EXE_existing-service"),
        &[
            ("UPSTREAM_URL", &upstream),
            ("SHUTDOWN_GRACE_PERIOD", "4s"),
            ("SHUTDOWN_DELAY", "1s"),
        ],
    );
    sigterm_and_exit_0_inside_the_grace_period(&mut service, grace);
    // The sequence's phases, in the logging model.
    let lines = model_lines(&service.lines());
    let phases: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.get("phase").and_then(Value::as_str))
        .collect();
    assert_eq!(phases, ["readiness_off", "drain", "hooks", "flush", "exit"]);
}

#[test]
fn a_bad_variable_exits_2_with_one_line_before_binding() {
    let (upstream, _) = upstream();
    for (name, value) in [
        ("UPSTREAM_URL", "ftp://x"),
        ("SHUTDOWN_DELAY", "soon"),
        ("LOG_LEVEL", "loud"),
    ] {
        let env = [("UPSTREAM_URL", upstream.as_str()), (name, value)];
        let service = ServiceProcess::spawn(env!("CARGO_BIN_EXE_existing-service"), &env).unwrap();
        let port = service.port();
        let (status, lines) = service.finish(TIMEOUT).unwrap();
        assert_eq!(status.and_then(|status| status.code()), Some(2), "{name}");
        assert_eq!(lines.len(), 1, "{lines:#?}");
        let line = &model_lines(&lines)[0];
        assert!(
            line["body"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{name}=")),
            "{line:?}"
        );
        assert_eq!(line["type"], "alarm");
        // Nothing bound the port.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
