//! Hostile and malformed input against the running service, as one table: each row is a request sent as raw
//! bytes (so that it can be anything a compliant client would refuse to send), the status expected from the
//! service or from hyper in front of it, and why. `docs/bad-input.md` holds the same table for readers.
//!
//! Beyond each row's status: no answer leaks internals, the service still answers afterwards, and no input
//! reaches the log raw (every stdout line is still one JSON object; planted markers stay inside JSON strings or
//! do not appear at all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{
    RawResponse, StandInServer, assert_no_internals, assert_problem_body, call, put_setting,
    raw_request, start_service, text, wait_for_lines,
};

/// The `Authorization` header of a valid token that may read and write.
fn auth() -> (&'static str, &'static [u8]) {
    ("Authorization", common::token().as_bytes())
}
const TEXT: (&str, &[u8]) = ("Content-Type", b"text/plain");
const JSON: (&str, &[u8]) = ("Content-Type", b"application/json");
const STORED: &str = "present value";
/// A User-Agent that would end the JSON string and add a key if the log wrote it unescaped.
const UA_MARKER: &[u8] = br#"MARKER-UA","injected":true,"x":"\"#;

/// What a row expects.
enum Expect {
    /// This status. A body, if any, is a problem without internals (hyper's own rejections have none).
    Status(u16),
    /// This status, and a further check of the answer.
    Checked(u16, fn(&RawResponse)),
    /// No answer at all: the server closes the connection within this bound (the header read timeout is 10 s).
    ClosedWithin(Duration),
    /// This status within this bound, then the connection closes (the body read timeout is 10 s).
    AnsweredWithin(u16, Duration),
}

struct Case {
    name: String,
    request: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, request: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        request,
        expect,
    }
}

