//! Shared harness for the reference service's process tests: the key-value store stand-in served inside the
//! test process, the token issuer stand-in every service trusts ([`issuer`], [`token`]), the service binary
//! started as a real process against both, and helpers for requests, problem bodies and log lines.
//!
//! The stand-in runs on its own tokio runtime on its own threads, so that a test can stop it (the port closes,
//! every connection drops) and start it again on the same port with the same values, and so that blocking test
//! code never starves it. A probe layer around it counts the requests it is handling and can hold `GET`s at a
//! gate, which is how the single-flight test knows every request is waiting at the same time.
//!
//! Every suite runs twice: as is, and with `CACHE_DISABLED=true` in the test process's environment. The
//! service is always started with the variable as the test run has it ([`cache_disabled`]), and
//! [`start_service`] checks that the service reports the mode the test expects.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use issuer_standin::IssuerStandIn;
use kvstore_standin::StandIn;
use serde_json::Value;
use telemed_kit::testing::{HttpResponse, ServiceProcess, http_request};

/// The service binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_reference-service");
/// The `{application}` the service uses at the store: its name.
pub const APPLICATION: &str = "reference-service";
/// The realm whose tokens the services under test accept.
pub const REALM: &str = "ehealth";
/// Time limit of one request made by a test; far above any answer the service should take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit for a log line or a state the test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// Whether this run has the caches off: `CACHE_DISABLED` read the way the kit reads it.
pub fn cache_disabled() -> bool {
    match std::env::var("CACHE_DISABLED") {
        Err(_) => false,
        Ok(raw) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            other => panic!("CACHE_DISABLED={other:?} is not a boolean"),
        },
    }
}

/// The kit's variables, removed from what the service inherits so that a developer's environment (say
/// `LOG_FORMAT=pretty`) cannot change what a test sees; the test sets what it needs.
const KIT_VARIABLES: &[&str] = &[
    "PORT",
    "AUTH_ISSUER",
    "AUTH_JWKS_URL",
    "AUTH_AUDIENCE",
    "AUTH_LEEWAY",
    "SETTINGS_WRITE_PRIVILEGE",
    "KVSTORE_URL",
    "KVSTORE_APPLICATION",
    "CACHE_DISABLED",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
    "OTEL_TRACES_SAMPLER_ARG",
    "B3_INJECT",
    "USER_AGENT",
    "OUTBOUND_TIMEOUT",
    "OUTBOUND_CONNECT_TIMEOUT",
    "READINESS_CHECK_INTERVAL",
    "READINESS_CHECK_TIMEOUT",
    "LIVENESS_STALL_THRESHOLD",
    "SHUTDOWN_DELAY",
    "SHUTDOWN_GRACE_PERIOD",
];

/// The environment every service gets, before the test's own `extra` (which wins): the store, the issuer
/// stand-in, this run's `CACHE_DISABLED`, no shutdown delay (tests kill or stop the process themselves), and a
/// readiness check every 200 ms so that readiness follows the store quickly.
pub fn service_env(kvstore_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("KVSTORE_URL".to_owned(), kvstore_url.to_owned()),
        ("AUTH_ISSUER".to_owned(), issuer().standin.issuer(REALM)),
        ("CACHE_DISABLED".to_owned(), cache_disabled().to_string()),
        ("SHUTDOWN_DELAY".to_owned(), "0s".to_owned()),
        ("READINESS_CHECK_INTERVAL".to_owned(), "200ms".to_owned()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    env
}

/// A command for the service binary without the kit's variables from the test's environment.
pub fn service_command() -> Command {
    let mut command = Command::new(BIN);
    for name in KIT_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// Starts the service against `kvstore_url`, waits until it listens and until it has the issuer's keys (before,
/// it is not ready and its settings routes answer 503). Checks that it runs with the caches on or off as this
/// test run asks.
pub fn start_service(kvstore_url: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let service = launch_service(kvstore_url, extra);
    wait_for_lines(&service, "the issuer's keys to be loaded", |lines| {
        lines
            .iter()
            .any(|line| line["check"] == "auth-keys" && line["body"] == "readiness check is up")
    });
    service
}

/// [`start_service`] without waiting for the issuer's keys.
pub fn launch_service(kvstore_url: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let env = service_env(kvstore_url, extra);
    let pairs: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let service = ServiceProcess::spawn_command(&mut service_command(), &pairs)
        .expect("spawn the reference service");
    service
        .wait_for_log(|line| line["body"] == "listening", WAIT)
        .unwrap_or_else(|| {
            panic!(
                "the service did not log `listening`: {:#?}",
                service.lines()
            )
        });
    let pass_through = json_lines(&service)
        .iter()
        .any(|line| text(line, "body").starts_with("CACHE_DISABLED"));
    assert_eq!(
        pass_through,
        cache_disabled(),
        "the service's cache mode does not follow this run's CACHE_DISABLED"
    );
    service
}

/// The kit's readiness check on the store reported `up` for the `nth` time (1-based): the service can reach
/// the store.
pub fn wait_for_store_up(service: &ServiceProcess, nth: usize) {
    wait_for_lines(service, "the kvstore readiness check to be up", |lines| {
        lines
            .iter()
            .filter(|line| line["check"] == "kvstore" && line["body"] == "readiness check is up")
            .count()
            >= nth
    });
}

/// Counts and holds requests at the stand-in, from the test's side.
#[derive(Clone)]
pub struct Probe {
    /// The counts, and a condvar that the test thread waits on for them to change.
    inner: Arc<(Mutex<ProbeState>, Condvar)>,
    /// True while `GET`s are held; the held requests wait on it.
    gate_closed: Arc<tokio::sync::watch::Sender<bool>>,
    /// The `Authorization` values of the requests under `/properties/`, in arrival order.
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            gate_closed: Arc::new(tokio::sync::watch::Sender::new(false)),
            authorizations: Arc::default(),
        }
    }
}

