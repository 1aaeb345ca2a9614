//! The binary as a real process: the realm's metadata, keys and token endpoint over HTTP, tokens that verify
//! with the published keys, rotation on request, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

struct Standin {
    child: Child,
    base: String,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start() -> Standin {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_issuer-standin"))
        .env("PORT", port.to_string())
        .env("ISSUER_BASE_URL", &base)
        .env("SHUTDOWN_DELAY", "0s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let standin = Standin { child, base };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{}/readyz", standin.base))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "the stand-in did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    standin
}

async fn token(client: &reqwest::Client, realm_url: &str, form: &str) -> (u16, Value) {
    let response = client
        .post(format!("{realm_url}/protocol/openid-connect/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The claims of `token` after verifying it with the key the realm publishes under its kid.
async fn verified(client: &reqwest::Client, realm_url: &str, token: &str) -> Value {
    let keys: JwkSet = client
        .get(format!("{realm_url}/protocol/openid-connect/certs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = decode_header(token).unwrap();
    let jwk = keys
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&["EHealth"]);
    validation.set_issuer(&[realm_url]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_realm_issues_verifiable_tokens_and_rotates_its_keys() {
    let standin = start().await;
    let client = reqwest::Client::new();
    let realm = format!("{}/auth/realms/ehealth", standin.base);

    let metadata: Value = client
        .get(format!("{realm}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], realm.as_str());
    assert_eq!(
        metadata["jwks_uri"],
        format!("{realm}/protocol/openid-connect/certs")
    );

    let (status, answer) = token(
        &client,
        &realm,
        "grant_type=client_credentials&client_id=Reminders",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["token_type"], "Bearer");
    let claims = verified(&client, &realm, answer["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["user_type"], "SYSTEM");
    assert_eq!(claims["azp"], "Reminders");

    for (user, user_type) in [
        ("patient", "PATIENT"),
        ("practitioner", "PRACTITIONER"),
        ("ssl", "SSL"),
    ] {
        let form = format!("grant_type=password&username={user}&password=x&roles=A.read+B.write");
        let (status, answer) = token(&client, &realm, &form).await;
        assert_eq!(status, 200, "{user}");
        let claims = verified(&client, &realm, answer["access_token"].as_str().unwrap()).await;
        assert_eq!(claims["user_type"], user_type);
        assert_eq!(
            claims["realm_access"]["roles"],
            serde_json::json!(["A.read", "B.write"])
        );
        assert!(claims["context"].is_object());
    }
    assert_eq!(
        token(&client, &realm, "grant_type=password&username=nobody")
            .await
            .0,
        401
    );
    assert_eq!(token(&client, &realm, "grant_type=implicit").await.0, 400);

    let before = token(&client, &realm, "grant_type=client_credentials")
        .await
        .1;
    let rotated: Value = client
        .post(format!("{}/_standin/rotate?alg=ES256", standin.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = token(&client, &realm, "grant_type=client_credentials")
        .await
        .1;
    let after = after["access_token"].as_str().unwrap();
    assert_eq!(
        decode_header(after).unwrap().kid.unwrap(),
        rotated["kid"].as_str().unwrap()
    );
    verified(&client, &realm, after).await;
    // The replaced key stays published until retired.
    verified(&client, &realm, before["access_token"].as_str().unwrap()).await;

    let batch = client
        .post(format!("{}/_standin/tokens?count=3", standin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let batch: Vec<&str> = batch.lines().collect();
    assert_eq!(batch.len(), 3);
    assert!(batch[0] != batch[1] && batch[1] != batch[2] && batch[0] != batch[2]);
    for token in batch {
        assert_eq!(
            verified(&client, &realm, token).await["user_type"],
            "PRACTITIONER"
        );
    }
    for count in ["0", "1000001", "many"] {
        let refused = client
            .post(format!("{}/_standin/tokens?count={count}", standin.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "count={count}");
    }
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let mut standin = start().await;
    let pid = standin.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = standin.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            return;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
