//! The verifier over real HTTP: keys fetched by the kit's client from the issuer stand-in (served on
//! 127.0.0.1:0), tokens it issues, and every hostile token and misbehaving issuer of `docs/bad-input.md`.
//! Requests go through a router with the auth layers, as a service serves them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use issuer_standin::IssuerStandIn;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use telemed_kit::auth::{
    Auth, AuthError, AuthSettings, Caller, ContextElement, RequirePrivilegeLayer, UserType,
};
use telemed_kit::cache::CacheSettings;
use telemed_kit::config::{Env, ServiceIdentity};
use telemed_kit::health::{HealthBuilder, HealthSettings};
use telemed_kit::http::{Client, ClientSettings};
use telemed_kit::telemetry::Telemetry;
use telemed_kit::telemetry::trace::b3::B3Inject;
use tower::ServiceExt;

/// What the key endpoint in front of the stand-in answers.
const KEYS: u8 = 0;
const GARBAGE: u8 = 1;
const HANG: u8 = 2;
const DOWN: u8 = 3;

/// The stand-in behind a switch that can make its key endpoint misbehave, counting key fetches.
struct Issuer {
    standin: IssuerStandIn,
    mode: Arc<AtomicU8>,
    fetches: Arc<AtomicUsize>,
}

async fn issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let standin = IssuerStandIn::new(&base).unwrap();
    let (mode, fetches) = (Arc::new(AtomicU8::new(KEYS)), Arc::new(AtomicUsize::new(0)));
    let (m, f) = (Arc::clone(&mode), Arc::clone(&fetches));
    let app = standin
        .router()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let (m, f) = (Arc::clone(&m), Arc::clone(&f));
            async move {
                if !request.uri().path().ends_with("/certs") {
                    return next.run(request).await;
                }
                f.fetch_add(1, Ordering::SeqCst);
                match m.load(Ordering::SeqCst) {
                    GARBAGE => "<html>not a key set</html>".into_response(),
                    HANG => std::future::pending().await,
                    DOWN => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    _ => next.run(request).await,
                }
            }
        }));
    tokio::spawn(axum::serve(listener, app).into_future());
    Issuer {
        standin,
        mode,
        fetches,
    }
}

impl Issuer {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn claims(&self, user: &str) -> Value {
        self.standin
            .user_claims("ehealth", user, "TestClient", 300)
            .unwrap()
    }

    fn token(&self, user: &str) -> String {
        self.standin.token("ehealth", user).unwrap()
    }

    fn auth(&self) -> Auth {
        self.auth_with(&self.standin.jwks_url("ehealth"))
    }

    fn auth_with(&self, jwks_url: &str) -> Auth {
        let issuers = format!(
            "{},{}",
            self.standin.issuer("ehealth"),
            self.standin.issuer("nemlogin")
        );
        let env = Env::from_pairs([
            ("AUTH_ISSUER", issuers.as_str()),
            ("AUTH_JWKS_URL", jwks_url),
            ("OUTBOUND_TIMEOUT", "300ms"),
        ]);
        let identity = ServiceIdentity {
            name: "auth-test".into(),
            version: "1".into(),
        };
        let client = Client::new(
            ClientSettings::from_env(&env, &identity).unwrap(),
            Telemetry::propagation_only(B3Inject::Multi),
        );
        Auth::new(
            AuthSettings::from_env(&env).unwrap(),
            client,
            &CacheSettings::default(),
        )
    }
}

async fn whoami(caller: Caller) -> String {
    format!(
        "{}|{}|{}",
        caller.user_type.as_ref().map_or("", UserType::as_str),
        caller.user_id.as_deref().unwrap_or_default(),
        caller.privileges.len()
    )
}

fn app(auth: &Auth) -> Router {
    let write = Router::new()
        .route("/write", get(|| async { "written" }))
        .route_layer(RequirePrivilegeLayer::new("Settings.write"));
    let patient = Router::new().route("/patient", get(whoami)).route_layer(
        RequirePrivilegeLayer::new("Patient.read").with_context(ContextElement::Patient),
    );
    Router::new()
        .route("/whoami", get(whoami))
        .merge(write)
        .merge(patient)
        .layer(auth.layer())
        .route("/healthz", get(|| async { "ok" }))
}

async fn call(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, Response) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    (response.status(), response)
}

