//! Run with: `cargo run -p example-minimal`, then `curl localhost:8080/`
//!
//! The smallest service: one route. The kit adds the rest: configuration checked before anything binds, the
//! probes (`/healthz`, `/livez`), JSON logs on stdout, and a graceful shutdown on SIGTERM inside the 10 s grace
//! period.

use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use telemed_kit::Service;

#[tokio::main]
async fn main() -> ExitCode {
    // A bad variable (`PORT=http`, say) ends the process here with exit code 2 and one line naming it.
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    let app = Router::new().route("/", get(|| async { "hello from telemed-kit\n" }));
    // Serves until SIGTERM, then shuts down in phases; the exit code says whether anything was cut off.
    service.run(app).await
}
