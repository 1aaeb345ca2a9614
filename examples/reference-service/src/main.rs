//! The reference telemedicine service: what a service built on telemed-kit looks like.
//!
//! Run with: `cargo run -p reference-service`

use std::process::ExitCode;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use telemed_kit::Service;
use telemed_kit::config::ServiceIdentity;

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
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    let app = Router::new()
        .route("/", get(about))
        .with_state(service.settings().service.clone());
    service.run(app).await
}
