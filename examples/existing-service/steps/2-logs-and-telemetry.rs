//! Step 2 of `docs/adopting.md`: eHealth logs, request telemetry and B3. The kit's log layer joins the service's
//! own subscriber in place of its text formatter (the team's layer stays), the tracing part installs the tracer
//! provider and the B3 propagator globally, and the request layer gives every request B3 in, a request id, a
//! server span, an access-log line and metrics at `/metrics`.
//!
//! Run with: `UPSTREAM_URL=http://localhost:9000 cargo run -p example-existing-service --bin existing-service-step-2`

#[path = "../src/team.rs"]
mod team;

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use telemed_kit::config::{Env, ServiceIdentity, exit_misconfigured};
use telemed_kit::health::{HealthBuilder, HealthSettings};
use telemed_kit::metrics::{Metrics, MetricsSettings};
use telemed_kit::shutdown::{Runner, Shutdown, ShutdownSettings};
use telemed_kit::telemetry::log::{LogSettings, Logs, install_panic_hook};
use telemed_kit::telemetry::trace::{Tracing, TracingSettings};
use telemed_kit::telemetry::{RequestTelemetryLayer, Telemetry};
use tracing_subscriber::Layer;
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
    // Every variable is read and checked before anything binds: a bad one exits 2 with one line naming it.
    let env = Env::process();
    let port = env.port_or("PORT", 8080).unwrap_or_else(|e| e.exit());
    let identity =
        ServiceIdentity::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|e| e.exit());
    let shutdown_settings = ShutdownSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let health_settings = HealthSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let log_settings = LogSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let tracing_settings = TracingSettings::from_env(&env).unwrap_or_else(|e| e.exit());
    let metrics_settings = MetricsSettings::from_env(&env, port).unwrap_or_else(|e| e.exit());

    // The kit's log layer writes the eHealth logging model to stdout in place of the text formatter; the team's
    // own layer still sees every event. LOG_LEVEL applies to the kit's layers only.
    let logs = Logs::stdout(&log_settings, &identity).unwrap_or_else(|e| exit_misconfigured(&e));
    let traces =
        Tracing::new(&tracing_settings, &identity).unwrap_or_else(|e| exit_misconfigured(&e));
    let events = team::EventCounter::default();
    tracing_subscriber::registry()
        .with(events.clone())
        .with(logs.layer())
        .with(traces.layer().with_filter(log_settings.filter()))
        .init();
    install_panic_hook();
    let metrics = Metrics::new(&metrics_settings, &identity);
    logs.count_drops_in(&metrics);
    let telemetry = Telemetry::builder(traces.propagator())
        .tracer(traces.tracer())
        .metrics(metrics.clone())
        .access_log(logs.access_log())
        .build();

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
        .merge(metrics.routes())
        // Outermost first: the in-flight count covers the request's telemetry too.
        .layer(
            tower::ServiceBuilder::new()
                .layer(shutdown.layer())
                .layer(RequestTelemetryLayer::new(telemetry)),
        );

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
        .metrics(&metrics)
        // The log guard last: what the others log while flushing is written too.
        .flush(traces)
        .flush(logs.guard())
        .run(telemed_kit::http::serve(listener, app, &shutdown))
        .await
}
