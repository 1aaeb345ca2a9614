//! A Keycloak-shaped stand-in for the eHealth token issuer, for tests and local development only.
//!
//! It serves the parts of a Keycloak realm a service touches, for any realm name (`ehealth`, `nemlogin`, ...)
//! under `{base}/auth/realms/{realm}`, which is also each token's `iss`:
//!
//! | request | answers |
//! |---|---|
//! | `GET .../.well-known/openid-configuration` | the issuer metadata: `issuer`, `jwks_uri`, `token_endpoint`, algorithms |
//! | `GET .../protocol/openid-connect/certs` | the JWKS: the signing key, and the keys it replaced |
//! | `POST .../protocol/openid-connect/token` | an access token with the eHealth claims (below) |
//!
//! The token endpoint takes a form (`application/x-www-form-urlencoded`):
//! - `grant_type=client_credentials` with any `client_id`: a `SYSTEM` token for that client;
//! - `grant_type=password` with `username` one of the [`TEST_USERS`] (`patient`, `practitioner`, `ssl`,
//!   `system`) and any password: that user's token;
//! - optional `roles` (space-separated) replaces the user's privileges, `expires_in` (seconds) its lifetime.
//!
//! Tokens carry `iss`, `aud` (`EHealth`), `sub`, `azp`, `typ`, `exp`, `nbf`, `iat`, `jti`, `scope`,
//! `realm_access.roles`, `context` (absolute FHIR references), `user_id` and `user_type`, as the platform's do.
//!
//! # Test hooks
//!
//! Under `/_standin/`, without authorization:
//! - `POST /_standin/rotate?alg=ES256` (or `RS256`, `PS256`; default RS256): a new key signs from now on; the
//!   replaced key stays in the JWKS, as Keycloak keeps it until tokens signed with it have expired. With
//!   `&retire=true` the replaced keys leave the JWKS. Answers the new `kid`.
//! - `POST /_standin/sign` with a JSON object: that object signed as the payload with the current key, as is
//!   (for tests of hostile claims: expired, wrong audience, ...).
//! - `POST /_standin/tokens?count=N` (optional `realm`, default `ehealth`; `username`, default `practitioner`;
//!   `expires_in`): `N` distinct tokens (at most [`MAX_BATCH`]), one per line, for load that needs a fresh
//!   token per request (`scripts/bench.sh`).
//!
//! # Never in production
//!
//! Anyone can get any token from it. It is a crate of its own, a dev-dependency of the services that use it,
//! and its binary is not part of the container image or the chart.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The audience of every token, as on the platform.
pub const AUDIENCE: &str = "EHealth";

/// The privilege the stand-in's clinical and system users hold besides the platform's examples, so that a
/// service under test can require it for writes.
pub const SETTINGS_WRITE: &str = "Settings.write";

/// The test users of the password grant: `(username, user_type, privileges)`.
pub const TEST_USERS: [(&str, &str, &[&str]); 4] = [
    ("patient", "PATIENT", &["Patient.read", "Observation.read"]),
    (
        "practitioner",
        "PRACTITIONER",
        &[
            "Patient.read",
            "Patient.write",
            "CarePlan.read",
            SETTINGS_WRITE,
        ],
    ),
    ("ssl", "SSL", &["Patient.read"]),
    ("system", "SYSTEM", &["Patient.read", SETTINGS_WRITE]),
];

/// How long a token lives unless `expires_in` says otherwise: platform tokens live minutes.
const DEFAULT_LIFETIME_SECS: u64 = 300;

/// The most tokens one `POST /_standin/tokens` makes.
pub const MAX_BATCH: usize = 1_000_000;

/// Why a key could not be made or a token signed.
#[derive(Debug)]
pub struct SigningError(String);

impl std::fmt::Display for SigningError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signing failed: {}", self.0)
    }
}

impl std::error::Error for SigningError {}

struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    fn generate(alg: Algorithm, serial: u64) -> Result<Self, SigningError> {
        let fail = |what: &str| SigningError(what.to_owned());
        let encoding = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| fail("RSA key generation"))?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                    .map_err(|_| fail("RSA key encoding"))?;
                let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| fail(&e.to_string()))?
            }
            Algorithm::ES256 => {
                let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                )
                .map_err(|_| fail("EC key generation"))?;
                let der = pair.to_pkcs8v1().map_err(|_| fail("EC key encoding"))?;
                EncodingKey::from_ec_der(der.as_ref())
            }
            other => return Err(fail(&format!("{other:?} is not an eHealth algorithm"))),
        };
        // Random as well as numbered: two stand-ins (or two runs) never publish the same kid for different keys.
        let kid = format!("standin-{serial}-{alg:?}-{:08x}", rand_suffix() as u32);
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|e| fail(&e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            kid,
            alg,
            encoding,
            jwk,
        })
    }
}

