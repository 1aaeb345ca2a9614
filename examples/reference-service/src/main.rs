//! The reference telemedicine service: what a service built on telemed-kit looks like.
//!
//! Run with: `cargo run -p reference-service` (with `KVSTORE_URL` and `AUTH_ISSUER` set; `scripts/run-local.sh`
//! starts the key-value store and token issuer stand-ins and sets both for you).
//!
//! Routes:
//! - `GET /`: the service's name and version.
//! - `GET|PUT|DELETE /settings/{key}`: shared settings in the eHealth key-value store, read through a cache; a
//!   valid access token to read, a privilege to write (see [`settings`]).

mod settings;

use std::process::ExitCode;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use telemed_kit::Service;
use telemed_kit::auth::{Auth, AuthSettings};
use telemed_kit::config::{Env, ServiceIdentity};
use telemed_kit::health::Check;

#[derive(Serialize)]
struct About {
    name: String,
    version: String,
}

async fn about(State(identity): State<ServiceIdentity>) -> Json<About> {
    Json(About {
        name: identity.name,
        version: identity.version,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    let settings =
        settings::Settings::from_env(&env, &service).unwrap_or_else(|error| error.exit());
    let auth_settings = AuthSettings::from_env(&env).unwrap_or_else(|error| error.exit());
    let auth = Auth::new(auth_settings, service.client(), &service.settings().cache);
    let _key_refresh = auth.spawn_key_refresh();
    let kvstore = settings.kvstore().clone();
    let app = Router::new()
        .route("/", get(about))
        .with_state(service.settings().service.clone())
        .merge(settings.routes());
    service
        // Optional: the settings API is one part of the service; when the store is down, the other routes still
        // work, and taking every instance out of the load balancer at once would turn a partial outage into a
        // total one.
        .check(
            Check::new("kvstore", move || {
                let kvstore = kvstore.clone();
                async move { kvstore.ping().await }
            })
            .optional(),
        )
        // Required, unlike the store's: it passes for good once the issuer's keys were loaded, so it only keeps a
        // new instance out of the load balancer until it can check tokens (its settings routes would answer 503
        // until then); an issuer outage later leaves every instance ready, verifying with the keys it has.
        .check(auth.readiness_check())
        .auth(auth)
        .run(app)
        .await
}
