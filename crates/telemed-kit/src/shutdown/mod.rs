//! Graceful shutdown inside the platform's grace period.
//!
//! Kubernetes sends SIGTERM to PID 1 and kills the container `terminationGracePeriodSeconds` later (10 s on the
//! eHealth platform). The service must stop without failing a single request, so shutdown runs in phases inside
//! one budget, `SHUTDOWN_GRACE_PERIOD`:
//!
//! ```text
//! signal        +delay               drain deadline   hooks deadline   deadline      grace
//!   |  ready=503  |  stop accepting,   |  shutdown       |  flush        |  margin     |
//!   |  still      |  wait for          |  hooks          |  telemetry    |  500 ms     |  SIGKILL
//!   |  serving    |  in-flight         |                 |               |             |
//! ```
//!
//! 1. Readiness turns 503 at once, but everything, new connections included, is still served for
//!    `SHUTDOWN_DELAY`, until the endpoints controller and the Istio proxies have stopped routing here.
//!    HTTP/1.1 responses carry `Connection: close` so that keep-alive clients reconnect elsewhere.
//! 2. Stop accepting, tell every connection to finish (HTTP/2 gets a GOAWAY), wait for in-flight requests.
//! 3. Run the shutdown hooks, each bounded, and flush telemetry, bounded.
//! 4. Exit 0, or 1 with one line saying how many requests were cut off.
//!
//! The deadline (grace period minus [`DEADLINE_MARGIN`]) is enforced by a watchdog on a plain OS thread, and
//! the signals themselves are received on a plain OS thread: both keep working when every runtime worker is
//! blocked (a handler calling `std::thread::sleep`, a stuck `spawn_blocking`). A second signal exits at once.
//!
//! Handlers of long-lived responses (streams, long polls) take a [`ShutdownToken`] (an extractor) and end when
//! it is cancelled, which happens when draining starts.
//!
//! # Layout
//! - [`ShutdownSettings`] and [`Timeline`]: the two variables and the phase boundaries they give.
//! - [`Shutdown`]: the shared state (started, draining, requests in flight, connections open), the signal
//!   thread and the watchdog.
//! - [`ShutdownLayer`]: the middleware that counts requests, says `Connection: close` once shutdown started,
//!   and makes [`ShutdownToken`] work.
//! - [`Runner`]: the sequence itself, wrapped around a server in `main`; [`Service`](crate::Service) runs it,
//!   and a service with a `main` of its own runs it the same way.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use telemed_kit::shutdown::ShutdownToken;
//!
//! async fn long_poll(token: ShutdownToken) -> &'static str {
//!     tokio::select! {
//!         _ = token.cancelled() => "shutting down, poll again elsewhere",
//!         _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => "nothing new",
//!     }
//! }
//!
//! let app: Router = Router::new().route("/poll", get(long_poll));
//! ```

mod layer;
mod runner;
mod settings;
mod state;
mod token;

pub use layer::{ShutdownFuture, ShutdownLayer, ShutdownService};
pub use runner::{Flush, Runner};
pub use settings::{
    DEADLINE_MARGIN, HOOKS_AND_FLUSH_RESERVE, MAX_GRACE_PERIOD, MIN_DRAIN, ShutdownSettings,
    Timeline,
};
pub use state::{ConnectionGuard, Shutdown, SignalError, Trigger};
pub use token::{MissingShutdownToken, ShutdownToken};
