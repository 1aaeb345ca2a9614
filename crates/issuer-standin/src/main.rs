//! The issuer stand-in as a process, for local development and for tests that need the issuer as a separate
//! program.
//!
//! Run with: `cargo run -p issuer-standin` (listens on `PORT`, default 8091; `ISSUER_BASE_URL` is the URL
//! clients reach it at, default `http://localhost:<port>`)
//!
//! It is a kit service like any other (configuration, logs, probes, graceful shutdown), serving
//! [`issuer_standin::IssuerStandIn::router`]. It is never part of the container image or the chart: anyone can
//! get any token from it.

use std::process::ExitCode;

use issuer_standin::IssuerStandIn;
use telemed_kit::config::Env;
use telemed_kit::{Service, ServiceSettings};

/// The service under development has 8080 and the key-value store stand-in 8090.
const DEFAULT_PORT: u16 = 8091;

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let mut settings = ServiceSettings::from_env(&env, telemed_kit::service_info!())
        .unwrap_or_else(|error| error.exit());
    if matches!(env.raw("PORT"), Ok(None)) {
        settings.port = DEFAULT_PORT;
    }
    let base_url = env
        .parse_with(
            "ISSUER_BASE_URL",
            "an http(s) URL such as http://localhost:8091",
            |raw| {
                (raw.starts_with("http://") || raw.starts_with("https://")).then(|| raw.to_owned())
            },
        )
        .unwrap_or_else(|error| error.exit())
        .unwrap_or_else(|| format!("http://localhost:{}", settings.port));
    let service = Service::from_settings(settings).unwrap_or_else(|error| error.exit());
    let standin = match IssuerStandIn::new(&base_url) {
        Ok(standin) => standin,
        Err(error) => {
            telemed_kit::tracing::error!(r#type = "alarm", %error, "no signing key");
            return ExitCode::FAILURE;
        }
    };
    service.run(standin.router()).await
}
