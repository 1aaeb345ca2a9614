//! The entry point: configuration, probes, server and shutdown wired together.
//!
//! [`Service`] composes the kit's public parts and nothing else: a service with a `main` of its own composes the
//! same parts by hand (`docs/adopting.md`), and gets the same behaviour.

mod settings;

pub use settings::ServiceSettings;

use std::borrow::Cow;
use std::future::Future;
use std::process::ExitCode;

use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{Auth, AuthLayer};
use crate::config::{ConfigError, Env, ServiceInfo};
use crate::health::{Check, CheckError, HealthBuilder};
use crate::http::{BodyReadTimeoutLayer, Client, panic_response, problem_for_plain_errors};
use crate::metrics::Metrics;
use crate::shutdown::{Runner, Shutdown};
use crate::telemetry::log::{LogError, Logs, install_panic_hook};
use crate::telemetry::trace::{Tracing, TracingError};
use crate::telemetry::{RequestTelemetryLayer, Telemetry};

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
/// # What it composes
///
/// [`Service::from_env`] reads [`ServiceSettings`], builds the log part ([`Logs`]) and the tracing part
/// ([`Tracing`]), installs them as the global `tracing` subscriber with the panic hook, and builds the
/// [`Telemetry`] the request layer and the outbound [`Client`] share. [`Service::run`] binds `PORT`
/// ([`http::bind`](crate::http::bind)), wraps the router in the server stack, and serves it with
/// [`http::serve`](crate::http::serve) under a shutdown [`Runner`]. The server stack, outermost first:
/// [`Shutdown::layer`], [`RequestTelemetryLayer`], a panic catcher answering [`panic_response`],
/// [`BodyReadTimeoutLayer`], the [`AuthLayer`] given to [`Service::auth`] if any, and
/// [`problem_for_plain_errors`].
///
/// # Exit codes
/// - 0: shutdown finished inside the grace period, nothing cut off.
/// - 1: requests or hooks were still running at the deadline, a startup task failed, or the port could not
///   be bound.
/// - 2: invalid configuration (from [`ConfigError::exit`]).
/// - 128 + signal number: a second SIGTERM or SIGINT ended the process at once.
pub struct Service {
    settings: ServiceSettings,
    logs: Logs,
    tracing: Tracing,
    metrics: Metrics,
    telemetry: Telemetry,
    client: Client,
    shutdown: Shutdown,
    health: HealthBuilder,
    runner: Runner,
    auth: Option<Auth>,
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
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;

