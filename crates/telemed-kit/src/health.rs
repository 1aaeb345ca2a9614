//! Readiness and liveness probes.
//!
//! - `GET /healthz` (alias `/readyz`), readiness: 503 until every startup task has finished and every required
//!   readiness check has passed, 503 from the instant shutdown starts, 200 otherwise. A failing optional check
//!   gives 200 with status `degraded`.
//! - `GET /livez`, liveness: 200 unless the process is wedged. A heartbeat task ticks on the async runtime; when
//!   it has not ticked within `LIVENESS_STALL_THRESHOLD`, the runtime is blocked or starved and /livez answers
//!   503 (or, when no worker is free, not at all, which the kubelet counts as a failure too). Liveness checks
//!   added with [`HealthBuilder::liveness_check`] must only look inside the process: a liveness probe that
//!   depends on another system restarts every instance when that system has an outage. Liveness stays 200
//!   while the service drains.
//!
//! Readiness checks run in the background, each on its own interval with a timeout, and the probes answer from
//! the latest results: a probe never fans out to dependencies, so a burst of probes cannot overload them, and a
//! slow dependency cannot make the probe time out. Probe bodies are small JSON documents with statuses and
//! timings only; the error text of a failed check goes to the log, never into the body.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use telemed_kit::health::Check;
//!
//! let kvstore = Check::new("kvstore", || async { Ok::<_, std::io::Error>(()) })
//!     .optional()
//!     .interval(Duration::from_secs(10))
//!     .timeout(Duration::from_secs(1));
//! # let _ = kvstore;
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::config::{ConfigError, Env};

/// The probe paths, served on the application port.
pub const READINESS_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// The liveness probe path.
pub const LIVENESS_PATH: &str = "/livez";

/// Whether a path is one of the probes (which are not access-logged or traced unless they fail).
pub fn is_probe_path(path: &str) -> bool {
    path == LIVENESS_PATH || READINESS_PATHS.contains(&path)
}

/// Probe timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSettings {
    /// `LIVENESS_STALL_THRESHOLD`: how old the runtime heartbeat may be before /livez fails. Defaults to 5s.
    pub liveness_stall_threshold: Duration,
    /// `READINESS_CHECK_INTERVAL`: default interval between two runs of a readiness check. Defaults to 5s.
    pub check_interval: Duration,
    /// `READINESS_CHECK_TIMEOUT`: default time limit of one run of a readiness check. Defaults to 2s.
    pub check_timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            liveness_stall_threshold: Duration::from_secs(5),
            check_interval: Duration::from_secs(5),
            check_timeout: Duration::from_secs(2),
        }
    }
}

