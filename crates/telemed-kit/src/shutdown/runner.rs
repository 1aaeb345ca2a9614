//! [`Runner`]: the phased shutdown sequence, wrapped around a server.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::FusedFuture as _;
use tokio::time::{sleep_until, timeout_at};

use super::state::Shutdown;
use crate::health::{CheckError, Health};
use crate::metrics::Metrics;

/// Something the sequence writes out before the process exits: the log queue, the span exporter.
///
/// [`LogGuard`](crate::telemetry::log::LogGuard) and [`Tracing`](crate::telemetry::trace::Tracing) implement it.
/// The watchdog calls it from its own thread, with the async runtime perhaps blocked: an implementation must
/// not need the runtime.
pub trait Flush: Send + Sync + 'static {
    /// Writes out what is buffered, waiting at most `timeout`; `true` when everything went out.
    fn flush(&self, timeout: Duration) -> bool;
}

/// What the watchdog gives the flush when it ends the process at the deadline: half of the
/// [`DEADLINE_MARGIN`](super::DEADLINE_MARGIN), so that the process is gone before the platform's SIGKILL.
const DEADLINE_FLUSH_BUDGET: Duration = Duration::from_millis(250);

type HookFn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type StartupTask = (
    Cow<'static, str>,
    Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>,
);

/// Runs a server through the platform's shutdown sequence, from the first request to the exit code.
///
/// [`Runner::run`] installs the SIGTERM and SIGINT handlers (with the watchdog that ends the process at the
/// deadline on an OS thread of its own, even with every runtime worker blocked), starts the readiness checks,
/// the heartbeat and the startup tasks, serves until the first signal, and then, inside
/// `SHUTDOWN_GRACE_PERIOD`:
/// 1. readiness turns 503 at once, and the server still serves everything, new connections included, for
///    `SHUTDOWN_DELAY` (responses to HTTP/1.1 say `Connection: close` under [`Shutdown::layer`]);
/// 2. draining starts ([`Shutdown::drain_signal`], every [`ShutdownToken`](super::ShutdownToken)): the server
///    stops accepting and finishes its connections; the runner waits for that until the drain deadline;
/// 3. the shutdown hooks run, bounded; then each [`Flush`] target, bounded;
/// 4. the exit code: 0 when nothing was cut off, 1 otherwise or after a failed startup task; a second signal
///    ends the process at once with 128 plus its number.
///
/// Each phase logs one line (`phase` = `readiness_off`, `drain`, `hooks`, `flush`, `exit`), and with
/// [`Runner::metrics`] their durations and the requests cut off are on `/metrics`.
///
/// # Around the kit's `serve` or plain `axum::serve`
///
/// The runner takes any future that serves until [`Shutdown::drain_signal`] fires and then completes once its
/// connections are finished. Two such servers:
/// - [`http::serve`](crate::http::serve) (recommended): the kit's accept loop. Besides the sequence, it bounds
///   how long a client may take to send its request head (10 s) and its first bytes, limits request heads to
///   64 KiB, and counts its open connections, so that a response still being delivered at the drain deadline
///   counts as cut off.
/// - `axum::serve(listener, app).with_graceful_shutdown(shutdown.drain_signal())`: axum accepts until its
///   shutdown future completes, so given the drain signal (not the SIGTERM itself, as axum's examples do) it
///   keeps serving new connections through the delay, then closes idle connections and waits for the rest.
///   What it cannot give: the head-read and first-bytes time limits (a client that connects and stalls holds
///   its connection), and a count of its connections: a response still being written at the drain deadline is
///   not seen as cut off, only handlers still running under [`Shutdown::layer`] are. Its connection tasks also
///   outlive the runner's wait, until the process exits.
///
/// # Example
///
/// An existing `main` keeps its router and wraps its server:
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use telemed_kit::config::Env;
/// use telemed_kit::health::{HealthBuilder, HealthSettings};
/// use telemed_kit::shutdown::{Runner, Shutdown, ShutdownSettings};
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let env = Env::process();
///     let shutdown = Shutdown::new(ShutdownSettings::from_env(&env).unwrap_or_else(|e| e.exit()));
///     let health = HealthBuilder::default().build(HealthSettings::from_env(&env).unwrap_or_else(|e| e.exit()));
///     let app = Router::new()
///         .route("/", get(|| async { "hello" }))
///         .merge(health.routes())
///         .layer(shutdown.layer());
///     let listener = telemed_kit::http::bind(8080).expect("port 8080 is free");
///     Runner::new(&shutdown)
///         .readiness(&health)
///         .on_shutdown("goodbye", || async { tracing::info!("bye") })
///         .run(telemed_kit::http::serve(listener, app, &shutdown))
///         .await
/// }
/// ```
#[must_use = "the runner does nothing until run is awaited"]
pub struct Runner {
    shutdown: Shutdown,
    health: Option<Health>,
    metrics: Option<Metrics>,
    startup: Vec<StartupTask>,
    hooks: Vec<(Cow<'static, str>, HookFn)>,
    flush: Vec<Arc<dyn Flush>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("shutdown", &self.shutdown)
            .field("startup_tasks", &self.startup.len())
            .field("hooks", &self.hooks.len())
            .field("flush", &self.flush.len())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner for `shutdown`, with nothing to report to yet.
    pub fn new(shutdown: &Shutdown) -> Self {
        Self {
            shutdown: shutdown.clone(),
            health: None,
            metrics: None,
            startup: Vec::new(),
            hooks: Vec::new(),
            flush: Vec::new(),
        }
    }

    /// Readiness to turn 503 at the first signal. [`Runner::run`] also starts its checks and heartbeat
    /// ([`Health::spawn`]): do not spawn them yourself.
    pub fn readiness(mut self, health: &Health) -> Self {
        self.health = Some(health.clone());
        self
    }

    /// Where to record how long each phase took and how many requests were cut off.
    pub fn metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Adds a startup task: readiness stays 503 until it finishes (with [`Runner::readiness`]). If it fails,
    /// the service logs an alarm and shuts down with exit code 1, so that the platform restarts it.
    pub fn startup_task<Fut, E>(mut self, name: impl Into<Cow<'static, str>>, task: Fut) -> Self
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<CheckError>,
    {
        self.startup.push((
            name.into(),
            Box::pin(async move { task.await.map_err(Into::into) }),
        ));
        self
    }

    /// Adds a shutdown hook, run after draining and bounded by what is left of the grace period.
    pub fn on_shutdown<F, Fut>(mut self, name: impl Into<Cow<'static, str>>, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .push((name.into(), Box::new(move || Box::pin(hook()))));
        self
    }

    /// Adds something to write out before the exit, in the order added: each but the last gets half of the
    /// time left, the last all of it. Add the log guard last, so that the lines the others log get written too.
    pub fn flush(mut self, target: impl Flush) -> Self {
        self.flush.push(Arc::new(target));
        self
    }

    /// Serves with `server` until shutdown completes, and returns the exit code (see [`Runner`]).
    ///
    /// `server` must keep serving until [`Shutdown::drain_signal`] fires and then complete once its connections
    /// are finished. Should it end on its own, shutdown starts as if signalled.
    pub async fn run<F: IntoFuture>(self, server: F) -> ExitCode {
        let Self {
            shutdown,
            health,
            metrics,
            startup,
            hooks,
            flush,
        } = self;
        let flush: Arc<[Arc<dyn Flush>]> = flush.into();
        let watchdog_flush = Arc::clone(&flush);
        if let Err(error) = shutdown.install_signal_handlers(
            move |cut_off| {
                tracing::error!(
                    r#type = "alarm",
                    requests_cut_off = cut_off,
                    "shutdown deadline reached: {cut_off} requests cut off, exiting"
                );
                flush_all(&watchdog_flush, Instant::now() + DEADLINE_FLUSH_BUDGET);
                std::process::exit(1);
            },
            |trigger| {
                tracing::warn!(signal = trigger.as_str(), "second signal: exiting at once");
                std::process::exit(128 + trigger.signal_number());
            },
        ) {
            tracing::error!(r#type = "alarm", %error, "could not install signal handlers");
            return ExitCode::FAILURE;
        }
        // Dropped when the runner returns, which stops the heartbeat and the check runners.
        let _health_tasks = health.as_ref().map(Health::spawn);
        for (name, task) in startup {
            spawn_startup_task(&shutdown, health.as_ref(), name, task);
        }

        let (started, timeline, drain_started, drained) = {
            let serving = server.into_future().fuse();
            tokio::pin!(serving);
            let (started, trigger) = tokio::select! {
                started = shutdown.started() => started,
                _ = &mut serving => {
                    shutdown.trigger();
                    shutdown.started().await
                }
            };
            let timeline = shutdown.settings().timeline(started);
            if let Some(health) = &health {
                health.set_shutting_down();
            }
            tracing::info!(
                phase = "readiness_off",
                signal = trigger.as_str(),
                elapsed_ms = elapsed_ms(started),
                in_flight = shutdown.in_flight(),
                "shutdown started: readiness is 503, still serving for {}",
                humantime::format_duration(shutdown.settings().delay)
            );
            tokio::select! {
                () = sleep_until(timeline.drain_start.into()) => {}
                _ = &mut serving => {}
            }
            // Measured, not planned: a runtime blocked past `drain_start` starts draining late, and the delay
            // metric says so.
            let drain_started = Instant::now();
            shutdown.begin_drain();
            tracing::info!(
                phase = "drain",
                elapsed_ms = elapsed_ms(started),
                in_flight = shutdown.in_flight(),
                "stopped accepting: waiting for in-flight requests"
            );
            let drained = timeout_at(timeline.drain_deadline.into(), async {
                // A server that ended before would never complete again.
                if !serving.is_terminated() {
                    (&mut serving).await;
                }
                shutdown.all_connections_closed().await;
            })
            .await
            .is_ok();
            (started, timeline, drain_started, drained)
        };
        let hooks_started = Instant::now();
        if let Some(metrics) = &metrics {
            metrics.shutdown_phase("delay", drain_started.saturating_duration_since(started));
            metrics.shutdown_phase(
                "drain",
                hooks_started.saturating_duration_since(drain_started),
            );
            // Known now, and scraped while the hooks run; the count after the hooks replaces it below.
            metrics.requests_cut_off(shutdown.in_flight().max(shutdown.open_connections()));
        }

        tracing::info!(
            phase = "hooks",
            elapsed_ms = elapsed_ms(started),
            in_flight = shutdown.in_flight(),
            drained,
            "running {} shutdown hooks",
            hooks.len()
        );
        let hooks_finished = run_hooks(hooks, timeline.hooks_deadline).await;
        // A handler still running, or a response still being delivered on a connection that did not close.
        let cut_off = shutdown.in_flight().max(shutdown.open_connections());
        if let Some(metrics) = &metrics {
            metrics.shutdown_phase("hooks", hooks_started.elapsed());
            metrics.requests_cut_off(cut_off);
        }
        tracing::info!(
            phase = "flush",
            elapsed_ms = elapsed_ms(started),
            in_flight = cut_off,
            "flushing telemetry"
        );
        let exit = if shutdown.has_failed() {
            tracing::error!(
                phase = "exit",
                elapsed_ms = elapsed_ms(started),
                "exiting after a failed startup task"
            );
            ExitCode::FAILURE
        } else if cut_off == 0 && hooks_finished {
            tracing::info!(
                phase = "exit",
                elapsed_ms = elapsed_ms(started),
                "shutdown complete"
            );
            ExitCode::SUCCESS
        } else {
            tracing::error!(
                r#type = "alarm",
                phase = "exit",
                elapsed_ms = elapsed_ms(started),
                requests_cut_off = cut_off,
                hooks_finished,
                "shutdown deadline reached: {cut_off} requests cut off, exiting"
            );
            ExitCode::FAILURE
        };
        if !flush_all(&flush, timeline.deadline) {
            // Said on stderr: the log may be what could not be flushed.
            eprintln!("telemetry not fully flushed before the shutdown deadline");
        }
        exit
    }
}

/// Flushes each target in order, each but the last with half of the time left to `deadline`.
fn flush_all(targets: &[Arc<dyn Flush>], deadline: Instant) -> bool {
    let mut all = true;
    for (index, target) in targets.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = if index + 1 == targets.len() {
            left
        } else {
            left / 2
        };
        all &= target.flush(budget);
    }
    all
}

fn spawn_startup_task(
    shutdown: &Shutdown,
    health: Option<&Health>,
    name: Cow<'static, str>,
    task: Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>,
) {
    let guard = health.map(Health::startup_guard);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        match task.await {
            Ok(()) => tracing::info!(
                task = &*name,
                duration_ms = elapsed_ms(started),
                "startup task finished"
            ),
            Err(error) => {
                tracing::error!(
                    r#type = "alarm",
                    task = &*name,
                    error = %crate::redact::redact(&error.to_string()),
                    "startup task failed: shutting down"
                );
                shutdown.fail();
            }
        }
        drop(guard);
    });
}

async fn run_hooks(hooks: Vec<(Cow<'static, str>, HookFn)>, deadline: Instant) -> bool {
    let mut running = tokio::task::JoinSet::new();
    for (name, hook) in hooks {
        let future = hook();
        running.spawn(async move {
            let started = Instant::now();
            future.await;
            tracing::info!(
                hook = &*name,
                duration_ms = elapsed_ms(started),
                "shutdown hook finished"
            );
        });
    }
    let all = async { while running.join_next().await.is_some() {} };
    let finished = timeout_at(deadline.into(), all).await.is_ok();
    if !finished {
        tracing::error!(
            r#type = "alarm",
            still_running = running.len(),
            "shutdown hooks cut off at their deadline"
        );
    }
    finished
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