/// A request as bytes: the request line, `Host`, `Connection: close`, `Content-Length` (unless the row frames
/// the body itself), the row's headers as given, and the body.
fn request(
    method: &str,
    target: impl AsRef<[u8]>,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(method.as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(target.as_ref());
    bytes.extend_from_slice(b" HTTP/1.1\r\nHost: reference-service\r\nConnection: close\r\n");
    let framed = headers.iter().any(|(name, _)| {
        name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    for (name, value) in headers {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    bytes
}

fn get_present(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut all = vec![auth()];
    all.extend_from_slice(headers);
    request("GET", "/settings/present", &all, b"")
}

fn served(response: &RawResponse) {
    assert_eq!(response.body, STORED.as_bytes());
}

/// A request id the service generated: a UUID as Envoy makes them, not the (refused) one sent.
fn fresh_request_id(response: &RawResponse) {
    served(response);
    let id = response.header("x-request-id").expect("a request id");
    let shape: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(shape, [8, 4, 4, 4, 12], "{id}");
    assert!(
        id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
        "{id}"
    );
}

fn echoed_request_id(response: &RawResponse) {
    served(response);
    assert_eq!(response.header("x-request-id"), Some("bad-input-echo-0001"));
}

fn closes_after(response: &RawResponse) {
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "after a request framed two ways, the connection is not reused"
    );
}

fn table() -> Vec<Case> {
    use Expect::{AnsweredWithin, Checked, ClosedWithin, Status};
    let long = |n: usize| vec![b'a'; n];
    let mut cases = vec![
        // Sizes.
        case(
            "request head over 64 KiB",
            get_present(&[("X-Padding", &long(70_000))]),
            Status(431),
        ),
        case(
            "more header fields than hyper's 100",
            {
                let names: Vec<String> = (0..150).map(|i| format!("X-Field-{i}")).collect();
                let headers: Vec<(&str, &[u8])> = names
                    .iter()
                    .map(|name| (name.as_str(), &b"v"[..]))
                    .collect();
                get_present(&headers)
            },
            Status(431),
        ),
        case(
            "request target over 64 KiB",
            request(
                "GET",
                [b"/settings/".as_slice(), &long(70_000)].concat(),
                &[auth()],
                b"",
            ),
            Status(431),
        ),
        case(
            "body over 64 KiB",
            request(
                "PUT",
                "/settings/big",
                &[auth(), TEXT],
                &long(64 * 1024 + 1),
            ),
            Status(413),
        ),
        case(
            "Content-Length of 1 GiB, no body sent",
            request(
                "PUT",
                "/settings/big",
                &[auth(), TEXT, ("Content-Length", b"1073741824")],
                b"",
            ),
            Status(413),
        ),
        // Trace and request-id headers: never fail a request.
        case(
            "8 KiB b3, X-B3-*, traceparent and tracestate values",
            get_present(&[
                ("b3", &long(8192)),
                ("X-B3-TraceId", &long(8192)),
                ("X-B3-SpanId", &long(8192)),
                ("traceparent", &long(8192)),
                ("tracestate", &long(8192)),
                ("x-ot-span-context", &long(8192)),
            ]),
            Checked(200, served),
        ),
        case(
            "malformed B3 multi headers",
            get_present(&[
                ("X-B3-TraceId", b"not-hex-at-all"),
                ("X-B3-SpanId", b"123"),
                ("X-B3-ParentSpanId", b"zz"),
                ("X-B3-Sampled", b"maybe"),
                ("X-B3-Flags", b"7"),
            ]),
            Checked(200, served),
        ),
        case(
            "malformed b3 single header",
            get_present(&[("b3", b"1-2-3-4-5-6")]),
            Checked(200, served),
        ),
        case(
            "all-zero b3 trace id",
            get_present(&[("b3", b"00000000000000000000000000000000-0000000000000000-1")]),
            Checked(200, served),
        ),
        case(
            "malformed traceparent and tracestate",
            get_present(&[("traceparent", b"00-zz-zz-zz"), ("tracestate", b"===,,,")]),
            Checked(200, served),
        ),
        case(
            "8 KiB x-request-id",
            get_present(&[("x-request-id", &long(8192))]),
            Checked(200, fresh_request_id),
        ),
        case(
            "x-request-id with space, tab and quotes",
            get_present(&[("x-request-id", b"a b\t\"c\"")]),
            Checked(200, fresh_request_id),
        ),
        case(
            "well-formed x-request-id (control row)",
            get_present(&[("x-request-id", b"bad-input-echo-0001")]),
            Checked(200, echoed_request_id),
        ),
        // Header syntax a compliant client cannot produce.
        case(
            "CR inside a header value",
            get_present(&[("x-request-id", b"a\rb")]),
            Status(400),
        ),
        case(
            "LF inside a header value (log line injection)",
            get_present(&[("User-Agent", b"MARKER-LF\n{\"injected\":true}")]),
            Status(400),
        ),
        case(
            "NUL inside a header value",
            get_present(&[("x-request-id", b"a\0b")]),
            Status(400),
        ),
        case(
            "space inside a header name",
            get_present(&[("Bad Name", b"v")]),
            Status(400),
        ),
        case(
            "obs-text (0xFF) in User-Agent",
            get_present(&[
                ("User-Agent", b"\xff\xfe"),
                ("x-request-id", b"bad-input-obs-text"),
            ]),
            Checked(200, served),
        ),
        case(
            "User-Agent that would break an unescaped JSON line",
            get_present(&[("User-Agent", UA_MARKER)]),
            Checked(200, served),
        ),
        // Paths.
        case(
            "invalid UTF-8 bytes in the path",
            request("GET", b"/settings/\xff\xfe", &[auth()], b""),
            Status(400),
        ),
        case(
            "percent-encoded invalid UTF-8",
            request("GET", "/settings/%FF%FE", &[auth()], b""),
            Status(400),
        ),
        case(
            "invalid percent-encoding",
            request("GET", "/settings/%zz", &[auth()], b""),
            Status(400),
        ),
        case(
            "truncated percent-encoding",
            request("GET", "/settings/abc%", &[auth()], b""),
            Status(400),
        ),
        case(
            "percent-encoded newline and quote in a key (log injection)",
            request(
                "GET",
                "/settings/MARKER-PATH%0A%22injected%22",
                &[auth()],
                b"",
            ),
            Status(400),
        ),
        case(
            "path traversal `..` out of /settings",
            request("GET", "/settings/../healthz", &[auth()], b""),
            Status(404),
        ),
        case(
            "a second path segment",
            request("GET", "/settings/a/b", &[auth()], b""),
            Status(404),
        ),
        case(
            "empty key",
            request("GET", "/settings/", &[auth()], b""),
            Status(404),
        ),
        case(
            "absolute-form target naming another host",
            request(
                "GET",
                "http://evil.example/settings/present",
                &[auth()],
                b"",
            ),
            Checked(200, served),
        ),
        // Bodies and their framing.
        case(
            "invalid JSON with application/json",
            request("PUT", "/settings/doc", &[auth(), JSON], b"{\"a\": "),
            Status(400),
        ),
        case(
            "empty body with application/json",
            request("PUT", "/settings/doc", &[auth(), JSON], b""),
            Status(400),
        ),
        case(
            "invalid UTF-8 with text/plain",
            request("PUT", "/settings/doc", &[auth(), TEXT], b"\xc3\x28"),
            Status(400),
        ),
        case(
            "no Content-Type",
            request("PUT", "/settings/doc", &[auth()], b"v"),
            Status(415),
        ),
        case(
            "Content-Type text/html",
            request(
                "PUT",
                "/settings/doc",
                &[auth(), ("Content-Type", b"text/html")],
                b"<p>",
            ),
            Status(415),
        ),
        case(
            "Content-Type with a non-UTF-8 charset",
            request(
                "PUT",
                "/settings/doc",
                &[
                    auth(),
                    ("Content-Type", b"application/json; charset=iso-8859-1"),
                ],
                b"{}",
            ),
            Status(415),
        ),
        case(
            "Content-Type multipart",
            request(
                "PUT",
                "/settings/doc",
                &[auth(), ("Content-Type", b"multipart/form-data; boundary=x")],
                b"--x--",
            ),
            Status(415),
        ),
        case(
            "malformed If-Match",
            request(
                "PUT",
                "/settings/present",
                &[auth(), TEXT, ("If-Match", b"no-quotes")],
                b"v",
            ),
            Status(400),
        ),
        case(
            "Content-Length that is not a number",
            request(
                "PUT",
                "/settings/doc",
                &[auth(), TEXT, ("Content-Length", b"abc")],
                b"",
            ),
            Status(400),
        ),
        case(
            "two different Content-Lengths",
            request(
                "PUT",
                "/settings/doc",
                &[
                    auth(),
                    TEXT,
                    ("Content-Length", b"1"),
                    ("Content-Length", b"2"),
                ],
                b"vv",
            ),
            Status(400),
        ),
        case(
            "Transfer-Encoding other than chunked",
            request(
                "PUT",
                "/settings/doc",
                &[auth(), TEXT, ("Transfer-Encoding", b"gzip")],
                b"v",
            ),
            Status(400),
        ),
        case(
            "Content-Length and Transfer-Encoding: chunked together",
            request(
                "PUT",
                "/settings/framed-twice",
                &[
                    auth(),
                    TEXT,
                    ("Content-Length", b"3"),
                    ("Transfer-Encoding", b"chunked"),
                ],
                b"3\r\nabc\r\n0\r\n\r\n",
            ),
            Checked(201, closes_after),
        ),
        // Not HTTP/1.1 at all.
        case(
            "TLS ClientHello on the plain port",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            Status(400),
        ),
        case(
            "HTTP/0.9 request line",
            b"GET /\r\n\r\n".to_vec(),
            Status(400),
        ),
        case(
            "unknown method",
            request("BREW", "/settings/present", &[auth()], b""),
            Status(405),
        ),
        // Slow clients.
        case(
            "slowloris: a request head that never ends",
            b"GET /settings/present HTTP/1.1\r\nHost: reference-service\r\nAuthori".to_vec(),
            ClosedWithin(Duration::from_secs(15)),
        ),
        case(
            "slow body: announced 100 bytes, sent 5 and stalled",
            request(
                "PUT",
                "/settings/slow",
                &[
                    auth(),
                    ("content-type", b"text/plain"),
                    ("content-length", b"100"),
                ],
                b"hello",
            ),
            AnsweredWithin(408, Duration::from_secs(15)),
        ),
    ];
    let long_key = "k".repeat(129);
    for key in [
        "..",
        ".",
        "%2e%2e",
        ".%2E",
        "a%2Fb",
        "%2F",
        "..%2F..%2Fetc%2Fpasswd",
        "a%00b",
        long_key.as_str(),
    ] {
        cases.push(case(
            format!("key {key:.20}"),
            request("GET", format!("/settings/{key}"), &[auth()], b""),
            Status(400),
        ));
    }
    cases
}

/// Sends `request`, then waits for the server to close the connection; returns how long that took and what
/// came back.
fn time_to_close(addr: SocketAddr, request: &[u8], limit: Duration) -> (Duration, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let result = stream.read_to_end(&mut received);
    let elapsed = started.elapsed();
    assert!(
        result.is_ok()
            || result
                .as_ref()
                .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection is still open after {limit:?}: {result:?}"
    );
    (elapsed, received)
}

#[test]
fn hostile_and_malformed_input_gets_its_status_and_harms_nothing() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    assert_eq!(put_setting(&service, "present", STORED, None).status, 201);
    let addr = service.addr();
    let leaks = [store.port().to_string()];
    let leaks: Vec<&str> = leaks.iter().map(String::as_str).collect();

    let (slow, quick): (Vec<Case>, Vec<Case>) = table().into_iter().partition(|case| {
        matches!(
            case.expect,
            Expect::ClosedWithin(_) | Expect::AnsweredWithin(..)
        )
    });
    // The slow rows wait for the server's timeout, in parallel with the rest.
    let slow: Vec<_> = slow
        .into_iter()
        .map(|case| {
            std::thread::spawn(move || {
                let (answer, limit) = match case.expect {
                    Expect::ClosedWithin(limit) => (None, limit),
                    Expect::AnsweredWithin(status, limit) => (Some(status), limit),
                    Expect::Status(_) | Expect::Checked(..) => unreachable!(),
                };
                let (elapsed, received) = time_to_close(addr, &case.request, limit);
                assert!(elapsed < limit, "{}: closed after {elapsed:?}", case.name);
                let received = String::from_utf8_lossy(&received);
                match answer {
                    None => assert!(received.is_empty(), "{}: answered {received:?}", case.name),
                    Some(status) => assert!(
                        received.starts_with(&format!("HTTP/1.1 {status} ")),
                        "{}: answered {received:?}",
                        case.name
                    ),
                }
            })
        })
        .collect();

    for case in quick {
        let response = raw_request(addr, &case.request, Duration::from_secs(10));
        let (status, check) = match case.expect {
            Expect::Status(status) => (status, None),
            Expect::Checked(status, check) => (status, Some(check)),
            Expect::ClosedWithin(_) | Expect::AnsweredWithin(..) => unreachable!(),
        };
        assert_eq!(
            response.status,
            Some(status),
            "{}: {}",
            case.name,
            response.head
        );
        if status >= 400 {
            if response.body.is_empty() {
                assert_eq!(
                    response.header("content-length"),
                    Some("0"),
                    "{}",
                    case.name
                );
            } else {
                assert_problem_body(
                    response.header("content-type"),
                    &String::from_utf8_lossy(&response.body),
                    status,
                    &leaks,
                    &case.name,
                );
            }
        }
        assert_no_internals(&String::from_utf8_lossy(&response.body), &leaks, &case.name);
        if let Some(check) = check {
            check(&response);
        }
    }
    for thread in slow {
        thread.join().unwrap();
    }

    // Still serving.
    assert_eq!(call(&service, "GET", "/livez", &[], b"").status, 200);
    let last = call(
        &service,
        "GET",
        "/settings/present",
        &[
            ("Authorization", common::token()),
            ("x-request-id", "bad-input-end"),
        ],
        b"",
    );
    assert_eq!((last.status, last.body.as_str()), (200, STORED));

    // The log: every line written before the last request's is in, and every one is a JSON object (the wait
    // panics otherwise; a raw 0xFF would also have ended the reader, and the last line would never come).
    let lines = wait_for_lines(&service, "the last request's access line", |lines| {
        lines
            .iter()
            .any(|line| line["request_id"] == "bad-input-end")
    });
    let ua_marker = std::str::from_utf8(UA_MARKER).unwrap();
    let with_marker: Vec<_> = lines
        .iter()
        .filter(|line| line["http_user_agent"] == ua_marker)
        .collect();
    assert_eq!(
        with_marker.len(),
        1,
        "the hostile User-Agent is logged once, as one JSON string"
    );
    let obs_text: Vec<_> = lines
        .iter()
        .filter(|line| line["request_id"] == "bad-input-obs-text")
        .collect();
    assert_eq!(obs_text.len(), 1);
    assert_eq!(
        text(obs_text[0], "http_user_agent"),
        "",
        "bytes that are not text are not logged"
    );
    for line in &lines {
        assert!(
            line.get("injected").is_none(),
            "a planted key became a log key: {line}"
        );
    }
    for raw in service.lines() {
        let token = common::token().trim_start_matches("Bearer ");
        for needle in ["MARKER-LF", "MARKER-PATH", "passwd", "%2e%2e", token] {
            assert!(!raw.contains(needle), "{needle:?} reached the log: {raw}");
        }
    }
}

/// A client that connects and sends nothing, or only a prefix of the HTTP/2 preface (so the server cannot tell
/// HTTP/1 from HTTP/2), is closed after the header read timeout: many such clients must not hold file
/// descriptors and tasks for as long as they like.
#[test]
fn a_connection_that_sends_nothing_is_closed_by_the_header_read_timeout() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    for prefix in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let (elapsed, received) = time_to_close(service.addr(), prefix, Duration::from_secs(15));
        assert!(
            elapsed < Duration::from_secs(15),
            "closed after {elapsed:?}"
        );
        assert!(received.is_empty());
    }
}
