//! Bearer token parsing and verification: whatever the `Authorization` header holds, the verifier answers
//! with an error of its own, never a panic, never a caller, and never a 5xx other than "keys unavailable".
//!
//! The verifier has real keys (an RSA and an EC public key, served as a JWKS on 127.0.0.1 by this process) so
//! that tokens naming their kids go all the way to the signature check; nobody holds the private keys, so no
//! input can verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use telemed_kit::auth::{Auth, AuthError, AuthSettings};
use telemed_kit::axum::{Router, routing::get};
use telemed_kit::cache::CacheSettings;
use telemed_kit::config::{Env, ServiceIdentity};
use telemed_kit::http::{Client, ClientSettings};
use telemed_kit::telemetry::Telemetry;
use telemed_kit::telemetry::trace::b3::B3Inject;

const JWKS: &str = r#"{"keys":[
 {"kty":"RSA","kid":"rsa","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
 {"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
]}"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    auth: Auth,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let auth = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/certs", listener.local_addr().unwrap());
            let app = Router::new().route("/certs", get(|| async { JWKS }));
            tokio::spawn(telemed_kit::axum::serve(listener, app).into_future());
            let env = Env::from_pairs([
                ("AUTH_ISSUER", "https://issuer.example/auth/realms/ehealth"),
                ("AUTH_JWKS_URL", url.as_str()),
            ]);
            let identity = ServiceIdentity {
                name: "fuzz".into(),
                version: "0".into(),
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
            auth.load_keys().await.unwrap();
            auth
        });
        Fixture { runtime, auth }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    let outcomes = fixture.runtime.block_on(async {
        let from_header = fixture.auth.verify_headers(&headers).await;
        let from_text = match std::str::from_utf8(data) {
            Ok(text) => Some(fixture.auth.verify(text).await),
            Err(_) => None,
        };
        (from_header, from_text)
    });
    for outcome in [Some(outcomes.0), outcomes.1].into_iter().flatten() {
        let error = outcome.expect_err("no input can verify without the private keys");
        assert!(
            error.status() == 401 || error == AuthError::KeysUnavailable,
            "{error:?}"
        );
    }
});
