//! Span export in Zipkin v2 JSON, when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set.
//!
//! Spans go through the SDK's batch processor: a bounded queue (2048 spans; when it is full, new spans are
//! dropped, never waited for) drained by its own thread, which encodes each batch of up to 128 spans
//! (`export::zipkin`) and posts it with a 2 s timeout. A down or slow collector therefore never slows a
//! request and never grows memory; it only loses spans. At shutdown the queue is flushed within the time the
//! shutdown sequence gives it.
//!
//! The HTTP client for the collector is built on the first export, not at startup: building it loads the TLS
//! trust store, which would otherwise dominate the service's startup time.
//!
//! # Why the kit writes Zipkin v2 itself
//!
//! opentelemetry-zipkin 0.33, the exporter upstream offers (and marks deprecated in favour of OTLP), gets the
//! v2 format wrong in ways the platform's tracing (Istio with Jaeger and Zipkin) shows:
//! - no `localEndpoint.serviceName` (its endpoint has only an address), so the collector files every span
//!   under an unknown service;
//! - `"debug": false` always, so a collector may drop a trace the caller forced with B3's debug flag;
//! - a root span gets the all-zero `parentId`, where the schema wants none;
//! - a `duration` of 0 for a sub-microsecond span, below the schema's minimum of 1;
//! - a 64-bit trace id leaves padded to 32 digits, unlike the 16 it travels as in B3;
//! - an `otel.library.name` tag on every span, and no redaction of span attributes.
//!
//! It also builds a `HashMap<String, String>` of tags and owned id strings per span before serde writes them,
//! which cost the export thread more than every other part of a request's span together
//! (docs/performance.md). Until 2026-11-29 the kit repaired the first three defects by rewriting the crate's
//! output; the encoder in `export::zipkin` writes the format right in the first place, straight from the
//! SDK's spans into the request body.

use std::time::Duration;

use crate::config::{ConfigError, Env};

#[cfg(feature = "zipkin")]
mod zipkin;

/// Time limit of one export request to the collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Spans waiting for export at most; more are dropped.
pub const MAX_QUEUED_SPANS: usize = 2048;
/// Spans per post to the collector. The SDK's default of 512 makes the export thread's work come in bursts
/// long enough to hold up requests on a shared core (docs/performance.md); with 128, four times as many
/// posts cost less than those bursts did.
pub const EXPORT_BATCH_SIZE: usize = 128;

/// Export settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSettings {
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`: the collector's span endpoint, such as
    /// `http://zipkin.istio-system:9411/api/v2/spans`. Defaults to unset: no spans are exported, and the
    /// inbound trace context is forwarded unchanged.
    pub zipkin_endpoint: Option<String>,
}

impl ExportSettings {
    /// Reads `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let zipkin_endpoint = env.parse_with(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "an http:// or https:// URL such as http://zipkin:9411/api/v2/spans",
            |raw| {
                // Parsed as the exporter's HTTP client will, so that what passes here can be posted to.
                let url = reqwest::Url::parse(raw).ok()?;
                let scheme_ok = matches!(url.scheme(), "http" | "https");
                (scheme_ok && url.host().is_some()).then(|| raw.to_owned())
            },
        )?;
        if zipkin_endpoint.is_some() && !cfg!(feature = "zipkin") {
            return Err(ConfigError::invalid(
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                zipkin_endpoint.as_deref().unwrap_or_default(),
                "unset: this binary was built without the kit's `zipkin` feature",
            ));
        }
        Ok(Self { zipkin_endpoint })
    }
}

/// Builds the tracer provider that exports to Zipkin, or `None` when export is off.
#[cfg(feature = "zipkin")]
pub(crate) fn tracer_provider(
    settings: &ExportSettings,
    sampler: super::sampler::B3Sampler,
    service_name: &str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, super::TelemetryError> {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    let Some(endpoint) = &settings.zipkin_endpoint else {
        return Ok(None);
    };
    let exporter = ZipkinExporter::new(endpoint, service_name)?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUED_SPANS)
                .with_max_export_batch_size(EXPORT_BATCH_SIZE)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(resource)
            .build(),
    ))
}

/// Without the `zipkin` feature nothing is exported; [`ExportSettings::from_env`] rejects an endpoint.
#[cfg(not(feature = "zipkin"))]
pub(crate) fn tracer_provider(
    _settings: &ExportSettings,
    _sampler: super::sampler::B3Sampler,
    _service_name: &str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, super::TelemetryError> {
    Ok(None)
}

/// Encodes each batch and posts it to the collector.
///
/// The batch processor calls it on its own thread with a plain executor, outside any tokio runtime, so the
/// client is reqwest's blocking one; it is built on first use (see the module docs).
#[cfg(feature = "zipkin")]
#[derive(Debug)]
struct ZipkinExporter {
    endpoint: reqwest::Url,
    encoder: zipkin::Encoder,
    client: std::sync::OnceLock<reqwest::blocking::Client>,
}

#[cfg(feature = "zipkin")]
impl ZipkinExporter {
    fn new(endpoint: &str, service_name: &str) -> Result<Self, super::TelemetryError> {
        let endpoint = reqwest::Url::parse(endpoint)
            .map_err(|error| super::TelemetryError::Exporter(error.to_string()))?;
        Ok(Self {
            endpoint,
            encoder: zipkin::Encoder::new(service_name),
            client: std::sync::OnceLock::new(),
        })
    }

    fn post(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let client = reqwest::blocking::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()
                    .map_err(|error| ExportError::Client(causes(error)))?;
                self.client.get_or_init(|| client)
            }
        };
        let response = client
            .post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .map_err(|error| ExportError::Post(causes(error)))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(ExportError::Status(status)),
        }
    }
}

#[cfg(feature = "zipkin")]
impl opentelemetry_sdk::trace::SpanExporter for ZipkinExporter {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let result = self.post(self.encoder.encode(&batch)).map_err(|error| {
            opentelemetry_sdk::error::OTelSdkError::InternalFailure(error.to_string())
        });
        std::future::ready(result)
    }
}

/// Why a batch did not reach the collector. The SDK reports it through its own diagnostics; the texts carry no
/// URL, which could hold credentials.
#[cfg(feature = "zipkin")]
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("could not build the collector client: {0}")]
    Client(String),
    #[error("could not post spans to the collector: {0}")]
    Post(String),
    #[error("the collector answered {0}")]
    Status(reqwest::StatusCode),
}

/// The error and its causes in one line ("error sending request: connection refused"), without the URL.
#[cfg(feature = "zipkin")]
fn causes(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_must_be_an_http_url_with_a_host() {
        let endpoint = "http://zipkin.istio-system:9411/api/v2/spans";
        let settings = ExportSettings::from_env(&Env::from_pairs([(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            endpoint,
        )]));
        assert_eq!(
            settings.ok().and_then(|s| s.zipkin_endpoint).as_deref(),
            Some(endpoint)
        );
        for bad in [
            "zipkin:9411",
            "ftp://zipkin/api",
            "http://",
            "http://zip kin/api",
            "/api/v2/spans",
        ] {
            let error = ExportSettings::from_env(&Env::from_pairs([(
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                bad,
            )]))
            .unwrap_err();
            assert_eq!(error.variable(), "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "{bad}");
            assert!(
                error.to_string().contains("an http:// or https:// URL"),
                "{error}"
            );
        }
    }
}