struct Keys {
    signing: SigningKey,
    /// Keys replaced by a rotation, still published.
    previous: Vec<Jwk>,
    serial: u64,
}

/// The stand-in: its keys and its public base URL. Cheap to clone; clones share the keys.
#[derive(Clone)]
pub struct IssuerStandIn {
    base_url: Arc<str>,
    keys: Arc<Mutex<Keys>>,
}

impl std::fmt::Debug for IssuerStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerStandIn")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl IssuerStandIn {
    /// A stand-in reachable at `base_url` (such as `http://127.0.0.1:8091`), signing with a new RS256 key.
    pub fn new(base_url: &str) -> Result<Self, SigningError> {
        Ok(Self {
            base_url: Arc::from(base_url.trim_end_matches('/')),
            keys: Arc::new(Mutex::new(Keys {
                signing: SigningKey::generate(Algorithm::RS256, 1)?,
                previous: Vec::new(),
                serial: 1,
            })),
        })
    }

    /// The issuer URL of `realm`: the `iss` of its tokens, and what `AUTH_ISSUER` names.
    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/auth/realms/{realm}", self.base_url)
    }

    /// The JWKS URL of `realm`.
    pub fn jwks_url(&self, realm: &str) -> String {
        format!("{}/protocol/openid-connect/certs", self.issuer(realm))
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new key of `alg` signs from now on; the replaced one stays published unless `retire`. Returns its kid.
    pub fn rotate(&self, alg: Algorithm, retire: bool) -> Result<String, SigningError> {
        let mut keys = self.keys();
        keys.serial += 1;
        let fresh = SigningKey::generate(alg, keys.serial)?;
        let kid = fresh.kid.clone();
        let old = std::mem::replace(&mut keys.signing, fresh);
        if retire {
            keys.previous.clear();
        } else {
            keys.previous.push(old.jwk);
        }
        Ok(kid)
    }

    /// The published key set.
    pub fn jwks(&self) -> JwkSet {
        let keys = self.keys();
        let mut set = vec![keys.signing.jwk.clone()];
        set.extend(keys.previous.iter().cloned());
        JwkSet { keys: set }
    }

    /// `claims` signed as they are with the current key.
    pub fn sign(&self, claims: &Value) -> Result<String, SigningError> {
        let keys = self.keys();
        let mut header = Header::new(keys.signing.alg);
        header.kid = Some(keys.signing.kid.clone());
        jsonwebtoken::encode(&header, claims, &keys.signing.encoding)
            .map_err(|e| SigningError(e.to_string()))
    }

    /// The claims of a token for `username` (one of [`TEST_USERS`]) from `realm`, as the platform writes them,
    /// valid for `lifetime_secs`; `None` for an unknown user.
    pub fn user_claims(
        &self,
        realm: &str,
        username: &str,
        client: &str,
        lifetime_secs: u64,
    ) -> Option<Value> {
        let (name, user_type, privileges) =
            TEST_USERS.iter().find(|(name, _, _)| *name == username)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let serial = self.keys().serial;
        let fhir = "https://fut.example/fhir";
        let mut context = json!({
            "organization_id": format!("{fhir}/Organization/1"),
            "care_team_id": format!("{fhir}/CareTeam/2"),
        });
        if *user_type == "PATIENT" {
            context = json!({ "patient_id": format!("{fhir}/Patient/8") });
        }
        let user_id = match *user_type {
            "PATIENT" => format!("{fhir}/Patient/8"),
            "PRACTITIONER" | "SSL" => format!("{fhir}/Practitioner/3"),
            _ => format!("{client}-service-account"),
        };
        Some(json!({
            "iss": self.issuer(realm),
            "aud": AUDIENCE,
            "sub": format!("{name}-subject"),
            "azp": client,
            "typ": "Bearer",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_secs,
            "jti": format!("{serial}-{now}-{}", rand_suffix()),
            "scope": format!("openid profile {realm}"),
            "realm_access": { "roles": privileges },
            "context": context,
            "user_id": user_id,
            "user_type": user_type,
            "preferred_username": name,
            "name": format!("Test {name}"),
        }))
    }

    /// A signed token for `username` from `realm` (see [`IssuerStandIn::user_claims`]).
    pub fn token(&self, realm: &str, username: &str) -> Result<String, SigningError> {
        let claims = self
            .user_claims(realm, username, "StandInClient", DEFAULT_LIFETIME_SECS)
            .ok_or_else(|| SigningError(format!("no test user {username}")))?;
        self.sign(&claims)
    }

    /// The stand-in's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/auth/realms/{realm}/.well-known/openid-configuration",
                get(metadata),
            )
            .route(
                "/auth/realms/{realm}/protocol/openid-connect/certs",
                get(certs),
            )
            .route(
                "/auth/realms/{realm}/protocol/openid-connect/token",
                post(token),
            )
            .route("/_standin/rotate", post(rotate))
            .route("/_standin/sign", post(sign))
            .route("/_standin/tokens", post(tokens))
            .with_state(self.clone())
    }
}

