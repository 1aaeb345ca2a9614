//! The key-value store stand-in as a process, for local development and for tests that need the store as a
//! separate program (fault tests against a real peer).
//!
//! Run with: `cargo run -p kvstore-standin` (listens on `PORT`, default 8090)
//!
//! It is a kit service like any other (same configuration, logs, probes and graceful shutdown), serving
//! [`kvstore_standin::router`]; the contract and the test hooks are described there and in
//! `docs/kvstore.md`. It is never part of the container image or the chart: it keeps values in memory, checks
//! no token, and lets anyone inject faults.

use std::process::ExitCode;

use telemed_kit::config::Env;
use telemed_kit::{Service, ServiceSettings};

/// The kit's default port (8080) belongs to the service under development; the stand-in runs beside it.
const DEFAULT_PORT: u16 = 8090;

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let mut settings = ServiceSettings::from_env(&env, telemed_kit::service_info!())
        .unwrap_or_else(|error| error.exit());
    if matches!(env.raw("PORT"), Ok(None)) {
        settings.port = DEFAULT_PORT;
    }
    let service = Service::from_settings(settings).unwrap_or_else(|error| error.exit());
    service.run(kvstore_standin::router()).await
}
