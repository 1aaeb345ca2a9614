//! The export variables of the OpenTelemetry specification, read the way it says they combine.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::config::{ConfigError, Env, RESOURCE_ATTRIBUTES};

/// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`'s default); more are dropped and counted.
pub const MAX_QUEUED_SPANS: usize = 2048;
/// Spans per post to the collector (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default): few enough that a post is
/// short work on a shared core, enough that posting costs less than a microsecond per span
/// (docs/performance.md). The specification's default, 512, makes each post four times the burst.
pub const EXPORT_BATCH_SIZE: usize = 128;
/// A batch that is not full is posted this long after the previous post (`OTEL_BSP_SCHEDULE_DELAY`'s default).
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Time limit of one post to the collector (`OTEL_BSP_EXPORT_TIMEOUT`'s default). The specification's 30 s
/// would let one slow post hold a whole shutdown; 2 s fits inside the one the platform grants.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The OTLP endpoint when none is set: the specification's default, a collector beside the service.
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
/// The Zipkin endpoint when `OTEL_TRACES_EXPORTER=zipkin` names no endpoint: the specification's default.
pub const DEFAULT_ZIPKIN_ENDPOINT: &str = "http://localhost:9411/api/v2/spans";

const EXPORTERS: &str = "otlp, zipkin, both comma-separated, or none";

/// Where spans go, and how they are batched; see [`ExportSettings::from_env`] for how the variables combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSettings {
    /// The Zipkin v2 span endpoint, when spans go to Zipkin.
    pub zipkin_endpoint: Option<reqwest::Url>,
    /// OTLP export, when spans go to an OTLP collector.
    pub otlp: Option<OtlpSettings>,
    /// The batching both exporters share.
    pub batch: BatchSettings,
    /// `OTEL_RESOURCE_ATTRIBUTES`: attributes of every exported span's resource, besides `service.name` and
    /// `service.version`.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_SDK_DISABLED=true`: no tracer provider at all, not even for the service's own exporters.
    pub sdk_disabled: bool,
}

impl ExportSettings {
    /// Whether any span is exported.
    pub fn exports(&self) -> bool {
        self.zipkin_endpoint.is_some() || self.otlp.is_some()
    }
}

/// OTLP over HTTP with protobuf bodies.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpSettings {
    /// The traces endpoint: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, or `OTEL_EXPORTER_OTLP_ENDPOINT` with
    /// `/v1/traces` added, or [`DEFAULT_OTLP_ENDPOINT`].
    pub endpoint: reqwest::Url,
    /// Headers of every post (`OTEL_EXPORTER_OTLP_HEADERS`, then `..._TRACES_HEADERS` per name); their values
    /// are marked sensitive and never shown.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Time limit of one post, retries included (`OTEL_EXPORTER_OTLP_TIMEOUT`, else `OTEL_BSP_EXPORT_TIMEOUT`).
    pub timeout: Duration,
    /// gzip request bodies (`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`).
    pub gzip: bool,
}

impl std::fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// The bounded queue between the threads that end spans and the thread that posts them (`OTEL_BSP_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSettings {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting at most; more are dropped and counted. Default
    /// [`MAX_QUEUED_SPANS`].
    pub max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds): a batch that is not full is posted this long after the last
    /// post. Default [`EXPORT_INTERVAL`].
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per post, at most the queue size. Default [`EXPORT_BATCH_SIZE`].
    pub max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds): time limit of one post. Default [`EXPORT_TIMEOUT`].
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_queue_size: MAX_QUEUED_SPANS,
            schedule_delay: EXPORT_INTERVAL,
            max_export_batch_size: EXPORT_BATCH_SIZE,
            export_timeout: EXPORT_TIMEOUT,
        }
    }
}

impl BatchSettings {
    /// Reads the four `OTEL_BSP_*` variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let count = |name: &str, default: usize| {
            Ok::<_, ConfigError>(
                env.parse_with(name, "a whole number of spans from 1", |raw| {
                    raw.parse::<usize>().ok().filter(|n| *n > 0)
                })?
                .unwrap_or(default),
            )
        };
        let max_queue_size = count("OTEL_BSP_MAX_QUEUE_SIZE", defaults.max_queue_size)?;
        let max_export_batch_size = match env.raw("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")? {
            // Without a batch size of its own, a small queue makes the batch smaller, as the SDKs do.
            None => defaults.max_export_batch_size.min(max_queue_size),
            Some(_) => count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 0)?,
        };
        if max_export_batch_size > max_queue_size {
            return Err(ConfigError::invalid(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &max_export_batch_size.to_string(),
                format!("at most OTEL_BSP_MAX_QUEUE_SIZE={max_queue_size}"),
            ));
        }
        Ok(Self {
            max_queue_size,
            schedule_delay: millis(env, "OTEL_BSP_SCHEDULE_DELAY")?
                .unwrap_or(defaults.schedule_delay),
            max_export_batch_size,
            export_timeout: millis(env, "OTEL_BSP_EXPORT_TIMEOUT")?
                .unwrap_or(defaults.export_timeout),
        })
    }
}

