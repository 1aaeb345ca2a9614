//! Bare axum with the reference service's `GET /`: the baseline the kit's cost is measured against.
//!
//! Run with: `scripts/bench.sh` (it builds this with the workspace's lock file and sets `PORT`).
//!
//! The handler does what the reference service's does (clone the identity out of the state, serialise it),
//! with the same name and version text, so that the two servers differ only in what the kit adds around it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Clone)]
struct Identity {
    name: String,
    version: String,
}

#[derive(Serialize)]
struct About {
    name: String,
    version: String,
}

async fn about(State(identity): State<Identity>) -> Json<About> {
    Json(About {
        name: identity.name,
        version: identity.version,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8080);
    let identity = Identity {
        name: "reference-service".to_owned(),
        version: std::env::var("ABOUT_VERSION").unwrap_or_else(|_| "0.1.0".to_owned()),
    };
    let app = Router::new().route("/", get(about)).with_state(identity);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    axum::serve(listener, app).await
}
