//! `KvStore` over real HTTP, built the way a service builds it (`KvStoreSettings` and `ClientSettings` from an
//! `Env`, the kit's outbound `Client`):
//! - against the stand-in (`kvstore_standin`), served by the kit's own accept loop on
//!   127.0.0.1:0: the contract's happy path, media types, ETags and the statuses it produces;
//! - against a misbehaving server written here on a raw `TcpListener`: slow, closing the connection, invalid
//!   bodies, and every status of `docs/kvstore.md` whatever the stand-in can be made to answer.
//!
//! Every expected failure is asserted as its exact `KvError` variant, and neither its `Display` nor its `Debug`
//! may show the bearer token that was sent.

// clippy.toml allows `expect` inside `#[test]` functions only; the helpers below are test code as well, and a
// failed setup (bind, settings) must stop the test loudly, as in `tests/docs.rs`.
#![allow(clippy::expect_used)]

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use kvstore_standin::{Failure, Faults, StandIn};
use telemed_kit::config::{Env, ServiceIdentity};
use telemed_kit::http::{Client, ClientSettings};
use telemed_kit::kvstore::{
    Auth, ETag, KvError, KvStore, KvStoreSettings, MAX_VALUE_BYTES, MediaType,
};
use telemed_kit::shutdown::{Shutdown, ShutdownSettings};
use telemed_kit::telemetry::trace::b3::B3Inject;
use telemed_kit::telemetry::{RequestTelemetryLayer, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The service's own token: a valid token68, distinctive enough that finding it in an error text means a leak.
const TOKEN: &str = "svc-0d5c7e1f9a2b4c68.kvstore-secret";
/// What `KVSTORE_APPLICATION` is set to.
const APPLICATION: &str = "telemed-test";
/// The client's time limit in the timeout tests.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a call that times out may take at most: the limit plus generous slack for a loaded CI machine.
const TIMEOUT_BOUND: Duration = Duration::from_secs(3);

fn service() -> ServiceIdentity {
    ServiceIdentity {
        name: "kvstore-client-test".to_owned(),
        version: "1.2.3".to_owned(),
    }
}

/// A `KvStore` for the store at `url`, configured through the same variables a deployment sets.
fn kvstore(url: &str, timeout: Duration) -> KvStore {
    let timeout = format!("{}ms", timeout.as_millis());
    let env = Env::from_pairs([
        ("KVSTORE_URL", url),
        ("KVSTORE_APPLICATION", APPLICATION),
        ("OUTBOUND_TIMEOUT", timeout.as_str()),
        ("OUTBOUND_CONNECT_TIMEOUT", "1s"),
    ]);
    let service = service();
    let settings = KvStoreSettings::from_env(&env, &service).expect("valid kvstore settings");
    assert_eq!(settings.url, url);
    assert_eq!(settings.application, APPLICATION);
    let client = Client::new(
        ClientSettings::from_env(&env, &service).expect("valid client settings"),
        Telemetry::propagation_only(B3Inject::Multi),
    );
    KvStore::new(settings, client)
}

fn own() -> Auth {
    Auth::Bearer(TOKEN.to_owned())
}

fn etag(tag: &str) -> ETag {
    ETag::parse(tag).expect("a quoted entity tag")
}

fn path(key: &str) -> String {
    format!("/properties/{APPLICATION}/{key}")
}

/// The variant, by name, so that tables of expectations can be compared exactly.
fn kind(error: &KvError) -> String {
    match error {
        KvError::InvalidKey => "InvalidKey".to_owned(),
        KvError::TooLarge => "TooLarge".to_owned(),
        KvError::NotFound => "NotFound".to_owned(),
        KvError::AlreadyExists => "AlreadyExists".to_owned(),
        KvError::Conflict => "Conflict".to_owned(),
        KvError::PreconditionRequired => "PreconditionRequired".to_owned(),
        KvError::Unauthorized => "Unauthorized".to_owned(),
        KvError::Forbidden => "Forbidden".to_owned(),
        KvError::Upstream { status } => format!("Upstream({status})"),
        KvError::InvalidResponse => "InvalidResponse".to_owned(),
        KvError::Timeout => "Timeout".to_owned(),
        KvError::Unavailable => "Unavailable".to_owned(),
        other => format!("a variant this test does not know: {other:?}"),
    }
}

/// Asserts that `result` is exactly the error `expected` (as [`kind`] names it), and that the error does not
/// show the token.
#[track_caller]
fn assert_fails<T: Debug>(result: Result<T, KvError>, expected: &str) {
    match result {
        Ok(value) => panic!("expected {expected}, got Ok({value:?})"),
        Err(error) => {
            assert_eq!(kind(&error), expected, "{error:?}");
            let shown = format!("{error} / {error:?}");
            assert!(!shown.contains(TOKEN), "the token leaks: {shown}");
            assert!(
                !shown.contains("kvstore-secret"),
                "the token leaks: {shown}"
            );
        }
    }
}

/// The four operations, each on key `k`, for tables of statuses.
#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Create,
    Update,
    Delete,
}

