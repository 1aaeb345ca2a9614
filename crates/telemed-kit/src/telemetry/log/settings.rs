//! Logs in the eHealth logging model.

use std::io::Write;

use tracing_subscriber::EnvFilter;

use super::TelemetryError;
use crate::config::{ConfigError, Env, ServiceIdentity};

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the platform's format).
    Json,
    /// Human-readable, for local development only.
    Pretty,
}

/// Log settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogSettings {
    /// `LOG_LEVEL`: a level or tracing directives. Defaults to `info`.
    pub directives: String,
    /// `LOG_FORMAT`: `json` or `pretty`. Defaults to `json`.
    pub format: LogFormat,
}

impl LogSettings {
    /// Reads `LOG_LEVEL` and `LOG_FORMAT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let directives = env
            .parse_with(
                "LOG_LEVEL",
                "a level (error, warn, info, debug, trace) or tracing directives",
                |raw| EnvFilter::builder().parse(raw).ok().map(|_| raw.to_owned()),
            )?
            .unwrap_or_else(|| "info".to_owned());
        let format = env
            .parse_with("LOG_FORMAT", "json or pretty", |raw| match raw {
                "json" => Some(LogFormat::Json),
                "pretty" => Some(LogFormat::Pretty),
                _ => None,
            })?
            .unwrap_or(LogFormat::Json);
        Ok(Self { directives, format })
    }
}

/// Flushes buffered lines.
#[derive(Debug, Clone)]
pub struct LogGuard;

impl LogGuard {
    /// Writes out buffered lines, waiting at most `timeout`.
    pub fn flush(&self, _timeout: std::time::Duration) {
        let _ = std::io::stdout().flush();
    }
}

pub(crate) fn init(
    settings: &LogSettings,
    _service: &ServiceIdentity,
) -> Result<LogGuard, TelemetryError> {
    let filter = EnvFilter::builder().parse_lossy(&settings.directives);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(LogGuard)
}

/// Writes one `high`/`alarm` line for a startup failure, before logging is set up.
pub(crate) fn write_startup_error(message: &str) {
    let line = serde_json::json!({
        "time": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "app": std::env::var("OTEL_SERVICE_NAME").unwrap_or_default(),
        "body": message,
        "severity": "high",
        "subject": "telemed_kit::config",
        "type": "alarm",
    });
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
