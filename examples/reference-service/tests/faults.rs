//! Faults around the service, on real processes: the key-value store down, slow, resetting connections or
//! answering garbage; the Zipkin collector down or silent; stdout that nobody reads. In each case the service
//! stays live, answers clean problems with the status its code documents, logs what an operator needs, loses
//! no write, and keeps its memory bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{
    StandInServer, WAIT, assert_problem, cache_disabled, call, closed_port, delete_setting,
    get_setting, put_setting, resident_bytes, service_command, service_env, start_service, text,
    token, wait_for_lines, wait_for_store_up,
};
use kvstore_standin::{Failure, Faults};
use serde_json::Value;
use telemed_kit::testing::{HttpResponse, ServiceProcess, free_port, http_request};

/// How the store misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Not listening: the stand-in is stopped.
    Down,
    /// Answers after 2 s, beyond the service's `OUTBOUND_TIMEOUT` of 500 ms.
    Slow,
    /// Drops the connection without answering.
    Reset,
    /// Answers 500.
    Error,
    /// Answers 200 with a body that is not JSON and no `ETag`.
    InvalidBody,
}

impl Fault {
    /// The service's answer, as `settings.rs` maps the client's errors: unreachable or dropped connections are
    /// 503 (`KvError::Unavailable`), too slow is 504, a 5xx or a broken answer is 502.
    fn status(self) -> u16 {
        match self {
            Self::Down | Self::Reset => 503,
            Self::Slow => 504,
            Self::Error | Self::InvalidBody => 502,
        }
    }

    /// Whether the readiness check, a `HEAD` at the store, fails too. A `HEAD` answer has no body, so neither
    /// the stand-in's reset (which breaks the body) nor an invalid body touches it.
    fn fails_readiness(self) -> bool {
        matches!(self, Self::Down | Self::Slow | Self::Error)
    }
}

fn upstream_alerts(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|line| line["type"] == "alert" && line["upstream"] == "kvstore")
        .collect()
}

fn upstream_alarms(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|line| line["type"] == "alarm" && line["upstream"] == "kvstore")
        .collect()
}

