//! The contract, checked over real HTTP: the stand-in is served by axum on 127.0.0.1:0.

use std::net::SocketAddr;
use std::time::Instant;

use reqwest::StatusCode as Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::*;

const TOKEN: &str = "Bearer test-token";

struct Server {
    addr: SocketAddr,
    standin: StandIn,
    client: reqwest::Client,
    serving: AbortHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

async fn start() -> Server {
    let standin = StandIn::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving =
        tokio::spawn(axum::serve(listener, standin.router()).into_future()).abort_handle();
    Server {
        addr,
        standin,
        client: reqwest::Client::new(),
        serving,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header(AUTHORIZATION, TOKEN)
    }

    async fn create(&self, path: &str, content_type: &str, body: &str) -> reqwest::Response {
        self.request(Method::POST, path)
            .header(CONTENT_TYPE, content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn update(&self, path: &str, etag: &str, body: &str) -> reqwest::Response {
        self.request(Method::PUT, path)
            .header(CONTENT_TYPE, "text/plain")
            .header(IF_MATCH, etag)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    async fn hook(&self, method: Method, path: &str, body: &str) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Sends `request` as raw bytes on a new connection and returns every byte the server sends back.
    async fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut received = Vec::new();
        // A reset connection may end in ECONNRESET rather than EOF; either way, what arrived is what counts.
        let _ = stream.read_to_end(&mut received).await;
        received
    }
}

/// reqwest's `json` feature is not enabled in the kit.
async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()[ETAG].to_str().unwrap().to_owned()
}

async fn assert_problem(response: reqwest::Response, status: Status, detail_contains: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
    let problem: serde_json::Value = json(response).await;
    assert_eq!(problem["status"], status.as_u16());
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_contains),
        "{detail:?} lacks {detail_contains:?}"
    );
}

#[tokio::test]
async fn requests_without_a_usable_bearer_token_are_refused() {
    let server = start().await;
    let url = server.url("/properties/app/key");
    let response = server.client.get(&url).send().await.unwrap();
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Bearer realm="kvstore""#
    );
    assert_problem(response, Status::UNAUTHORIZED, "required").await;
    for malformed in [
        "Basic dXNlcjpwdw==",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer ä",
        "token",
    ] {
        let response = server
            .client
            .get(&url)
            .header(AUTHORIZATION, malformed)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), Status::UNAUTHORIZED, "{malformed}");
        assert!(
            response.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    let forbidden = server
        .client
        .post(&url)
        .header(AUTHORIZATION, "Bearer forbidden")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(forbidden, Status::FORBIDDEN, "may not").await;
    let lower_case_scheme = server
        .client
        .get(&url)
        .header(AUTHORIZATION, "bearer abc.DEF_-~+/==")
        .send()
        .await
        .unwrap();
    assert_eq!(lower_case_scheme.status(), Status::NOT_FOUND);
}

