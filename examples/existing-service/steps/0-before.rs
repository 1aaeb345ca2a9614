//! The service before it adopted telemed-kit: plain axum, with its own `main`, its own subscriber (with a layer
//! of its own) and its own state. `docs/adopting.md` takes it to `src/main.rs` in three steps.
//!
//! Run with: `UPSTREAM_URL=http://localhost:9000 cargo run -p example-existing-service --bin existing-service-before`

#[path = "../src/team.rs"]
mod team;

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The service it calls, and how.
#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    url: Arc<str>,
}

/// `GET /upstream`: the upstream's greeting.
async fn call_upstream(State(upstream): State<Upstream>) -> Result<String, StatusCode> {
    let response = upstream
        .http
        .get(format!("{}/greeting", upstream.url))
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    response.text().await.map_err(|_| StatusCode::BAD_GATEWAY)
}

#[tokio::main]
async fn main() -> ExitCode {
    let events = team::EventCounter::default();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(events.clone())
        .init();

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(8080);
    let http = match reqwest::Client::builder().build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "could not build the HTTP client");
            return ExitCode::FAILURE;
        }
    };
    let upstream = Upstream {
        http,
        url: std::env::var("UPSTREAM_URL")
            .unwrap_or_else(|_| "http://localhost:9000".to_owned())
            .into(),
    };
    let upstream_routes = Router::new()
        .route("/upstream", get(call_upstream))
        .with_state(upstream);

    let app = team::routes("hello from an existing service", events).merge(upstream_routes);

    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(port, %error, "could not bind the port");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port, "listening");
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the server failed");
            ExitCode::FAILURE
        }
    }
}