/// Each fault in turn, on one service: a key is written and read (so that it is cached, with the cache on),
/// the fault starts, then reads and conditional writes fail with the fault's status while liveness stays 200
/// and readiness says `degraded` (an optional check) where the readiness check is affected.
///
/// Logs: one `alert` line per failed call to the store, numbered, and one `alarm` at the fifth in a row. A
/// read answered from the cache in the middle of the outage is not a call to the store, so it neither counts
/// as a failure nor resets the count. Once the store is back, one line says so.
///
/// Writes: every failed write carried the ETag of the value stored before the fault. For every fault but the
/// slow store, the value and its ETag are then exactly as before. A slow store is different: the service gave
/// up after 500 ms, but the store still applied or refused each write when its delay ended, so a 504 means
/// "unknown". The ETags keep that safe: all three writes carried the same ETag, so at most one took effect,
/// and whole, and the service then reads exactly what the store holds.
#[test]
fn store_faults_answer_5xx_alert_per_failure_alarm_once_and_lose_no_write() {
    let mut store = StandInServer::start();
    let service = start_service(
        &store.url(),
        &[
            ("OUTBOUND_TIMEOUT", "500ms"),
            ("READINESS_CHECK_TIMEOUT", "1s"),
        ],
    );
    wait_for_store_up(&service, 1);
    let mut store_ups = 1;
    let port = store.port().to_string();

    for fault in [
        Fault::Down,
        Fault::Slow,
        Fault::Reset,
        Fault::Error,
        Fault::InvalidBody,
    ] {
        let key = format!("kept-{fault:?}");
        let created = put_setting(&service, &key, "base", None);
        assert_eq!(created.status, 201, "{fault:?}: create");
        let etag = created.header("etag").unwrap().to_owned();
        assert_eq!(get_setting(&service, &key).body, "base");
        let seen = service.lines().len();

        match fault {
            Fault::Down => store.stop(),
            Fault::Slow => store
                .standin
                .set_faults(Faults::delay(Duration::from_secs(2))),
            Fault::Reset => store.standin.set_faults(Faults::failure(Failure::Reset)),
            Fault::Error => store.standin.set_faults(Faults::failure(Failure::Error)),
            Fault::InvalidBody => store
                .standin
                .set_faults(Faults::failure(Failure::InvalidBody)),
        }

        let mut failed_calls = 0;
        let mut failed = |response: HttpResponse, what: &str| {
            assert_problem(
                &response,
                fault.status(),
                &[&port],
                &format!("{fault:?}: {what}"),
            );
            failed_calls += 1;
        };
        failed(get_setting(&service, "absent-1"), "read");
        failed(get_setting(&service, "absent-2"), "read");
        let cached = get_setting(&service, &key);
        if cache_disabled() {
            failed(cached, "read of the key read before");
        } else {
            assert_eq!(
                (cached.status, cached.body.as_str(), cached.header("etag")),
                (200, "base", Some(etag.as_str())),
                "{fault:?}: the cache answers while the store fails"
            );
        }
        assert_eq!(call(&service, "GET", "/livez", &[], b"").status, 200);
        failed(
            put_setting(&service, &key, "changed-1", Some(&etag)),
            "update",
        );
        failed(
            put_setting(&service, &key, "changed-2", Some(&etag)),
            "update",
        );
        failed(delete_setting(&service, &key, Some(&etag)), "delete");
        failed(get_setting(&service, "absent-3"), "read");
        assert_eq!(call(&service, "GET", "/livez", &[], b"").status, 200);

        let lines = wait_for_lines(&service, "an alert per failed call", |lines| {
            upstream_alerts(&lines[seen..]).len() >= failed_calls
        });
        let during = &lines[seen..];
        let numbers: Vec<u64> = upstream_alerts(during)
            .iter()
            .map(|line| line["failures"].as_u64().unwrap())
            .collect();
        assert_eq!(
            numbers,
            (1..=failed_calls as u64).collect::<Vec<_>>(),
            "{fault:?}: one alert per failed call, counted in a row"
        );
        let alarms = upstream_alarms(during);
        assert_eq!(alarms.len(), 1, "{fault:?}: one alarm: {alarms:#?}");
        assert_eq!(alarms[0]["failures"], 5);
        assert!(
            !during
                .iter()
                .any(|line| line["body"] == "key-value store answers again"),
            "{fault:?}: nothing said the store answered during the outage"
        );

        if fault.fails_readiness() {
            wait_for_lines(&service, "the readiness check to fail", |lines| {
                lines[seen..].iter().any(|line| {
                    line["check"] == "kvstore"
                        && text(line, "body").starts_with("readiness check")
                        && line["body"] != "readiness check is up"
                })
            });
            let readiness = call(&service, "GET", "/healthz", &[], b"");
            assert_eq!(
                (
                    readiness.status,
                    readiness.json().unwrap()["status"].as_str()
                ),
                (200, Some("degraded")),
                "{fault:?}: the optional store check degrades readiness, never fails it"
            );
        } else {
            assert_eq!(call(&service, "GET", "/healthz", &[], b"").status, 200);
        }

        match fault {
            Fault::Down => store.restart(),
            _ => store.standin.clear_faults(),
        }
        store
            .probe
            .wait_until("the delayed requests to end", |state| state.in_flight == 0);
        if fault.fails_readiness() {
            store_ups += 1;
            wait_for_store_up(&service, store_ups);
        }

        let stored = store.read(&key);
        if fault == Fault::Slow {
            match stored.status {
                404 => {}
                200 => {
                    assert!(
                        ["base", "changed-1", "changed-2"].contains(&stored.body.as_str()),
                        "a whole value, never a mix: {}",
                        stored.body
                    );
                    assert_eq!(
                        stored.body == "base",
                        stored.header("etag") == Some(etag.as_str()),
                        "the ETag changed exactly when the value did"
                    );
                }
                other => panic!("direct read: {other}"),
            }
        } else {
            assert_eq!(
                (stored.status, stored.body.as_str(), stored.header("etag")),
                (200, "base", Some(etag.as_str())),
                "{fault:?}: the failed writes left the value as it was"
            );
        }
        let read = get_setting(&service, &key);
        assert_eq!(
            (read.status, read.body.as_str(), read.header("etag")),
            (stored.status, stored.body.as_str(), stored.header("etag")),
            "{fault:?}: the service reads what the store holds"
        );
        let lines = wait_for_lines(&service, "the line saying the store is back", |lines| {
            lines[seen..]
                .iter()
                .any(|line| line["body"] == "key-value store answers again")
        });
        let back = lines[seen..]
            .iter()
            .find(|line| line["body"] == "key-value store answers again")
            .unwrap();
        assert_eq!(back["failures"], failed_calls as u64, "{fault:?}");
    }
}