#[tokio::test]
async fn application_and_key_outside_the_charset_or_length_are_rejected() {
    let server = start().await;
    let longest = "k".repeat(MAX_NAME_LENGTH);
    assert_eq!(
        server
            .get(&format!("/properties/app/{longest}"))
            .await
            .status(),
        Status::NOT_FOUND
    );
    let too_long = format!("/properties/app/{longest}k");
    for path in [
        too_long.as_str(),
        "/properties/app/with%20space",
        "/properties/app/a%2Fb",
        "/properties/app/%C3%A6",
        "/properties/app/%FF",
        "/properties/ap*p/key",
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status(), Status::BAD_REQUEST, "{path}");
    }
    // Clients remove dot segments from URLs; a raw request can still carry one.
    for dots in [".", ".."] {
        let request = format!(
            "GET /properties/app/{dots} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        let answer = String::from_utf8(server.raw(request.as_bytes()).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
}

#[tokio::test]
async fn a_value_is_created_read_updated_and_deleted_with_etags() {
    let server = start().await;
    let path = "/properties/telemed/greeting";

    let created = server
        .create(path, "text/plain; charset=utf-8", "hello")
        .await;
    assert_eq!(created.status(), Status::CREATED);
    assert_eq!(created.headers()[LOCATION], path);
    let first = etag(&created);
    assert!(first.starts_with('"') && first.ends_with('"'), "{first}");
    assert_problem(
        server.create(path, "text/plain", "again").await,
        Status::CONFLICT,
        "exists",
    )
    .await;

    let read = server.get(path).await;
    assert_eq!(read.status(), Status::OK);
    assert_eq!(read.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(etag(&read), first);
    assert_eq!(read.text().await.unwrap(), "hello");

    let updated = server.update(path, &first, "hej").await;
    assert_eq!(updated.status(), Status::OK);
    let second = etag(&updated);
    assert_ne!(second, first);
    let read = server.get(path).await;
    assert_eq!(etag(&read), second);
    assert_eq!(read.headers()[CONTENT_TYPE], "text/plain");
    assert_eq!(read.text().await.unwrap(), "hej");

    assert_problem(
        server.update(path, &first, "stale").await,
        Status::PRECONDITION_FAILED,
        "changed",
    )
    .await;
    let without_if_match = server
        .request(Method::PUT, path)
        .header(CONTENT_TYPE, "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(without_if_match, Status::PRECONDITION_REQUIRED, "If-Match").await;
    assert_problem(
        server
            .update("/properties/telemed/absent", &second, "x")
            .await,
        Status::NOT_FOUND,
        "no value",
    )
    .await;

    let delete = |tag: Option<&str>| {
        let request = server.request(Method::DELETE, path);
        let request = match tag {
            Some(tag) => request.header(IF_MATCH, tag),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        delete(Some(&first)).await.status(),
        Status::PRECONDITION_FAILED
    );
    assert_eq!(delete(Some(&second)).await.status(), Status::NO_CONTENT);
    assert_eq!(server.get(path).await.status(), Status::NOT_FOUND);
    assert_eq!(delete(None).await.status(), Status::NOT_FOUND);

    let recreated = server.create(path, "application/json", r#"{"a":1}"#).await;
    let third = etag(&recreated);
    assert!(
        third != first && third != second,
        "a recreated value has a new ETag"
    );
    assert_eq!(delete(None).await.status(), Status::NO_CONTENT);
}

#[tokio::test]
async fn if_match_accepts_star_and_lists_and_compares_strongly() {
    let server = start().await;
    let path = "/properties/app/flag";
    let mut tag = etag(&server.create(path, "text/plain", "1").await);

    let response = server.update(path, "*", "2").await;
    assert_eq!(response.status(), Status::OK);
    tag = {
        let next = etag(&response);
        assert_ne!(next, tag);
        next
    };
    let listed = server.update(path, &format!(r#""nope", {tag}"#), "3").await;
    assert_eq!(listed.status(), Status::OK);
    let current = etag(&listed);
    let weak = server.update(path, &format!("W/{current}"), "4").await;
    assert_eq!(weak.status(), Status::PRECONDITION_FAILED);
    assert_problem(
        server.update(path, "unquoted", "5").await,
        Status::BAD_REQUEST,
        "If-Match",
    )
    .await;
    assert_eq!(server.get(path).await.text().await.unwrap(), "3");
}

#[tokio::test]
async fn only_utf8_text_and_valid_json_up_to_64_kib_are_stored() {
    let server = start().await;
    let path = "/properties/app/value";
    for content_type in [
        "application/xml",
        "text/plain; charset=iso-8859-1",
        "application/json; version=2",
        "text/html",
    ] {
        let response = server.create(path, content_type, "x").await;
        assert_eq!(
            response.status(),
            Status::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    let no_type = server
        .request(Method::POST, path)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(no_type, Status::UNSUPPORTED_MEDIA_TYPE, "Content-Type").await;
    assert_problem(
        server.create(path, "application/json", "{not json").await,
        Status::BAD_REQUEST,
        "not JSON",
    )
    .await;
    let latin1 = server
        .request(Method::POST, path)
        .header(CONTENT_TYPE, "text/plain")
        .body(vec![0xE6_u8, 0xF8])
        .send()
        .await
        .unwrap();
    assert_problem(latin1, Status::BAD_REQUEST, "UTF-8").await;

    let too_big = "x".repeat(MAX_VALUE_BYTES + 1);
    assert_problem(
        server.create(path, "text/plain", &too_big).await,
        Status::PAYLOAD_TOO_LARGE,
        "65536",
    )
    .await;
    // Without Content-Length the limit is enforced while reading.
    let chunk = "x".repeat(40 * 1024);
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let answer = server.raw(chunked.as_bytes()).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..40])
    );
    assert_eq!(
        server.get(path).await.status(),
        Status::NOT_FOUND,
        "nothing was stored"
    );

    let largest = "x".repeat(MAX_VALUE_BYTES);
    assert_eq!(
        server.create(path, "text/plain", &largest).await.status(),
        Status::CREATED
    );
    let json_path = "/properties/app/json";
    let created = server
        .create(
            json_path,
            "Application/JSON; Charset=\"UTF-8\"",
            r#"{"enabled": true}"#,
        )
        .await;
    assert_eq!(created.status(), Status::CREATED);
    let read = server.get(json_path).await;
    assert_eq!(
        read.headers()[CONTENT_TYPE],
        "Application/JSON; Charset=\"UTF-8\""
    );
    assert_eq!(read.text().await.unwrap(), r#"{"enabled": true}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_updates_with_one_etag_exactly_one_wins() {
    let server = start().await;
    let path = "/properties/app/counter";
    let tag = etag(&server.create(path, "text/plain", "0").await);
    let server = Arc::new(server);
    let updates: Vec<_> = (0..50)
        .map(|i| {
            let (server, tag) = (server.clone(), tag.clone());
            tokio::spawn(async move {
                let response = server.update(path, &tag, &format!("writer {i}")).await;
                (i, response.status())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for update in updates {
        let (i, status) = update.await.unwrap();
        match status {
            Status::OK => winners.push(i),
            Status::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = server.get(path).await.text().await.unwrap();
    assert_eq!(stored, format!("writer {}", winners[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_half_written_value() {
    let server = Arc::new(start().await);
    let path = "/properties/app/blob";
    let size = MAX_VALUE_BYTES;
    server.create(path, "text/plain", &"a".repeat(size)).await;
    let writer = {
        let server = server.clone();
        tokio::spawn(async move {
            for round in 0..20 {
                let fill = if round % 2 == 0 { "b" } else { "a" };
                server.update(path, "*", &fill.repeat(size)).await;
            }
        })
    };
    let reader = {
        let server = server.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                let body = server.get(path).await.bytes().await.unwrap();
                assert_eq!(body.len(), size);
                assert!(
                    body.iter().all(|b| *b == body[0]),
                    "a mixed value was served"
                );
            }
        })
    };
    writer.await.unwrap();
    reader.await.unwrap();
}

#[tokio::test]
async fn stats_count_requests_per_method_and_path_and_reset_forgets_everything() {
    let server = start().await;
    let path = "/properties/app/k";
    server.create(path, "text/plain", "v").await;
    for _ in 0..3 {
        server.get(path).await;
    }
    server.client.get(server.url(path)).send().await.unwrap(); // unauthorised: still counted
    server.hook(Method::GET, "/_standin/faults", "").await;

    let stats: Stats = json(server.hook(Method::GET, "/_standin/stats", "").await).await;
    assert_eq!(stats.total, 5);
    assert_eq!(stats.by_method["GET"], 4);
    assert_eq!(stats.count("POST", path), 1);
    assert_eq!(stats.count("GET", path), 4);
    assert_eq!(stats, server.standin.stats());
    let before_reset = etag(&server.get(path).await);

    let reset = server.hook(Method::POST, "/_standin/reset", "").await;
    assert_eq!(reset.status(), Status::NO_CONTENT);
    assert_eq!(server.standin.stats(), Stats::default());
    assert_eq!(server.get(path).await.status(), Status::NOT_FOUND);
    let after_reset = etag(&server.create(path, "text/plain", "v").await);
    assert_ne!(after_reset, before_reset, "ETags are never reused");
}

#[tokio::test]
async fn delay_fault_holds_the_answer_back() {
    let server = start().await;
    let delay = Duration::from_millis(300);
    let set = server
        .hook(
            Method::PUT,
            "/_standin/faults",
            r#"{"delay_ms": 300, "count": 1}"#,
        )
        .await;
    assert_eq!(set.status(), Status::NO_CONTENT);

    let sent = Instant::now();
    let request = server.get("/properties/app/slow");
    tokio::pin!(request);
    // The server sleeps 300 ms after receiving the request, so no answer can arrive within 100 ms of sending it.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut request)
            .await
            .is_err()
    );
    let response = request.await;
    assert!(
        sent.elapsed() >= delay,
        "answered after {:?}",
        sent.elapsed()
    );
    assert_eq!(
        response.status(),
        Status::NOT_FOUND,
        "a delayed request is still served"
    );

    let active: Option<Faults> = json(server.hook(Method::GET, "/_standin/faults", "").await).await;
    assert_eq!(active, None, "a fault with a count clears itself");
}

#[tokio::test]
async fn reset_fault_closes_the_connection_without_a_response() {
    let server = start().await;
    server
        .standin
        .set_faults(Faults::failure(Failure::Reset).times(2));
    let request = format!(
        "GET /properties/app/k HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        server.raw(request.as_bytes()).await,
        b"",
        "no byte of a response"
    );
    let error = server.get_result("/properties/app/k").await.unwrap_err();
    assert!(!error.is_timeout(), "{error}");

    let healthy = String::from_utf8(server.raw(request.as_bytes()).await).unwrap();
    assert!(healthy.starts_with("HTTP/1.1 404"), "{healthy}");
    assert_eq!(server.standin.stats().count("GET", "/properties/app/k"), 3);
}

impl Server {
    async fn get_result(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.request(Method::GET, path).send().await
    }
}

#[tokio::test]
async fn error_fault_answers_500_until_cleared_and_applies_nothing() {
    let server = start().await;
    let path = "/properties/app/k";
    server
        .hook(Method::PUT, "/_standin/faults", r#"{"failure": "error"}"#)
        .await;
    for _ in 0..3 {
        assert_problem(
            server.create(path, "text/plain", "v").await,
            Status::INTERNAL_SERVER_ERROR,
            "fault",
        )
        .await;
    }
    let cleared = server.hook(Method::DELETE, "/_standin/faults", "").await;
    assert_eq!(cleared.status(), Status::NO_CONTENT);
    assert_eq!(
        server.get(path).await.status(),
        Status::NOT_FOUND,
        "the faulted writes were not applied"
    );
}

#[tokio::test]
async fn invalid_body_fault_answers_unparseable_json_without_an_etag() {
    let server = start().await;
    let path = "/properties/app/k";
    server.create(path, "application/json", "{}").await;
    server
        .standin
        .set_faults(Faults::failure(Failure::InvalidBody).times(1));
    let response = server.get(path).await;
    assert_eq!(response.status(), Status::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert!(response.headers().get(ETAG).is_none());
    let body = response.bytes().await.unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
    assert!(
        server.get(path).await.headers().contains_key(ETAG),
        "one request only"
    );
}

#[tokio::test]
async fn bad_fault_settings_are_rejected_with_the_reason() {
    let server = start().await;
    for (body, reason) in [
        ("not json", "faults must be JSON"),
        (r#"{"delay": 5}"#, "unknown field"),
        (r#"{"failure": "explode"}"#, "unknown variant"),
        (r#"{"delay_ms": 60001}"#, "at most 60000"),
        (r#"{"failure": "error", "count": 0}"#, "at least 1"),
    ] {
        let response = server.hook(Method::PUT, "/_standin/faults", body).await;
        assert_problem(response, Status::BAD_REQUEST, reason).await;
    }
    assert_eq!(*lock(&server.standin.inner.faults), None);
}

#[tokio::test]
async fn other_methods_and_paths_get_problems() {
    let server = start().await;
    let patch = server
        .request(Method::PATCH, "/properties/app/k")
        .send()
        .await
        .unwrap();
    assert_eq!(patch.headers()[ALLOW], "GET, HEAD, POST, PUT, DELETE");
    assert_problem(patch, Status::METHOD_NOT_ALLOWED, "use GET").await;
    assert_problem(
        server.get("/properties/app").await,
        Status::NOT_FOUND,
        "no such route",
    )
    .await;
}

#[tokio::test]
async fn head_answers_the_headers_of_get() {
    let server = start().await;
    let path = "/properties/app/k";
    let tag = etag(&server.create(path, "text/plain", "value").await);
    let head = server.request(Method::HEAD, path).send().await.unwrap();
    assert_eq!(head.status(), Status::OK);
    assert_eq!(etag(&head), tag);
    assert_eq!(head.headers()[CONTENT_LENGTH], "5");
    assert!(head.bytes().await.unwrap().is_empty());
}