        let logs = Logs::stdout(&settings.log, &settings.service)?;
        let tracing = Tracing::new(&settings.tracing, &settings.service)?;
        tracing_subscriber::registry()
            .with(logs.layer())
            .with(tracing.layer().with_filter(settings.log.filter()))
            .try_init()
            .map_err(|_| ServiceError::SubscriberInstalled)?;
        install_panic_hook();
        let metrics = Metrics::new(&settings.metrics, &settings.service);
        logs.count_drops_in(&metrics);
        tracing.count_drops_in(&metrics);
        let telemetry = Telemetry::builder(tracing.propagator())
            .tracer(tracing.tracer())
            .metrics(metrics.clone())
            .access_log(logs.access_log())
            .build();
        let client = Client::new(settings.client.clone(), telemetry.clone());
        let shutdown = Shutdown::new(settings.shutdown.clone());
        let runner = Runner::new(&shutdown);
        Ok(Self {
            settings,
            logs,
            tracing,
            metrics,
            telemetry,
            client,
            shutdown,
            health: HealthBuilder::default(),
            runner,
            auth: None,
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

    /// The metrics served at `/metrics`, for metrics of the service's own ([`Metrics::register`]). Cheap to
    /// clone.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
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
        self.runner = self.runner.startup_task(name, task);
        self
    }

    /// Makes `auth` available on every route to the [`Caller`](crate::auth::Caller) extractor and to
    /// [`RequirePrivilegeLayer`](crate::auth::RequirePrivilegeLayer), as [`AuthLayer`] does, but from within
    /// the server stack's one layer: a `Router::layer` of its own would cost each request another boxed route,
    /// cloned by axum per request. It verifies nothing by itself: routes opt in, so probes and `/metrics` never
    /// need a token.
    ///
    /// ```no_run
    /// use axum::{Router, routing::get};
    /// use telemed_kit::Service;
    /// use telemed_kit::auth::{Auth, AuthSettings, Caller};
    /// use telemed_kit::config::Env;
    ///
    /// async fn whoami(caller: Caller) -> String {
    ///     caller.user_id.clone().unwrap_or_default()
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> std::process::ExitCode {
    ///     let service = Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    ///     let settings = AuthSettings::from_env(&Env::process()).unwrap_or_else(|error| error.exit());
    ///     let auth = Auth::new(settings, service.client(), &service.settings().cache);
    ///     let _key_refresh = auth.spawn_key_refresh();
    ///     let app = Router::new().route("/whoami", get(whoami));
    ///     service.check(auth.readiness_check()).auth(auth).run(app).await
    /// }
    /// ```
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Adds a shutdown hook, run after draining and bounded by what is left of the grace period.
    pub fn on_shutdown<F, Fut>(mut self, name: impl Into<Cow<'static, str>>, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.runner = self.runner.on_shutdown(name, hook);
        self
    }

    /// Binds `PORT`, serves `app` and the probes, and runs until shutdown completes.
    pub async fn run(self, app: Router) -> ExitCode {
        let Self {
            settings,
            logs,
            tracing,
            metrics,
            telemetry,
            client: _,
            shutdown,
            health,
            runner,
            auth,
        } = self;
        let listener = match crate::http::bind(settings.port) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(r#type = "alarm", port = settings.port, %error, "could not bind the port");
                return ExitCode::FAILURE;
            }
        };
        let app = match settings.metrics.port {
            None => app.merge(metrics.routes()),
            Some(port) => match crate::http::bind(port) {
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
        let health = health.build(settings.health.clone());
        // Outermost first: the in-flight count covers everything; a panic becomes a 500 that the access log
        // sees. The request layer needs the matched route, so the stack sits inside the router, as one layer:
        // axum boxes each `Router::layer` separately and clones every box on every request.
        let app = app.merge(health.routes()).layer(
            ServiceBuilder::new()
                .layer(shutdown.layer())
                .layer(RequestTelemetryLayer::new(telemetry))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(BodyReadTimeoutLayer)
                .option_layer(auth.map(AuthLayer::new))
                .map_response(problem_for_plain_errors),
        );
        let serve = crate::http::serve(listener, app, &shutdown);
        let serving = async move {
            // Logged once the runner serves, after it has installed the signal handlers: a test (or an operator)
            // that signals the process on seeing this line reaches the shutdown sequence.
            tracing::info!(
                port = settings.port,
                service = %settings.service.name,
                version = %settings.service.version,
                shutdown_grace_period_ms = millis(settings.shutdown.grace_period),
                shutdown_delay_ms = millis(settings.shutdown.delay),
                "listening"
            );
            serve.await;
        };
        runner
            .readiness(&health)
            .metrics(&metrics)
            .flush(tracing)
            .flush(logs.guard())
            .run(serving)
            .await
    }
}

/// Why a service could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A configuration variable is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The log part could not be built.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The tracing part could not be built.
    #[error(transparent)]
    Tracing(#[from] TracingError),
    /// A global `tracing` subscriber is already installed: `Service` installs its own; a service with a
    /// subscriber of its own composes the parts instead (`docs/adopting.md`).
    #[error(
        "a global tracing subscriber is already installed: Service installs its own (compose the parts instead, \
         docs/adopting.md)"
    )]
    SubscriberInstalled,
}

impl ServiceError {
    /// Reports the error as one line on stdout and ends the process with exit code 2.
    pub fn exit(&self) -> ! {
        crate::config::exit_misconfigured(self)
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use crate::health::{LIVENESS_PATH, READINESS_PATHS};
    use crate::metrics::METRICS_PATH;
    use crate::telemetry::DEFAULT_QUIET_PATHS;

    #[test]
    fn the_request_layer_is_quiet_on_exactly_the_probe_and_metrics_paths() {
        let mut served: Vec<&str> = READINESS_PATHS.to_vec();
        served.extend([LIVENESS_PATH, METRICS_PATH]);
        served.sort_unstable();
        let mut quiet = DEFAULT_QUIET_PATHS.to_vec();
        quiet.sort_unstable();
        assert_eq!(quiet, served);
    }
}