/// A collector that accepts connections and never answers: each export waits for its time limit (2 s).
struct SilentCollector {
    port: u16,
    /// `true` when the exporter connects, `false` when it gives up and closes.
    events: Receiver<bool>,
}

impl SilentCollector {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                if sender.send(true).is_err() {
                    break;
                }
                let sender = sender.clone();
                std::thread::spawn(move || {
                    // Reads (and ignores) the request; returns when the exporter closes the connection.
                    let _ = std::io::copy(&mut stream, &mut std::io::sink());
                    let _ = sender.send(false);
                });
            }
        });
        Self { port, events }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2/spans", self.port)
    }
}

/// Reads the setting, which must answer 200 within 1 s: half the export time limit, so a request that
/// waited for an export could not pass.
fn read_within_a_second(service: &ServiceProcess) {
    let response = http_request(
        service.addr(),
        "GET",
        "/settings/traced",
        &[("Authorization", token())],
        b"",
        Duration::from_secs(1),
    )
    .unwrap_or_else(|error| panic!("no answer within 1 s: {error}"));
    assert_eq!(response.status, 200);
}

#[test]
fn a_silent_zipkin_collector_costs_spans_not_latency() {
    let store = StandInServer::start();
    let collector = SilentCollector::start();
    let service = start_service(
        &store.url(),
        &[
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", &collector.endpoint()),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ],
    );
    assert_eq!(put_setting(&service, "traced", "v", None).status, 201);

    // Spans are exported every 5 s, or as soon as 128 wait: requests until the exporter connects.
    let deadline = Instant::now() + WAIT;
    while collector.events.try_recv() != Ok(true) {
        read_within_a_second(&service);
        assert!(Instant::now() < deadline, "the exporter never connected");
    }
    // The export now waits for an answer that never comes; the service serves meanwhile.
    let mut served_while_exporting = 0;
    while collector.events.try_recv() != Ok(false) {
        read_within_a_second(&service);
        served_while_exporting += 1;
        assert!(Instant::now() < deadline, "the export never gave up");
    }
    assert!(served_while_exporting > 0);
    assert_eq!(call(&service, "GET", "/livez", &[], b"").status, 200);
}

/// A Zipkin collector on `port` that takes every batch (202), while the returned runtime lives.
fn accept_spans(port: u16) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    let collector = axum::Router::new().route(
        "/api/v2/spans",
        axum::routing::post(|_spans: axum::body::Bytes| async { axum::http::StatusCode::ACCEPTED }),
    );
    runtime.spawn(async move {
        let _ = axum::serve(listener, collector).await;
    });
    runtime
}

