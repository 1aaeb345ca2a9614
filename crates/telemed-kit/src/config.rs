//! Configuration from environment variables, validated before anything binds.
//!
//! Every module reads its own variables through an [`Env`], which parses each value once, names the variable
//! in any error, and remembers which variables were read (so the documentation can be checked against the
//! code). [`Settings`] gathers the kit-wide values; a misconfiguration becomes a [`ConfigError`], which
//! [`ConfigError::exit`] reports as one line before ending the process with exit code 2.
//!
//! # Example
//!
//! ```
//! use telemed_kit::config::{Env, Settings};
//!
//! let env = Env::from_pairs([("PORT", "9000"), ("SHUTDOWN_DELAY", "2s")]);
//! let settings = Settings::from_env(&env, telemed_kit::service_info!()).unwrap();
//! assert_eq!(settings.port, 9000);
//! assert_eq!(settings.shutdown.delay, std::time::Duration::from_secs(2));
//!
//! let env = Env::from_pairs([("PORT", "http")]);
//! let error = Settings::from_env(&env, telemed_kit::service_info!()).unwrap_err();
//! assert_eq!(error.to_string(), r#"PORT="http": expected a port number from 1 to 65535"#);
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use crate::cache::CacheSettings;
use crate::health::HealthSettings;
use crate::http::ClientSettings;
use crate::metrics::MetricsSettings;
use crate::shutdown::ShutdownSettings;
use crate::telemetry::TelemetrySettings;

/// Name and version of the service binary, captured at compile time by [`service_info!`](crate::service_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The package name of the binary; the default for `OTEL_SERVICE_NAME`.
    pub name: &'static str,
    /// The package version of the binary.
    pub version: &'static str,
}

/// Captures the calling crate's package name and version as a [`ServiceInfo`].
///
/// It is a macro so that `env!("CARGO_PKG_NAME")` expands in the service's crate, not in the kit.
#[macro_export]
macro_rules! service_info {
    () => {
        $crate::config::ServiceInfo {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        }
    };
}

/// A configuration value that cannot be used. Its `Display` is the one line the process reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The variable is set to a value that does not parse or is out of range.
    #[error("{variable}={value:?}: expected {expected}")]
    Invalid {
        /// The environment variable.
        variable: String,
        /// The value it holds (with any credentials masked).
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// A variable without a default is not set.
    #[error("{variable} is not set: expected {expected}")]
    Missing {
        /// The environment variable.
        variable: String,
        /// What a valid value looks like.
        expected: String,
    },
}

impl ConfigError {
    /// An invalid value for `variable`.
    pub fn invalid(variable: &str, value: &str, expected: impl Into<String>) -> Self {
        Self::Invalid {
            variable: variable.to_owned(),
            value: crate::telemetry::redact::redact(value).into_owned(),
            expected: expected.into(),
        }
    }

    /// A missing required `variable`.
    pub fn missing(variable: &str, expected: impl Into<String>) -> Self {
        Self::Missing {
            variable: variable.to_owned(),
            expected: expected.into(),
        }
    }

    /// The variable this error is about.
    pub fn variable(&self) -> &str {
        match self {
            Self::Invalid { variable, .. } | Self::Missing { variable, .. } => variable,
        }
    }

    /// Reports the error as one log line on stdout and ends the process with exit code 2.
    ///
    /// Logging is not set up yet when configuration fails (its own variables may be the bad ones), so the line
    /// is written directly in the eHealth logging model's shape.
    pub fn exit(&self) -> ! {
        crate::telemetry::log::write_startup_error(&self.to_string());
        std::process::exit(2)
    }
}

/// A source of configuration variables: the process environment, or a fixed set for tests.
///
/// It records every variable name it is asked for, whether set or not; [`Env::names_read`] lists them.
pub struct Env {
    source: Source,
    read: Mutex<BTreeSet<String>>,
}

enum Source {
    Process,
    Fixed(HashMap<String, String>),
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Self {
            source: Source::Process,
            read: Mutex::default(),
        }
    }

    /// A fixed set of variables, for tests and examples.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            source: Source::Fixed(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            read: Mutex::default(),
        }
    }

    /// Every variable name read so far, sorted.
    pub fn names_read(&self) -> Vec<String> {
        self.read
            .lock()
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The raw value of `name`; an empty value counts as unset. A value that is not UTF-8 is an error.
    pub fn raw(&self, name: &str) -> Result<Option<String>, ConfigError> {
        if let Ok(mut names) = self.read.lock() {
            names.insert(name.to_owned());
        }
        let value = match &self.source {
            Source::Process => match std::env::var(name) {
                Ok(value) => Some(value),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(raw)) => {
                    return Err(ConfigError::invalid(
                        name,
                        &raw.to_string_lossy(),
                        "UTF-8 text",
                    ));
                }
            },
            Source::Fixed(map) => map.get(name).cloned(),
        };
        Ok(value.filter(|value| !value.trim().is_empty()))
    }

    /// Parses `name` with `parse`, which returns `None` for a value it rejects; `expected` describes valid values.
    pub fn parse_with<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(name)? {
            None => Ok(None),
            Some(raw) => parse(raw.trim())
                .map(Some)
                .ok_or_else(|| ConfigError::invalid(name, &raw, expected)),
        }
    }

    /// Parses `name` with its `FromStr`, or returns `default` when unset.
    pub fn parse_or<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        Ok(self
            .parse_with(name, expected, |raw| raw.parse().ok())?
            .unwrap_or(default))
    }

    /// A duration in the humantime form (`500ms`, `10s`, `1m`), or `default` when unset.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self
            .parse_with(name, "a duration such as 500ms or 10s", |raw| {
                humantime::parse_duration(raw).ok()
            })?
            .unwrap_or(default))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), or `default` when unset.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self
            .parse_with(name, "true or false", |raw| {
                match raw.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Some(true),
                    "false" | "0" | "no" | "off" => Some(false),
                    _ => None,
                }
            })?
            .unwrap_or(default))
    }

    /// A required value parsed with `parse`.
    pub fn required<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        self.parse_with(name, expected, parse)?
            .ok_or_else(|| ConfigError::missing(name, expected))
    }
}

