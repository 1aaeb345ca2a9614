//! The entry point: configuration, probes, server and shutdown wired together.

mod settings;

pub use settings::ServiceSettings;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::time::{sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env, ServiceInfo};
use crate::health::{Check, CheckError, HealthBuilder};
use crate::http::server::{BodyReadTimeoutLayer, OpenConnections};
use crate::http::{Client, Problem};
use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, Trigger};
use crate::telemetry::{self, TelemetryGuard};
use crate::telemetry::{RequestTelemetryLayer, TelemetryError};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

type HookFn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type StartupTask = (
    Cow<'static, str>,
    Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>,
);

/// A service in production shape: validated configuration, probes, graceful shutdown.
///
/// # Example
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use telemed_kit::Service;
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let service = Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
///     let app = Router::new().route("/", get(|| async { "hello" }));
///     service
///         .readiness_check("database", || async { Ok::<_, std::io::Error>(()) })
///         .on_shutdown("goodbye", || async { tracing::info!("bye") })
///         .run(app)
///         .await
/// }
/// ```
///
/// # Exit codes
/// - 0: shutdown finished inside the grace period, nothing cut off.
/// - 1: requests or hooks were still running at the deadline, a startup task failed, or the port could not
///   be bound.
/// - 2: invalid configuration (from [`ConfigError::exit`]).
/// - 128 + signal number: a second SIGTERM or SIGINT ended the process at once.
pub struct Service {
    settings: ServiceSettings,
    client: Client,
    telemetry: TelemetryGuard,
    health: HealthBuilder,
    startup: Vec<StartupTask>,
    hooks: Vec<(Cow<'static, str>, HookFn)>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Reads and validates the configuration from the process environment and installs logging.
    ///
    /// Nothing is bound yet. Pass [`service_info!()`](crate::service_info).
    pub fn from_env(info: ServiceInfo) -> Result<Self, ServiceError> {
        Self::from_settings(ServiceSettings::from_env(&Env::process(), info)?)
    }

    /// Like [`Service::from_env`], with settings already read.
    pub fn from_settings(settings: ServiceSettings) -> Result<Self, ServiceError> {
        let metrics = Metrics::new(&settings.metrics, &settings.service);
        let telemetry = telemetry::init(&settings.telemetry, &settings.service, metrics)?;
        let client = Client::new(settings.client.clone(), telemetry.telemetry().clone());
        Ok(Self {
            settings,
            client,
            telemetry,
            health: HealthBuilder::default(),
            startup: Vec::new(),
            hooks: Vec::new(),
        })
    }

    /// The validated settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The outbound HTTP client, propagating this service's trace context and headers. Cheap to clone.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Adds a required readiness check, run in the background; see [`Check`] for options.
    pub fn readiness_check<F, Fut, E>(self, name: impl Into<Cow<'static, str>>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<CheckError>,
    {
        self.check(Check::new(name, check))
    }

    /// Adds a readiness check built with [`Check`] (optional, own interval or timeout).
    pub fn check(mut self, check: Check) -> Self {
        self.health.readiness_check(check);
        self
    }

    /// Adds a liveness check: a fast function of the process's own state, never of another system.
    pub fn liveness_check(
        mut self,
        name: impl Into<Cow<'static, str>>,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        self.health.liveness_check(name, check);
        self
    }

    /// Adds a startup task: readiness stays 503 until it finishes. If it fails, the service logs an alarm and
    /// shuts down with exit code 1, so that the platform restarts it.
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

    /// Binds `PORT`, serves `app` and the probes, and runs until shutdown completes.
    pub async fn run(self, app: Router) -> ExitCode {
        let Self {
            settings,
            client: _,
            telemetry,
            health,
            startup,
            hooks,
        } = self;
        let shutdown = Shutdown::new(settings.shutdown.clone());
        let flush_budget = crate::shutdown::HOOKS_AND_FLUSH_RESERVE / 2;
        let watchdog_flush = telemetry.flusher();
        if let Err(error) = shutdown.install_signal_handlers(
            move |cut_off| {
                tracing::error!(
                    r#type = "alarm",
                    requests_cut_off = cut_off,
                    "shutdown deadline reached: {cut_off} requests cut off, exiting"
                );
                watchdog_flush.flush(flush_budget);
                std::process::exit(1);
            },
            |trigger| {
                tracing::warn!(signal = trigger.as_str(), "second signal: exiting at once");
                std::process::exit(128 + signal_number(trigger));
            },
        ) {
            tracing::error!(r#type = "alarm", %error, "could not install signal handlers");
            return ExitCode::FAILURE;
        }

        let listener = match crate::http::server::bind(settings.port) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(r#type = "alarm", port = settings.port, %error, "could not bind the port");
                return ExitCode::FAILURE;
            }
        };
        let health = health.build(settings.health.clone());
        let _health_tasks = health.spawn();
        let startup_failed = Arc::new(AtomicBool::new(false));
        for (name, task) in startup {
            let guard = health.startup_guard();
            let shutdown = shutdown.clone();
            let failed = startup_failed.clone();
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
                        failed.store(true, Ordering::Release);
                        shutdown.trigger();
                    }
                }
                drop(guard);
            });
        }

        let metrics = telemetry.telemetry().metrics().clone();
        let app = match settings.metrics.port {
            None => app.merge(metrics.routes()),
            Some(port) => match crate::http::server::bind(port) {
                Ok(listener) => {
                    // A plain server: the metrics port carries no application traffic, so it needs neither the
                    // request layer nor a drain; it ends with the process.
                    tokio::spawn(axum::serve(listener, metrics.routes()).into_future());
                    app
                }
                Err(error) => {
                    tracing::error!(r#type = "alarm", port, %error, "could not bind METRICS_PORT");
                    return ExitCode::FAILURE;
                }
            },
        };
        // Outermost first: the in-flight count covers everything; a panic becomes a 500 that the access log
        // sees. The request layer needs the matched route, so the stack sits inside the router, as one layer:
        // axum boxes each `Router::layer` separately and clones every box on every request.
        let app = app.merge(health.routes()).layer(
            ServiceBuilder::new()
                .layer(shutdown.layer())
                .layer(RequestTelemetryLayer::new(telemetry.telemetry().clone()))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(BodyReadTimeoutLayer)
                .map_response(crate::http::problem::problem_for_plain_errors),
        );
        let stop_accepting = CancellationToken::new();
        let graceful = GracefulShutdown::new();
        let connections = OpenConnections::default();
        tracing::info!(
            port = settings.port,
            service = %settings.service.name,
            version = %settings.service.version,
            shutdown_grace_period_ms = millis(settings.shutdown.grace_period),
            shutdown_delay_ms = millis(settings.shutdown.delay),
            "listening"
        );
        // The accept loop borrows `graceful`; it must be gone before `graceful.shutdown()` consumes it.
        let (started, timeline) = {
            let serving = crate::http::server::serve(
                listener,
                app,
                stop_accepting.clone(),
                &graceful,
                &connections,
            );
            tokio::pin!(serving);
            let (started, trigger) = tokio::select! {
                started = shutdown.started() => started,
                // The accept loop only ends when asked to; should it end early, shut down cleanly.
                () = &mut serving => (Instant::now(), Trigger::Internal),
            };
            let timeline = settings.shutdown.timeline(started);

            health.set_shutting_down();
            tracing::info!(
                phase = "readiness_off",
                signal = trigger.as_str(),
                elapsed_ms = elapsed_ms(started),
                in_flight = shutdown.in_flight(),
                "shutdown started: readiness is 503, still serving for {}",
                humantime::format_duration(settings.shutdown.delay)
            );
            tokio::select! {
                () = sleep_until(timeline.drain_start.into()) => {}
                () = &mut serving => {}
            }

            stop_accepting.cancel();
            serving.await;
            (started, timeline)
        };
        shutdown.begin_drain();
        tracing::info!(
            phase = "drain",
            elapsed_ms = elapsed_ms(started),
            in_flight = shutdown.in_flight(),
            "stopped accepting: waiting for in-flight requests"
        );
        let drained = timeout_at(timeline.drain_deadline.into(), async {
            graceful.shutdown().await;
            connections.all_closed().await;
        })
        .await
        .is_ok();
        let hooks_started = Instant::now();
        metrics.shutdown_phase("delay", timeline.drain_start - started);
        metrics.shutdown_phase(
            "drain",
            hooks_started.saturating_duration_since(timeline.drain_start),
        );

        tracing::info!(
            phase = "hooks",
            elapsed_ms = elapsed_ms(started),
            in_flight = shutdown.in_flight(),
            drained,
            "running {} shutdown hooks",
            hooks.len()
        );
        let hooks_finished = run_hooks(hooks, timeline.hooks_deadline).await;
        metrics.shutdown_phase("hooks", hooks_started.elapsed());

        // A handler still running, or a response still being delivered on a connection that did not close.
        let cut_off = shutdown.in_flight().max(connections.count());
        metrics.requests_cut_off(cut_off);
        tracing::info!(
            phase = "flush",
            elapsed_ms = elapsed_ms(started),
            in_flight = cut_off,
            "flushing telemetry"
        );
        let exit = if startup_failed.load(Ordering::Acquire) {
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
        if !telemetry.flush(timeline.deadline.saturating_duration_since(Instant::now())) {
            tracing::warn!(
                phase = "flush",
                "telemetry not fully flushed before the deadline"
            );
        }
        exit
    }
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

/// Why a service could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A configuration variable is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Logging or tracing could not be installed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

impl ServiceError {
    /// Reports the error as one line on stdout and ends the process with exit code 2.
    pub fn exit(&self) -> ! {
        crate::config::exit_misconfigured(self)
    }
}

// The panic hook has already logged the panic (as `critical`, with the trace id); the client learns nothing.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    Problem::new(http::StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

fn elapsed_ms(since: Instant) -> u64 {
    millis(since.elapsed())
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn signal_number(trigger: Trigger) -> i32 {
    match trigger {
        Trigger::Sigint => 2,
        _ => 15,
    }
}