/// A time in whole milliseconds above zero, as the specification writes its timeouts and delays.
fn millis(env: &Env, name: &str) -> Result<Option<Duration>, ConfigError> {
    env.parse_with(
        name,
        "a whole number of milliseconds from 1, such as 500",
        |raw| {
            raw.parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
        },
    )
}

fn url(env: &Env, name: &str, example: &str) -> Result<Option<reqwest::Url>, ConfigError> {
    let expected = format!("an http:// or https:// URL such as {example}");
    env.parse_with(name, &expected, |raw| {
        let url = reqwest::Url::parse(raw).ok()?;
        let scheme_ok = matches!(url.scheme(), "http" | "https");
        (scheme_ok && url.host().is_some()).then_some(url)
    })
}

/// Which exporters `OTEL_TRACES_EXPORTER` names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Selected {
    otlp: bool,
    zipkin: bool,
}

fn selected(env: &Env) -> Result<Option<Selected>, ConfigError> {
    env.parse_with("OTEL_TRACES_EXPORTER", EXPORTERS, |raw| {
        let mut selected = Selected::default();
        let names: Vec<String> = raw
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        if names == ["none"] {
            return Some(selected);
        }
        for name in names {
            match name.as_str() {
                "otlp" => selected.otlp = true,
                "zipkin" => selected.zipkin = true,
                _ => return None,
            }
        }
        Some(selected)
    })
}

/// The OTLP variable for traces if set, else the general one.
fn otlp_var<T>(
    env: &Env,
    name: &str,
    read: impl Fn(&Env, &str) -> Result<Option<T>, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    let traces = name.replacen("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_", 1);
    match read(env, &traces)? {
        Some(value) => Ok(Some(value)),
        None => read(env, name),
    }
}

impl ExportSettings {
    /// Reads the export variables, combined as the OpenTelemetry environment-variable specification says:
    ///
    /// - `OTEL_SDK_DISABLED=true`: nothing is exported, whatever else is set (every value is still checked).
    /// - `OTEL_TRACES_EXPORTER`: `otlp`, `zipkin`, `otlp,zipkin` or `none`. Unset, the endpoints decide, as
    ///   before this variable was read: `OTEL_EXPORTER_ZIPKIN_ENDPOINT` selects Zipkin, an OTLP endpoint
    ///   (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`) selects OTLP, both at once must
    ///   be chosen between, and none exports nothing. (The specification's default, `otlp` to localhost,
    ///   would post every span of a service that sets nothing to a collector that is not there.)
    /// - OTLP: the traces endpoint as it is, or the general one with `/v1/traces`; `..._TRACES_HEADERS` over
    ///   `..._HEADERS` name by name; `..._TRACES_TIMEOUT` over `..._TIMEOUT` over `OTEL_BSP_EXPORT_TIMEOUT`;
    ///   `..._TRACES_COMPRESSION` over `..._COMPRESSION` (`gzip` or `none`); `..._TRACES_PROTOCOL` over
    ///   `..._PROTOCOL`, which must be `http/protobuf`.
    /// - `OTEL_BSP_*` for either exporter; `OTEL_RESOURCE_ATTRIBUTES` for both.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let disabled = env.bool_or("OTEL_SDK_DISABLED", false)?;
        let selected_by_name = selected(env)?;
        let zipkin_endpoint = url(
            env,
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "http://zipkin:9411/api/v2/spans",
        )?;
        let otlp_traces_endpoint = url(
            env,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://otel-collector:4318/v1/traces",
        )?;
        let otlp_endpoint = url(
            env,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://otel-collector:4318",
        )?;
        let otlp_endpoint = otlp_traces_endpoint.or_else(|| {
            otlp_endpoint.map(|mut url| {
                let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
                url.set_path(&path);
                url
            })
        });
        let otlp = otlp_settings(env)?;
        let batch = BatchSettings::from_env(env)?;
        let resource_attributes = env.pairs(RESOURCE_ATTRIBUTES, false)?.unwrap_or_default();