impl HealthSettings {
    /// Reads the probe variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let settings = Self {
            liveness_stall_threshold: env.duration_or(
                "LIVENESS_STALL_THRESHOLD",
                defaults.liveness_stall_threshold,
            )?,
            check_interval: env.duration_or("READINESS_CHECK_INTERVAL", defaults.check_interval)?,
            check_timeout: env.duration_or("READINESS_CHECK_TIMEOUT", defaults.check_timeout)?,
        };
        let at_least = |name: &str, value: Duration, min: Duration| {
            if value < min {
                Err(ConfigError::invalid(
                    name,
                    &humantime::format_duration(value).to_string(),
                    format!("a duration of at least {}", humantime::format_duration(min)),
                ))
            } else {
                Ok(())
            }
        };
        at_least(
            "LIVENESS_STALL_THRESHOLD",
            settings.liveness_stall_threshold,
            Duration::from_millis(100),
        )?;
        at_least(
            "READINESS_CHECK_INTERVAL",
            settings.check_interval,
            Duration::from_millis(100),
        )?;
        at_least(
            "READINESS_CHECK_TIMEOUT",
            settings.check_timeout,
            Duration::from_millis(10),
        )?;
        Ok(settings)
    }

    // A tick every fifth of the threshold: one late tick is noise, five in a row are a stall.
    fn heartbeat_interval(&self) -> Duration {
        (self.liveness_stall_threshold / 5).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// The error type a check may return; its text is logged (redacted), never shown in a probe body.
pub type CheckError = Box<dyn StdError + Send + Sync>;

type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>> + Send + Sync>;

/// A readiness check: a named async function run in the background.
#[derive(Clone)]
pub struct Check {
    name: Cow<'static, str>,
    required: bool,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    run: CheckFn,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// A required check named `name` (a short label such as `kvstore`, shown in the probe body).
    pub fn new<F, Fut, E>(name: impl Into<Cow<'static, str>>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<CheckError>,
    {
        Self {
            name: name.into(),
            required: true,
            interval: None,
            timeout: None,
            run: Arc::new(move || {
                let future = check();
                Box::pin(async move { future.await.map_err(Into::into) })
            }),
        }
    }

    /// Makes the check optional: while it fails, readiness is 200 with status `degraded`.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Time between two runs. Defaults to `READINESS_CHECK_INTERVAL`.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Time limit of one run; a run that takes longer counts as failed. Defaults to `READINESS_CHECK_TIMEOUT`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum CheckStatus {
    Pending,
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct CheckState {
    status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

struct Slot {
    check: Check,
    state: Mutex<CheckState>,
}

/// Collects startup tasks, readiness checks and liveness checks; built into [`Health`].
#[derive(Default)]
pub struct HealthBuilder {
    checks: Vec<Check>,
    liveness: Vec<(Cow<'static, str>, LivenessFn)>,
}

type LivenessFn = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for HealthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthBuilder")
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}

impl HealthBuilder {
    /// Adds a readiness check.
    pub fn readiness_check(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// Adds a liveness check: a fast function of the process's own state (no I/O, no other systems).
    pub fn liveness_check(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        self.liveness.push((name.into(), Arc::new(check)));
    }

    /// The shared health state. Nothing runs until [`Health::spawn`].
    pub fn build(self, settings: HealthSettings) -> Health {
        Health {
            inner: Arc::new(Inner {
                slots: self
                    .checks
                    .into_iter()
                    .map(|check| Slot {
                        check,
                        state: Mutex::new(CheckState {
                            status: CheckStatus::Pending,
                            duration_ms: None,
                        }),
                    })
                    .collect(),
                liveness: self.liveness,
                startup_pending: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                epoch: Instant::now(),
                heartbeat_ms: AtomicU64::new(0),
                settings,
            }),
        }
    }
}

/// Shared health state, answered by the probe routes.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

struct Inner {
    slots: Vec<Slot>,
    liveness: Vec<(Cow<'static, str>, LivenessFn)>,
    startup_pending: AtomicUsize,
    shutting_down: AtomicBool,
    // The heartbeat stores milliseconds since `epoch`, so that one atomic holds the instant of the last tick.
    // tokio's clock, so that tests can pause and advance it.
    epoch: Instant,
    heartbeat_ms: AtomicU64,
    settings: HealthSettings,
}

/// Readiness stays 503 while any of these guards is alive; see [`Health::startup_guard`].
#[derive(Debug)]
#[must_use = "readiness turns 200 when the guard is dropped"]
pub struct StartupGuard(Health);

impl Drop for StartupGuard {
    fn drop(&mut self) {
        self.0.inner.startup_pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Health {
    /// Holds readiness at 503 until the returned guard is dropped (a startup task in progress).
    pub fn startup_guard(&self) -> StartupGuard {
        self.inner.startup_pending.fetch_add(1, Ordering::AcqRel);
        StartupGuard(self.clone())
    }

    /// Turns readiness to 503 for good: shutdown has started.
    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// Starts the heartbeat and the readiness check runners on the current runtime. They stop when the
    /// returned set is dropped.
    pub fn spawn(&self) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let heartbeat = self.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(heartbeat.inner.settings.heartbeat_interval());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                heartbeat.beat();
            }
        });
        for index in 0..self.inner.slots.len() {
            let health = self.clone();
            tasks.spawn(async move { health.run_check(index).await });
        }
        tasks
    }

    fn beat(&self) {
        let now = u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.heartbeat_ms.store(now, Ordering::Release);
    }

    async fn run_check(&self, index: usize) {
        let slot = &self.inner.slots[index];
        let settings = &self.inner.settings;
        let mut ticks =
            tokio::time::interval(slot.check.interval.unwrap_or(settings.check_interval));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timeout = slot.check.timeout.unwrap_or(settings.check_timeout);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let outcome = tokio::time::timeout(timeout, (slot.check.run)()).await;
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let status = if matches!(outcome, Ok(Ok(()))) {
                CheckStatus::Up
            } else {
                CheckStatus::Down
            };
            let previous = match slot.state.lock() {
                Ok(mut state) => std::mem::replace(
                    &mut *state,
                    CheckState {
                        status,
                        duration_ms: Some(duration_ms),
                    },
                ),
                Err(_) => continue,
            };
            if previous.status != status {
                log_transition(&slot.check, status, outcome, duration_ms);
            }
        }
    }

    fn readiness(&self) -> (StatusCode, Readiness) {
        let inner = &self.inner;
        let mut checks = BTreeMap::new();
        let (mut required_down, mut optional_down) = (false, false);
        for slot in &inner.slots {
            let state = slot.state.lock().map(|state| *state).unwrap_or(CheckState {
                status: CheckStatus::Down,
                duration_ms: None,
            });
            if state.status != CheckStatus::Up {
                if slot.check.required {
                    required_down = true;
                } else {
                    optional_down = true;
                }
            }
            checks.insert(slot.check.name.clone(), state);
        }
        let status = if inner.shutting_down.load(Ordering::Acquire) {
            "shutting_down"
        } else if inner.startup_pending.load(Ordering::Acquire) > 0 {
            "starting"
        } else if required_down {
            "not_ready"
        } else if optional_down {
            "degraded"
        } else {
            "ready"
        };
        let code = if matches!(status, "ready" | "degraded") {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, Readiness { status, checks })
    }

    fn liveness(&self) -> (StatusCode, Liveness) {
        let inner = &self.inner;
        let now = u64::try_from(inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let age =
            Duration::from_millis(now.saturating_sub(inner.heartbeat_ms.load(Ordering::Acquire)));
        let failed: Vec<Cow<'static, str>> = inner
            .liveness
            .iter()
            .filter(|(_, check)| !check())
            .map(|(name, _)| name.clone())
            .collect();
        if age > inner.settings.liveness_stall_threshold {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Liveness {
                    status: "stalled",
                    failed,
                },
            )
        } else if !failed.is_empty() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Liveness {
                    status: "failing",
                    failed,
                },
            )
        } else {
            (
                StatusCode::OK,
                Liveness {
                    status: "alive",
                    failed,
                },
            )
        }
    }

    /// The probe routes: `/healthz`, `/readyz` and `/livez`, answering GET and HEAD.
    pub fn routes(&self) -> Router {
        let mut router = Router::new().route(LIVENESS_PATH, get(livez));
        for path in READINESS_PATHS {
            router = router.route(path, get(readyz));
        }
        router.with_state(self.clone())
    }
}

fn log_transition(
    check: &Check,
    status: CheckStatus,
    outcome: Result<Result<(), CheckError>, tokio::time::error::Elapsed>,
    duration_ms: u64,
) {
    let name = &*check.name;
    match (status, outcome) {
        (CheckStatus::Up, _) => tracing::info!(check = name, duration_ms, "readiness check is up"),
        (_, Ok(Err(error))) => tracing::warn!(
            check = name,
            required = check.required,
            duration_ms,
            error = %crate::redact::redact(&error.to_string()),
            "readiness check failed"
        ),
        (_, _) => tracing::warn!(
            check = name,
            required = check.required,
            duration_ms,
            "readiness check timed out"
        ),
    }
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    checks: BTreeMap<Cow<'static, str>, CheckState>,
}

#[derive(Serialize)]
struct Liveness {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<Cow<'static, str>>,
}

async fn readyz(State(health): State<Health>) -> Response {
    let (code, body) = health.readiness();
    (code, no_store(), axum::Json(body)).into_response()
}

async fn livez(State(health): State<Health>) -> Response {
    let (code, body) = health.liveness();
    (code, no_store(), axum::Json(body)).into_response()
}

fn no_store() -> [(axum::http::HeaderName, &'static str); 1] {
    [(axum::http::header::CACHE_CONTROL, "no-store")]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn probe(health: &Health, path: &str) -> (StatusCode, serde_json::Value) {
        let response = health
            .routes()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn flaky(
        up: Arc<AtomicBool>,
    ) -> impl Fn() -> Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>> {
        move || {
            let up = up.load(Ordering::SeqCst);
            Box::pin(async move {
                if up {
                    Ok(())
                } else {
                    Err("connection refused by 10.0.0.7:5432 password=hunter2".into())
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_startup_required_and_optional_checks() {
        let required_up = Arc::new(AtomicBool::new(false));
        let optional_up = Arc::new(AtomicBool::new(false));
        let mut builder = HealthBuilder::default();
        builder.readiness_check(
            Check::new("kvstore", flaky(required_up.clone())).interval(Duration::from_secs(1)),
        );
        builder.readiness_check(
            Check::new("cache-warm", flaky(optional_up.clone()))
                .optional()
                .interval(Duration::from_secs(1)),
        );
        let health = builder.build(HealthSettings::default());
        let startup = health.startup_guard();
        let _tasks = health.spawn();

        let (code, body) = probe(&health, "/healthz").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("starting"))
        );
        assert_eq!(body["checks"]["kvstore"]["status"], "pending");

        drop(startup);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (code, body) = probe(&health, "/readyz").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
        );
        assert!(!body.to_string().contains("10.0.0.7") && !body.to_string().contains("hunter2"));

        required_up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (code, body) = probe(&health, "/healthz").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::OK, Some("degraded"))
        );
        assert_eq!(body["checks"]["kvstore"]["status"], "up");
        assert_eq!(body["checks"]["cache-warm"]["status"], "down");

        optional_up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (code, body) = probe(&health, "/healthz").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::OK, Some("ready"))
        );

        health.set_shutting_down();
        let (code, body) = probe(&health, "/healthz").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("shutting_down"))
        );
        let (code, _) = probe(&health, "/livez").await;
        assert_eq!(code, StatusCode::OK, "liveness stays up while draining");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_slower_than_its_timeout_is_down() {
        let mut builder = HealthBuilder::default();
        builder.readiness_check(
            Check::new("slow", || async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, CheckError>(())
            })
            .timeout(Duration::from_millis(50)),
        );
        let health = builder.build(HealthSettings::default());
        let _tasks = health.spawn();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (code, body) = probe(&health, "/healthz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["slow"]["status"], "down");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_when_the_heartbeat_is_older_than_the_threshold() {
        let health = HealthBuilder::default().build(HealthSettings::default());
        let tasks = health.spawn();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(probe(&health, "/livez").await.0, StatusCode::OK);
        // Without the heartbeat task, time passes as it would on a stalled runtime.
        drop(tasks);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(probe(&health, "/livez").await.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (code, body) = probe(&health, "/livez").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("stalled"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_liveness_check_is_named() {
        let mut builder = HealthBuilder::default();
        builder.liveness_check("worker-pool", || false);
        let health = builder.build(HealthSettings::default());
        let _tasks = health.spawn();
        tokio::task::yield_now().await;
        let (code, body) = probe(&health, "/livez").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["failed"][0], "worker-pool");
    }
}
