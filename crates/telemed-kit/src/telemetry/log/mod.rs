//! Logs in the eHealth logging model: one JSON object per line on stdout, written off the request path.
//!
//! [`Logs`] is the log part: it starts one writer thread that owns stdout ([`non_blocking`]) and hands out the
//! layer for the service's own `tracing_subscriber::registry()`: a [`JsonLayer`] that formats each tracing event
//! on the calling thread into a reused buffer and queues the line for the writer. Nothing else writes to stdout.
//! The request path never waits for stdout: when the queue is full, lines are dropped and counted instead (see
//! [Overload](#overload)). A line logged inside a request carries the request's trace id
//! ([`context`](crate::telemetry::context)).
//!
//! # Example
//!
//! A service with a subscriber of its own adds the kit's layer to it:
//!
//! ```no_run
//! use telemed_kit::config::{Env, ServiceIdentity};
//! use telemed_kit::telemetry::log::{LogSettings, Logs};
//! use telemed_kit::tracing_subscriber::layer::SubscriberExt;
//! use telemed_kit::tracing_subscriber::util::SubscriberInitExt;
//!
//! let env = Env::process();
//! let identity = ServiceIdentity::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|e| e.exit());
//! let settings = LogSettings::from_env(&env).unwrap_or_else(|e| e.exit());
//! let logs = Logs::stdout(&settings, &identity).expect("the first stdout log part of the process");
//! telemed_kit::tracing_subscriber::registry()
//!     .with(logs.layer()) // LOG_LEVEL applies to this layer; the service's other layers see what they ask for
//!     .init();
//!
//! // Log with tracing's macros or the kit's shorthands.
//! tracing::info!(check = "database", duration_ms = 12, "readiness check is up");
//! telemed_kit::alert!(field = "birthDate", "rejected a questionnaire response");
//! telemed_kit::alarm!("cannot reach the key-value store");
//! ```
//!
//! writes (one line each; wrapped here):
//!
//! ```text
//! {"time":"2026-11-28T08:58:26.986123Z","app":"reference-service","body":"readiness check is up",
//!  "severity":"low","subject":"reference_service::health","type":"event","check":"database",
//!  "duration_ms":12}
//! {"time":"2026-11-28T08:58:26.986190Z","app":"reference-service",
//!  "body":"rejected a questionnaire response","id":"463ac35c9f6413ad48485a3953bb6124",
//!  "severity":"medium","subject":"reference_service::api","type":"alert","field":"birthDate"}
//! ```
//!
//! # The line
//! - `time`: when the event happened, UTC, RFC 3339 with microseconds and `Z`.
//! - `app`: the service name (`OTEL_SERVICE_NAME`, or the binary's package name).
//! - `body`: the event's message, redacted; `""` for an event without one.
//! - `id`: the trace id of the request being handled, exactly as it travels in `X-B3-TraceId`
//!   ([`context`](crate::telemetry::context)); the key is left out outside a request.
//! - `severity`: TRACE and DEBUG `informational`, INFO `low`, WARN `medium`, ERROR `high`; `critical` when
//!   the event has the field `severity = "critical"` ([`critical!`](crate::critical)).
//! - `subject`: the event's target, which is its module path unless the macro names another.
//! - `type`: `event`, or the event's `type` field (`r#type = "alarm"` in tracing's macros, which tracing
//!   records under the name `type`) when it is `event`, `alert`, `alarm` or `task`.
//! - Every other event field is a further key: integers and floats as JSON numbers (NaN and infinity as
//!   strings), bools as bools, everything else as a redacted string (`%value` with `Display`, `?value` with
//!   `Debug`). Fields of enclosing spans are not written.
//!
//! # Edge cases
//! - An event field named like a fixed key (`time`, `app`, `body`, `id`, `subject`) is written as
//!   `field_<name>`, as is a `type` that is not one of the four values and a `severity` other than
//!   `critical`: nothing the caller logged is lost, and no key appears twice. When two fields still end up
//!   with the same key (a field repeated, or `app` next to `field_app`), the first one wins.
//! - A field named like a credential (a secret query parameter or a sensitive header, see
//!   [`redact::is_sensitive_field`](crate::redact::is_sensitive_field)) has its string value
//!   masked whole.
//! - Quotes, backslashes and control characters are escaped, so every line is one valid JSON object
//!   whatever the message holds.
//!
//! # Overload
//! The queue holds 1 MiB of lines ([`QueueLimits`]). A line below `high` that does not fit is dropped; `high`
//! and `critical` lines may use a further 4 MiB reserve, so an error is not lost to a burst of access-log
//! lines, but once that is full they are dropped too. The alternative, never dropping them, would let a
//! stdout nobody reads (a stuck pipe) grow memory until the pod is killed; with the limits, memory stays
//! below about 10 MiB. Each drop is counted ([`LogGuard::dropped`]), and once the writer catches up it writes
//! `dropped N log lines under overload` (`medium`, `alert`) with `dropped_informational`, `dropped_low`,
//! `dropped_medium`, `dropped_high` and `dropped_critical` counts.
//!
//! # Flushing
//! [`LogGuard::flush`] waits until every line queued before the call is on stdout. It needs no async
//! runtime, so the shutdown watchdog can call it from its own thread just before `std::process::exit`.
//!
//! # Composing twice
//! Only one [`Logs::stdout`] may run per process: a second returns [`LogError::StdoutTaken`] rather than a
//! second writer thread whose batches could interleave with the first's. One `Logs` may hand out
//! [`Logs::layer`] more than once (a subscriber per test, say); two of its layers in one subscriber write every
//! line twice, whole and in order, and lose none.
//!
//! `docs/logging.md` lists the extra keys the kit itself writes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::ServiceIdentity;
use crate::metrics::Metrics;

