//! [`ServiceSettings`]: every part's settings, read together for [`Service`](crate::Service).

use crate::cache::CacheSettings;
use crate::config::{ConfigError, Env, ServiceIdentity, ServiceInfo};
use crate::health::HealthSettings;
use crate::http::ClientSettings;
use crate::metrics::MetricsSettings;
use crate::shutdown::ShutdownSettings;
use crate::telemetry::log::LogSettings;
use crate::telemetry::trace::TracingSettings;

/// The settings of every part [`Service`](crate::Service) composes, read by
/// [`Service::from_env`](crate::Service::from_env).
///
/// A service that composes the parts itself reads each part's settings on its own instead
/// ([`ShutdownSettings::from_env`], ...); this is the same reading, in one call.
///
/// # Example
///
/// ```
/// use telemed_kit::ServiceSettings;
/// use telemed_kit::config::Env;
///
/// let env = Env::from_pairs([("PORT", "9000"), ("SHUTDOWN_DELAY", "2s")]);
/// let settings = ServiceSettings::from_env(&env, telemed_kit::service_info!()).unwrap();
/// assert_eq!(settings.port, 9000);
/// assert_eq!(settings.shutdown.delay, std::time::Duration::from_secs(2));
///
/// let env = Env::from_pairs([("PORT", "http")]);
/// let error = ServiceSettings::from_env(&env, telemed_kit::service_info!()).unwrap_err();
/// assert_eq!(error.to_string(), r#"PORT="http": expected a port number from 1 to 65535"#);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceSettings {
    /// `PORT`: the port for the application routes and the probes, on IPv4 and IPv6. Defaults to 8080.
    pub port: u16,
    /// Name and version of the service; the name is overridden by `OTEL_SERVICE_NAME`.
    pub service: ServiceIdentity,
    /// Shutdown timing.
    pub shutdown: ShutdownSettings,
    /// Probe timing.
    pub health: HealthSettings,
    /// Log level and format.
    pub log: LogSettings,
    /// Propagation, sampling and span export.
    pub tracing: TracingSettings,
    /// The outbound HTTP client.
    pub client: ClientSettings,
    /// Caches (`CACHE_DISABLED`).
    pub cache: CacheSettings,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
}

impl ServiceSettings {
    /// Reads and validates every variable of the composed parts; the first problem found is returned.
    pub fn from_env(env: &Env, info: ServiceInfo) -> Result<Self, ConfigError> {
        let port = env.port_or("PORT", 8080)?;
        let service = ServiceIdentity::from_env(env, info)?;
        Ok(Self {
            port,
            shutdown: ShutdownSettings::from_env(env)?,
            health: HealthSettings::from_env(env)?,
            log: LogSettings::from_env(env)?,
            tracing: TracingSettings::from_env(env)?,
            client: ClientSettings::from_env(env, &service)?,
            cache: CacheSettings::from_env(env)?,
            metrics: MetricsSettings::from_env(env, port)?,
            service,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<ServiceSettings, ConfigError> {
        ServiceSettings::from_env(
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
    fn every_part_reads_its_variables() {
        let env = Env::from_pairs([("PORT", "1")]);
        ServiceSettings::from_env(&env, crate::service_info!()).unwrap();
        let names = env.names_read();
        for name in [
            "PORT",
            "SHUTDOWN_DELAY",
            "LOG_LEVEL",
            "OUTBOUND_TIMEOUT",
            "CACHE_DISABLED",
            "METRICS_PORT",
        ] {
            assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
        }
    }
}
