//! Span export: [`ExportSettings`] and, with the `zipkin` feature, [`ZipkinProcessor`].

use std::time::Duration;

#[cfg(feature = "zipkin")]
use opentelemetry_sdk::trace::SpanProcessor;

use crate::config::{ConfigError, Env};

#[cfg(feature = "zipkin")]
mod batch;
#[cfg(feature = "zipkin")]
mod zipkin;

/// Time limit of one export request to the collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Spans waiting for export at most; more are dropped.
pub const MAX_QUEUED_SPANS: usize = 2048;
/// Spans per post to the collector: few enough that a post is short work on a shared core, enough that
/// posting costs less than a microsecond per span (docs/performance.md).
pub const EXPORT_BATCH_SIZE: usize = 128;
/// A batch that is not full is posted this long after the previous post (the SDK's default delay).
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Export settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSettings {
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`: the collector's span endpoint, such as
    /// `http://zipkin.istio-system:9411/api/v2/spans`. Defaults to unset: no spans are exported, and the
    /// inbound trace context is forwarded unchanged.
    pub zipkin_endpoint: Option<reqwest::Url>,
}

impl ExportSettings {
    /// Reads `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let zipkin_endpoint = env.parse_with(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "an http:// or https:// URL such as http://zipkin:9411/api/v2/spans",
            |raw| {
                let url = reqwest::Url::parse(raw).ok()?;
                let scheme_ok = matches!(url.scheme(), "http" | "https");
                (scheme_ok && url.host().is_some()).then_some(url)
            },
        )?;
        if let Some(endpoint) = &zipkin_endpoint
            && !cfg!(feature = "zipkin")
        {
            return Err(ConfigError::invalid(
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                endpoint.as_str(),
                "unset: this binary was built without the kit's `zipkin` feature",
            ));
        }
        Ok(Self { zipkin_endpoint })
    }
}

/// The kit's Zipkin v2 exporter, as an OpenTelemetry [`SpanProcessor`]: span export in Zipkin v2 JSON, which
/// [`Tracing`](super::Tracing) installs when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set.
///
/// Each sampled span is encoded as it ends (`export::zipkin`) into a batch of up to 128 spans; a thread of
/// the kit's own posts each batch with a 2 s timeout (`export::batch`, which says why it replaces the SDK's
/// batch processor). At most 2048 spans wait; when the queue is full, new spans are dropped and counted, never
/// waited for. A down or slow collector therefore never slows a request and never grows memory; it only
/// loses spans, which the log reports. At shutdown the queue is flushed within the time the shutdown
/// sequence gives it.
///
/// The HTTP client for the collector is built on the first post, not at startup: for an `https://` collector,
/// building it loads the TLS trust store, which would otherwise dominate the service's startup time. For an
/// `http://` collector (inside the mesh, where the sidecar provides mTLS) it loads no trust store at all.
///
/// # Why the kit writes Zipkin v2 itself
///
/// opentelemetry-zipkin 0.33, the exporter upstream offers (and marks deprecated in favour of OTLP), gets the
/// v2 format wrong in ways the platform's tracing (Istio with Jaeger and Zipkin) shows:
/// - no `localEndpoint.serviceName` (its endpoint has only an address), so the collector files every span
///   under an unknown service;
/// - `"debug": false` always, so a collector may drop a trace the caller forced with B3's debug flag;
/// - a root span gets the all-zero `parentId`, where the schema wants none;
/// - a `duration` of 0 for a sub-microsecond span, below the schema's minimum of 1;
/// - a 64-bit trace id leaves padded to 32 digits, unlike the 16 it travels as in B3;
/// - an `otel.library.name` tag on every span, and no redaction of span attributes.
///
/// It also builds a `HashMap<String, String>` of tags and owned id strings per span before serde writes them,
/// which cost the export thread more than every other part of a request's span together
/// (docs/performance.md). Until 2026-11-29 the kit repaired the first three defects by rewriting the crate's
/// output; the encoder in `export::zipkin` writes the format right in the first place, straight from the
/// SDK's spans into the request body.
///
/// A service that builds its own tracer provider can add it like any processor.
///
/// # Example
///
/// ```
/// use telemed_kit::opentelemetry_sdk::trace::SdkTracerProvider;
/// use telemed_kit::telemetry::trace::ZipkinProcessor;
///
/// let endpoint = "http://zipkin.istio-system:9411/api/v2/spans".parse().unwrap();
/// let zipkin = ZipkinProcessor::start(endpoint, "patient-reminders").unwrap();
/// let provider = SdkTracerProvider::builder().with_span_processor(zipkin).build();
/// # let _ = provider.shutdown();
/// ```
#[cfg(feature = "zipkin")]
#[derive(Debug)]
pub struct ZipkinProcessor {
    batches: batch::BatchProcessor,
}

