//! The binary as a real process: it serves the contract on `PORT`, its faults survive the kit's server stack,
//! and it stops cleanly on SIGTERM.

// The helpers outside the test function fail the test by panicking, like the test itself.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvstore_standin::Stats;

struct Standin {
    child: Child,
    port: u16,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start() -> Standin {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_kvstore-standin"))
        .env("PORT", port.to_string())
        .env("SHUTDOWN_DELAY", "0s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let standin = Standin { child, port };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(standin.url("/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        if ready {
            return standin;
        }
        assert!(
            Instant::now() < deadline,
            "the stand-in did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Standin {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn raw(&self, request: &str) -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received);
        received
    }
}

#[tokio::test]
async fn serves_the_contract_injects_real_faults_and_stops_on_sigterm() {
    let mut standin = start().await;
    let client = reqwest::Client::new();
    let path = "/properties/app/key";

    let unauthorised = client.get(standin.url(path)).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    let created = client
        .post(standin.url(path))
        .bearer_auth("token")
        .header("content-type", "text/plain")
        .body("value")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let read = client
        .get(standin.url(path))
        .bearer_auth("token")
        .send()
        .await
        .unwrap();
    assert_eq!(read.text().await.unwrap(), "value");

    let faults = client
        .put(standin.url("/_standin/faults"))
        .body(r#"{"failure": "reset", "count": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 204);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(standin.raw(&request), b"", "no byte of a response");
    let after = String::from_utf8(standin.raw(&request)).unwrap();
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");

    let stats = client
        .get(standin.url("/_standin/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stats: Stats = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        stats.count("GET", path),
        4,
        "every GET to the key is counted, faulted or not"
    );

    let status = Command::new("kill")
        .args(["-TERM", &standin.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = standin.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
}
