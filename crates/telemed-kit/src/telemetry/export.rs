//! Span export in Zipkin v2 JSON, when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set.
//!
//! Spans go through the SDK's batch processor: a bounded queue (2048 spans; when it is full, new spans are
//! dropped, never waited for) drained by its own thread, which posts batches with a 2 s timeout. A down or slow
//! collector therefore never slows a request and never grows memory; it only loses spans. At shutdown the queue
//! is flushed within the time the shutdown sequence gives it.
//!
//! The HTTP client for the collector is built on the first export, not at startup: building it loads the TLS
//! trust store, which would otherwise dominate the service's startup time.
//!
//! # A defect of opentelemetry-zipkin 0.33 worked around here
//!
//! Its span model has no `localEndpoint.serviceName` (only an address, which the kit does not set), always
//! writes `"debug": false`, and gives a root span the all-zero `parentId` where the v2 schema wants none. Without a service name Zipkin and Jaeger file every span under an unknown service;
//! without the debug flag a collector may drop a trace the caller forced. The kit's collector client completes
//! each batch before posting it: it sets `localEndpoint.serviceName` to `OTEL_SERVICE_NAME`, and turns the
//! sampler's [`DEBUG_ATTRIBUTE`](super::sampler::DEBUG_ATTRIBUTE) tag into `"debug": true`, and drops an all-zero
//! `parentId`. This runs on the
//! export thread, never on a request.

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
        .with_http_client(CollectorClient {
            service_name: service_name.to_owned(),
            client: std::sync::OnceLock::new(),
        })
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
#[derive(Debug)]
struct CollectorClient {
    service_name: String,
    client: std::sync::OnceLock<reqwest::blocking::Client>,
}

#[cfg(feature = "zipkin")]
#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for CollectorClient {
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
        let (parts, body) = request.into_parts();
        let body = complete_spans(&body, &self.service_name)?;
        client
            .send_bytes(http::Request::from_parts(parts, body.into()))
            .await
    }
}

/// Adds what opentelemetry-zipkin leaves out to a batch of Zipkin v2 spans (the service name, the debug flag of
/// the spans the sampler marked) and drops the all-zero parent id of a root span (see the module docs).
#[cfg(feature = "zipkin")]
fn complete_spans(batch: &[u8], service_name: &str) -> Result<Vec<u8>, serde_json::Error> {
    use serde_json::{Map, Value};

    let mut spans: Vec<Map<String, Value>> = serde_json::from_slice(batch)?;
    for span in &mut spans {
        let endpoint = span
            .entry("localEndpoint")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(endpoint) = endpoint {
            endpoint.insert("serviceName".to_owned(), Value::from(service_name));
        }
        if span
            .get("parentId")
            .and_then(Value::as_str)
            .is_some_and(|id| id.bytes().all(|digit| digit == b'0'))
        {
            span.remove("parentId");
        }
        let mut debug = false;
        if let Some(Value::Object(tags)) = span.get_mut("tags") {
            debug = tags.remove(super::sampler::DEBUG_ATTRIBUTE).is_some();
            if tags.is_empty() {
                span.remove("tags");
            }
        }
        if debug {
            span.insert("debug".to_owned(), Value::Bool(true));
        }
    }
    serde_json::to_vec(&spans)
}

#[cfg(all(test, feature = "zipkin"))]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spans_get_the_service_name_the_marked_ones_the_debug_flag_and_roots_no_parent() {
        let batch = json!([
            {"id": "1", "localEndpoint": {}, "tags": {"b3.debug": "true"}, "debug": false},
            {"id": "2", "localEndpoint": {"port": 8080}, "tags": {"http.route": "/"}, "debug": false},
            {"id": "3", "parentId": "0000000000000000", "debug": false},
            {"id": "4", "parentId": "00f067aa0ba902b7", "debug": false},
        ]);
        let completed = complete_spans(&serde_json::to_vec(&batch).unwrap(), "settings").unwrap();
        let completed: serde_json::Value = serde_json::from_slice(&completed).unwrap();
        assert_eq!(
            completed,
            json!([
                {"id": "1", "localEndpoint": {"serviceName": "settings"}, "debug": true},
                {"id": "2", "localEndpoint": {"port": 8080, "serviceName": "settings"},
                 "tags": {"http.route": "/"}, "debug": false},
                {"id": "3", "localEndpoint": {"serviceName": "settings"}, "debug": false},
                {"id": "4", "parentId": "00f067aa0ba902b7", "localEndpoint": {"serviceName": "settings"},
                 "debug": false},
            ])
        );
    }

    #[test]
    fn a_batch_that_is_not_a_span_list_is_an_error() {
        assert!(complete_spans(b"{\"not\": \"a list\"}", "settings").is_err());
    }
}
