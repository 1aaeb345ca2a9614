//! An existing axum service that has adopted telemed-kit's parts while keeping its own `main`, its own
//! subscriber (with a layer of its own) and its own state: step 3 of `docs/adopting.md`, the outbound client.
//! Calls to the upstream now carry B3, `x-request-id`, Istio's trace headers and the audit header from the
//! request that caused them, and a `User-Agent` naming the service.
//!
//! Run with: `UPSTREAM_URL=http://localhost:9000 cargo run -p example-existing-service`

mod team;

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use telemed_kit::config::{Env, ServiceIdentity, exit_misconfigured};
use telemed_kit::health::{HealthBuilder, HealthSettings};
use telemed_kit::http::{Client, ClientError, ClientSettings};
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
    client: Client,
    url: Arc<str>,
}

/// `GET /upstream`: the upstream's greeting. The kit's client forwards the request's trace context and headers;
/// a failure answers 502 (504 for a timeout) as problem JSON.
async fn call_upstream(State(upstream): State<Upstream>) -> Result<String, ClientError> {
    let response = upstream
        .client
        .get(&format!("{}/greeting", upstream.url))
        .send()
        .await?;
    response.text().await.map_err(ClientError::from_reqwest)
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
    let client_settings = ClientSettings::from_env(&env, &identity).unwrap_or_else(|e| e.exit());
    let upstream_url: Arc<str> = env
        .required(
            "UPSTREAM_URL",
            "an http(s) base URL such as http://greeter:8080",
            |raw| {
                (raw.starts_with("http://") || raw.starts_with("https://"))
                    .then(|| raw.trim_end_matches('/').into())
            },
        )
        .unwrap_or_else(|e| e.exit());

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

    let upstream = Upstream {
        client: Client::new(client_settings, telemetry.clone()),
        url: upstream_url,
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
