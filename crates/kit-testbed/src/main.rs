//! A kit service with routes that misbehave on purpose: slow, never finishing, blocking the runtime.
//! The lifecycle tests in `tests/` run it as a real process and send it real signals.
//!
//! Run with: `cargo run -p kit-testbed`
//!
//! Test knobs (never set in a deployment):
//! - `TESTBED_STARTUP_DELAY`: a startup task that takes this long (humantime), holding readiness at 503.
//! - `TESTBED_HOOK_DURATION`: a shutdown hook that takes this long.
//! - `TESTBED_STARTUP_HELD`: the startup task (after its delay) also waits until `GET /startup/release` is called,
//!   so that a test, not the machine's load, decides whether its probes come before startup ends.
//! - `TESTBED_STARTUP_FAILS`: the startup task fails after its delay (and its release, when held).
//! - `TESTBED_UPSTREAM_URL`: the base URL `GET /call` calls once, with the kit's client.
//! - `TESTBED_FAULT`: one rule broken on purpose, for the conformance checker's tests (`tests/conform`):
//!   `liveness-fails`, `plain-stdout` (a line outside the logging model), `leak-requests` (each request's URI
//!   and credentials on stderr), `accept-anything` (no route answers 4xx), and for `GET /call`, which then sends
//!   with a plain client: `b3-single-only`, `b3-multi-only` (the inbound B3 in one form only),
//!   `no-forwarded-headers` (B3 alone), `library-user-agent` (every header, but reqwest's own `User-Agent`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use telemed_kit::Service;
use telemed_kit::config::Env;
use telemed_kit::http::Client;
use tokio::sync::Notify;

/// The values `TESTBED_FAULT` takes.
const FAULTS: [&str; 8] = [
    "liveness-fails",
    "plain-stdout",
    "leak-requests",
    "accept-anything",
    "b3-single-only",
    "b3-multi-only",
    "no-forwarded-headers",
    "library-user-agent",
];

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

/// What `GET /call` needs: where to call, and how.
#[derive(Clone)]
struct Upstream {
    url: Option<String>,
    client: Client,
    fault: Option<String>,
}

/// The inbound headers a plain client copies onto its call for a `TESTBED_FAULT` that breaks propagation.
fn copied_headers(fault: &str, inbound: &HeaderMap) -> Vec<(String, String)> {
    let b3_multi = [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    ];
    let others = [
        "x-request-id",
        "x-ot-span-context",
        "traceparent",
        "tracestate",
        "x-audit-restriction-levels",
    ];
    let wanted = |name: &str| match fault {
        "b3-single-only" => name == "b3" || others.contains(&name),
        "b3-multi-only" => b3_multi.contains(&name) || others.contains(&name),
        "no-forwarded-headers" => name == "b3" || b3_multi.contains(&name),
        _ => name == "b3" || b3_multi.contains(&name) || others.contains(&name),
    };
    inbound
        .iter()
        .filter(|(name, _)| wanted(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

async fn call(State(upstream): State<Upstream>, inbound: HeaderMap) -> Result<String, StatusCode> {
    let url = upstream.url.ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    let sent = match upstream.fault.as_deref() {
        Some(fault @ ("b3-single-only" | "b3-multi-only" | "no-forwarded-headers")) => {
            let mut request = telemed_kit::reqwest::Client::new()
                .get(&url)
                .header("user-agent", "kit-testbed/0.1.0");
            for (name, value) in copied_headers(fault, &inbound) {
                request = request.header(name, value);
            }
            request.send().await.map_err(|_| StatusCode::BAD_GATEWAY)?
        }
        Some("library-user-agent") => {
            let mut request = telemed_kit::reqwest::Client::new()
                .get(&url)
                .header("user-agent", "reqwest/0.13");
            for (name, value) in copied_headers("", &inbound) {
                request = request.header(name, value);
            }
            request.send().await.map_err(|_| StatusCode::BAD_GATEWAY)?
        }
        _ => upstream
            .client
            .get(&url)
            .send()
            .await
            .map_err(|_| StatusCode::BAD_GATEWAY)?,
    };
    Ok(format!("upstream answered {}", sent.status()))
}

/// `leak-requests`: what a careless access log writes, credentials and all.
async fn leak(request: Request, next: Next) -> Response {
    let credentials = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    eprintln!("request {} {credentials}", request.uri());
    next.run(request).await
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
    let startup_held = env
        .bool_or("TESTBED_STARTUP_HELD", false)
        .unwrap_or_else(|error| error.exit());
    let startup_fails = env
        .bool_or("TESTBED_STARTUP_FAILS", false)
        .unwrap_or_else(|error| error.exit());
    let upstream_url = env
        .parse_with("TESTBED_UPSTREAM_URL", "an http(s) base URL", |raw| {
            raw.starts_with("http").then(|| raw.to_owned())
        })
        .unwrap_or_else(|error| error.exit());
    let fault = env
        .parse_with(
            "TESTBED_FAULT",
            "a fault named in the testbed's docs",
            |raw| FAULTS.contains(&raw).then(|| raw.to_owned()),
        )
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
    let upstream = Upstream {
        url: upstream_url,
        client: service.client(),
        fault: fault.clone(),
    };
    // A permit stored by `notify_one`: a release that comes before the task waits is not lost.
    let release = Arc::new(Notify::new());
    let released = Arc::clone(&release);
    let mut app = Router::new()
        .route(
            "/startup/release",
            get(move || async move {
                release.notify_one();
                "released"
            }),
        )
        .route("/slow", get(slow))
        .route("/hang", get(hang))
        .route("/block", get(block))
        .route("/call", get(call).with_state(upstream));
    let mut service = service;
    match fault.as_deref() {
        Some("liveness-fails") => service = service.liveness_check("always-failing", || false),
        Some("plain-stdout") => println!("started (a plain line, outside the logging model)"),
        Some("leak-requests") => app = app.layer(middleware::from_fn(leak)),
        Some("accept-anything") => app = app.fallback(|| async { "accepted" }),
        _ => {}
    }
    runtime.block_on(
        service
            .startup_task("warm-up", async move {
                tokio::time::sleep(startup_delay).await;
                if startup_held {
                    released.notified().await;
                }
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