/// Distinct `jti`s for tokens issued in the same second.
fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    // The jti only has to differ between tokens; an all-zero suffix on a failed draw is harmless.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn metadata(State(standin): State<IssuerStandIn>, Path(realm): Path<String>) -> Response {
    let issuer = standin.issuer(&realm);
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": standin.jwks_url(&realm),
        "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
        "grant_types_supported": ["client_credentials", "password"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    }))
    .into_response()
}

async fn certs(State(standin): State<IssuerStandIn>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        axum::Json(standin.jwks()),
    )
        .into_response()
}

async fn token(
    State(standin): State<IssuerStandIn>,
    Path(realm): Path<String>,
    body: Bytes,
) -> Response {
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let client = field("client_id").unwrap_or("StandInClient");
    let username = match field("grant_type") {
        Some("client_credentials") => "system",
        Some("password") => match field("username") {
            Some(username) => username,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username missing",
                );
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "client_credentials or password",
            );
        }
    };
    let lifetime = match field("expires_in").map(str::parse::<u64>) {
        None => DEFAULT_LIFETIME_SECS,
        Some(Ok(seconds)) if seconds > 0 => seconds,
        Some(_) => return error(StatusCode::BAD_REQUEST, "invalid_request", "bad expires_in"),
    };
    let Some(mut claims) = standin.user_claims(&realm, username, client, lifetime) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "no such test user",
        );
    };
    if let Some(roles) = form.get("roles") {
        claims["realm_access"]["roles"] = json!(roles.split_ascii_whitespace().collect::<Vec<_>>());
    }
    match standin.sign(&claims) {
        Ok(access_token) => axum::Json(json!({
            "access_token": access_token,
            "expires_in": lifetime,
            "token_type": "Bearer",
            "scope": claims["scope"],
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}

#[derive(serde::Deserialize)]
struct RotateQuery {
    alg: Option<String>,
    #[serde(default)]
    retire: bool,
}

async fn rotate(
    State(standin): State<IssuerStandIn>,
    Query(query): Query<RotateQuery>,
) -> Response {
    let alg = match query.alg.as_deref().unwrap_or("RS256") {
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "alg is RS256, PS256 or ES256",
            );
        }
    };
    let rotated = tokio::task::spawn_blocking(move || standin.rotate(alg, query.retire)).await;
    match rotated {
        Ok(Ok(kid)) => axum::Json(json!({ "kid": kid })).into_response(),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "rotation failed",
        ),
    }
}

async fn sign(State(standin): State<IssuerStandIn>, body: Bytes) -> Response {
    let Ok(claims @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "a JSON object");
    };
    match standin.sign(&claims) {
        Ok(token) => token.into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}

#[derive(serde::Deserialize)]
struct BatchQuery {
    count: usize,
    realm: Option<String>,
    username: Option<String>,
    expires_in: Option<u64>,
}

async fn tokens(State(standin): State<IssuerStandIn>, Query(query): Query<BatchQuery>) -> Response {
    if query.count == 0 || query.count > MAX_BATCH {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "count is 1 to 1000000",
        );
    }
    let realm = query.realm.unwrap_or_else(|| "ehealth".to_owned());
    let username = query.username.unwrap_or_else(|| "practitioner".to_owned());
    let lifetime = query.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS);
    let signed = tokio::task::spawn_blocking(move || {
        let mut lines = String::new();
        for _ in 0..query.count {
            // Each claim set has its own jti, so every token differs.
            let claims = standin
                .user_claims(&realm, &username, "StandInClient", lifetime)
                .ok_or_else(|| SigningError(format!("no test user {username}")))?;
            lines.push_str(&standin.sign(&claims)?);
            lines.push('\n');
        }
        Ok::<_, SigningError>(lines)
    })
    .await;
    match signed {
        Ok(Ok(lines)) => lines.into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing failed",
        ),
    }
}
