//! Run with: `UPSTREAM_ADDR=127.0.0.1:9000 cargo run -p example-readiness`
//!
//! Readiness (`/healthz`) says whether this instance should get traffic now. Two things hold it back here:
//! - a startup task (warming a code list): readiness is 503 `starting` until it finishes, and if it fails the
//!   service exits 1 so that the platform restarts it;
//! - a readiness check (can the upstream at `UPSTREAM_ADDR` be reached?), run in the background every
//!   `READINESS_CHECK_INTERVAL`: readiness is 503 `not_ready` while it fails and 200 again when it passes.
//!   The probe answers from the latest result and never calls the upstream itself.
//!
//! Liveness (`/livez`) stays 200 all along: a missing dependency is no reason to restart this process.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use telemed_kit::Service;
use telemed_kit::config::Env;

/// Codes loaded once at startup; the routes read them without locking.
type Codes = Arc<OnceLock<BTreeMap<&'static str, &'static str>>>;

async fn display(
    State(codes): State<Codes>,
    Path(code): Path<String>,
) -> Result<Json<String>, StatusCode> {
    // Readiness keeps traffic away until the codes are loaded; a request that arrives anyway (a direct call
    // during startup) gets 503 rather than a wrong 404.
    let codes = codes.get().ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    let display = codes.get(code.as_str()).ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json((*display).to_owned()))
}

/// Stands in for a slow load from an infrastructure service (a terminology server, say).
async fn load_codes(codes: Codes, delay: Duration) -> Result<(), std::io::Error> {
    tokio::time::sleep(delay).await;
    let loaded = BTreeMap::from([
        ("8867-4", "Heart rate"),
        ("8480-6", "Systolic blood pressure"),
    ]);
    codes
        .set(loaded)
        .map_err(|_| std::io::Error::other("the codes were loaded twice"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    // The example's own variables, read the kit's way: a bad value exits 2 with one line naming it.
    let env = Env::process();
    let upstream = env
        .required("UPSTREAM_ADDR", "a host:port such as fhir:443", |raw| {
            raw.rsplit_once(':')
                .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                .map(|_| raw.to_owned())
        })
        .unwrap_or_else(|error| error.exit());
    let warm_up = env
        .duration_or("WARM_UP_DELAY", Duration::from_secs(1))
        .unwrap_or_else(|error| error.exit());

    let codes = Codes::default();
    let app = Router::new()
        .route("/codes/{code}", get(display))
        .with_state(codes.clone());
    service
        .startup_task("load-codes", load_codes(codes, warm_up))
        .readiness_check("upstream", move || {
            let upstream = upstream.clone();
            // Only whether a connection opens: a readiness check must be cheap, it runs on every instance
            // every few seconds. The kit bounds each run by READINESS_CHECK_TIMEOUT.
            async move { tokio::net::TcpStream::connect(upstream).await.map(drop) }
        })
        .run(app)
        .await
}
