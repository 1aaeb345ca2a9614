//! Span export: where spans go ([`ExportSettings`], from the OpenTelemetry specification's variables) and the
//! processors that take them there through one bounded queue each: [`ZipkinProcessor`] (feature `zipkin`, the
//! kit's own Zipkin v2 encoder) and [`ExportProcessor`], which runs any OpenTelemetry `SpanExporter` (OTLP with
//! feature `otlp`, or one of the service's own).

#[cfg(feature = "zipkin")]
use std::time::Duration;

#[cfg(feature = "zipkin")]
use opentelemetry_sdk::trace::SpanProcessor;

mod batch;
mod exporter;
mod settings;
#[cfg(feature = "zipkin")]
mod zipkin;

pub(crate) use batch::Drops;
pub use exporter::ExportProcessor;
pub use settings::{
    BatchSettings, DEFAULT_OTLP_ENDPOINT, DEFAULT_ZIPKIN_ENDPOINT, EXPORT_BATCH_SIZE,
    EXPORT_INTERVAL, EXPORT_TIMEOUT, ExportSettings, MAX_QUEUED_SPANS, OtlpSettings,
};

/// The kit's Zipkin v2 exporter, as an OpenTelemetry [`SpanProcessor`]: span export in Zipkin v2 JSON, which
/// [`Tracing`](super::Tracing) installs when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set.
///
/// Each sampled span is encoded as it ends (`export::zipkin`) into a batch of up to
/// [`BatchSettings::max_export_batch_size`] spans; a thread of the kit's own posts each batch within
/// [`BatchSettings::export_timeout`] (`export::batch`, which says why it replaces the SDK's batch processor). At
/// most [`BatchSettings::max_queue_size`] spans wait; when the queue is full, new spans are dropped and counted,
/// never waited for. A down or slow collector therefore never slows a request and never grows memory; it only
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
/// use telemed_kit::telemetry::trace::BatchSettings;
///
/// let endpoint = "http://zipkin.istio-system:9411/api/v2/spans".parse().unwrap();
/// let zipkin = ZipkinProcessor::start(endpoint, "patient-reminders", &[], &BatchSettings::default()).unwrap();
/// let provider = SdkTracerProvider::builder().with_span_processor(zipkin).build();
/// # let _ = provider.shutdown();
/// ```
#[cfg(feature = "zipkin")]
#[derive(Debug)]
pub struct ZipkinProcessor {
    batches: batch::BatchProcessor<JsonBatch>,
    encoder: zipkin::Encoder,
}

#[cfg(feature = "zipkin")]
impl ZipkinProcessor {
    /// Starts the poster thread for `endpoint`; spans name `service_name` as their local endpoint and carry
    /// `resource_tags` (the resource's other attributes) as tags.
    ///
    /// The HTTP client is built on the first post, not here (see the module documentation); the only failure is
    /// a thread that cannot be started.
    pub fn start(
        endpoint: reqwest::Url,
        service_name: &str,
        resource_tags: &[(String, String)],
        settings: &BatchSettings,
    ) -> std::io::Result<Self> {
        let mut collector = Collector::new(endpoint, settings.export_timeout);
        let batches = batch::BatchProcessor::start(settings, move |body: &mut JsonBatch| {
            collector.post(&body.0)
        })?;
        Ok(Self {
            batches,
            encoder: zipkin::Encoder::new(service_name, resource_tags),
        })
    }

    pub(crate) fn drops(&self) -> std::sync::Arc<Drops> {
        self.batches.drops()
    }
}

/// A JSON array of Zipkin spans, `[` and `]` included.
#[cfg(feature = "zipkin")]
#[derive(Debug)]
struct JsonBatch(Vec<u8>);

#[cfg(feature = "zipkin")]
impl batch::Batch for JsonBatch {
    fn with_room_for(spans: usize) -> Self {
        Self(Vec::with_capacity(spans * zipkin::SPAN_SIZE_HINT))
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn seal(&mut self) {
        self.0.push(b']');
    }
}

#[cfg(feature = "zipkin")]
impl SpanProcessor for ZipkinProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        thread_local! {
            static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Encoded outside the lock, so that threads ending spans at once wait only for each other's copy.
        crate::telemetry::json::with_thread_buffers(&ENCODED, |encoded: &mut Vec<u8>| {
            encoded.clear();
            self.encoder.span(encoded, &span);
            self.batches.push(|batch, first| {
                batch.0.push(if first { b'[' } else { b',' });
                batch.0.extend_from_slice(encoded);
            });
        });
        // `span` is dropped here, on the thread that allocated it.
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.batches.flush(batch::FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.batches.shutdown(timeout)
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
    timeout: Duration,
    client: Option<(tokio::runtime::Runtime, reqwest::Client)>,
}

#[cfg(feature = "zipkin")]
impl Collector {
    fn new(endpoint: reqwest::Url, timeout: Duration) -> Self {
        Self {
            endpoint,
            timeout,
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
                let client = {
                    // The client's connector and timers belong to the runtime current when it is built.
                    let _entered = runtime.enter();
                    collector_client(&self.endpoint, self.timeout)
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

/// The HTTP client for a collector at `endpoint`, for both exporters.
#[cfg(any(feature = "zipkin", feature = "otlp"))]
fn collector_client(
    endpoint: &reqwest::Url,
    timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if endpoint.scheme() == "http" {
        // Nothing to verify: without this, building the client reads and parses the system's whole trust
        // store (about 150 files, some 35 million instructions, on the core the requests use) for a collector
        // it will never speak TLS to.
        builder = builder.tls_certs_only([]);
    }
    builder.build()
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
#[cfg(any(feature = "zipkin", feature = "otlp"))]
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
