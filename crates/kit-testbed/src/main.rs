//! A kit service with routes that misbehave on purpose: slow, never finishing, blocking the runtime.
//! The lifecycle tests in `tests/` run it as a real process and send it real signals.
//!
//! Run with: `cargo run -p kit-testbed`
//!
//! Test knobs (never set in a deployment):
//! - `TESTBED_STARTUP_DELAY`: a startup task that takes this long (humantime), holding readiness at 503.
//! - `TESTBED_HOOK_DURATION`: a shutdown hook that takes this long.
//! - `TESTBED_STARTUP_FAILS`: the startup task fails after its delay.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use serde::Deserialize;
use telemed_kit::Service;
use telemed_kit::config::Env;

#[derive(Deserialize)]
struct Wait {
    ms: u64,
}

async fn slow(Query(wait): Query<Wait>) -> &'static str {
    tracing::info!(ms = wait.ms, "slow request started");
    tokio::time::sleep(Duration::from_millis(wait.ms)).await;
    "done"
}

async fn hang() -> &'static str {
    tracing::info!("hanging request started");
    std::future::pending().await
}

// Blocks the runtime worker that runs it, as a handler doing blocking I/O by mistake would.
async fn block(Query(wait): Query<Wait>) -> &'static str {
    tracing::info!(ms = wait.ms, "blocking request started");
    std::thread::sleep(Duration::from_millis(wait.ms));
    "unblocked"
}

fn main() -> ExitCode {
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    let env = Env::process();
    let startup_delay = env
        .duration_or("TESTBED_STARTUP_DELAY", Duration::ZERO)
        .unwrap_or_else(|error| error.exit());
    let hook_duration = env
        .duration_or("TESTBED_HOOK_DURATION", Duration::ZERO)
        .unwrap_or_else(|error| error.exit());
    let startup_fails = env
        .bool_or("TESTBED_STARTUP_FAILS", false)
        .unwrap_or_else(|error| error.exit());
    // One worker, so that one blocking request stalls the whole runtime on any machine. With more, a test would
    // need one blocking request per worker, and a worker only picks up the next request while some thread polls
    // the I/O driver: with the first worker blocked and the others parked away from the driver, the next
    // request may never be dispatched.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "could not start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/slow", get(slow))
        .route("/hang", get(hang))
        .route("/block", get(block));
    runtime.block_on(
        service
            .startup_task("warm-up", async move {
                tokio::time::sleep(startup_delay).await;
                if startup_fails {
                    return Err(std::io::Error::other("reference data could not be loaded"));
                }
                Ok(())
            })
            .on_shutdown("testbed-hook", move || async move {
                tokio::time::sleep(hook_duration).await;
            })
            .run(app),
    )
}