#[cfg(feature = "zipkin")]
impl ZipkinProcessor {
    /// Starts the poster thread for `endpoint`; spans name `service_name` as their local endpoint.
    ///
    /// The HTTP client is built on the first post, not here (see the module documentation); the only failure is
    /// a thread that cannot be started.
    pub fn start(endpoint: reqwest::Url, service_name: &str) -> std::io::Result<Self> {
        let mut collector = Collector::new(endpoint);
        let batches =
            batch::BatchProcessor::start(zipkin::Encoder::new(service_name), move |body| {
                collector.post(body)
            })?;
        Ok(Self { batches })
    }
}

#[cfg(feature = "zipkin")]
impl SpanProcessor for ZipkinProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.batches.on_start(span, cx);
    }

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.batches.on_end(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.batches.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.batches.shutdown_with_timeout(timeout)
    }
}

/// Posts batches to the collector, from the export thread.
///
/// The thread has no runtime of its own until the first post: then it builds a single-threaded tokio
/// runtime and reqwest's client (see the module docs), and drives each post to its end on the thread itself,
/// with no other thread woken.
#[cfg(feature = "zipkin")]
#[derive(Debug)]
struct Collector {
    endpoint: reqwest::Url,
    client: Option<(tokio::runtime::Runtime, reqwest::Client)>,
}

#[cfg(feature = "zipkin")]
impl Collector {
    fn new(endpoint: reqwest::Url) -> Self {
        Self {
            endpoint,
            client: None,
        }
    }

    /// Posts `body`. The request gets a copy made on this thread: the batch's own buffer stays with the
    /// processor for reuse (`export::batch`).
    fn post(&mut self, body: &[u8]) -> Result<(), ExportError> {
        let (runtime, client) = match &mut self.client {
            Some(built) => built,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| ExportError::Client(error.to_string()))?;
                let mut builder = reqwest::Client::builder().timeout(EXPORT_TIMEOUT);
                if self.endpoint.scheme() == "http" {
                    // Nothing to verify: without this, building the client reads and parses the system's
                    // whole trust store (about 150 files, some 35 million instructions, on the core the
                    // requests use) for a collector it will never speak TLS to.
                    builder = builder.tls_certs_only([]);
                }
                let client = {
                    // The client's connector and timers belong to the runtime current when it is built.
                    let _entered = runtime.enter();
                    builder.build()
                }
                .map_err(|error| ExportError::Client(causes(error)))?;
                self.client.insert((runtime, client))
            }
        };
        let request = client
            .post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        // `send` starts the request's timer at once, so it is called inside the runtime.
        let response = runtime
            .block_on(async { request.send().await })
            .map_err(|error| ExportError::Post(causes(error)))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(ExportError::Status(status)),
        }
    }
}

/// Why a batch did not reach the collector. The export thread logs it; the texts carry no URL, which could
/// hold credentials.
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

    #[cfg(feature = "zipkin")]
    #[test]
    fn an_http_endpoint_with_a_host_is_taken() {
        let endpoint = "http://zipkin.istio-system:9411/api/v2/spans";
        let settings = ExportSettings::from_env(&Env::from_pairs([(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            endpoint,
        )]));
        assert_eq!(
            settings
                .ok()
                .and_then(|s| s.zipkin_endpoint)
                .as_ref()
                .map(reqwest::Url::as_str),
            Some(endpoint)
        );
    }

    #[test]
    fn the_endpoint_must_be_an_http_url_with_a_host() {
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

    #[cfg(not(feature = "zipkin"))]
    #[test]
    fn without_the_zipkin_feature_an_endpoint_is_refused_not_ignored() {
        let error = ExportSettings::from_env(&Env::from_pairs([(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "http://zipkin:9411/api/v2/spans",
        )]))
        .unwrap_err();
        assert_eq!(error.variable(), "OTEL_EXPORTER_ZIPKIN_ENDPOINT");
        assert!(
            error
                .to_string()
                .contains("without the kit's `zipkin` feature"),
            "{error}"
        );
    }
}
