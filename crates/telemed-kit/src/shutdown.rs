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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::task::futures::TaskLocalFuture;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

use crate::config::{ConfigError, Env};
use crate::http::problem::Problem;

/// Time kept between the kit's own deadline and the end of the grace period, so that the process has exited
/// before the platform's SIGKILL even on a loaded node.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// The shortest drain window a configuration may leave.
pub const MIN_DRAIN: Duration = Duration::from_secs(1);
/// Time reserved after draining for shutdown hooks and for flushing logs and spans.
pub const HOOKS_AND_FLUSH_RESERVE: Duration = Duration::from_secs(1);

/// Shutdown timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSettings {
    /// `SHUTDOWN_GRACE_PERIOD`: the platform's grace period, the hard limit for the whole sequence.
    /// Defaults to 10s.
    pub grace_period: Duration,
    /// `SHUTDOWN_DELAY`: how long requests are still served after readiness turns 503. Defaults to 3s.
    pub delay: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(10),
            delay: Duration::from_secs(3),
        }
    }
}

impl ShutdownSettings {
    /// Reads `SHUTDOWN_GRACE_PERIOD` and `SHUTDOWN_DELAY` and checks that the phases fit in the grace period.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let grace_period = env.duration_or("SHUTDOWN_GRACE_PERIOD", defaults.grace_period)?;
        let floor = MIN_DRAIN + HOOKS_AND_FLUSH_RESERVE + DEADLINE_MARGIN;
        if grace_period < floor || grace_period > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "SHUTDOWN_GRACE_PERIOD",
                &humantime::format_duration(grace_period).to_string(),
                format!(
                    "a duration from {} to 1h",
                    humantime::format_duration(floor)
                ),
            ));
        }
        let delay = env.duration_or("SHUTDOWN_DELAY", defaults.delay)?;
        let max_delay = grace_period - floor;
        if delay > max_delay {
            return Err(ConfigError::invalid(
                "SHUTDOWN_DELAY",
                &humantime::format_duration(delay).to_string(),
                format!(
                    "at most {} so that {} remain of SHUTDOWN_GRACE_PERIOD={} for draining, hooks, flushing \
                     and the safety margin",
                    humantime::format_duration(max_delay),
                    humantime::format_duration(floor),
                    humantime::format_duration(grace_period),
                ),
            ));
        }
        Ok(Self {
            grace_period,
            delay,
        })
    }

    /// The instants of each phase boundary for a shutdown that started at `started`.
    pub fn timeline(&self, started: Instant) -> Timeline {
        let deadline = started + self.grace_period - DEADLINE_MARGIN;
        Timeline {
            started,
            drain_start: started + self.delay,
            drain_deadline: deadline - HOOKS_AND_FLUSH_RESERVE,
            hooks_deadline: deadline - HOOKS_AND_FLUSH_RESERVE / 2,
            deadline,
        }
    }
}

/// The phase boundaries of one shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The first signal.
    pub started: Instant,
    /// End of the readiness-off window: stop accepting.
    pub drain_start: Instant,
    /// Stop waiting for in-flight requests; run hooks.
    pub drain_deadline: Instant,
    /// Stop waiting for hooks; flush telemetry.
    pub hooks_deadline: Instant,
    /// The watchdog ends the process here if it is still running.
    pub deadline: Instant,
}

/// Why shutdown started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// SIGTERM, as sent by the kubelet.
    Sigterm,
    /// SIGINT, as sent by Ctrl-C.
    Sigint,
    /// The service itself asked to stop, e.g. after a failed startup task.
    Internal,
}

impl Trigger {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sigterm => "SIGTERM",
            Self::Sigint => "SIGINT",
            Self::Internal => "internal",
        }
    }
}

/// The shared shutdown state: when it started, the drain token, and the in-flight request count.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ShutdownSettings,
    started: watch::Sender<Option<(Instant, Trigger)>>,
    draining: CancellationToken,
    in_flight: AtomicUsize,
    // Set with the signal handlers; taken and armed by whichever trigger comes first.
    on_deadline: Mutex<Option<DeadlineHandler>>,
}