async fn body(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Log lines written by the test's subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// This thread's log lines, captured until the guard is dropped.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(logs.clone())
                .finish(),
        );
        (logs, guard)
    }

    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `header` and `claims` as base64url JSON, with `signature` appended as given.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn tokens_of_every_user_type_and_algorithm_are_accepted_across_rotations() {
    let issuer = issuer().await;
    let auth = issuer.auth();
    let app = app(&auth);
    for (user, expected) in [
        (
            "practitioner",
            "PRACTITIONER|https://fut.example/fhir/Practitioner/3|4",
        ),
        ("patient", "PATIENT|https://fut.example/fhir/Patient/8|2"),
        ("ssl", "SSL|https://fut.example/fhir/Practitioner/3|1"),
        ("system", "SYSTEM|TestClient-service-account|2"),
    ] {
        let claims = issuer.claims(user);
        let token = issuer.standin.sign(&claims).unwrap();
        let (status, response) = call(&app, "/whoami", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{user}");
        assert_eq!(body(response).await, expected);
    }
    let nemlogin = issuer.standin.token("nemlogin", "patient").unwrap();
    assert_eq!(
        call(&app, "/whoami", Some(&nemlogin)).await.0,
        StatusCode::OK
    );

    let before = issuer.token("practitioner");
    for alg in [Algorithm::ES256, Algorithm::PS256, Algorithm::RS256] {
        // Past the refetch interval of the last fetch, the new kid is fetched at once.
        tokio::time::sleep(Duration::from_millis(5100)).await;
        issuer.standin.rotate(alg, false).unwrap();
        let token = issuer.token("practitioner");
        let (status, _) = call(&app, "/whoami", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{alg:?} after a rotation");
    }
    assert_eq!(call(&app, "/whoami", Some(&before)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn privileges_and_context_are_required_with_403_naming_them() {
    let issuer = issuer().await;
    let app = app(&issuer.auth());
    let (status, response) = call(&app, "/write", Some(&issuer.token("practitioner"))).await;
    assert_eq!(
        (status, body(response).await.as_str()),
        (StatusCode::OK, "written")
    );

    let (status, response) = call(&app, "/write", Some(&issuer.token("patient"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope""#
    );
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = serde_json::from_str(&body(response).await).unwrap();
    assert_eq!(
        problem["detail"],
        "the privilege Settings.write is required"
    );

    assert_eq!(
        call(&app, "/patient", Some(&issuer.token("patient")))
            .await
            .0,
        StatusCode::OK
    );
    let (status, response) = call(&app, "/patient", Some(&issuer.token("ssl"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body(response).await.contains("context.patient_id"));

    // Probes stay open; a route without AuthLayer in front of a Caller is a 500, never an open door.
    assert_eq!(call(&app, "/healthz", None).await.0, StatusCode::OK);
    let unwired = Router::new().route("/whoami", get(whoami));
    assert_eq!(
        call(&unwired, "/whoami", Some(&issuer.token("system")))
            .await
            .0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// Each hostile token: the variant the verifier names, and the 401 the client sees, which never shows it.
#[tokio::test]
async fn hostile_tokens_get_401_and_say_nothing() {
    let issuer = issuer().await;
    let auth = issuer.auth();
    let app = app(&auth);
    let valid = issuer.token("practitioner");
    let kid = jsonwebtoken::decode_header(&valid).unwrap().kid.unwrap();
    let claims = issuer.claims("practitioner");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        issuer.standin.sign(&claims).unwrap()
    };
    let public_key = serde_json::to_vec(&issuer.standin.jwks()).unwrap();
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public_key).unwrap(),
        )
        .unwrap()
    };
    let es256_header_on_rsa_key = {
        let (_, rest) = valid.split_once('.').unwrap();
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid, "typ": "JWT"}).to_string())
        )
    };
    let padding = "x".repeat(16 * 1024);
    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "alg none",
            raw_token(&json!({"alg": "none", "kid": kid}), &claims, ""),
            AuthError::Malformed,
        ),
        (
            "HS256 signed with the public key",
            hs256,
            AuthError::Algorithm,
        ),
        (
            "key of the wrong type",
            es256_header_on_rsa_key,
            AuthError::Signature,
        ),
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 120)),
            AuthError::Expired,
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now() + 120)),
            AuthError::NotYetValid,
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("Other")),
            AuthError::Audience,
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example/auth/realms/ehealth")),
            AuthError::Issuer,
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            AuthError::Claims("exp, iss or aud"),
        ),
        (
            "exp that is not a number",
            with(&|c| c["exp"] = json!("tomorrow")),
            AuthError::Malformed,
        ),
        (
            "context that is no FHIR reference",
            with(&|c| c["context"]["organization_id"] = json!("1")),
            AuthError::Claims("organization_id"),
        ),
        (
            "truncated signature",
            valid[..valid.len() - 10].to_owned(),
            AuthError::Signature,
        ),
        (
            "16 KiB token",
            with(&|c| c["padding"] = json!(padding)),
            AuthError::TooLarge,
        ),
        ("not a JWT", "a.b".to_owned(), AuthError::Malformed),
        ("garbage", "!!!.???.###".to_owned(), AuthError::Malformed),
    ];
    let (logs, _subscriber) = Logs::capture();
    for (name, token, expected) in cases {
        assert_eq!(auth.verify(&token).await.unwrap_err(), expected, "{name}");
        let before = logs.lines().len();
        let (status, response) = call(&app, "/whoami", Some(&token)).await;
        // One clear line naming the reason, and nothing of the token in any line.
        let lines = logs.lines();
        let refused: Vec<_> = lines[before..]
            .iter()
            .filter(|line| line.contains("auth: request refused"))
            .collect();
        assert_eq!(refused.len(), 1, "{name}: {lines:?}");
        assert!(
            refused[0].contains(&expected.to_string()),
            "{name}: {refused:?}"
        );
        let signature = token.rsplit('.').next().unwrap_or_default();
        for fragment in [
            &token[..token.len().min(24)],
            &signature[..signature.len().min(24)],
        ] {
            if fragment.len() >= 8 {
                assert!(
                    lines.iter().all(|line| !line.contains(fragment)),
                    "{name}: the token was logged"
                );
            }
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#,
            "{name}"
        );
        let text = body(response).await;
        assert!(
            !text.contains(&token[..token.len().min(40)]),
            "{name}: {text}"
        );
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            problem["detail"], "a valid access token is required",
            "{name}"
        );
    }
    for headers in [
        vec![],
        vec!["Basic dXNlcjpwdw==".to_owned()],
        vec!["Bearer ".to_owned()],
        vec![format!("Bearer {valid}"), format!("Bearer {valid}")],
    ] {
        let mut request = Request::get("/whoami");
        for value in &headers {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    // Nothing broke: the valid token still passes.
    assert_eq!(call(&app, "/whoami", Some(&valid)).await.0, StatusCode::OK);
}

/// The header is read as bytes (a reused token's bytes are hashed, not checked again for being text): what
/// is not text, or not one bearer token, is still refused with the right reason.
#[tokio::test]
async fn the_authorization_header_is_read_as_sent() {
    let issuer = issuer().await;
    let auth = issuer.auth();
    let valid = issuer.token("practitioner");
    let verify = |value: Vec<u8>| {
        let auth = auth.clone();
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(&value).unwrap(),
            );
            auth.verify_headers(&headers).await.map(|_| ())
        }
    };
    let cases: Vec<(&str, Vec<u8>, Result<(), AuthError>)> = vec![
        ("as usual", format!("Bearer {valid}").into_bytes(), Ok(())),
        (
            "scheme in lower case",
            format!("bearer {valid}").into_bytes(),
            Ok(()),
        ),
        (
            "spaces around the token",
            format!("Bearer   {valid}  ").into_bytes(),
            Ok(()),
        ),
        (
            "a byte that is not UTF-8",
            [format!("Bearer {valid}").as_bytes(), b"\xff"].concat(),
            Err(AuthError::Malformed),
        ),
        (
            "a letter that is not ASCII",
            [b"Bearer \xc3\xa9", valid.as_bytes()].concat(),
            Err(AuthError::Malformed),
        ),
        (
            "no space after the scheme",
            format!("Bearer{valid}").into_bytes(),
            Err(AuthError::NotBearer),
        ),
        (
            "another scheme",
            b"Basic dXNlcjpwdw==".to_vec(),
            Err(AuthError::NotBearer),
        ),
        ("no token", b"Bearer    ".to_vec(), Err(AuthError::Missing)),
    ];
    for (name, value, expected) in cases {
        assert_eq!(verify(value).await, expected, "{name}");
    }
}

