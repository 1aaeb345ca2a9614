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
//! - [`config`]: every environment variable, parsed and validated once at startup, before anything binds.
//! - [`http`]: the dual-stack listener and accept loop ([`http::server`]), then the server stack that
//!   [`Service::run`] builds around your router, outermost first:
//!   1. [`shutdown`]: the in-flight count, `Connection: close` once shutdown started, the drain token;
//!   2. [`telemetry`]: B3 trace context in, request id, server span, access log, and [`metrics`];
//!   3. a panic becomes a 500, and every plain-text error becomes [`http::Problem`] JSON;
//!   4. the router: your routes, [`health`]'s `/healthz`, `/readyz`, `/livez`, and `/metrics`.
//! - Your routes call other services through [`http::Client`] (trace context, request id, audit header and
//!   `User-Agent` forwarded), read through a [`cache::Cache`], and keep state in the eHealth [`kvstore`].
//! - [`Service`] wires all of it together and runs the shutdown sequence.
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
pub mod redact;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

mod service;

pub use config::ConfigError;
pub use service::{Service, ServiceError, ServiceSettings};

pub use reqwest;

pub use axum;
pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing;
pub use tracing_opentelemetry;
