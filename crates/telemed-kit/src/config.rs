//! Configuration from environment variables, validated before anything binds.
//!
//! Every part of the kit reads its own variables through an [`Env`], which parses each value once, names the
//! variable in any error, and remembers which variables were read (so the documentation can be checked against
//! the code). A misconfiguration becomes a [`ConfigError`], which [`ConfigError::exit`] reports as one line in
//! the eHealth logging model before ending the process with exit code 2.
//!
//! This module is the kit's foundation: every other part imports it, and it imports nothing of the kit but
//! [`redact`](crate::redact), so that a value in an error message is masked like any other output. The settings
//! of each part live with that part ([`ShutdownSettings`](crate::shutdown::ShutdownSettings), ...);
//! [`ServiceSettings`](crate::ServiceSettings) gathers them for [`Service`](crate::Service).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use telemed_kit::config::{Env, ServiceIdentity};
//!
//! // A variable of the service's own, read and checked like the kit's.
//! const POLL_INTERVAL: &str = "POLL_INTERVAL";
//!
//! let env = Env::from_pairs([("OTEL_SERVICE_NAME", "patient-reminders"), (POLL_INTERVAL, "2s")]);
//! let identity = ServiceIdentity::from_env(&env, telemed_kit::service_info!()).unwrap();
//! assert_eq!(identity.name, "patient-reminders");
//! assert_eq!(env.duration_or(POLL_INTERVAL, Duration::from_secs(10)).unwrap(), Duration::from_secs(2));
//!
//! let env = Env::from_pairs([("PORT", "http")]);
//! let error = env.port_or("PORT", 8080).unwrap_err();
//! assert_eq!(error.to_string(), r#"PORT="http": expected a port number from 1 to 65535"#);
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::redact::redact;

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
            value: redact(value).into_owned(),
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
    /// is written directly in the eHealth logging model's shape; see [`exit_misconfigured`].
    pub fn exit(&self) -> ! {
        exit_misconfigured(self)
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

    /// A list of `key=value` pairs separated by commas, as the OpenTelemetry variables write them
    /// (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`): spaces around each part are dropped, and
    /// keys and values are percent-decoded. `None` when unset.
    ///
    /// With `secret`, an error names the variable and the position of the bad entry but shows no value: a header
    /// list may hold a credential.
    pub fn pairs(
        &self,
        name: &str,
        secret: bool,
    ) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        let Some(raw) = self.raw(name)? else {
            return Ok(None);
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text.trim())
                .decode_utf8()
                .ok()
                .map(|text| text.into_owned())
        };
        let mut pairs = Vec::new();
        for (index, entry) in raw.split(',').enumerate() {
            if entry.trim().is_empty() {
                continue;
            }
            let pair = entry.split_once('=').and_then(|(key, value)| {
                let key = decode(key).filter(|key| !key.is_empty())?;
                Some((key, decode(value)?))
            });
            let Some(pair) = pair else {
                let expected = format!(
                    "comma-separated key=value pairs with percent-encoded UTF-8 (entry {} is not one)",
                    index + 1
                );
                let shown = if secret {
                    "(not shown: it may hold credentials)"
                } else {
                    &raw
                };
                return Err(ConfigError::invalid(name, shown, expected));
            };
            pairs.push(pair);
        }
        Ok(Some(pairs))
    }

    /// A TCP port (1 to 65535), or `default` when unset.
    pub fn port_or(&self, name: &str, default: u16) -> Result<u16, ConfigError> {
        Ok(self.port(name)?.unwrap_or(default))
    }

    /// A TCP port (1 to 65535), or `None` when unset.
    pub fn port(&self, name: &str) -> Result<Option<u16>, ConfigError> {
        self.parse_with(name, "a port number from 1 to 65535", |raw| {
            raw.parse().ok().filter(|port| *port != 0)
        })
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES`: the OpenTelemetry resource's attributes, `key=value` pairs.
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// The name and version the service reports in logs, traces, `User-Agent` and `GET /`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the binary's package name.
    pub name: String,
    /// The binary's package version.
    pub version: String,
}

impl ServiceIdentity {
    /// The binary's name and version, with the name taken from `OTEL_SERVICE_NAME`, or else from `service.name`
    /// in `OTEL_RESOURCE_ATTRIBUTES`, as the OpenTelemetry specification orders them.
    pub fn from_env(env: &Env, info: ServiceInfo) -> Result<Self, ConfigError> {
        const EXPECTED: &str =
            "a service name of letters, digits, '-', '_' or '.', at most 63 characters";
        let from_resource = || -> Result<Option<String>, ConfigError> {
            let attributes = env.pairs(RESOURCE_ATTRIBUTES, false)?.unwrap_or_default();
            match attributes
                .into_iter()
                .find(|(key, _)| key == "service.name")
            {
                Some((_, name)) if valid_service_name(&name) => Ok(Some(name)),
                Some((_, name)) => Err(ConfigError::invalid(
                    RESOURCE_ATTRIBUTES,
                    &format!("service.name={name}"),
                    EXPECTED,
                )),
                None => Ok(None),
            }
        };
        let name = match env.parse_with("OTEL_SERVICE_NAME", EXPECTED, |raw| {
            valid_service_name(raw).then(|| raw.to_owned())
        })? {
            Some(name) => name,
            None => from_resource()?.unwrap_or_else(|| info.name.to_owned()),
        };
        Ok(Self {
            name,
            version: info.version.to_owned(),
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

/// Reports a startup failure as one `high`/`alarm` line on stdout and ends the process with exit code 2: the one
/// body of [`ConfigError::exit`] and [`ServiceError::exit`](crate::ServiceError::exit).
///
/// It runs before logging is set up (the log's own variables may be the bad ones), so it writes the line itself,
/// synchronously, in the eHealth logging model's shape. `app` is `OTEL_SERVICE_NAME` if set (even if it is the
/// invalid value being reported), else the name of the executable.
pub fn exit_misconfigured(error: &dyn fmt::Display) -> ! {
    let app = startup_app(
        std::env::var("OTEL_SERVICE_NAME").ok(),
        std::env::args_os().next(),
    );
    let line = startup_error_line(&app, &error.to_string(), SystemTime::now());
    let mut stdout = std::io::stdout().lock();
    // Nothing is left to report a failed write to: the process ends either way.
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.flush();
    std::process::exit(2)
}

/// The `app` of a startup error line: `OTEL_SERVICE_NAME` unless blank, else the executable's file name.
fn startup_app(service_name: Option<String>, program: Option<std::ffi::OsString>) -> String {
    service_name
        .filter(|name| !name.trim().is_empty())
        .or_else(|| {
            program.and_then(|program| {
                std::path::Path::new(&program)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_default()
}

/// The last instant RFC 3339 can write with a four-digit year: 9999-12-31T23:59:59Z.
const LAST_WRITABLE_SECOND: u64 = 253_402_300_799;

fn startup_error_line(app: &str, message: &str, time: SystemTime) -> String {
    // humantime panics on a time before the epoch; a wrong time is better than no line.
    let time = time.clamp(
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(LAST_WRITABLE_SECOND),
    );
    let json = |text: &str| serde_json::Value::from(text).to_string();
    format!(
        "{{\"time\":\"{}\",\"app\":{},\"body\":{},\"severity\":\"high\",\"subject\":\"telemed_kit::config\",\"type\":\"alarm\"}}\n",
        humantime::format_rfc3339_micros(time),
        json(app),
        json(&redact(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_service_names_name_variable_value_and_expectation() {
        let env = Env::from_pairs([("PORT", "0"), ("ADMIN_PORT", "65536"), ("SPARE", "9000")]);
        for name in ["PORT", "ADMIN_PORT"] {
            let line = env.port(name).unwrap_err().to_string();
            assert!(line.starts_with(&format!("{name}=")), "{line}");
            assert!(
                line.ends_with(": expected a port number from 1 to 65535"),
                "{line}"
            );
        }
        // Names passed as variables: the documentation checks scan literal names in calls as variables the kit
        // reads, and these are a test's own.
        let (spare, unset) = ("SPARE", "UNSET");
        assert_eq!(env.port_or(spare, 1).unwrap(), 9000);
        assert_eq!(env.port_or(unset, 8080).unwrap(), 8080);

        let info = crate::service_info!();
        let identity = ServiceIdentity::from_env(&Env::from_pairs::<&str, &str>([]), info).unwrap();
        assert_eq!(
            (identity.name.as_str(), identity.version.as_str()),
            (info.name, info.version)
        );
        for bad in ["my service", "a/b", &"x".repeat(64)] {
            let error =
                ServiceIdentity::from_env(&Env::from_pairs([("OTEL_SERVICE_NAME", bad)]), info)
                    .unwrap_err();
            assert_eq!(error.variable(), "OTEL_SERVICE_NAME");
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn valid_service_names_are_taken() {
        let info = crate::service_info!();
        for good in ["reference-service", "Svc_2.1", "a", &"x".repeat(63)] {
            let identity =
                ServiceIdentity::from_env(&Env::from_pairs([("OTEL_SERVICE_NAME", good)]), info)
                    .unwrap();
            assert_eq!(identity.name, good);
        }
    }

    #[test]
    fn durations_and_booleans_are_read_or_defaulted() {
        // Names as bindings: the documentation checks take literal names in calls for variables the kit reads.
        let (delay, on, off, bad, unset) = ("DELAY", "ON", "OFF", "BAD", "UNSET");
        let env = Env::from_pairs([(delay, "1500ms"), (bad, "maybe")]);
        assert_eq!(
            env.duration_or(delay, Duration::ZERO).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            env.duration_or(unset, Duration::from_secs(3)).unwrap(),
            Duration::from_secs(3)
        );
        for value in ["true", "1", "YES", "on"] {
            let env = Env::from_pairs([(on, value)]);
            assert!(env.bool_or(on, false).unwrap(), "{value}");
        }
        for value in ["false", "0", "no", "OFF"] {
            let env = Env::from_pairs([(off, value)]);
            assert!(!env.bool_or(off, true).unwrap(), "{value}");
        }
        assert!(env.bool_or(unset, true).unwrap());
        assert_eq!(env.bool_or(bad, true).unwrap_err().variable(), bad);
    }

    #[test]
    fn pairs_are_decoded_and_a_bad_entry_is_named_without_a_secret() {
        let (list, secret, unset) = ("LIST", "SECRET_LIST", "UNSET");
        let env = Env::from_pairs([(list, " a=1, b = x%20y ,,c="), (secret, "ok=1,=s3cret")]);
        assert_eq!(env.pairs(unset, false).unwrap(), None);
        assert_eq!(
            env.pairs(list, false).unwrap(),
            Some(vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y".to_owned()),
                ("c".to_owned(), String::new()),
            ])
        );
        let shown = env.pairs(secret, false).unwrap_err().to_string();
        assert!(
            shown.contains("=s3cret") && shown.contains("entry 2"),
            "{shown}"
        );
        let hidden = env.pairs(secret, true).unwrap_err().to_string();
        assert!(
            !hidden.contains("s3cret") && hidden.contains("entry 2"),
            "{hidden}"
        );
    }

    #[test]
    fn the_service_name_may_come_from_the_resource_attributes() {
        let info = crate::service_info!();
        let env = Env::from_pairs([(
            RESOURCE_ATTRIBUTES,
            "deployment.environment=prod,service.name=from-resource",
        )]);
        assert_eq!(
            ServiceIdentity::from_env(&env, info).unwrap().name,
            "from-resource"
        );
        let env = Env::from_pairs([(RESOURCE_ATTRIBUTES, "service.name=not valid")]);
        assert_eq!(
            ServiceIdentity::from_env(&env, info)
                .unwrap_err()
                .variable(),
            RESOURCE_ATTRIBUTES
        );
    }

    #[test]
    fn env_debug_shows_no_value() {
        let env = Env::from_pairs([("KVSTORE_TOKEN", "s3cret")]);
        assert_eq!(format!("{env:?}"), "Env { .. }");
    }

    #[test]
    fn startup_app_is_the_service_name_unless_blank_else_the_program() {
        let program = || Some(std::ffi::OsString::from("/usr/local/bin/service"));
        assert_eq!(startup_app(Some("svc".into()), program()), "svc");
        assert_eq!(startup_app(Some("  ".into()), program()), "service");
        assert_eq!(startup_app(None, program()), "service");
        assert_eq!(startup_app(None, None), "");
    }

    #[test]
    fn a_value_in_an_error_is_redacted() {
        let error = Env::from_pairs([("KVSTORE_URL", "https://kv?token=s3cret 0101901234")])
            .required("KVSTORE_URL", "a URL", |_| None::<()>)
            .unwrap_err();
        let line = error.to_string();
        assert!(
            !line.contains("s3cret") && !line.contains("0101901234"),
            "{line}"
        );
    }

    #[test]
    fn env_records_every_name_read() {
        let (port, feature) = ("PORT", "FEATURE");
        let env = Env::from_pairs([(port, "1")]);
        env.port(port).unwrap();
        env.bool_or(feature, false).unwrap();
        assert_eq!(env.names_read(), [feature, port]);
    }

    #[test]
    fn startup_error_has_the_line_shape() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_551_430_706_986_123);
        let line = startup_error_line(
            "svc",
            "PORT=\"x\": expected a port\nnumber for 0101901234",
            time,
        );
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(object["time"], "2019-03-01T08:58:26.986123Z");
        assert_eq!(object["app"], "svc");
        assert_eq!(
            object["body"],
            "PORT=\"x\": expected a port\nnumber for xxxxxxxxxx"
        );
        assert_eq!(object["severity"], "high");
        assert_eq!(object["type"], "alarm");
        assert_eq!(object["subject"], "telemed_kit::config");
        assert_eq!(
            object.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            BTreeSet::from(["time", "app", "body", "severity", "subject", "type"])
        );
        // A clock before the epoch or past year 9999 still gives a line.
        for time in [
            UNIX_EPOCH - Duration::from_secs(1),
            UNIX_EPOCH + Duration::from_secs(LAST_WRITABLE_SECOND * 10),
        ] {
            let line = startup_error_line("svc", "bad", time);
            assert!(
                serde_json::from_str::<serde_json::Value>(line.trim_end()).is_ok(),
                "{line}"
            );
        }
    }
}