/// Without `AuthLayer` (or `Service::auth`) around it, a route that extracts `Caller` is miswired: 500 and an
/// alarm, not a 401 that would blame the caller.
#[tokio::test]
async fn a_caller_without_a_verifier_is_a_wiring_error() {
    let issuer = issuer().await;
    let token = issuer.token("practitioner");
    let (logs, _subscriber) = Logs::capture();
    let app = Router::new().route("/whoami", get(whoami));
    let (status, _) = call(&app, "/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        logs.lines()
            .iter()
            .any(|line| line.contains("a route extracts Caller without an AuthLayer")),
        "{:?}",
        logs.lines()
    );
}

#[tokio::test]
async fn unknown_kids_after_a_rotation_cost_one_fetch_per_interval() {
    let issuer = issuer().await;
    let auth = issuer.auth();
    let app = app(&auth);
    let old = issuer.token("practitioner");
    auth.load_keys().await.unwrap();
    // The issuer rotates and retires the old key; a token signed by a key it never published (same issuer
    // URL, another key) names a kid nobody knows.
    issuer.standin.rotate(Algorithm::ES256, true).unwrap();
    let stranger = IssuerStandIn::new(&issuer.standin.issuer("x").replace("/auth/realms/x", ""))
        .unwrap()
        .token("ehealth", "practitioner")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let fetched = issuer.fetches();
    assert_eq!(
        auth.verify(&stranger).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(issuer.fetches(), fetched + 1);
    // That refetch replaced the key set: the retired key's tokens are refused from now on.
    assert_eq!(auth.verify(&old).await.unwrap_err(), AuthError::UnknownKey);
    // A flood of unknown kids, concurrently, within the interval: no further fetch.
    let mut header = jsonwebtoken::decode_header(&stranger).unwrap();
    let (_, rest) = stranger.split_once('.').unwrap();
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..200 {
        header.kid = Some(format!("unknown-{n}"));
        let token = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap())
        );
        let app = app.clone();
        flood.spawn(async move { call(&app, "/whoami", Some(&token)).await.0 });
    }
    while let Some(status) = flood.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        issuer.fetches(),
        fetched + 1,
        "unknown kids refetched within the interval"
    );
    assert_eq!(
        call(&app, "/whoami", Some(&issuer.token("practitioner")))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
    let issuer = issuer().await;
    let auth = issuer.auth();
    let token = issuer.token("system");
    auth.verify(&token).await.unwrap();
    // The keys are gone and the issuer answers garbage: a cached token still passes without a fetch.
    issuer.standin.rotate(Algorithm::ES256, true).unwrap();
    issuer.set(GARBAGE);
    let fetched = issuer.fetches();
    for _ in 0..100 {
        assert_eq!(
            auth.verify(&token).await.unwrap().user_type,
            Some(UserType::System)
        );
    }
    assert_eq!(issuer.fetches(), fetched);
    let stats = auth.claims_cache_stats();
    assert_eq!((stats.loads, stats.hits), (1, 100), "{stats:?}");

    // A token that expires is no longer served from the cache (AUTH_LEEWAY is 30s: expire it 29s ago).
    issuer.set(KEYS);
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let mut claims = issuer.claims("system");
    claims["exp"] = json!(now() - 28);
    let short = issuer.standin.sign(&claims).unwrap();
    auth.verify(&short).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while auth.verify(&short).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "an expired token was still served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(auth.verify(&short).await.unwrap_err(), AuthError::Expired);
}