/// What the probe has seen of requests under `/properties/`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProbeState {
    /// Requests being handled now (waiting at the gate, delayed by a fault, or being answered).
    pub in_flight: usize,
    /// `GET`s waiting at the closed gate now.
    pub at_gate: usize,
}

impl Probe {
    fn update(&self, change: impl FnOnce(&mut ProbeState)) {
        let (state, changed) = &*self.inner;
        change(&mut state.lock().unwrap());
        changed.notify_all();
    }

    /// Blocks until `condition` holds for the counts; panics after [`WAIT`].
    pub fn wait_until(&self, what: &str, condition: impl Fn(&ProbeState) -> bool) -> ProbeState {
        let (state, changed) = &*self.inner;
        let guard = state.lock().unwrap();
        let (guard, timeout) = changed
            .wait_timeout_while(guard, WAIT, |state| !condition(state))
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "stand-in: waited {WAIT:?} for {what}: {:?}",
            *guard
        );
        *guard
    }

    /// From now on, `GET`s under `/properties/` wait until [`Probe::open_gate`].
    pub fn close_gate(&self) {
        self.gate_closed.send_replace(true);
    }

    /// Lets the held `GET`s through.
    pub fn open_gate(&self) {
        self.gate_closed.send_replace(false);
    }

    /// The `Authorization` values the store has received so far (one entry per header line).
    pub fn authorizations(&self) -> Vec<String> {
        self.authorizations.lock().unwrap().clone()
    }
}

struct InFlight(Probe, bool);

impl Drop for InFlight {
    fn drop(&mut self) {
        let at_gate = self.1;
        self.0.update(|state| {
            state.in_flight -= 1;
            if at_gate {
                state.at_gate -= 1;
            }
        });
    }
}

async fn observe(State(probe): State<Probe>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/properties/") {
        return next.run(request).await;
    }
    probe.authorizations.lock().unwrap().extend(
        request
            .headers()
            .get_all(axum::http::header::AUTHORIZATION)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
    );
    let mut gate = probe.gate_closed.subscribe();
    let gated = request.method() == Method::GET && *gate.borrow_and_update();
    probe.update(|state| {
        state.in_flight += 1;
        if gated {
            state.at_gate += 1;
        }
    });
    let mut in_flight = InFlight(probe.clone(), gated);
    if gated {
        let _ = gate.wait_for(|closed| !*closed).await;
        probe.update(|state| state.at_gate -= 1);
        in_flight.1 = false;
    }
    let response = next.run(request).await;
    drop(in_flight);
    response
}