type DeadlineHandler = Box<dyn FnOnce(usize) + Send>;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("settings", &self.settings)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// Shutdown state with no signal handlers installed yet.
    pub fn new(settings: ShutdownSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                started: watch::Sender::new(None),
                draining: CancellationToken::new(),
                in_flight: AtomicUsize::new(0),
                on_deadline: Mutex::new(None),
            }),
        }
    }

    /// The configured timing.
    pub fn settings(&self) -> &ShutdownSettings {
        &self.inner.settings
    }

    /// Installs the SIGTERM and SIGINT handlers on a dedicated OS thread.
    ///
    /// The first signal (or [`Shutdown::trigger`]) starts shutdown and arms the watchdog, which calls
    /// `on_deadline` with the number of requests still in flight if the process is still running at the deadline;
    /// `on_deadline` must end the process. A second signal calls `on_second_signal`, which must end the process
    /// too.
    pub fn install_signal_handlers(
        &self,
        on_deadline: impl FnOnce(usize) + Send + 'static,
        on_second_signal: impl FnOnce(Trigger) + Send + 'static,
    ) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        if let Ok(mut slot) = self.inner.on_deadline.lock() {
            *slot = Some(Box::new(on_deadline));
        }
        let this = self.clone();
        std::thread::Builder::new()
            .name("shutdown-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let trigger = if signal == SIGINT {
                        Trigger::Sigint
                    } else {
                        Trigger::Sigterm
                    };
                    if this.is_started() {
                        on_second_signal(trigger);
                        return;
                    }
                    this.start(trigger);
                }
            })?;
        Ok(())
    }

    /// Starts shutdown from inside the service (for instance after a fatal startup failure).
    /// Only the first call (or signal) counts.
    pub fn trigger(&self) {
        self.start(Trigger::Internal);
    }

    fn start(&self, trigger: Trigger) {
        let first = self.inner.started.send_if_modified(|started| {
            if started.is_some() {
                return false;
            }
            *started = Some((Instant::now(), trigger));
            true
        });
        let on_deadline = self
            .inner
            .on_deadline
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let (true, Some(on_deadline)) = (first, on_deadline) {
            self.arm_watchdog(on_deadline);
        }
    }

    // The watchdog sleeps on its own thread so that it fires even when every runtime worker is blocked.
    fn arm_watchdog(&self, on_deadline: DeadlineHandler) {
        let Some((started, _)) = *self.inner.started.borrow() else {
            return;
        };
        let deadline = self.inner.settings.timeline(started).deadline;
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                on_deadline(this.in_flight());
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the shutdown watchdog thread");
        }
    }

    /// Whether shutdown has started: readiness is 503 from this instant.
    pub fn is_started(&self) -> bool {
        self.inner.started.borrow().is_some()
    }

    /// Waits until shutdown starts, and returns when and why.
    pub async fn started(&self) -> (Instant, Trigger) {
        let mut receiver = self.inner.started.subscribe();
        loop {
            if let Some(started) = *receiver.borrow_and_update() {
                return started;
            }
            // The sender lives in `self`, so the channel cannot close while we wait.
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Marks the start of draining: cancels every [`ShutdownToken`].
    pub fn begin_drain(&self) {
        self.inner.draining.cancel();
    }

    /// A token cancelled when draining starts.
    pub fn token(&self) -> ShutdownToken {
        ShutdownToken(Arc::clone(&self.inner))
    }

    /// Requests currently being handled.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// The middleware that counts in-flight requests, adds `Connection: close` after the signal, and makes the
    /// [`ShutdownToken`] extractor work in the handlers it wraps.
    pub fn layer(&self) -> ShutdownLayer {
        ShutdownLayer {
            shutdown: self.clone(),
        }
    }
}

/// Cancelled when the service starts draining.
///
/// An axum extractor in every handler under [`Shutdown::layer`] (the kit's server stack): the layer makes the
/// request's token current for the request's task, which costs less than a request extension (an allocation
/// and a map insert per request). Code outside a request gets one from [`Shutdown::token`].
#[derive(Clone)]
pub struct ShutdownToken(Arc<Inner>);

impl std::fmt::Debug for ShutdownToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl ShutdownToken {
    /// Completes when draining starts.
    pub async fn cancelled(&self) {
        self.0.draining.cancelled().await;
    }

    /// Whether draining has started.
    pub fn is_cancelled(&self) -> bool {
        self.0.draining.is_cancelled()
    }
}

tokio::task_local! {
    static CURRENT: ShutdownToken;
}

impl<S: Sync> FromRequestParts<S> for ShutdownToken {
    type Rejection = MissingShutdownToken;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        CURRENT.try_with(Clone::clone).map_err(|_| {
            tracing::error!(
                "a handler takes a ShutdownToken but is not under Shutdown::layer (the kit's server stack)"
            );
            MissingShutdownToken
        })
    }
}

/// The rejection of the [`ShutdownToken`] extractor outside [`Shutdown::layer`]: a 500, since the handler's
/// wiring is wrong, not the request.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no ShutdownToken: the handler is not under Shutdown::layer")]
pub struct MissingShutdownToken;

impl IntoResponse for MissingShutdownToken {
    fn into_response(self) -> axum::response::Response {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR).into_response()
    }
}

/// Applies [`ShutdownService`]; built by [`Shutdown::layer`].
#[derive(Debug, Clone)]
pub struct ShutdownLayer {
    shutdown: Shutdown,
}

impl<S> Layer<S> for ShutdownLayer {
    type Service = ShutdownService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShutdownService {
            inner,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Counts the request as in flight until its response is ready, and asks HTTP/1.1 clients to reconnect
/// elsewhere once shutdown has started.
#[derive(Debug, Clone)]
pub struct ShutdownService<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S, B, ResBody> Service<Request<B>> for ShutdownService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ShutdownFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.shutdown.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(self.shutdown.inner.clone());
        let http1 = request.version() <= Version::HTTP_11;
        ShutdownFuture {
            inner: CURRENT.scope(self.shutdown.token(), self.inner.call(request)),
            guard: Some(guard),
            http1,
        }
    }
}