#[test]
fn a_zipkin_collector_that_is_down_costs_spans_not_latency_and_its_return_is_reported() {
    let store = StandInServer::start();
    let port = closed_port();
    let endpoint = format!("http://127.0.0.1:{port}/api/v2/spans");
    let service = start_service(
        &store.url(),
        &[
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ],
    );
    assert_eq!(put_setting(&service, "traced", "v", None).status, 201);

    // Requests until the exporter reports a failed post (checked every 25 requests: the check reads every
    // line so far).
    let deadline = Instant::now() + WAIT;
    let failures = |service: &ServiceProcess| -> Vec<Value> {
        common::json_lines(service)
            .into_iter()
            .filter(|line| {
                line["body"]
                    .as_str()
                    .is_some_and(|body| body.starts_with("span export failed"))
            })
            .collect()
    };
    while failures(&service).is_empty() {
        for _ in 0..25 {
            read_within_a_second(&service);
        }
        assert!(Instant::now() < deadline, "no export was attempted");
    }
    // Two more batches fail; the failure is still reported once.
    for _ in 0..300 {
        read_within_a_second(&service);
    }
    let reported = failures(&service);
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert_eq!(reported[0]["type"], "alert");
    assert!(
        reported[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("onnection refused")),
        "{reported:#?}"
    );

    // The collector comes up: a post goes through, and the first line the exporter may write after the last
    // (at most one each 10 s) says so, with how many spans were lost meanwhile.
    let _collector = accept_spans(port);
    let deadline = Instant::now() + WAIT + Duration::from_secs(10);
    let recovered = loop {
        for _ in 0..25 {
            read_within_a_second(&service);
        }
        if let Some(line) = common::json_lines(&service)
            .into_iter()
            .find(|line| line["body"] == "span export works again")
        {
            break line;
        }
        assert!(Instant::now() < deadline, "export never recovered");
    };
    assert!(
        recovered["spans_lost"]
            .as_u64()
            .is_some_and(|lost| lost >= 256),
        "{recovered}"
    );
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// stdout is a pipe nobody reads (a wedged log collector): once the pipe (64 KiB) and the log queue (1 MiB)
/// are full, the log layer drops lines instead of blocking, so the service keeps answering, and its memory
/// stays bounded. Reading stdout again afterwards finds the line that reports the drops.
///
/// Each request carries an 8 KiB `User-Agent`, which its access-log line repeats: the burst produces about
/// 50 MiB of log lines, so a log that queued them all instead of dropping would break both memory bounds.
#[test]
fn a_stdout_nobody_reads_costs_log_lines_not_availability_or_memory() {
    const BURST: usize = 6400;
    const TASKS: usize = 16;
    const MEMORY_BOUND: u64 = 64 * 1024 * 1024;
    const GROWTH_BOUND: u64 = 16 * 1024 * 1024;

    let store = StandInServer::start();
    let port = free_port().unwrap();
    let mut command = service_command();
    command
        .envs(service_env(&store.url(), &[]))
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Killed(command.spawn().unwrap());
    let pid = child.0.id();
    let stdout = child.0.stdout.take().unwrap();

    // One thread reads stdout up to `listening`, then stops reading until the test says so.
    let (listening, started) = mpsc::channel();
    let (resume, resumed) = mpsc::channel::<()>();
    let (line_sender, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
            if line.contains(r#""body":"listening""#) {
                let _ = listening.send(());
                break;
            }
            line.clear();
        }
        if resumed.recv().is_err() {
            return;
        }
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });
    started.recv_timeout(WAIT).expect("the service listens");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let call = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        http_request(addr, method, path, headers, body, Duration::from_secs(10)).unwrap()
    };
    let created = call(
        "PUT",
        "/settings/burst",
        &[("Authorization", token()), ("Content-Type", "text/plain")],
        b"v1",
    );
    assert_eq!(created.status, 201);
    let before = resident_bytes(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let statuses = runtime.block_on(async move {
        let client = telemed_kit::reqwest::Client::builder()
            .user_agent("u".repeat(8192))
            .build()
            .unwrap();
        let url = format!("http://{addr}/settings/burst");
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::with_capacity(BURST / TASKS);
                    for _ in 0..BURST / TASKS {
                        let response = client
                            .get(&url)
                            .header("Authorization", token())
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await
                            .expect("an answer while stdout is blocked");
                        statuses.push(response.status().as_u16());
                    }
                    statuses
                })
            })
            .collect();
        let mut all = Vec::with_capacity(BURST);
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    assert_eq!(statuses.len(), BURST);
    assert!(
        statuses.iter().all(|status| *status == 200),
        "every request of the burst is answered 200"
    );

    // Still blocked: the service answers its probes and the settings API.
    assert_eq!(call("GET", "/livez", &[], b"").status, 200);
    assert_eq!(call("GET", "/healthz", &[], b"").status, 200);
    let updated = call(
        "PUT",
        "/settings/burst",
        &[
            ("Authorization", token()),
            ("Content-Type", "text/plain"),
            ("If-Match", created.header("etag").unwrap()),
        ],
        b"v2",
    );
    assert_eq!(updated.status, 200);
    assert_eq!(store.read("burst").body, "v2");
    let after = resident_bytes(pid);
    assert!(
        after < MEMORY_BOUND && after.saturating_sub(before) < GROWTH_BOUND,
        "resident memory {} MiB after the burst (before: {} MiB); bounds: {} MiB, growth {} MiB",
        after >> 20,
        before >> 20,
        MEMORY_BOUND >> 20,
        GROWTH_BOUND >> 20
    );

    // Reading again: the writer catches up and reports what it dropped.
    resume.send(()).unwrap();
    let deadline = Instant::now() + WAIT;
    let report = loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("a report of dropped lines");
        let line = lines.recv_timeout(left).expect("a report of dropped lines");
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("a stdout line is not JSON ({error}): {line:?}"));
        if value["dropped_low"]
            .as_u64()
            .is_some_and(|dropped| dropped > 0)
        {
            break value;
        }
    };
    assert_eq!(report["type"], "alert");
    assert!(
        text(&report, "body").ends_with("log lines under overload"),
        "{report}"
    );
}