/// The stand-in served on 127.0.0.1 by its own runtime.
pub struct StandInServer {
    /// The stand-in's state: values, request counts, faults. Survives [`StandInServer::stop`].
    pub standin: StandIn,
    /// Request counts and the gate.
    pub probe: Probe,
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StandInServer {
    /// An empty stand-in on a free port.
    pub fn start() -> Self {
        let mut server = Self {
            standin: StandIn::new(),
            probe: Probe::default(),
            port: 0,
            runtime: None,
        };
        server.serve();
        server
    }

    fn serve(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("standin")
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .unwrap_or_else(|error| panic!("bind the stand-in on port {}: {error}", self.port));
        self.port = listener.local_addr().unwrap().port();
        let router = self
            .standin
            .router()
            .layer(middleware::from_fn_with_state(self.probe.clone(), observe));
        runtime.spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        self.runtime = Some(runtime);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops serving: the listener closes and every connection drops. Values and counts are kept.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping the runtime drops every task (the accept loop, each connection) before it returns.
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Serves again on the same port, with the same values.
    pub fn restart(&mut self) {
        assert!(self.runtime.is_none(), "the stand-in is still running");
        self.serve();
    }

    /// Requests the stand-in has received, apart from the service's readiness checks (`HEAD`s, every 200 ms).
    pub fn calls(&self) -> u64 {
        let stats = self.standin.stats();
        stats.total - stats.by_method.get("HEAD").copied().unwrap_or(0)
    }

    /// The path of `key` at the store.
    pub fn path(key: &str) -> String {
        format!("/properties/{APPLICATION}/{key}")
    }

    /// `GET` straight at the stand-in, bypassing the service: what is really stored.
    pub fn read(&self, key: &str) -> HttpResponse {
        http_request(
            self.addr(),
            "GET",
            &Self::path(key),
            &[("Authorization", token())],
            b"",
            REQUEST_TIMEOUT,
        )
        .unwrap()
    }

    /// Creates `key` straight at the stand-in; returns its `ETag`.
    pub fn create(&self, key: &str, content_type: &str, value: &str) -> String {
        let response = http_request(
            self.addr(),
            "POST",
            &Self::path(key),
            &[("Authorization", token()), ("Content-Type", content_type)],
            value.as_bytes(),
            REQUEST_TIMEOUT,
        )
        .unwrap();
        assert_eq!(response.status, 201, "create {key} at the stand-in");
        response.header("etag").unwrap().to_owned()
    }
}

impl Drop for StandInServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The token issuer stand-in, served on 127.0.0.1 by its own runtime for the whole test binary.
pub struct IssuerServer {
    /// The stand-in: its keys, and tokens signed with them.
    pub standin: IssuerStandIn,
    writer: String,
    reader: String,
    _runtime: tokio::runtime::Runtime,
}

/// How long the harness's tokens live: longer than any test binary runs.
const TOKEN_LIFETIME_SECS: u64 = 3600;

impl IssuerServer {
    fn start() -> Self {
        let port = telemed_kit::testing::free_port().unwrap();
        let standin = IssuerStandIn::new(&format!("http://127.0.0.1:{port}")).unwrap();
        Self::serve(standin, port)
    }

    /// Serves `standin` on `port` from now on (a test's own issuer, brought up late).
    pub fn serve(standin: IssuerStandIn, port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("issuer")
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|error| panic!("bind the issuer stand-in on port {port}: {error}"));
        let router = standin.router();
        runtime.spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let bearer = |username: &str| {
            let claims = standin
                .user_claims(
                    REALM,
                    username,
                    "ReferenceServiceTests",
                    TOKEN_LIFETIME_SECS,
                )
                .unwrap();
            format!("Bearer {}", standin.sign(&claims).unwrap())
        };
        Self {
            writer: bearer("practitioner"),
            reader: bearer("patient"),
            standin,
            _runtime: runtime,
        }
    }
}

/// The issuer stand-in every service started by [`start_service`] trusts (`AUTH_ISSUER`).
pub fn issuer() -> &'static IssuerServer {
    static ISSUER: OnceLock<IssuerServer> = OnceLock::new();
    ISSUER.get_or_init(IssuerServer::start)
}

/// `Bearer <token>` of a practitioner: valid, with `Settings.write`, so it may read and write.
pub fn token() -> &'static str {
    &issuer().writer
}

/// `Bearer <token>` of a patient: valid, without `Settings.write`, so it may read but not write.
pub fn reader_token() -> &'static str {
    &issuer().reader
}

