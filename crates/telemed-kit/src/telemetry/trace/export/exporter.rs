//! [`ExportProcessor`]: any OpenTelemetry `SpanExporter` behind the kit's bounded queue; OTLP is one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

use super::BatchSettings;
#[cfg(feature = "otlp")]
use super::OtlpSettings;
use super::batch::{self, Batch, BatchProcessor, Drops};

/// Spans handed to a `SpanExporter` as they are.
#[derive(Debug)]
struct SpanList(Vec<SpanData>);

impl Batch for SpanList {
    fn with_room_for(spans: usize) -> Self {
        Self(Vec::with_capacity(spans))
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Runs an OpenTelemetry [`SpanExporter`] with the guarantees of the kit's Zipkin export: a bounded queue
/// ([`BatchSettings::max_queue_size`]; a span that does not fit is dropped and counted, never waited for), a
/// thread of its own that exports each batch within [`BatchSettings::export_timeout`], lost spans counted in
/// `/metrics` ([`Tracing::count_drops_in`](crate::telemetry::trace::Tracing::count_drops_in)) and reported in at
/// most one log line per ten seconds, and a flush that gives up at the time the shutdown sequence allows.
///
/// The kit's OTLP export is one ([`ExportProcessor::otlp`]); a service's own exporter is another, given to
/// [`TracingBuilder::exporter`](crate::telemetry::trace::TracingBuilder::exporter). The exporter runs on the
/// processor's thread, inside a single-threaded tokio runtime built with the first batch (so an exporter made
/// with tokio or reqwest works), and gets the tracer provider's resource before its first export.
///
/// # Example
///
/// ```
/// use telemed_kit::opentelemetry_sdk::error::OTelSdkResult;
/// use telemed_kit::opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
/// use telemed_kit::telemetry::trace::{BatchSettings, ExportProcessor};
///
/// /// Span names on stderr, for a local run.
/// #[derive(Debug)]
/// struct Names;
///
/// impl SpanExporter for Names {
///     async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
///         batch.iter().for_each(|span| eprintln!("span {}", span.name));
///         Ok(())
///     }
/// }
///
/// let processor = ExportProcessor::start(Names, &BatchSettings::default()).unwrap();
/// let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
/// # let _ = provider.shutdown();
/// ```
#[derive(Debug)]
pub struct ExportProcessor {
    batches: BatchProcessor<SpanList>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl ExportProcessor {
    /// Starts the thread that runs `exporter`. The only failure is a thread that cannot be started.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        settings: &BatchSettings,
    ) -> std::io::Result<Self> {
        Self::start_with(settings, move || Ok(exporter))
    }

    /// OTLP over HTTP with protobuf bodies, through opentelemetry-otlp with the kit's reqwest. The exporter
    /// and its HTTP client are built with the first batch, on the processor's thread: for an `https://`
    /// collector, building the client loads the TLS trust store, which would otherwise dominate startup.
    ///
    /// Everything comes from `otlp` (which [`ExportSettings::from_env`](super::ExportSettings::from_env) reads
    /// from the environment); programmatic settings win over the crate's own reading of the `OTEL_EXPORTER_OTLP_*`
    /// variables, which therefore agree.
    #[cfg(feature = "otlp")]
    pub fn otlp(otlp: &OtlpSettings, settings: &BatchSettings) -> std::io::Result<Self> {
        let otlp = otlp.clone();
        Self::start_with(settings, move || build_otlp(&otlp))
    }

    fn start_with<E: SpanExporter + 'static>(
        settings: &BatchSettings,
        build: impl FnOnce() -> Result<E, String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let resource: Arc<Mutex<Option<Resource>>> = Arc::default();
        let mut poster = Poster {
            build: Some(Box::new(build)),
            exporter: None,
            runtime: None,
            resource: Arc::clone(&resource),
            timeout: settings.export_timeout,
        };
        let batches =
            BatchProcessor::start(settings, move |batch: &mut SpanList| poster.post(batch))?;
        Ok(Self { batches, resource })
    }

    pub(crate) fn drops(&self) -> Arc<Drops> {
        self.batches.drops()
    }
}

impl SpanProcessor for ExportProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.batches.push(|batch, _| batch.0.push(span));
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.batches.flush(batch::FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.batches.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap_or_else(PoisonError::into_inner) = Some(resource.clone());
    }
}

type Build<E> = Box<dyn FnOnce() -> Result<E, String> + Send>;

/// The exporter on the processor's thread, with the runtime it runs in.
struct Poster<E> {
    build: Option<Build<E>>,
    exporter: Option<E>,
    runtime: Option<tokio::runtime::Runtime>,
    resource: Arc<Mutex<Option<Resource>>>,
    timeout: Duration,
}

impl<E: SpanExporter> Poster<E> {
    fn post(&mut self, batch: &mut SpanList) -> Result<(), String> {
        let runtime = match &mut self.runtime {
            Some(runtime) => runtime,
            None => self.runtime.insert(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| format!("could not start the export runtime: {error}"))?,
            ),
        };
        let exporter = match &mut self.exporter {
            Some(exporter) => exporter,
            None => {
                let build = self
                    .build
                    .take()
                    .ok_or("the exporter could not be built before")?;
                // A client built here belongs to this runtime.
                let _entered = runtime.enter();
                self.exporter.insert(build()?)
            }
        };
        if let Some(resource) = self
            .resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            exporter.set_resource(&resource);
        }
        let spans = std::mem::take(&mut batch.0);
        let timeout = self.timeout;
        runtime.block_on(async {
            match tokio::time::timeout(timeout, exporter.export(spans)).await {
                Ok(result) => result.map_err(|error| error.to_string()),
                Err(_) => Err(format!("the export took longer than {timeout:?}")),
            }
        })
    }
}

#[cfg(feature = "otlp")]
fn build_otlp(otlp: &OtlpSettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{Compression, Protocol, WithExportConfig as _, WithHttpConfig as _};

    let client = super::collector_client(&otlp.endpoint, otlp.timeout).map_err(super::causes)?;
    let headers = otlp
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(otlp.endpoint.as_str())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(otlp.timeout)
        .with_headers(headers);
    if otlp.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    // The error names the setting, not its value: a header may hold a credential.
    builder
        .build()
        .map_err(|error| format!("could not build the OTLP exporter: {error}"))
}
