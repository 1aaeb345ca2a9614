//! Request telemetry: logs in the eHealth logging model, trace propagation and span export, and the layer that
//! ties them to each request.
//!
//! Three parts, each usable alone in a service with its own `main` and subscriber:
//! - [`log::Logs`]: the eHealth log layer for the service's own `tracing_subscriber::registry()`, its writer
//!   thread, drop counting and flush;
//! - [`trace::Tracing`]: the B3 propagator, and the SDK tracer provider with the kit's sampler and exporter,
//!   installed as OpenTelemetry's globals;
//! - [`RequestTelemetryLayer`], over a [`Telemetry`] built from the two: B3 in, the request id, the server
//!   span, the access log and the request metrics for each request, and the [`context`] the outbound
//!   [`Client`](crate::http::Client) forwards from.
//!
//! # Layout
//! - [`log`]: one JSON object per line on stdout in the eHealth logging model, written off the request path.
//! - [`trace`]: B3 propagation ([`trace::b3`]), the B3-aware sampler, Zipkin export, the tracer provider.
//! - [`context`]: the current request's context (trace id, headers to forward), set by the request layer.
//! - [`RequestTelemetryLayer`] and [`Telemetry`]: the per-request layer and what it shares with the client.
//!
//! # Example
//!
//! The three parts composed by hand, as [`Service`](crate::Service) composes them:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use telemed_kit::config::{Env, ServiceIdentity};
//! use telemed_kit::metrics::{Metrics, MetricsSettings};
//! use telemed_kit::telemetry::log::{LogSettings, Logs};
//! use telemed_kit::telemetry::trace::{Tracing, TracingSettings};
//! use telemed_kit::telemetry::{RequestTelemetryLayer, Telemetry};
//! use telemed_kit::tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
//!
//! let env = Env::process();
//! let identity = ServiceIdentity::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|e| e.exit());
//! let log_settings = LogSettings::from_env(&env).unwrap_or_else(|e| e.exit());
//! let tracing_settings = TracingSettings::from_env(&env).unwrap_or_else(|e| e.exit());
//! let metrics_settings = MetricsSettings::from_env(&env, 8080).unwrap_or_else(|e| e.exit());
//!
//! let logs = Logs::stdout(&log_settings, &identity).expect("one log part per process");
//! let tracing = Tracing::new(&tracing_settings, &identity).expect("one global tracing part per process");
//! let metrics = Metrics::new(&metrics_settings, &identity);
//! logs.count_drops_in(&metrics);
//! telemed_kit::tracing_subscriber::registry()
//!     .with(logs.layer())
//!     .with(tracing.layer().with_filter(log_settings.filter()))
//!     .init();
//!
//! let telemetry = Telemetry::builder(tracing.propagator())
//!     .tracer(tracing.tracer())
//!     .metrics(metrics.clone())
//!     .access_log(logs.access_log())
//!     .build();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .merge(metrics.routes())
//!     .layer(RequestTelemetryLayer::new(telemetry));
//! ```
//!
//! # Cost
//! The request path allocates little and never waits on I/O: the trace context is a task-local, not a tracing
//! span; spans are only created when spans are exported, and only recorded when sampled; log lines are formatted
//! into reused buffers and handed to a writer thread.

pub mod context;
mod json;
pub mod log;
mod request;
pub mod trace;

pub use request::{
    DEFAULT_QUIET_PATHS, RequestTelemetry, RequestTelemetryLayer, ResponseFuture, Telemetry,
    TelemetryBuilder,
};