const EVERY_OP: [Op; 4] = [Op::Read, Op::Create, Op::Update, Op::Delete];

async fn call(store: &KvStore, op: Op) -> Result<(), KvError> {
    call_as(store, op, own()).await
}

async fn call_as(store: &KvStore, op: Op, auth: Auth) -> Result<(), KvError> {
    let value = Bytes::from_static(br#"{"on":true}"#);
    match op {
        Op::Read => store.read("k", auth).await.map(|_| ()),
        Op::Create => store
            .create("k", value, MediaType::Json, auth)
            .await
            .map(|_| ()),
        Op::Update => store
            .update("k", value, MediaType::Json, &etag("\"v1\""), auth)
            .await
            .map(|_| ()),
        Op::Delete => store.delete("k", Some(&etag("\"v1\"")), auth).await,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The stand-in, in the kit's accept loop, as its own tests run it.

struct StandInServer {
    url: String,
    standin: StandIn,
    shutdown: Shutdown,
}

impl Drop for StandInServer {
    fn drop(&mut self) {
        self.shutdown.begin_drain();
    }
}

async fn start_standin() -> StandInServer {
    let standin = StandIn::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let shutdown = Shutdown::new(ShutdownSettings::default());
    tokio::spawn(telemed_kit::http::serve(
        listener,
        standin.router(),
        &shutdown,
    ));
    StandInServer {
        url,
        standin,
        shutdown,
    }
}

// ---------------------------------------------------------------------------------------------------------
// A misbehaving server: raw HTTP/1.1 on a TcpListener, one script for every connection.

/// One request as the raw server received it.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    /// Names in lower case, in arrival order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What the raw server does once it has read a whole request.
#[derive(Clone)]
enum Script {
    /// Writes these bytes, then closes.
    Answer(String),
    /// Closes without writing a byte.
    Close,
    /// Writes nothing until `release` is notified, then writes the answer and closes: slower than any timeout
    /// the test sets.
    Late {
        answer: String,
        release: Arc<Notify>,
    },
    /// Writes these bytes (a head and part of a body), then holds the connection until `release`.
    Stall {
        answer: String,
        release: Arc<Notify>,
    },
}

struct RawServer {
    url: String,
    received: mpsc::UnboundedReceiver<Received>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection task.
        self.accepting.abort();
    }
}

impl RawServer {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let (sender, received) = mpsc::unbounded_channel();
        let accepting = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(converse(stream, script.clone(), sender.clone()));
            }
        });
        Self {
            url,
            received,
            accepting,
        }
    }

    /// The next request received; it is reported before anything is answered, so after the client's call
    /// has returned it is there.
    fn next_request(&mut self) -> Received {
        self.received
            .try_recv()
            .expect("the server received a request")
    }

    fn no_more_requests(&mut self) {
        if let Ok(request) = self.received.try_recv() {
            panic!("unexpected request: {request:?}");
        }
    }
}