#[tokio::test]
async fn the_last_good_keys_are_kept_while_the_issuer_answers_garbage_or_hangs() {
    let issuer = issuer().await;
    let auth = issuer.auth();
    let app = app(&auth);
    auth.load_keys().await.unwrap();
    for mode in [GARBAGE, HANG, DOWN] {
        issuer.set(mode);
        tokio::time::sleep(Duration::from_millis(5100)).await;
        assert!(auth.load_keys().await.is_err());
        assert!(auth.keys_loaded());
        // A new token signed with the kept key passes; a token of an unknown kid is refused promptly.
        let started = Instant::now();
        assert_eq!(
            call(&app, "/whoami", Some(&issuer.token("practitioner")))
                .await
                .0,
            StatusCode::OK,
            "mode {mode}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn an_issuer_down_at_startup_gives_503_until_its_keys_load() {
    let issuer = issuer().await;
    issuer.set(DOWN);
    let auth = issuer.auth();
    let app = app(&auth);
    let mut health = HealthBuilder::default();
    health.readiness_check(auth.readiness_check());
    let env = Env::from_pairs([("READINESS_CHECK_INTERVAL", "100ms")]);
    let health = health.build(HealthSettings::from_env(&env).unwrap());
    let _checks = health.spawn();
    let probes = health.routes();
    let token = issuer.token("practitioner");
    let (status, response) = call(&app, "/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    assert!(!auth.keys_loaded());
    // An unreachable issuer (nothing listening) is the same.
    let closed = issuer.auth_with("http://127.0.0.1:9/certs");
    assert_eq!(
        closed.verify(&token).await.unwrap_err(),
        AuthError::KeysUnavailable
    );

    issuer.set(KEYS);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = call(&app, "/whoami", Some(&token)).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "the keys never loaded");
        assert_eq!(
            call(&probes, "/readyz", None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(auth.keys_loaded());
    // The readiness check follows: ready once the keys are loaded (its next run sees them).
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&probes, "/readyz", None).await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "readiness never followed the keys"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