/// A request to the service on a fresh connection; panics if there is no answer within [`REQUEST_TIMEOUT`].
pub fn call(
    service: &ServiceProcess,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    http_request(service.addr(), method, path, headers, body, REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// `GET /settings/{key}` with the test token.
pub fn get_setting(service: &ServiceProcess, key: &str) -> HttpResponse {
    call(
        service,
        "GET",
        &format!("/settings/{key}"),
        &[("Authorization", token())],
        b"",
    )
}

/// `PUT /settings/{key}` with the test token, `text/plain`, and `If-Match` when given.
pub fn put_setting(
    service: &ServiceProcess,
    key: &str,
    value: &str,
    if_match: Option<&str>,
) -> HttpResponse {
    let mut headers = vec![
        ("Authorization", token()),
        ("Content-Type", "text/plain; charset=utf-8"),
    ];
    if let Some(etag) = if_match {
        headers.push(("If-Match", etag));
    }
    call(
        service,
        "PUT",
        &format!("/settings/{key}"),
        &headers,
        value.as_bytes(),
    )
}

/// `DELETE /settings/{key}` with the test token and `If-Match` when given.
pub fn delete_setting(service: &ServiceProcess, key: &str, if_match: Option<&str>) -> HttpResponse {
    let mut headers = vec![("Authorization", token())];
    if let Some(etag) = if_match {
        headers.push(("If-Match", etag));
    }
    call(
        service,
        "DELETE",
        &format!("/settings/{key}"),
        &headers,
        b"",
    )
}

/// Text that must never reach a client: where the store is, what failed inside, which library said so, and
/// any token (a JWT's header starts `eyJ`, base64url of `{"`).
pub const INTERNALS: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "http://",
    "https://",
    "/properties",
    "stand-in",
    "standin",
    "fault",
    "reqwest",
    "hyper",
    "panicked",
    ".rs:",
    "src/",
    "Bearer",
    "eyJ",
];

/// Asserts that `body` names none of [`INTERNALS`] nor any of `also` (a port, a marker).
pub fn assert_no_internals(body: &str, also: &[&str], context: &str) {
    for needle in INTERNALS.iter().chain(also) {
        assert!(
            !body.contains(needle),
            "{context}: the body leaks {needle:?}: {body}"
        );
    }
}

/// Asserts an RFC 9457 problem answer with `status`: `application/problem+json`, a JSON object with
/// `type`, `title` and `status` (and at most a `detail`), and no internals.
pub fn assert_problem(response: &HttpResponse, status: u16, also: &[&str], context: &str) {
    assert_eq!(
        response.status, status,
        "{context}: status (body {})",
        response.body
    );
    assert_problem_body(
        response.header("content-type"),
        &response.body,
        status,
        also,
        context,
    );
}

/// The body half of [`assert_problem`], for responses read by other means.
pub fn assert_problem_body(
    content_type: Option<&str>,
    body: &str,
    status: u16,
    also: &[&str],
    context: &str,
) {
    assert_eq!(
        content_type,
        Some("application/problem+json"),
        "{context}: content type (body {body})"
    );
    let problem: Value = serde_json::from_str(body).unwrap_or_else(|error| {
        panic!("{context}: the problem body is not JSON ({error}): {body}")
    });
    let object = problem
        .as_object()
        .unwrap_or_else(|| panic!("{context}: the problem is not an object: {body}"));
    assert!(
        object["type"].is_string() && object["title"].is_string(),
        "{context}: type and title: {body}"
    );
    assert_eq!(object["status"], status, "{context}: status member: {body}");
    for member in object.keys() {
        assert!(
            ["type", "title", "status", "detail"].contains(&member.as_str()),
            "{context}: unexpected member {member:?}: {body}"
        );
    }
    assert_no_internals(body, also, context);
}

/// Every stdout line so far, parsed; panics on a line that is not one JSON object.
pub fn json_lines(service: &ServiceProcess) -> Vec<Value> {
    service
        .lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("a stdout line is not JSON ({error}): {line:?}"));
            assert!(
                value.is_object(),
                "a stdout line is not an object: {line:?}"
            );
            value
        })
        .collect()
}

/// The string field `name` of a log line, or `""`.
pub fn text<'a>(line: &'a Value, name: &str) -> &'a str {
    line[name].as_str().unwrap_or("")
}

/// Blocks until `condition` holds for every stdout line seen so far; returns them. Each wait is for the next
/// line, so the condition is checked once per line, never on a timer. Panics after [`WAIT`].
pub fn wait_for_lines(
    service: &ServiceProcess,
    what: &str,
    condition: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = json_lines(service);
        if condition(&lines) {
            return lines;
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("waited {WAIT:?} for {what}; lines: {lines:#?}"));
        // Returns on the next line (which `lines()` then holds too) or at the deadline.
        let _ = service.wait_for_log(|_| true, left);
    }
}

/// A response read from a raw socket: what hyper itself sent, including its own rejections.
#[derive(Debug)]
pub struct RawResponse {
    /// The status, if a status line came.
    pub status: Option<u16>,
    /// The head, as text.
    pub head: String,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends `request` as bytes on a new connection, reads until the server closes it (requests should say
/// `Connection: close`), and splits the answer.
pub fn raw_request(addr: SocketAddr, request: &[u8], timeout: Duration) -> RawResponse {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    // The server may answer and close before reading everything (431, 413): a failed write is not the test's
    // concern, the answer is.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    if let Err(error) = stream.read_to_end(&mut received) {
        // A reset after the answer (the server closed with unread input) still leaves the answer readable.
        assert!(
            !received.is_empty() || error.kind() == std::io::ErrorKind::ConnectionReset,
            "no answer within {timeout:?}: {error}"
        );
    }
    split_response(&received)
}

/// Splits raw response bytes into status, head and body.
pub fn split_response(received: &[u8]) -> RawResponse {
    let end = received.windows(4).position(|window| window == b"\r\n\r\n");
    let (head, body) = match end {
        Some(end) => (&received[..end], received[end + 4..].to_vec()),
        None => (received, Vec::new()),
    };
    let head = String::from_utf8_lossy(head).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok());
    RawResponse { status, head, body }
}

/// The resident memory of process `pid`, in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    telemed_kit::testing::free_port().unwrap()
}
