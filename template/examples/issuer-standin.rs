//! Run with: `cargo run --example issuer-standin` (listens on `PORT`, default 8091; its realms are under
//! `http://localhost:<port>/auth/realms/`, so `AUTH_ISSUER=http://localhost:8091/auth/realms/ehealth`)
//!
//! telemed-kit's Keycloak-shaped stand-in for the eHealth token issuer, for local development
//! (scripts/run-local.sh starts it): the issuer's keys, and a token endpoint that hands out tokens for test users
//! of each user type. Never deployed: anyone can get any token from it.

use std::process::ExitCode;

use issuer_standin::IssuerStandIn;
use telemed_kit::config::Env;
use telemed_kit::{Service, ServiceSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::process();
    let mut settings =
        ServiceSettings::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    // The service under development has the kit's default port; the stand-in runs beside it.
    if matches!(env.raw("PORT"), Ok(None)) {
        settings.port = 8091;
    }
    // The tokens' `iss`: the URL the service reaches the stand-in at, which AUTH_ISSUER names.
    let base_url = format!("http://localhost:{}", settings.port);
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
