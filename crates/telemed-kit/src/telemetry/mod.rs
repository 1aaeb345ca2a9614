//! Request telemetry: logs in the eHealth logging model, B3 propagation, span export.
//!
//! # Layout
//! - [`log`]: one JSON object per line on stdout in the eHealth logging model, written off the request path.
//! - [`b3`]: the spec-exact B3 propagator (single and multi headers).
//! - [`sampler`]: the parent-based sampler that keeps the caller's B3 decision.
//! - [`context`]: the current request's context (trace id, headers to forward), set by [`request`].
//! - [`request`]: the per-request layer: extract, server span, request id, access log.
//! - [`export`]: Zipkin v2 export through a bounded queue, when an endpoint is configured.
//!
//! # Cost
//! The request path allocates little and never waits on I/O: the trace context is a task-local, not a tracing
//! span; spans are only created when spans are exported, and only recorded when sampled; log lines are formatted
//! into reused buffers and handed to a writer thread.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::metrics::Metrics;

use crate::config::{ConfigError, Env, ServiceIdentity};

pub mod b3;
pub mod context;
pub mod export;
mod json;
pub mod log;
pub mod request;
pub mod sampler;

pub use export::ExportSettings;
pub use log::{LogFormat, LogSettings};
pub use request::RequestTelemetryLayer;
pub use sampler::SamplerSettings;

use b3::{B3Inject, B3Propagator};

/// Logs, propagation and export settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TelemetrySettings {
    /// Log level and format.
    pub log: LogSettings,
    /// `B3_INJECT`: `multi` (the `X-B3-*` headers Envoy uses), `single` (`b3`) or `both`. Defaults to `multi`.
    pub b3_inject: B3Inject,
    /// The root sampling ratio.
    pub sampler: SamplerSettings,
    /// Span export.
    pub export: ExportSettings,
}

impl TelemetrySettings {
    /// Reads the telemetry variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            log: LogSettings::from_env(env)?,
            b3_inject: env.parse_or("B3_INJECT", B3Inject::default(), "multi, single or both")?,
            sampler: SamplerSettings::from_env(env)?,
            export: ExportSettings::from_env(env)?,
        })
    }
}

/// Failure to install the telemetry pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A global tracing subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// The thread that writes log lines to stdout could not be started.
    #[error("could not start the log writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// The span exporter could not be built from its settings.
    #[error("could not build the span exporter: {0}")]
    Exporter(String),
}

/// What the request layer and the outbound client share: the propagator and, when exporting, the tracer.
#[derive(Debug, Clone)]
pub struct Telemetry {
    inner: Arc<TelemetryInner>,
}

#[derive(Debug)]
struct TelemetryInner {
    propagator: B3Propagator,
    tracer: Option<SdkTracer>,
    metrics: Metrics,
    /// Access-log lines go straight to the JSON writer; `None` logs them as `tracing` events.
    access_log: Option<log::AccessLog>,
}

impl Telemetry {
    /// Propagation only, no export and no metrics: for tests and tools.
    pub fn propagation_only(inject: B3Inject) -> Self {
        Self::new(inject, None, Metrics::disabled(), None)
    }

    fn new(
        inject: B3Inject,
        tracer: Option<SdkTracer>,
        metrics: Metrics,
        access_log: Option<log::AccessLog>,
    ) -> Self {
        Self {
            inner: Arc::new(TelemetryInner {
                propagator: B3Propagator::new(inject),
                tracer,
                metrics,
                access_log,
            }),
        }
    }

    /// The metrics the request layer and the client record into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The B3 propagator.
    pub fn propagator(&self) -> &B3Propagator {
        &self.inner.propagator
    }

    /// The tracer, when spans are exported.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.inner.tracer.as_ref()
    }
}

/// Keeps the telemetry pipeline running; [`TelemetryGuard::flush`] drains it at shutdown.
#[derive(Debug)]
pub struct TelemetryGuard {
    log: log::LogGuard,
    spans: Option<SdkTracerProvider>,
    telemetry: Telemetry,
}

impl TelemetryGuard {
    /// The handle the request layer and the outbound client use.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Exports queued spans, then writes out buffered log lines, within `timeout` in all; returns whether
    /// everything went out. Spans get half the time: a down collector must not cost the log its flush.
    pub fn flush(&self, timeout: Duration) -> bool {
        let started = std::time::Instant::now();
        let spans_flushed = match &self.spans {
            Some(provider) => provider.shutdown_with_timeout(timeout / 2).is_ok(),
            None => true,
        };
        let logs_flushed = self.log.flush(timeout.saturating_sub(started.elapsed()));
        spans_flushed && logs_flushed
    }

    /// A handle that can flush from any thread, such as the shutdown watchdog.
    pub fn flusher(&self) -> log::LogGuard {
        self.log.clone()
    }
}

/// Installs the global tracing subscriber: the `LOG_LEVEL` filter in front of the log layer.
///
/// The filter is global rather than per layer, so that events and spans below the level cost one check and
/// nothing else.
pub fn init(
    settings: &TelemetrySettings,
    service: &ServiceIdentity,
    metrics: Metrics,
) -> Result<TelemetryGuard, TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let log::Installation {
        layer: log_layer,
        guard: log,
        access,
    } = log::layer(&settings.log, service)?;
    let sampler = sampler::B3Sampler::new(&settings.sampler);
    let spans = export::tracer_provider(&settings.export, sampler, &service.name)?;
    let tracer = spans.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        provider.tracer("telemed-kit")
    });
    // Spans of the service's own code (`#[instrument]`) join the request's trace when spans are exported.
    let otel_layer = tracer
        .clone()
        .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    tracing_subscriber::registry()
        .with(settings.log.filter())
        .with(log_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    log::installed(&log);
    install_panic_hook();
    Ok(TelemetryGuard {
        log,
        spans,
        telemetry: Telemetry::new(settings.b3_inject, tracer, metrics, access),
    })
}

/// Replaces the default panic message on stderr with one `critical` log line, redacted, carrying the trace id
/// of the request that panicked (the hook runs on the panicking task). The server turns the panic into a 500.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-text panic payload");
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()));
        tracing::error!(
            severity = "critical",
            r#type = "alarm",
            location = location.as_deref().unwrap_or("unknown"),
            "panic: {payload}"
        );
    }));
}
