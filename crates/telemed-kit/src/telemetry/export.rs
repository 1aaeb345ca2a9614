//! Span export in Zipkin v2 JSON, when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set.
//!
//! Spans go through the SDK's batch processor: a bounded queue (2048 spans; when it is full, new spans are
//! dropped, never waited for) drained by its own thread, which posts batches with a 2 s timeout. A down or slow
//! collector therefore never slows a request and never grows memory; it only loses spans. At shutdown the queue
//! is flushed within the time the shutdown sequence gives it.
//!
//! The HTTP client for the collector is built on the first export, not at startup: building it loads the TLS
//! trust store, which would otherwise dominate the service's startup time.

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// Time limit of one export request to the collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Spans waiting for export at most; more are dropped.
pub const MAX_QUEUED_SPANS: usize = 2048;

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
                let uri: http::Uri = raw.parse().ok()?;
                let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
                (scheme_ok && uri.host().is_some()).then(|| raw.to_owned())
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
///
/// opentelemetry-zipkin marks its exporter deprecated in favour of OTLP; the platform's tracing (Istio with
/// Jaeger) takes Zipkin v2, so the kit keeps it until the platform accepts OTLP.
#[cfg(feature = "zipkin")]
#[allow(deprecated)]
pub(crate) fn tracer_provider(
    settings: &ExportSettings,
    sampler: super::sampler::B3Sampler,
    service_name: &str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, super::TelemetryError> {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    let Some(endpoint) = &settings.zipkin_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
        .with_collector_endpoint(endpoint.clone())
        .with_http_client(LazyClient::default())
        .build()
        .map_err(|error| super::TelemetryError::Exporter(error.to_string()))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUED_SPANS)
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

// The batch processor runs exports on its own thread with a plain executor, outside any tokio runtime, so the
// collector client is reqwest's blocking one; it is built on first use (see the module docs).
#[cfg(feature = "zipkin")]
#[derive(Debug, Default)]
struct LazyClient {
    client: std::sync::OnceLock<reqwest::blocking::Client>,
}

#[cfg(feature = "zipkin")]
#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for LazyClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let client = reqwest::blocking::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()?;
                self.client.get_or_init(|| client)
            }
        };
        client.send_bytes(request).await
    }
}