async fn converse(mut stream: TcpStream, script: Script, report: mpsc::UnboundedSender<Received>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let _ = report.send(request);
    match script {
        Script::Answer(answer) => {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Script::Close => drop(stream),
        Script::Late { answer, release } => {
            release.notified().await;
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Script::Stall { answer, release } => {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.flush().await;
            release.notified().await;
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// A complete HTTP/1.1 answer with a correct `Content-Length` and `Connection: close`.
fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Whatever");
    let mut text = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    text
}

fn problem(status: u16) -> String {
    answer(
        status,
        &[("Content-Type", "application/problem+json")],
        &format!(r#"{{"type":"about:blank","title":"x","status":{status}}}"#),
    )
}

/// Runs `work` as a handler of an inbound request (carrying `authorization`, if any) served through the kit's
/// `RequestTelemetryLayer`, which is what gives `Auth::Relay` a caller's token to relay; returns its output.
async fn in_inbound_request<T, F, Fut>(authorization: Option<&'static str>, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (sender, output) = oneshot::channel();
    let slot = Arc::new(Mutex::new(Some((work, sender))));
    let app = Router::new()
        .route(
            "/inbound",
            get(move || {
                let taken = slot.lock().expect("the slot").take();
                async move {
                    if let Some((work, sender)) = taken {
                        let _ = sender.send(work().await);
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .layer(RequestTelemetryLayer::new(Telemetry::propagation_only(
            B3Inject::Multi,
        )));
    let mut request = Request::get("/inbound").header("x-request-id", "inbound-request-7");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let response = app
        .oneshot(request.body(Body::empty()).expect("a request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    output.await.expect("the handler ran")
}

// ---------------------------------------------------------------------------------------------------------
// Against the stand-in.

#[tokio::test]
async fn standin_create_read_update_delete_carry_etags_and_if_match() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));

    let created = store
        .create(
            "greeting",
            Bytes::from_static(b"hello"),
            MediaType::Text,
            own(),
        )
        .await
        .expect("created");
    let entry = store.read("greeting", own()).await.expect("read");
    assert_eq!(entry.value, "hello");
    assert_eq!(entry.media_type, MediaType::Text);
    assert_eq!(entry.etag, created);

    // The ETag read is what the update sends as If-Match: the stand-in takes it, and hands out a new one.
    let updated = store
        .update(
            "greeting",
            Bytes::from_static(b"hej"),
            MediaType::Text,
            &entry.etag,
            own(),
        )
        .await
        .expect("updated with the ETag just read");
    assert_ne!(updated, created);
    let entry = store.read("greeting", own()).await.expect("read");
    assert_eq!(entry.value, "hej");
    assert_eq!(entry.etag, updated);

    store
        .delete("greeting", Some(&updated), own())
        .await
        .expect("deleted with the current ETag");
    assert_fails(store.read("greeting", own()).await, "NotFound");

    // A delete without If-Match is unconditional.
    store
        .create("other", Bytes::from_static(b"1"), MediaType::Text, own())
        .await
        .expect("created");
    store.delete("other", None, own()).await.expect("deleted");
    assert_fails(store.read("other", own()).await, "NotFound");

    let stats = server.standin.stats();
    assert_eq!(stats.count("POST", &path("greeting")), 1);
    assert_eq!(stats.count("PUT", &path("greeting")), 1);
    assert_eq!(stats.count("DELETE", &path("greeting")), 1);
    assert_eq!(stats.count("GET", &path("greeting")), 3);
}

#[tokio::test]
async fn standin_keeps_each_keys_media_type() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    // Text that would not parse as JSON stays text; JSON comes back byte for byte.
    let text = Bytes::from_static(b"{not json} \xc3\xa6\xc3\xb8\xc3\xa5");
    let json = Bytes::from_static(br#"{"limits":[1,2.5],"name":"\u00e6"}"#);
    store
        .create("plain", text.clone(), MediaType::Text, own())
        .await
        .expect("created");
    store
        .create("doc", json.clone(), MediaType::Json, own())
        .await
        .expect("created");

    let plain = store.read("plain", own()).await.expect("read");
    assert_eq!((plain.value, plain.media_type), (text, MediaType::Text));
    let doc = store.read("doc", own()).await.expect("read");
    assert_eq!((doc.value, doc.media_type), (json, MediaType::Json));

    // An update can change the media type; the read then reports the new one.
    store
        .update(
            "plain",
            Bytes::from_static(b"[true]"),
            MediaType::Json,
            &plain.etag,
            own(),
        )
        .await
        .expect("updated");
    let plain = store.read("plain", own()).await.expect("read");
    assert_eq!(plain.media_type, MediaType::Json);
    assert_eq!(plain.value, "[true]");
}

#[tokio::test]
async fn standin_404_for_every_operation_on_an_absent_key_is_not_found() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    assert_fails(store.read("absent", own()).await, "NotFound");
    assert_fails(
        store
            .update(
                "absent",
                Bytes::from_static(b"x"),
                MediaType::Text,
                &etag("\"any\""),
                own(),
            )
            .await,
        "NotFound",
    );
    assert_fails(store.delete("absent", None, own()).await, "NotFound");
    assert_fails(
        store.delete("absent", Some(&etag("\"any\"")), own()).await,
        "NotFound",
    );
    // Each reached the stand-in: the variant is its answer, not a local refusal.
    assert_eq!(server.standin.stats().total, 4);
}

#[tokio::test]
async fn standin_409_on_creating_an_existing_key_is_already_exists_and_changes_nothing() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    let first = store
        .create("k", Bytes::from_static(b"first"), MediaType::Text, own())
        .await
        .expect("created");
    assert_fails(
        store
            .create("k", Bytes::from_static(b"second"), MediaType::Text, own())
            .await,
        "AlreadyExists",
    );
    let entry = store.read("k", own()).await.expect("read");
    assert_eq!(
        (entry.value, entry.etag),
        (Bytes::from_static(b"first"), first)
    );
}

#[tokio::test]
async fn standin_412_on_a_stale_etag_is_conflict_for_update_and_delete_and_changes_nothing() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    let stale = store
        .create("k", Bytes::from_static(b"1"), MediaType::Text, own())
        .await
        .expect("created");
    // Another writer updates in between.
    let current = store
        .update(
            "k",
            Bytes::from_static(b"2"),
            MediaType::Text,
            &stale,
            own(),
        )
        .await
        .expect("updated");

    assert_fails(
        store
            .update(
                "k",
                Bytes::from_static(b"3"),
                MediaType::Text,
                &stale,
                own(),
            )
            .await,
        "Conflict",
    );
    assert_fails(store.delete("k", Some(&stale), own()).await, "Conflict");

    let entry = store.read("k", own()).await.expect("read");
    assert_eq!(
        (entry.value, entry.etag),
        (Bytes::from_static(b"2"), current)
    );
}

#[tokio::test]
async fn standin_401_for_a_missing_or_malformed_token_is_unauthorized() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    // Not one token68: the stand-in answers 401 with error="invalid_token".
    for op in EVERY_OP {
        let malformed = Auth::Bearer("two words".to_owned());
        assert_fails(call_as(&store, op, malformed).await, "Unauthorized");
    }
    // Relaying outside any inbound request sends no Authorization at all.
    assert_fails(store.read("k", Auth::Relay).await, "Unauthorized");
    assert_eq!(server.standin.stats().total, 5);
}

#[tokio::test]
async fn standin_403_for_a_refused_token_is_forbidden() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    for op in EVERY_OP {
        let refused = Auth::Bearer("forbidden".to_owned());
        assert_fails(call_as(&store, op, refused).await, "Forbidden");
    }
    assert_eq!(server.standin.stats().total, 4);
}

#[tokio::test]
async fn standin_relays_the_callers_token_and_the_services_own_token_wins_over_it() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    store
        .create("k", Bytes::from_static(b"v"), MediaType::Text, own())
        .await
        .expect("created");

    // The store decides with the caller's token: relayed, `forbidden` is refused and a valid one reads.
    let relayed = store.clone();
    let refused = in_inbound_request(Some("Bearer forbidden"), move || async move {
        relayed.read("k", Auth::Relay).await
    })
    .await;
    assert_fails(refused, "Forbidden");

    let relayed = store.clone();
    let allowed = in_inbound_request(Some("Bearer caller-token"), move || async move {
        relayed.read("k", Auth::Relay).await
    })
    .await;
    assert_eq!(allowed.expect("read with the caller's token").value, "v");

    let relayed = store.clone();
    let anonymous =
        in_inbound_request(
            None,
            move || async move { relayed.read("k", Auth::Relay).await },
        )
        .await;
    assert_fails(anonymous, "Unauthorized");

    // The service's own token is sent instead of the caller's, whatever the caller sent.
    let own_token = store.clone();
    let served = in_inbound_request(Some("Bearer forbidden"), move || async move {
        own_token.read("k", own()).await
    })
    .await;
    assert_eq!(served.expect("read with the service's token").value, "v");
}

#[tokio::test]
async fn standin_injected_500_is_upstream_and_the_write_is_not_applied() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    server
        .standin
        .set_faults(Faults::failure(Failure::Error).times(2));
    assert_fails(
        store
            .create("k", Bytes::from_static(b"v"), MediaType::Text, own())
            .await,
        "Upstream(500)",
    );
    assert_fails(store.read("k", own()).await, "Upstream(500)");
    // The fault is spent; the create it failed was never applied.
    assert_fails(store.read("k", own()).await, "NotFound");
}

#[tokio::test]
async fn standin_answering_slower_than_the_timeout_is_timeout_within_the_bound() {
    let server = start_standin().await;
    let store = kvstore(&server.url, SHORT_TIMEOUT);
    store
        .create("k", Bytes::from_static(b"v"), MediaType::Text, own())
        .await
        .expect("created");
    server
        .standin
        .set_faults(Faults::delay(Duration::from_secs(30)).times(1));
    let started = Instant::now();
    let result = store.read("k", own()).await;
    let elapsed = started.elapsed();
    assert_fails(result, "Timeout");
    assert!(elapsed >= SHORT_TIMEOUT, "gave up early: {elapsed:?}");
    assert!(elapsed < TIMEOUT_BOUND, "took {elapsed:?}");
    // The delayed request did reach the stand-in.
    assert_eq!(server.standin.stats().count("GET", &path("k")), 1);
}

#[tokio::test]
async fn standin_dropping_the_connection_is_unavailable_and_the_write_is_not_applied() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    server
        .standin
        .set_faults(Faults::failure(Failure::Reset).times(2));
    assert_fails(
        store
            .create("k", Bytes::from_static(b"v"), MediaType::Text, own())
            .await,
        "Unavailable",
    );
    assert_fails(store.read("k", own()).await, "Unavailable");
    assert_fails(store.read("k", own()).await, "NotFound");
}

#[tokio::test]
async fn standin_invalid_body_without_etag_is_invalid_response() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    store
        .create("k", Bytes::from_static(b"{}"), MediaType::Json, own())
        .await
        .expect("created");
    server
        .standin
        .set_faults(Faults::failure(Failure::InvalidBody).times(1));
    assert_fails(store.read("k", own()).await, "InvalidResponse");
    assert_eq!(store.read("k", own()).await.expect("read").value, "{}");
}

