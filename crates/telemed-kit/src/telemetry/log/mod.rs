//! Logs in the eHealth logging model: one JSON object per line on stdout, written off the request path.
//!
//! [`telemetry::init`](crate::telemetry::init) installs a [`JsonLayer`] that formats each tracing event on
//! the calling thread into a reused buffer and queues the line for one writer thread that owns stdout
//! ([`non_blocking`]). Nothing else writes to stdout. The request path never waits for stdout: when the
//! queue is full, lines are dropped and counted instead (see [Overload](#overload)).
//!
//! # Example
//!
//! ```no_run
//! // Installed by `Service::from_env`; log with tracing's macros or the kit's shorthands.
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
//! below about 10 MiB. Each drop is counted ([`dropped`]), and once the writer catches up it writes
//! `dropped N log lines under overload` (`medium`, `alert`) with `dropped_informational`, `dropped_low`,
//! `dropped_medium`, `dropped_high` and `dropped_critical` counts.
//!
//! # Flushing
//! [`LogGuard::flush`] waits until every line queued before the call is on stdout. It needs no async
//! runtime, so the shutdown watchdog can call it from its own thread just before `std::process::exit`.
//!
//! `docs/logging.md` lists the extra keys the kit itself writes.

use std::sync::OnceLock;

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryError;
use crate::config::ServiceIdentity;

mod access;
mod format;
mod layer;
mod macros;
mod pretty;
mod settings;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) use access::{AccessLine, AccessLog, TARGET as ACCESS_TARGET};
pub use format::{EventType, Severity};
pub use layer::JsonLayer;
pub use settings::{LogFormat, LogSettings};
pub use writer::{DropCounts, LogGuard, LogWriter, QueueLimits, non_blocking};

/// The installed writer, for [`dropped`].
static INSTALLED: OnceLock<LogGuard> = OnceLock::new();

/// Lines dropped under overload since [`telemetry::init`](crate::telemetry::init); all zero before it.
pub fn dropped() -> DropCounts {
    INSTALLED.get().map(LogGuard::dropped).unwrap_or_default()
}

/// The log layer for `settings.format`, writing to stdout through a new writer thread, and its guard.
pub(crate) struct Installation<S> {
    /// The caller installs it (behind `settings.filter()`) and then calls [`installed`].
    pub(crate) layer: Box<dyn Layer<S> + Send + Sync>,
    pub(crate) guard: LogGuard,
    /// The direct writer for access-log lines, with the JSON format.
    pub(crate) access: Option<AccessLog>,
}

pub(crate) fn layer<S>(
    settings: &LogSettings,
    service: &ServiceIdentity,
) -> Result<Installation<S>, TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let (writer, guard) = non_blocking(&service.name, std::io::stdout(), QueueLimits::default())
        .map_err(TelemetryError::WriterThread)?;
    let (layer, access): (Box<dyn Layer<S> + Send + Sync>, _) = match settings.format {
        LogFormat::Json => (
            Box::new(JsonLayer::new(writer.clone())),
            Some(AccessLog::new(writer)),
        ),
        LogFormat::Pretty => (Box::new(pretty::layer(writer)), None),
    };
    Ok(Installation {
        layer,
        guard,
        access,
    })
}

/// Records `guard` as the global writer once its layer is installed, for [`dropped`].
pub(crate) fn installed(guard: &LogGuard) {
    // Only the first installation can succeed, so a second call has nothing to record.
    let _ = INSTALLED.set(guard.clone());
}
