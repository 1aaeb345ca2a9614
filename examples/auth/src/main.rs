//! A service that knows who is calling: `Service` composes the kit's `auth` part through its public API, like any
//! other part. Reading needs a valid eHealth access token; writing also needs the privilege `Settings.write`.
//!
//! Run with: `AUTH_ISSUER=http://localhost:8091/auth/realms/ehealth cargo run -p example-auth` beside the issuer
//! stand-in (`cargo run -p issuer-standin`), then get a token from it as the README shows.
//!
//! Routes:
//! - `GET /whoami`: the caller, from its verified token (401 without one).
//! - `POST /notes`: 403 problem+json naming `Settings.write` for a caller without it.

use std::process::ExitCode;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use telemed_kit::Service;
use telemed_kit::auth::{Auth, AuthSettings, Caller, RequirePrivilegeLayer, UserType};
use telemed_kit::config::Env;

#[derive(Serialize)]
struct WhoAmI {
    user_type: Option<String>,
    user_id: Option<String>,
    client: Option<String>,
    privileges: Vec<String>,
    organization: Option<String>,
}

async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        user_type: caller
            .user_type
            .as_ref()
            .map(|t| UserType::as_str(t).to_owned()),
        user_id: caller.user_id.clone(),
        client: caller.client.clone(),
        privileges: caller.privileges.iter().cloned().collect(),
        organization: caller
            .context
            .organization
            .as_ref()
            .map(|org| org.to_string()),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    // Before anything binds: a bad AUTH_* value exits 2 with one line naming it.
    let settings = AuthSettings::from_env(&Env::process()).unwrap_or_else(|error| error.exit());
    let auth = Auth::new(settings, service.client(), &service.settings().cache);
    let _key_refresh = auth.spawn_key_refresh();

    let writes = Router::new()
        .route("/notes", post(|| async { "noted" }))
        .route_layer(RequirePrivilegeLayer::new("Settings.write"));
    let app = Router::new().route("/whoami", get(whoami)).merge(writes);
    // Required: this instance takes traffic only once it can verify tokens. `auth` puts the verifier into
    // the kit's server stack, for the Caller extractor and RequirePrivilegeLayer.
    service
        .check(auth.readiness_check())
        .auth(auth)
        .run(app)
        .await
}