mod access;
mod drops;
mod format;
mod layer;
mod macros;
mod panic;
mod pretty;
mod settings;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

pub use access::AccessLog;
pub(crate) use access::{AccessLine, TARGET as ACCESS_TARGET};
pub use format::{EventType, Severity};
pub use layer::JsonLayer;
pub use panic::install_panic_hook;
pub use settings::{LogFormat, LogSettings};
pub use writer::{DropCounts, LogGuard, LogWriter, QueueLimits, non_blocking};

/// Why the log part could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The thread that writes log lines could not be started.
    #[error("could not start the log writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// [`Logs::stdout`] already runs in this process.
    #[error(
        "the eHealth log writer for stdout already runs in this process: build Logs::stdout once and share its \
         layer and guard"
    )]
    StdoutTaken,
}

/// Set by the first [`Logs::stdout`]: two writer threads on one stdout could interleave their batches.
static STDOUT_TAKEN: AtomicBool = AtomicBool::new(false);

/// The log part: the writer thread, and the layer for the service's own subscriber.
///
/// See the [module documentation](self) for an example. Keep it (or its [`guard`](Logs::guard)) until the
/// end of `main`: dropping the last guard waits up to a second for queued lines, and the shutdown sequence
/// flushes it within its budget ([`Runner::flush`](crate::shutdown::Runner::flush)).
#[derive(Debug)]
pub struct Logs {
    writer: LogWriter,
    guard: LogGuard,
    settings: LogSettings,
}

impl Logs {
    /// Starts the writer thread for stdout, with the default [`QueueLimits`]. Only one may run per process.
    pub fn stdout(settings: &LogSettings, service: &ServiceIdentity) -> Result<Self, LogError> {
        if STDOUT_TAKEN.swap(true, Ordering::AcqRel) {
            return Err(LogError::StdoutTaken);
        }
        Self::to_sink(settings, service, std::io::stdout(), QueueLimits::default()).inspect_err(
            |_| {
                STDOUT_TAKEN.store(false, Ordering::Release);
            },
        )
    }

    /// Starts a writer thread for `sink`, which it owns from now on (a test's capture buffer, say).
    pub fn to_sink<W: Write + Send + 'static>(
        settings: &LogSettings,
        service: &ServiceIdentity,
        sink: W,
        limits: QueueLimits,
    ) -> Result<Self, LogError> {
        let (writer, guard) =
            non_blocking(&service.name, sink, limits).map_err(LogError::WriterThread)?;
        Ok(Self {
            writer,
            guard,
            settings: settings.clone(),
        })
    }

    /// The layer for `LOG_FORMAT` (JSON, or the pretty format for local runs), with `LOG_LEVEL` applied to it
    /// alone: the subscriber's other layers see the events they ask for.
    pub fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let filter = self.settings.filter();
        match self.settings.format {
            LogFormat::Json => Box::new(JsonLayer::new(self.writer.clone()).with_filter(filter)),
            LogFormat::Pretty => Box::new(pretty::layer(self.writer.clone()).with_filter(filter)),
        }
    }

    /// The writer of access-log lines for [`Telemetry`](crate::telemetry::Telemetry), which writes them
    /// straight into the queue instead of through `tracing`, under the same `LOG_LEVEL`; `None` with
    /// `LOG_FORMAT=pretty`, where they go through `tracing` like any event.
    pub fn access_log(&self) -> Option<AccessLog> {
        match self.settings.format {
            LogFormat::Json => Some(AccessLog::new(self.writer.clone(), &self.settings)),
            LogFormat::Pretty => None,
        }
    }

    /// The guard that flushes the queue and counts dropped lines; cheap to clone.
    pub fn guard(&self) -> LogGuard {
        self.guard.clone()
    }

    /// Reports the lines dropped under overload in `metrics` (`log_lines_dropped_total`, by severity).
    pub fn count_drops_in(&self, metrics: &Metrics) {
        metrics.register_collector(Box::new(drops::DropCollector::new(&self.guard)));
    }
}
