//! Tokens signed by an independent implementation (PyJWT on Python's cryptography, RS256, PS256 and ES256)
//! pass the kit's verifier, with the keys published as that implementation writes them.
//!
//! The tokens come from `tests/auth/peer_tokens.py`, which `scripts/test-auth-peers.sh` runs in the project's
//! venv before this test, passing the output file in `AUTH_PEER_TOKENS`; `cargo test` alone skips it (it is
//! `#[ignore]`d) because it cannot make the tokens, and the script runs it with `--ignored`, where a missing
//! file fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use telemed_kit::auth::{Auth, AuthError, AuthSettings, UserType};
use telemed_kit::cache::CacheSettings;
use telemed_kit::config::{Env, ServiceIdentity};
use telemed_kit::http::{Client, ClientSettings};
use telemed_kit::telemetry::Telemetry;
use telemed_kit::telemetry::trace::b3::B3Inject;

#[tokio::test]
#[ignore = "needs PyJWT's tokens: run by scripts/test-auth-peers.sh"]
async fn tokens_signed_by_pyjwt_are_accepted() {
    let path =
        std::env::var("AUTH_PEER_TOKENS").expect("AUTH_PEER_TOKENS names the peer's token file");
    let peer: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the token file"))
            .expect("the token file is JSON");
    let jwks = peer["jwks"].to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    let app = Router::new().route("/certs", get(move || async move { jwks }));
    tokio::spawn(axum::serve(listener, app).into_future());

    let env = Env::from_pairs([
        ("AUTH_ISSUER", peer["issuer"].as_str().unwrap()),
        ("AUTH_JWKS_URL", url.as_str()),
    ]);
    let identity = ServiceIdentity {
        name: "peers".into(),
        version: "1".into(),
    };
    let client = Client::new(
        ClientSettings::from_env(&env, &identity).unwrap(),
        Telemetry::propagation_only(B3Inject::Multi),
    );
    let auth = Auth::new(
        AuthSettings::from_env(&env).unwrap(),
        client,
        &CacheSettings::default(),
    );
    let tokens = peer["tokens"].as_object().unwrap();
    assert_eq!(tokens.len(), 3, "RS256, PS256 and ES256");
    for (alg, token) in tokens {
        let token = token.as_str().unwrap();
        let caller = auth
            .verify(token)
            .await
            .unwrap_or_else(|error| panic!("{alg}: {error:?}"));
        assert_eq!(caller.user_type, Some(UserType::Practitioner), "{alg}");
        assert!(caller.has_privilege(&format!("{alg}.signed")), "{alg}");
        assert_eq!(
            caller.context.organization.as_ref().unwrap().id(),
            "7",
            "{alg}"
        );
        // The same token with one byte of its signature changed is refused.
        let mut tampered = token.to_owned().into_bytes();
        let at = tampered.len() - 5;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            auth.verify(&tampered).await.unwrap_err(),
            AuthError::Signature,
            "{alg}"
        );
    }
}