        let selected = match selected_by_name {
            Some(selected) => selected,
            None => match (zipkin_endpoint.is_some(), otlp_endpoint.is_some()) {
                (true, true) => {
                    return Err(ConfigError::missing(
                        "OTEL_TRACES_EXPORTER",
                        "otlp, zipkin or both, since OTEL_EXPORTER_ZIPKIN_ENDPOINT and an OTLP endpoint are both set",
                    ));
                }
                (zipkin, otlp) => Selected { otlp, zipkin },
            },
        };
        let selected = if disabled {
            Selected::default()
        } else {
            selected
        };
        let named = |by_endpoint: &'static str| {
            if selected_by_name.is_some() {
                "OTEL_TRACES_EXPORTER"
            } else {
                by_endpoint
            }
        };
        if selected.zipkin && !cfg!(feature = "zipkin") {
            let variable = named("OTEL_EXPORTER_ZIPKIN_ENDPOINT");
            return Err(ConfigError::invalid(
                variable,
                &env.raw(variable)?.unwrap_or_default(),
                "unset: this binary was built without the kit's `zipkin` feature",
            ));
        }
        if selected.otlp && !cfg!(feature = "otlp") {
            let variable = named("OTEL_EXPORTER_OTLP_ENDPOINT");
            return Err(ConfigError::invalid(
                variable,
                &env.raw(variable)?.unwrap_or_default(),
                "unset: this binary was built without the kit's `otlp` feature",
            ));
        }
        let parse_default = |url: &str| reqwest::Url::parse(url).ok();
        Ok(Self {
            zipkin_endpoint: if selected.zipkin {
                zipkin_endpoint.or_else(|| parse_default(DEFAULT_ZIPKIN_ENDPOINT))
            } else {
                None
            },
            otlp: match (
                selected.otlp,
                otlp_endpoint.or_else(|| parse_default(DEFAULT_OTLP_ENDPOINT)),
            ) {
                (true, Some(endpoint)) => Some(OtlpSettings {
                    endpoint,
                    headers: otlp.headers,
                    timeout: otlp.timeout.unwrap_or(batch.export_timeout),
                    gzip: otlp.gzip,
                }),
                _ => None,
            },
            batch,
            resource_attributes,
            sdk_disabled: disabled,
        })
    }
}

/// The OTLP variables other than the endpoint.
struct OtlpParts {
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Option<Duration>,
    gzip: bool,
}