#[tokio::test]
async fn invalid_keys_and_oversized_values_are_refused_before_sending() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    for key in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "a%2Fb",
        "a?b",
        "æ",
        &"k".repeat(129),
    ] {
        assert_fails(store.read(key, own()).await, "InvalidKey");
        assert_fails(store.delete(key, None, own()).await, "InvalidKey");
    }
    let too_large = Bytes::from(vec![b'a'; MAX_VALUE_BYTES + 1]);
    assert_fails(
        store
            .create("k", too_large.clone(), MediaType::Text, own())
            .await,
        "TooLarge",
    );
    assert_fails(
        store
            .update("k", too_large, MediaType::Text, &etag("\"x\""), own())
            .await,
        "TooLarge",
    );
    assert_eq!(server.standin.stats().total, 0, "nothing may be sent");

    // The limits themselves are accepted.
    let largest = Bytes::from(vec![b'a'; MAX_VALUE_BYTES]);
    let longest = "k".repeat(128);
    store
        .create(&longest, largest.clone(), MediaType::Text, own())
        .await
        .expect("128 characters and 64 KiB are allowed");
    assert_eq!(
        store.read(&longest, own()).await.expect("read").value,
        largest
    );
}

// ---------------------------------------------------------------------------------------------------------
// Against a misbehaving server.

