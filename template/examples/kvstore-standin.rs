//! Run with: `cargo run --example kvstore-standin` (listens on `PORT`, default 8090)
//!
//! telemed-kit's in-memory stand-in for the eHealth key-value store, for local development (scripts/run-local.sh
//! starts it). Never deployed: it keeps values in memory and checks no token.

use std::process::ExitCode;

use telemed_kit::config::Env;
use telemed_kit::{Service, ServiceSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let mut settings =
        ServiceSettings::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    // The service under development has the kit's default port; the stand-in runs beside it.
    if matches!(env.raw("PORT"), Ok(None)) {
        settings.port = 8090;
    }
    let service = Service::from_settings(settings).unwrap_or_else(|error| error.exit());
    service.run(kvstore_standin::router()).await
}
