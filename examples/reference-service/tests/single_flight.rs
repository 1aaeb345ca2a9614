//! Single-flight: a thousand concurrent reads of a key that is not cached make one read at the store between
//! them; with the caches off, every read goes to the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{StandInServer, WAIT, cache_disabled, split_response, start_service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONCURRENT: usize = 1000;

/// The test makes sure every request is waiting before the store answers: the stand-in holds `GET`s at a gate
/// until the service has read all 1000 requests (with the cache: one upstream read is then waiting, and the
/// other 999 can only be waiting for it) or until all 1000 upstream reads have arrived (without the cache).
/// Without the gate, a fast store could answer before the later requests arrive, and they would be plain
/// cache hits: the count would be 1 even with a broken single-flight.
#[test]
fn a_thousand_concurrent_reads_of_a_cold_key_make_one_read_at_the_store() {
    let store = StandInServer::start();
    // The store's answer is held until every request is in; the service must not give up on it meanwhile.
    let service = start_service(&store.url(), &[("OUTBOUND_TIMEOUT", "60s")]);
    let value = r#"{"feature": true}"#;
    let etag = store.create("hot", "application/json", value);
    let path = StandInServer::path("hot");

    store.probe.close_gate();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = service.addr();
    let responses = runtime.block_on(async {
        // Connections first, so that the requests can then be sent in one quick pass.
        let mut connections = Vec::with_capacity(CONCURRENT);
        for _ in 0..CONCURRENT {
            connections.push(TcpStream::connect(addr).await.unwrap());
        }
        let request = format!(
            "GET /settings/hot HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            common::token()
        );
        for connection in &mut connections {
            connection.write_all(request.as_bytes()).await.unwrap();
        }
        connections
            .into_iter()
            .map(|mut connection| {
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    connection.read_to_end(&mut received).await.map(|_| received)
                })
            })
            .collect::<Vec<_>>()
    });

    let held = if cache_disabled() {
        store
            .probe
            .wait_until("every read to reach the store", |state| {
                state.at_gate == CONCURRENT
            })
    } else {
        wait_until_read_by_server(service.port(), CONCURRENT);
        store
            .probe
            .wait_until("the read at the store", |state| state.at_gate >= 1)
    };
    let expected_reads = if cache_disabled() { CONCURRENT } else { 1 };
    assert_eq!(
        held.at_gate, expected_reads,
        "reads waiting at the store while all {CONCURRENT} requests wait"
    );
    store.probe.open_gate();

    let responses = runtime.block_on(async {
        let mut all = Vec::with_capacity(CONCURRENT);
        for reader in responses {
            let received = tokio::time::timeout(WAIT, reader)
                .await
                .expect("every response arrives")
                .unwrap()
                .unwrap();
            all.push(split_response(&received));
        }
        all
    });
    for response in &responses {
        assert_eq!(response.status, Some(200), "{}", response.head);
        assert_eq!(response.header("etag"), Some(etag.as_str()));
        assert_eq!(response.body, value.as_bytes());
    }
    assert_eq!(
        store.standin.stats().count("GET", &path) as usize,
        expected_reads,
        "reads at the store for {CONCURRENT} concurrent requests (cache disabled: {})",
        cache_disabled()
    );
}

/// Waits until `connections` connections to `port` are established and the server has read every byte sent
/// on them: each request is then in its handler. The kernel's socket table is the only place that says so;
/// it has no notification, so it is polled.
fn wait_until_read_by_server(port: u16, connections: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (established, unread) = server_side_backlog(port);
        if established >= connections && unread == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?}: {established} connections, {unread} request bytes not read by the service"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Established connections whose local port is `port` (the server's side), and the bytes received on them
/// that the server has not read yet, from `/proc/net/tcp` and `/proc/net/tcp6` (the service's dual-stack
/// socket lists its IPv4 peers in `tcp6`).
fn server_side_backlog(port: u16) -> (usize, u64) {
    let (mut established, mut unread) = (0, 0);
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(queues)) =
                (fields.get(1), fields.get(3), fields.get(4))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            // 01: ESTABLISHED.
            if local_port != Some(port) || *state != "01" {
                continue;
            }
            established += 1;
            unread += queues
                .split(':')
                .nth(1)
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .unwrap_or(0);
        }
    }
    (established, unread)
}