// Decrements on drop, so that a cancelled or panicking request is not counted forever.
#[derive(Debug)]
struct InFlightGuard(Arc<Inner>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// Response future of [`ShutdownService`].
    #[derive(Debug)]
    pub struct ShutdownFuture<F> {
        #[pin]
        inner: TaskLocalFuture<ShutdownToken, F>,
        guard: Option<InFlightGuard>,
        http1: bool,
    }
}

impl<F, ResBody, E> Future for ShutdownFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            if let Ok(response) = &mut result {
                // HTTP/2 has no Connection header (hyper would reject it); those clients get a GOAWAY when
                // draining starts instead.
                if *this.http1 && guard.0.started.borrow().is_some() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
            drop(guard);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(grace: u64, delay: u64) -> ShutdownSettings {
        ShutdownSettings {
            grace_period: Duration::from_secs(grace),
            delay: Duration::from_secs(delay),
        }
    }

    #[test]
    fn timeline_fits_inside_the_grace_period() {
        let started = Instant::now();
        let timeline = settings(10, 3).timeline(started);
        assert_eq!(timeline.drain_start - started, Duration::from_secs(3));
        assert_eq!(timeline.deadline - started, Duration::from_millis(9500));
        assert!(timeline.drain_start < timeline.drain_deadline);
        assert!(timeline.drain_deadline < timeline.hooks_deadline);
        assert!(timeline.hooks_deadline < timeline.deadline);
        assert!(timeline.drain_deadline - timeline.drain_start >= MIN_DRAIN);
    }

    #[test]
    fn grace_period_too_short_for_the_phases_is_rejected() {
        let env = Env::from_pairs([("SHUTDOWN_GRACE_PERIOD", "2s")]);
        let error = ShutdownSettings::from_env(&env).unwrap_err();
        assert_eq!(error.variable(), "SHUTDOWN_GRACE_PERIOD");
        assert!(error.to_string().contains("from 2s 500ms to 1h"), "{error}");
    }

    #[tokio::test]
    async fn only_the_first_trigger_counts_and_connection_close_follows_it() {
        use tower::ServiceExt;
        let shutdown = Shutdown::new(settings(10, 3));
        let service = shutdown
            .layer()
            .layer(tower::service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new(()))
            }));

        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert!(response.headers().get(header::CONNECTION).is_none());

        shutdown.trigger();
        let (first, trigger) = shutdown.started().await;
        shutdown.start(Trigger::Sigterm);
        assert_eq!(shutdown.started().await, (first, trigger));
        assert_eq!(trigger, Trigger::Internal);

        let response = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let mut h2 = Request::new(());
        *h2.version_mut() = Version::HTTP_2;
        let response = service.oneshot(h2).await.unwrap();
        assert!(response.headers().get(header::CONNECTION).is_none());
        assert_eq!(shutdown.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_handler_takes_the_token_and_sees_draining_start() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;
        let shutdown = Shutdown::new(ShutdownSettings::default());
        let (entered, waiting) = tokio::sync::oneshot::channel::<()>();
        let entered = Arc::new(Mutex::new(Some(entered)));
        let long_poll = move |token: ShutdownToken| async move {
            if let Some(entered) = entered.lock().ok().and_then(|mut entered| entered.take()) {
                let _ = entered.send(());
            }
            token.cancelled().await;
            "drained"
        };
        let app = axum::Router::new().route("/poll", get(long_poll.clone()));
        let poll = || Request::get("/poll").body(Body::empty()).unwrap();

        let pending = tokio::spawn(app.clone().layer(shutdown.layer()).oneshot(poll()));
        waiting.await.unwrap();
        assert!(!shutdown.token().is_cancelled());
        shutdown.begin_drain();
        // Bounded, so that a token draining does not reach fails the test instead of hanging it.
        let response = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .expect("the long poll ends once draining starts")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(body, "drained");

        // Outside the layer there is no token: a 500 for the miswired handler, not a hang.
        let response = app.oneshot(poll()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn in_flight_counts_until_the_response_and_after_cancellation() {
        use tower::ServiceExt;
        let shutdown = Shutdown::new(ShutdownSettings::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let service = shutdown
            .layer()
            .layer(tower::service_fn(move |_: Request<()>| {
                let released = released.clone();
                async move {
                    if let Some(released) = released.lock().await.take() {
                        let _ = released.await;
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(()))
                }
            }));
        let pending = tokio::spawn(service.clone().oneshot(Request::new(())));
        while shutdown.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let cancelled = service.oneshot(Request::new(()));
        assert_eq!(
            shutdown.in_flight(),
            1,
            "a future not yet called is not in flight"
        );
        drop(cancelled);
        release.send(()).unwrap();
        pending.await.unwrap().unwrap();
        assert_eq!(shutdown.in_flight(), 0);
    }
}