/// Parses a TCP port: 1 to 65535.
pub(crate) fn parse_port(raw: &str) -> Option<u16> {
    raw.parse().ok().filter(|port| *port != 0)
}

/// The kit-wide configuration, read by [`Service::from_env`](crate::Service::from_env).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// `PORT`: the port for the application routes and the probes, on IPv4 and IPv6. Defaults to 8080.
    pub port: u16,
    /// Name and version of the service; the name is overridden by `OTEL_SERVICE_NAME`.
    pub service: ServiceIdentity,
    /// Shutdown timing.
    pub shutdown: ShutdownSettings,
    /// Probe timing.
    pub health: HealthSettings,
    /// Logs, propagation and export.
    pub telemetry: TelemetrySettings,
    /// The outbound HTTP client.
    pub client: ClientSettings,
    /// Caches (`CACHE_DISABLED`).
    pub cache: CacheSettings,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
}

/// The name and version the service reports in logs, traces, `User-Agent` and `GET /`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// `OTEL_SERVICE_NAME`. Defaults to the binary's package name.
    pub name: String,
    /// The binary's package version.
    pub version: String,
}

impl Settings {
    /// Reads and validates every kit variable; the first problem found is returned.
    pub fn from_env(env: &Env, info: ServiceInfo) -> Result<Self, ConfigError> {
        let port = env
            .parse_with("PORT", "a port number from 1 to 65535", parse_port)?
            .unwrap_or(8080);
        let name = env
            .parse_with(
                "OTEL_SERVICE_NAME",
                "a service name of letters, digits, '-', '_' or '.', at most 63 characters",
                |raw| valid_service_name(raw).then(|| raw.to_owned()),
            )?
            .unwrap_or_else(|| info.name.to_owned());
        let service = ServiceIdentity {
            name,
            version: info.version.to_owned(),
        };
        Ok(Self {
            port,
            shutdown: ShutdownSettings::from_env(env)?,
            health: HealthSettings::from_env(env)?,
            telemetry: TelemetrySettings::from_env(env, &service)?,
            client: ClientSettings::from_env(env, &service)?,
            cache: CacheSettings::from_env(env)?,
            metrics: MetricsSettings::from_env(env, port)?,
            service,
        })
    }
}

fn valid_service_name(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 63
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_env(
            &Env::from_pairs(pairs.iter().copied()),
            crate::service_info!(),
        )
    }

    #[test]
    fn defaults_hold_without_any_variable() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.port, 8080);
        assert_eq!(settings.service.name, "telemed-kit");
        assert_eq!(settings.shutdown.grace_period, Duration::from_secs(10));
        assert_eq!(settings.shutdown.delay, Duration::from_secs(3));
        assert_eq!(
            settings.health.liveness_stall_threshold,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn each_bad_value_names_variable_value_and_expectation() {
        let cases = [
            ("PORT", "0", "a port number from 1 to 65535"),
            ("PORT", "65536", "a port number from 1 to 65535"),
            ("OTEL_SERVICE_NAME", "my service", "a service name"),
            (
                "SHUTDOWN_GRACE_PERIOD",
                "10",
                "a duration such as 500ms or 10s",
            ),
            ("SHUTDOWN_DELAY", "soon", "a duration such as 500ms or 10s"),
            (
                "LIVENESS_STALL_THRESHOLD",
                "-1s",
                "a duration such as 500ms or 10s",
            ),
        ];
        for (variable, value, expected) in cases {
            let line = settings(&[(variable, value)]).unwrap_err().to_string();
            assert!(
                line.starts_with(&format!("{variable}={value:?}: expected ")),
                "{line}"
            );
            assert!(line.contains(expected), "{line}");
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn delay_that_leaves_no_room_to_drain_is_rejected_with_the_reason() {
        let error =
            settings(&[("SHUTDOWN_GRACE_PERIOD", "5s"), ("SHUTDOWN_DELAY", "4s")]).unwrap_err();
        assert_eq!(error.variable(), "SHUTDOWN_DELAY");
        assert!(error.to_string().contains("at most 2s 500ms"), "{error}");
    }

    #[test]
    fn env_records_every_name_read() {
        let env = Env::from_pairs([("PORT", "1")]);
        Settings::from_env(&env, crate::service_info!()).unwrap();
        let names = env.names_read();
        assert!(names.contains(&"PORT".to_owned()));
        assert!(names.contains(&"SHUTDOWN_DELAY".to_owned()));
    }
}
