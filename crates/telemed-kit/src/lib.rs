//! # telemed-kit
//!
//! A foundation for telemedicine services on the Danish national eHealth Infrastructure (Kubernetes and Istio).
//! It runs an axum [`Router`](axum::Router) the way the platform expects: configuration validated before
//! anything binds, readiness and liveness probes, graceful shutdown inside the 10 s grace period, logs in the
//! eHealth logging model.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let service = telemed_kit::Service::from_env(telemed_kit::service_info!())
//!         .unwrap_or_else(|error| error.exit());
//!     service.run(Router::new().route("/", get(|| async { "hello" }))).await
//! }
//! ```
//!
//! # Layout
//!
//! In the order a request meets them:
//! - [`config`]: every environment variable, parsed and validated once at startup.
//! - [`http`]: the listener and the server stack.
//! - [`shutdown`]: signals, the in-flight count, `Connection: close` after the signal, the phases and the watchdog.
//! - [`telemetry`]: trace context in, request id, access log; logs, redaction, propagation and export.
//! - [`health`]: `/healthz`, `/readyz` and `/livez`, answered from background results.
//! - your routes, which call other services through [`http::Client`], read through a [`cache::Cache`], and
//!   keep state in the eHealth [`kvstore`].
//! - [`metrics`]: Prometheus metrics recorded along the way, served at `/metrics`.
//! - [`Service`] wires them together.
//! - `testing` (feature `testing`): run a service binary as a real process in tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

pub mod cache;
pub mod config;
pub mod health;
pub mod http;
pub mod kvstore;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

mod service;

pub use config::ConfigError;
pub use service::{Service, ServiceError};

pub use reqwest;

pub use axum;
pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing;
pub use tracing_opentelemetry;
