//! {{description}}
//!
//! Run with: `bash scripts/run-local.sh` (http://localhost:{{port}}
{%- if kvstore %}, next to a local key-value store
//! stand-in{% endif %}).
//!
//! Routes: `GET /` answers the service's name and version. The kit adds the probes (`/healthz`, `/readyz`,
//! `/livez`), JSON logs on stdout in the eHealth logging model, trace propagation and a graceful shutdown on
//! SIGTERM inside the platform's 10 s grace period. Its configuration variables are listed in telemed-kit's
//! `docs/configuration.md`.

use std::process::ExitCode;

use telemed_kit::Service;
use telemed_kit::axum::extract::State;
use telemed_kit::axum::routing::get;
use telemed_kit::axum::{Json, Router};
{%- if kvstore %}
use telemed_kit::config::{Env, ServiceIdentity};
use telemed_kit::health::Check;
use telemed_kit::kvstore::{KvStore, KvStoreSettings};
{%- else %}
use telemed_kit::config::ServiceIdentity;
{%- endif %}

async fn about(State(identity): State<ServiceIdentity>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "name": identity.name, "version": identity.version }))
}

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
    let app = Router::new()
        .route("/", get(about))
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
        // Hooks run after in-flight requests have drained, bounded by what is left of the grace period: close
        // what the service holds (a connection, a buffer to flush). This one only says goodbye.
        .on_shutdown("goodbye", || async {
            telemed_kit::tracing::info!("nothing to release");
        })
        .run(app)
        .await
}
