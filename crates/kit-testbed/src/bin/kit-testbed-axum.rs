//! The kit's shutdown sequence around plain `axum::serve`, composed from the parts without `Service`: what
//! `shutdown::Runner`'s documentation promises for a server that is not the kit's, tested as a real process.
//!
//! Run with: `cargo run -p kit-testbed --bin kit-testbed-axum`
//!
//! Routes: `GET /slow?ms=N` answers after N ms; the probes.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use serde::Deserialize;
use telemed_kit::config::{Env, ServiceIdentity, exit_misconfigured};
use telemed_kit::health::{HealthBuilder, HealthSettings};
use telemed_kit::shutdown::{Runner, Shutdown, ShutdownSettings};
use telemed_kit::telemetry::log::{LogSettings, Logs};
use telemed_kit::tracing_subscriber::layer::SubscriberExt;
use telemed_kit::tracing_subscriber::util::SubscriberInitExt;

#[derive(Deserialize)]
struct Wait {
    ms: u64,
}

async fn slow(Query(wait): Query<Wait>) -> &'static str {
    tracing::info!(ms = wait.ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(wait.ms)).await;
    "done"
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let port = env.port_or("PORT", 8080).unwrap_or_else(|e| e.exit());
    let identity =
        ServiceIdentity::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|e| e.exit());
    let log_settings = LogSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let shutdown_settings = ShutdownSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let health_settings = HealthSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let logs = Logs::stdout(&log_settings, &identity).unwrap_or_else(|e| exit_misconfigured(&e));
    telemed_kit::tracing_subscriber::registry()
        .with(logs.layer())
        .init();

    let shutdown = Shutdown::new(shutdown_settings);
    let health = HealthBuilder::default().build(health_settings);
    let app = Router::new()
        .route("/slow", get(slow))
        .merge(health.routes())
        .layer(shutdown.layer());
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(port, %error, "could not bind the port");
            return ExitCode::FAILURE;
        }
    };
    // axum keeps accepting until its shutdown future completes: given the drain signal, that is the end of the
    // delay, not the SIGTERM.
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.drain_signal());
    tracing::info!(port, "listening");
    Runner::new(&shutdown)
        .readiness(&health)
        .flush(logs.guard())
        .run(server)
        .await
}