#[tokio::test]
async fn raw_requests_carry_method_path_token_media_type_and_if_match() {
    let mut server = RawServer::start(Script::Answer(answer(
        200,
        &[("ETag", "\"v2\""), ("Content-Type", "application/json")],
        "",
    )))
    .await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    let value = Bytes::from_static(br#"{"a":1}"#);

    let new = store
        .update("k", value.clone(), MediaType::Json, &etag("\"v1\""), own())
        .await
        .expect("updated");
    assert_eq!(new, etag("\"v2\""));
    let put = server.next_request();
    assert_eq!(
        (put.method.as_str(), put.path.as_str()),
        ("PUT", path("k").as_str())
    );
    assert_eq!(put.header("if-match"), Some("\"v1\""));
    assert_eq!(put.header("content-type"), Some("application/json"));
    assert_eq!(
        put.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(put.header("user-agent"), Some("kvstore-client-test/1.2.3"));
    assert_eq!(put.body, value);
    server.no_more_requests();

    // A delete sends If-Match only when given one; a create never does.
    let mut server = RawServer::start(Script::Answer(answer(204, &[], ""))).await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    store
        .delete("k", Some(&etag("\"v2\"")), own())
        .await
        .expect("deleted");
    assert_eq!(server.next_request().header("if-match"), Some("\"v2\""));
    store.delete("k", None, own()).await.expect("deleted");
    let delete = server.next_request();
    assert_eq!(delete.method, "DELETE");
    assert_eq!(delete.header("if-match"), None);

    let mut server = RawServer::start(Script::Answer(answer(
        201,
        &[("ETag", "\"v1\""), ("Location", &path("k"))],
        "",
    )))
    .await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    let created = store
        .create("k", Bytes::from_static(b"plain"), MediaType::Text, own())
        .await
        .expect("created");
    assert_eq!(created, etag("\"v1\""));
    let post = server.next_request();
    assert_eq!(post.method, "POST");
    assert_eq!(post.header("if-match"), None);
    assert_eq!(
        post.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(post.body, b"plain");
}

#[tokio::test]
async fn raw_relay_sends_the_callers_authorization_and_bearer_replaces_it() {
    let mut server = RawServer::start(Script::Answer(answer(
        200,
        &[("ETag", "\"v1\""), ("Content-Type", "text/plain")],
        "v",
    )))
    .await;
    let store = kvstore(&server.url, Duration::from_secs(5));

    let relayed = store.clone();
    in_inbound_request(Some("Bearer caller-token-42"), move || async move {
        relayed.read("k", Auth::Relay).await
    })
    .await
    .expect("read");
    let request = server.next_request();
    assert_eq!(
        request.header("authorization"),
        Some("Bearer caller-token-42")
    );
    // Inside a request, the call carries the inbound request id too.
    assert_eq!(request.header("x-request-id"), Some("inbound-request-7"));

    let own_token = store.clone();
    in_inbound_request(Some("Bearer caller-token-42"), move || async move {
        own_token.read("k", own()).await
    })
    .await
    .expect("read");
    let request = server.next_request();
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        request
            .headers
            .iter()
            .filter(|(name, _)| name == "authorization")
            .count(),
        1,
        "{request:?}"
    );

    let relayed = store.clone();
    in_inbound_request(
        None,
        move || async move { relayed.read("k", Auth::Relay).await },
    )
    .await
    .expect("read");
    assert_eq!(server.next_request().header("authorization"), None);
    server.no_more_requests();
}

#[tokio::test]
async fn raw_statuses_become_their_typed_errors_for_every_operation_that_can_get_them() {
    use Op::{Create, Delete, Read, Update};
    let every = [Read, Create, Update, Delete];
    let cases: &[(u16, &[Op], &str)] = &[
        (401, &every, "Unauthorized"),
        (403, &every, "Forbidden"),
        (404, &[Read, Update, Delete], "NotFound"),
        (409, &[Create], "AlreadyExists"),
        (412, &[Update, Delete], "Conflict"),
        (428, &[Update], "PreconditionRequired"),
        (500, &every, "Upstream(500)"),
        (502, &every, "Upstream(502)"),
        (503, &every, "Upstream(503)"),
        (504, &every, "Upstream(504)"),
        // Outside the contract: neither a value nor a guess.
        (400, &every, "InvalidResponse"),
        (418, &every, "InvalidResponse"),
    ];
    for &(status, ops, expected) in cases {
        let mut response = problem(status);
        if status == 401 {
            response = answer(
                401,
                &[
                    ("WWW-Authenticate", r#"Bearer realm="kvstore""#),
                    ("Content-Type", "application/problem+json"),
                ],
                "{}",
            );
        }
        let mut server = RawServer::start(Script::Answer(response)).await;
        let store = kvstore(&server.url, Duration::from_secs(5));
        for &op in ops {
            let result = call(&store, op).await;
            match &result {
                Err(error) if kind(error) == expected => {}
                other => panic!("{status} to {op:?}: expected {expected}, got {other:?}"),
            }
            assert_fails(result, expected);
            server.next_request();
        }
    }
}

#[tokio::test]
async fn raw_answering_slower_than_the_timeout_is_timeout_within_the_bound() {
    let release = Arc::new(Notify::new());
    let mut server = RawServer::start(Script::Late {
        answer: answer(
            200,
            &[("ETag", "\"v1\""), ("Content-Type", "text/plain")],
            "v",
        ),
        release: release.clone(),
    })
    .await;
    let store = kvstore(&server.url, SHORT_TIMEOUT);
    for op in EVERY_OP {
        let started = Instant::now();
        let result = call(&store, op).await;
        let elapsed = started.elapsed();
        assert_fails(result, "Timeout");
        assert!(
            elapsed >= SHORT_TIMEOUT,
            "{op:?} gave up early: {elapsed:?}"
        );
        assert!(elapsed < TIMEOUT_BOUND, "{op:?} took {elapsed:?}");
        // The server had the whole request and had not answered yet.
        server.next_request();
        release.notify_one();
    }
}

#[tokio::test]
async fn raw_body_stalling_after_the_head_is_timeout_within_the_bound() {
    let release = Arc::new(Notify::new());
    let mut server = RawServer::start(Script::Stall {
        answer: "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhal"
            .to_owned(),
        release: release.clone(),
    })
    .await;
    let store = kvstore(&server.url, SHORT_TIMEOUT);
    let started = Instant::now();
    let result = store.read("k", own()).await;
    let elapsed = started.elapsed();
    assert_fails(result, "Timeout");
    assert!(elapsed < TIMEOUT_BOUND, "took {elapsed:?}");
    server.next_request();
    release.notify_one();
}

#[tokio::test]
async fn raw_closing_without_an_answer_is_unavailable() {
    let mut server = RawServer::start(Script::Close).await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    for op in EVERY_OP {
        assert_fails(call(&store, op).await, "Unavailable");
        // It did connect and send: the failure is the missing answer.
        server.next_request();
    }
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);
    let store = kvstore(&url, Duration::from_secs(5));
    for op in EVERY_OP {
        assert_fails(call(&store, op).await, "Unavailable");
    }
}

#[tokio::test]
async fn raw_closing_in_the_middle_of_the_body_is_invalid_response() {
    let mut server = RawServer::start(Script::Answer(
        "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhal"
            .to_owned(),
    ))
    .await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    assert_fails(store.read("k", own()).await, "InvalidResponse");
    server.next_request();
}

#[tokio::test]
async fn raw_200_breaking_the_contract_is_invalid_response() {
    let cases = [
        (
            "declares JSON, is not JSON",
            answer(
                200,
                &[("ETag", "\"v1\""), ("Content-Type", "application/json")],
                r#"{"value": "#,
            ),
        ),
        (
            "an unknown media type",
            answer(
                200,
                &[("ETag", "\"v1\""), ("Content-Type", "text/html")],
                "<p>hej</p>",
            ),
        ),
        (
            "an unknown charset",
            answer(
                200,
                &[
                    ("ETag", "\"v1\""),
                    ("Content-Type", "text/plain; charset=latin1"),
                ],
                "hej",
            ),
        ),
        ("no media type", answer(200, &[("ETag", "\"v1\"")], "hej")),
        (
            "no ETag",
            answer(200, &[("Content-Type", "text/plain")], "hej"),
        ),
        (
            "an unquoted ETag",
            answer(
                200,
                &[("ETag", "v1"), ("Content-Type", "text/plain")],
                "hej",
            ),
        ),
        (
            "a weak ETag",
            answer(
                200,
                &[("ETag", "W/\"v1\""), ("Content-Type", "text/plain")],
                "hej",
            ),
        ),
    ];
    for (what, response) in cases {
        let mut server = RawServer::start(Script::Answer(response)).await;
        let store = kvstore(&server.url, Duration::from_secs(5));
        let result = store.read("k", own()).await;
        assert!(
            matches!(result, Err(KvError::InvalidResponse)),
            "{what}: {result:?}"
        );
        assert_fails(result, "InvalidResponse");
        server.next_request();
    }

    // A write that succeeds without a usable ETag cannot be followed by an update: not a success either.
    for (status, op) in [(201, Op::Create), (200, Op::Update)] {
        for etag_header in [None, Some("v2"), Some("W/\"v2\"")] {
            let headers: Vec<(&str, &str)> =
                etag_header.map(|tag| ("ETag", tag)).into_iter().collect();
            let mut server = RawServer::start(Script::Answer(answer(status, &headers, ""))).await;
            let store = kvstore(&server.url, Duration::from_secs(5));
            let result = call(&store, op).await;
            assert!(
                matches!(result, Err(KvError::InvalidResponse)),
                "{op:?} answered {status} with ETag {etag_header:?}: {result:?}"
            );
            server.next_request();
        }
    }
}

#[tokio::test]
async fn ping_counts_any_answer_below_500_as_up() {
    let server = start_standin().await;
    let store = kvstore(&server.url, Duration::from_secs(5));
    // No token: the stand-in answers 401, which shows it is up.
    store.ping().await.expect("up");
    assert_eq!(
        server
            .standin
            .stats()
            .count("HEAD", &path("readiness-probe")),
        1
    );

    for status in [500, 503] {
        let mut server = RawServer::start(Script::Answer(answer(status, &[], ""))).await;
        let store = kvstore(&server.url, Duration::from_secs(5));
        assert_fails(store.ping().await, &format!("Upstream({status})"));
        assert_eq!(server.next_request().method, "HEAD");
    }
}

#[test]
fn auth_debug_output_never_shows_the_token() {
    let shown = format!("{:?}", Auth::Bearer("s3cr3t-token".to_owned()));
    assert!(!shown.contains("s3cr3t-token"), "{shown}");
    assert_eq!(shown, "Bearer(xxxxxxxxxx)");
}
