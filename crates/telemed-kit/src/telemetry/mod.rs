//! Request telemetry: logs in the eHealth logging model, B3 propagation, span export.
//!
//! # Layout
//! - [`log`]: one JSON object per line on stdout in the eHealth logging model, written off the request path.
//! - [`redact`]: masking of credentials and CPR numbers, applied to every output.
//! - [`context`]: the current request's context (trace id, headers to forward), set by the server stack.

use crate::config::{ConfigError, Env, ServiceIdentity};

pub mod b3;
pub mod context;
pub mod log;
pub mod redact;
pub mod sampler;

pub use log::{LogFormat, LogSettings};

/// Logs, propagation and export settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TelemetrySettings {
    /// Log level and format.
    pub log: LogSettings,
}

impl TelemetrySettings {
    /// Reads the telemetry variables.
    pub fn from_env(env: &Env, _service: &ServiceIdentity) -> Result<Self, ConfigError> {
        Ok(Self {
            log: LogSettings::from_env(env)?,
        })
    }
}

/// Failure to install the telemetry pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A global tracing subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// The thread that writes log lines to stdout could not be started.
    #[error("could not start the log writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
}

/// Keeps the telemetry pipeline running; [`TelemetryGuard::flush`] drains it at shutdown.
#[derive(Debug)]
pub struct TelemetryGuard {
    log: log::LogGuard,
}

impl TelemetryGuard {
    /// Writes out buffered log lines, waiting at most `timeout`.
    pub fn flush(&self, timeout: std::time::Duration) {
        self.log.flush(timeout);
    }

    /// A handle that can flush from any thread, such as the shutdown watchdog.
    pub fn flusher(&self) -> log::LogGuard {
        self.log.clone()
    }
}

/// Installs the global tracing subscriber: the `LOG_LEVEL` filter in front of the log layer.
///
/// The filter is global rather than per layer, so that events and spans below the level cost one check and
/// nothing else.
pub fn init(
    settings: &TelemetrySettings,
    service: &ServiceIdentity,
) -> Result<TelemetryGuard, TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let (log_layer, log) = log::layer(&settings.log, service)?;
    tracing_subscriber::registry()
        .with(settings.log.filter())
        .with(log_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    log::installed(&log);
    Ok(TelemetryGuard { log })
}
