//! {{description}}
//!
//! Run with: `bash scripts/run-local.sh` (http://localhost:{{port}}
{%- if kvstore and auth %}, next to local stand-ins of the key-value store
//! and the token issuer{% elsif kvstore %}, next to a local key-value store
//! stand-in{% elsif auth %}, next to a local stand-in of the token
//! issuer{% endif %}).
//!
{%- if auth %}
//! Routes, each needing a valid eHealth access token (`Authorization: Bearer <JWT>`, verified against the keys
//! of the issuers in `AUTH_ISSUER`; 401 without one):
//! - `GET /`: the service's name and version;
//! - `GET /whoami`: who is calling, from the token;
//! - `POST /notes`: stands in for a write, which also needs the privilege `Patient.write` (403 without it).
//!
//! The kit adds the probes (`/healthz`, `/readyz`, `/livez`) and `/metrics`, which need no token, JSON logs on
//! stdout in the eHealth logging model, trace propagation and a graceful shutdown on SIGTERM inside the
//! platform's 10 s grace period. Its configuration variables are listed in telemed-kit's
//! `docs/configuration.md`, the access tokens in its `docs/auth.md`.
{%- else %}
//! Routes: `GET /` answers the service's name and version. The kit adds the probes (`/healthz`, `/readyz`,
//! `/livez`), JSON logs on stdout in the eHealth logging model, trace propagation and a graceful shutdown on
//! SIGTERM inside the platform's 10 s grace period. Its configuration variables are listed in telemed-kit's
//! `docs/configuration.md`.
{%- endif %}

use std::process::ExitCode;

use telemed_kit::Service;
{%- if auth %}
use telemed_kit::auth::{Auth, AuthSettings, Caller, RequirePrivilegeLayer};
{%- endif %}
use telemed_kit::axum::extract::State;
{%- if auth %}
use telemed_kit::axum::http::StatusCode;
use telemed_kit::axum::middleware::from_extractor;
use telemed_kit::axum::routing::{get, post};
{%- else %}
use telemed_kit::axum::routing::get;
{%- endif %}
use telemed_kit::axum::{Json, Router};
{%- if kvstore or auth %}
use telemed_kit::config::{Env, ServiceIdentity};
{%- else %}
use telemed_kit::config::ServiceIdentity;
{%- endif %}
{%- if kvstore %}
use telemed_kit::health::Check;
use telemed_kit::kvstore::{KvStore, KvStoreSettings};
{%- endif %}
{%- if auth %}

/// The privilege `POST /notes` requires besides a valid token: a role of the token's `realm_access.roles`. The
/// issuer stand-in's `practitioner` holds it, its `patient` does not.
const WRITE_PRIVILEGE: &str = "Patient.write";
{%- endif %}

async fn about(State(identity): State<ServiceIdentity>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "name": identity.name, "version": identity.version }))
}
{%- if auth %}

/// The caller, from its verified token. No personal claims: `Caller` does not read them.
async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user_type": caller.user_type.as_ref().map(|user_type| user_type.as_str()),
        "user_id": &caller.user_id,
        "client": &caller.client,
        "privileges": &caller.privileges,
        "organization": caller.context.organization.as_ref().map(|reference| reference.to_string()),
    }))
}

/// Stands in for a write of the service's own, and keeps nothing: by the time it runs, the route's
/// RequirePrivilegeLayer has refused every caller without WRITE_PRIVILEGE.
async fn write_note() -> StatusCode {
    StatusCode::NO_CONTENT
}
{%- endif %}

#[tokio::main]
async fn main() -> ExitCode {
    // Every kit variable is read and checked before anything binds: a bad value exits 2 with one line naming
    // the variable, the value and what is expected.
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
{%- if kvstore %}
    // KVSTORE_URL has no default, so a deployment that forgets it fails here rather than at the first request.
    let kvstore = KvStoreSettings::from_env(&Env::process(), &service.settings().service)
        .map(|settings| KvStore::new(settings, service.client()))
        .unwrap_or_else(|error| error.exit());
{%- endif %}
{%- if auth %}
    // AUTH_ISSUER has no default either: without it (or with a value that is not an http(s) URL) the service
    // exits 2 here, before it binds.
    let auth = AuthSettings::from_env(&Env::process())
        .map(|settings| Auth::new(settings, service.client(), &service.settings().cache))
        .unwrap_or_else(|error| error.exit());
    // Fetches the issuer's keys now and again before they go stale (a token naming an unknown key fetches them
    // at once, so key rotation needs no restart). The refresh runs until main returns and drops the guard.
    let _key_refresh = auth.spawn_key_refresh();
    let writes = Router::new()
        .route("/notes", post(write_note))
        .route_layer(RequirePrivilegeLayer::new(WRITE_PRIVILEGE));
{%- endif %}
    let app = Router::new()
        .route("/", get(about))
{%- if auth %}
        .route("/whoami", get(whoami))
        .merge(writes)
        // Every route above needs a valid token, also one that extracts no Caller: 401 with
        // `WWW-Authenticate: Bearer error="invalid_token"` otherwise. A path that matches no route still answers
        // 404. The kit serves the probes and /metrics apart from these routes: they never need a token.
        .route_layer(from_extractor::<Caller>())
{%- endif %}
        .with_state(service.settings().service.clone());
    service
{%- if kvstore %}
        // Readiness checks run in the background; /healthz answers from their latest results. This one is
        // optional: while the store is down, /healthz stays 200 ("degraded") and the routes that do not need the
        // store keep working. Make it required (Check::new without .optional()) if no route works without it.
        .check(
            Check::new("kvstore", move || {
                let kvstore = kvstore.clone();
                async move { kvstore.ping().await }
            })
            .optional(),
        )
{%- else %}
        // Readiness checks run in the background; /healthz is 503 while a required one fails. Check each
        // dependency the service cannot answer without (a FHIR server, say) with a cheap call; this one stands in
        // for them and always passes.
        .readiness_check("dependencies", || async { Ok::<(), std::io::Error>(()) })
{%- endif %}
{%- if auth %}
        // Required: every application route needs a verified token, so until the issuer's keys have loaded
        // once, /healthz is 503 and the instance gets no traffic (rather than answering every request 503).
        // Once loaded, the last good keys are kept while the issuer is unreachable, and the check stays up.
        .check(auth.readiness_check())
        // The verifier, for the Caller extractor and RequirePrivilegeLayer, inside the kit's server stack.
        .auth(auth)
{%- endif %}
        // Hooks run after in-flight requests have drained, bounded by what is left of the grace period: close
        // what the service holds (a connection, a buffer to flush). This one only says goodbye.
        .on_shutdown("goodbye", || async {
            telemed_kit::tracing::info!("nothing to release");
        })
        .run(app)
        .await
}
