//! Step 1 of `docs/adopting.md`: probes and graceful shutdown. The service keeps its subscriber, its state and
//! its routes; it gains `/healthz`, `/readyz` and `/livez`, and the platform's shutdown sequence around its
//! server (readiness 503 at SIGTERM, still serving through `SHUTDOWN_DELAY`, drain, exit 0 inside the grace
//! period), with `PORT` and the kit's variables checked before anything binds.
//!
//! Run with: `UPSTREAM_URL=http://localhost:9000 cargo run -p example-existing-service --bin existing-service-step-1`

#[path = "../src/team.rs"]
mod team;

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use telemed_kit::config::Env;
use telemed_kit::health::{HealthBuilder, HealthSettings};
use telemed_kit::shutdown::{Runner, Shutdown, ShutdownSettings};
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

    // Every variable is read and checked before anything binds: a bad one exits 2 with one line naming it.
    let env = Env::process();
    let port = env.port_or("PORT", 8080).unwrap_or_else(|e| e.exit());
    let shutdown_settings = ShutdownSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let health_settings = HealthSettings::from_env(&env).unwrap_or_else(|e| e.exit());
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

    let shutdown = Shutdown::new(shutdown_settings);
    let health = HealthBuilder::default().build(health_settings);
    let upstream_routes = Router::new()
        .route("/upstream", get(call_upstream))
        .with_state(upstream);

    let app = team::routes("hello from an existing service", events)
        .merge(upstream_routes)
        .merge(health.routes())
        .layer(shutdown.layer());

    let listener = match telemed_kit::http::bind(port) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(port, %error, "could not bind the port");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port, "listening");
    Runner::new(&shutdown)
        .readiness(&health)
        .run(telemed_kit::http::serve(listener, app, &shutdown))
        .await
}