fn otlp_settings(env: &Env) -> Result<OtlpParts, ConfigError> {
    otlp_var(env, "OTEL_EXPORTER_OTLP_PROTOCOL", |env, name| {
        env.parse_with(
            name,
            "http/protobuf: the kit sends OTLP over HTTP with protobuf bodies (grpc and http/json are not built in)",
            |raw| (raw == "http/protobuf").then_some(()),
        )
    })?;
    let gzip = otlp_var(env, "OTEL_EXPORTER_OTLP_COMPRESSION", |env, name| {
        env.parse_with(name, "gzip or none", |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "gzip" => Some(true),
                "none" => Some(false),
                _ => None,
            }
        })
    })?
    .unwrap_or(false);
    let timeout = otlp_var(env, "OTEL_EXPORTER_OTLP_TIMEOUT", millis)?;
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        for (index, (key, value)) in env
            .pairs(name, true)?
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let header = HeaderName::from_bytes(key.as_bytes())
                .ok()
                .zip(HeaderValue::from_str(&value).ok());
            let Some((key, mut value)) = header else {
                return Err(ConfigError::invalid(
                    name,
                    "(not shown: it may hold credentials)",
                    format!(
                        "HTTP header names and values (entry {} is not one)",
                        index + 1
                    ),
                ));
            };
            value.set_sensitive(true);
            // The traces variable comes second and wins name by name.
            headers.retain(|(known, _)| *known != key);
            headers.push((key, value));
        }
    }
    Ok(OtlpParts {
        headers,
        timeout,
        gzip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<ExportSettings, ConfigError> {
        ExportSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn without_variables_nothing_is_exported() {
        let settings = read(&[]).unwrap();
        assert!(!settings.exports());
        assert_eq!(settings.batch, BatchSettings::default());
    }

    #[cfg(all(feature = "zipkin", feature = "otlp"))]
    #[test]
    fn the_endpoints_select_the_exporter_unless_otel_traces_exporter_does() {
        let zipkin = (
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "http://zipkin:9411/api/v2/spans",
        );
        let otlp = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/");
        let settings = read(&[zipkin]).unwrap();
        assert_eq!(settings.zipkin_endpoint.unwrap().as_str(), zipkin.1);
        assert!(settings.otlp.is_none());

        let settings = read(&[otlp]).unwrap();
        assert!(settings.zipkin_endpoint.is_none());
        assert_eq!(
            settings.otlp.unwrap().endpoint.as_str(),
            "http://collector:4318/v1/traces"
        );
        let settings = read(&[
            otlp,
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://c:4318/custom",
            ),
        ])
        .unwrap();
        assert_eq!(
            settings.otlp.unwrap().endpoint.as_str(),
            "https://c:4318/custom"
        );

        let both = read(&[zipkin, otlp]).unwrap_err();
        assert_eq!(both.variable(), "OTEL_TRACES_EXPORTER");
        let settings = read(&[zipkin, otlp, ("OTEL_TRACES_EXPORTER", "otlp, zipkin")]).unwrap();
        assert!(settings.zipkin_endpoint.is_some() && settings.otlp.is_some());
        let settings = read(&[zipkin, ("OTEL_TRACES_EXPORTER", "none")]).unwrap();
        assert!(!settings.exports());

        // Named without an endpoint: the specification's defaults.
        let settings = read(&[("OTEL_TRACES_EXPORTER", "OTLP")]).unwrap();
        assert_eq!(
            settings.otlp.unwrap().endpoint.as_str(),
            DEFAULT_OTLP_ENDPOINT
        );
        let settings = read(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap();
        assert_eq!(
            settings.zipkin_endpoint.unwrap().as_str(),
            DEFAULT_ZIPKIN_ENDPOINT
        );

        // Disabled wins, but bad values are still refused.
        let settings = read(&[
            zipkin,
            otlp,
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(!settings.exports());
        let error = read(&[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
        ])
        .unwrap_err();
        assert_eq!(error.variable(), "OTEL_BSP_MAX_QUEUE_SIZE");
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_variables_for_traces_win_over_the_general_ones() {
        let settings = read(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20general,x-tenant=a",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", " x-tenant = b "),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        let otlp = settings.otlp.unwrap();
        let headers: Vec<(&str, &str)> = otlp
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [("authorization", "Bearer general"), ("x-tenant", "b")]
        );
        assert!(otlp.headers.iter().all(|(_, value)| value.is_sensitive()));
        assert!(!format!("{otlp:?}").contains("general"), "{otlp:?}");
        assert_eq!(otlp.timeout, Duration::from_millis(1500));
        assert!(otlp.gzip);
        // Without an OTLP timeout, the batch's export timeout.
        let settings = read(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "700"),
        ])
        .unwrap();
        assert_eq!(settings.otlp.unwrap().timeout, Duration::from_millis(700));
    }

    #[test]
    fn each_bad_value_names_its_variable_and_header_values_are_never_shown() {
        let cases: &[(&str, &str)] = &[
            ("OTEL_TRACES_EXPORTER", "jaeger"),
            ("OTEL_TRACES_EXPORTER", "otlp,none"),
            ("OTEL_SDK_DISABLED", "maybe"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "ftp://collector/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-5"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1.5"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment"),
            ("OTEL_RESOURCE_ATTRIBUTES", "=nameless"),
            ("OTEL_RESOURCE_ATTRIBUTES", "k=%ff"),
        ];
        for (variable, value) in cases {
            let error = read(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable(), *variable, "{value}: {error}");
        }
        let error = read(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "128"),
        ])
        .unwrap_err();
        assert_eq!(error.variable(), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
        assert!(
            error
                .to_string()
                .contains("at most OTEL_BSP_MAX_QUEUE_SIZE=64"),
            "{error}"
        );
        // A small queue alone shrinks the default batch.
        let settings = read(&[("OTEL_BSP_MAX_QUEUE_SIZE", "64")]).unwrap();
        assert_eq!(settings.batch.max_export_batch_size, 64);

        for (variable, value) in [
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer s3cr3t,broken",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-api-key=s3cr3t\u{7f}",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=s3cr3t"),
        ] {
            let error = read(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable(), variable);
            assert!(!error.to_string().contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn resource_attributes_are_percent_decoded() {
        let settings = read(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=inttest, team=tele%20medicine",
        )])
        .unwrap();
        assert_eq!(
            settings.resource_attributes,
            [
                ("deployment.environment".to_owned(), "inttest".to_owned()),
                ("team".to_owned(), "tele medicine".to_owned())
            ]
        );
    }
}
