//! # telemed-kit
//!
//! A foundation for telemedicine services on the Danish national eHealth Infrastructure (Kubernetes and Istio).
//! It runs an axum [`Router`](axum::Router) the way the platform expects: configuration validated before
//! anything binds, readiness and liveness probes, graceful shutdown inside the 10 s grace period, logs in the
//! eHealth logging model, B3 trace propagation, Prometheus metrics.
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
//! [`Service`] composes the parts below and nothing else. A service that keeps its own `main`, subscriber and
//! server adopts them one at a time instead: each part builds from its own settings and works alone
//! (`docs/adopting.md` walks through it, and [`telemetry`] shows the logs, tracing and request telemetry
//! composed by hand).
//!
//! # Layout
//!
//! At the bottom, used by every part: [`config`] (reading and checking variables; imports nothing of the kit
//! but [`redact`]) and [`redact`] (masking credentials and CPR numbers in every output).
//!
//! Then the parts, in the order a request meets them:
//! - [`http`]: the dual-stack listener and the accept loop ([`http::serve`]), which the shutdown sequence
//!   drains; then the server stack around the router, outermost first:
//!   1. [`shutdown`]'s layer: the in-flight count, `Connection: close` once shutdown started, the drain token;
//!   2. [`telemetry`]'s [`RequestTelemetryLayer`](telemetry::RequestTelemetryLayer): B3 trace context in,
//!      request id, server span, access log, and the request [`metrics`];
//!   3. a panic becomes a 500, and every plain-text error becomes [`http::Problem`] JSON;
//!   4. the router: your routes, [`health`]'s `/healthz`, `/readyz`, `/livez`, and `/metrics`.
//! - [`auth`]: routes that opt in get the caller's verified access token as a typed [`auth::Caller`], and
//!   can require a privilege (401 and 403 problem+json otherwise); the issuer's keys come through
//!   [`http::Client`].
//! - Your routes call other services through [`http::Client`] (trace context, request id, audit header and
//!   `User-Agent` forwarded), read through a [`cache::Cache`], and keep state in the eHealth [`kvstore`].
//! - [`shutdown::Runner`] runs the server through the platform's shutdown sequence and gives the exit code.
//! - [`Service`] wires all of it together; [`ServiceSettings`] reads every part's settings at once.
//! - `testing` (feature `testing`): run a service binary as a real process in tests.
//!
//! No part imports one above it: `config` and `redact` at the bottom; `cache` and `health` on them; `metrics`
//! on `cache`; `shutdown` on `health` and `metrics`; `telemetry` on `metrics` and `shutdown`; `http` on
//! `telemetry` and `shutdown`; `kvstore` and `auth` on `http` (and `auth` on `cache` and `health`); `Service` on
//! all.
//!
//! # Re-exports
//!
//! The crates whose types appear in the kit's public signatures are re-exported, so that a service uses the
//! versions the kit was built with: [`axum`] (whose `axum::body::Bytes` is the `Bytes` of the kit's signatures),
//! [`opentelemetry`], [`opentelemetry_sdk`], [`prometheus_client`], [`reqwest`], [`tracing`],
//! [`tracing_opentelemetry`], [`tracing_subscriber`], and with the `testing` feature `serde_json`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

pub mod auth;
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

/// The Rust blocks of the README and of `docs/`, compiled and run as doctests so that they cannot drift from the
/// API (axum's way: the pages are the doc comments of items that exist only under `cargo test --doc`).
#[cfg(doctest)]
mod pages {
    #[doc = include_str!("../../../README.md")]
    struct Readme;
    #[doc = include_str!("../../../docs/adopting.md")]
    struct AdoptingPage;
    #[doc = include_str!("../../../docs/auth.md")]
    struct AuthPage;
    #[doc = include_str!("../../../docs/architecture.md")]
    struct ArchitecturePage;
    #[doc = include_str!("../../../docs/bad-input.md")]
    struct BadInputPage;
    #[doc = include_str!("../../../docs/cache.md")]
    struct CachePage;
    #[doc = include_str!("../../../docs/configuration.md")]
    struct ConfigurationPage;
    #[doc = include_str!("../../../docs/conformance.md")]
    struct ConformancePage;
    #[doc = include_str!("../../../docs/deploy-ehealth.md")]
    struct DeployEhealthPage;
    #[doc = include_str!("../../../docs/getting-started.md")]
    struct GettingStartedPage;
    #[doc = include_str!("../../../docs/kvstore.md")]
    struct KvstorePage;
    #[doc = include_str!("../../../docs/logging.md")]
    struct LoggingPage;
    #[doc = include_str!("../../../docs/operations.md")]
    struct OperationsPage;
    #[doc = include_str!("../../../docs/performance.md")]
    struct PerformancePage;
    #[doc = include_str!("../../../docs/requirements.md")]
    struct RequirementsPage;
    #[doc = include_str!("../../../docs/tracing.md")]
    struct TracingPage;
    #[doc = include_str!("../../../docs/testing.md")]
    struct TestingPage;
}

pub use config::ConfigError;
pub use service::{Service, ServiceError, ServiceSettings};

pub use axum;
pub use opentelemetry;
pub use opentelemetry_sdk;
pub use prometheus_client;
pub use reqwest;
/// The JSON values the [`testing`] helpers hand out (log lines, response bodies).
#[cfg(feature = "testing")]
pub use serde_json;
pub use tracing;
pub use tracing_opentelemetry;
pub use tracing_subscriber;
