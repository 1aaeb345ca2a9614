//! Tracing: trace context propagation (B3 and W3C), the sampler, span export, and the tracer provider that
//! joins them.
//!
//! [`Tracing`] is the tracing part: it builds OpenTelemetry's SDK tracer provider from the kit's public parts
//! (the [`B3Sampler`] and, when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set, the [`ZipkinProcessor`]) and installs it
//! as OpenTelemetry's global tracer provider, with the [`Propagator`] as the global text-map propagator. A span
//! a handler makes through `opentelemetry::global`, or through `#[tracing::instrument]` with
//! [`Tracing::layer`] in the subscriber, is then a child of the request's server span and is exported with it.
//!
//! # Layout
//! - [`Propagator`]: B3 and W3C Trace Context in one precedence chain, written out together.
//! - [`b3`]: the spec-exact B3 propagator (single and multi headers).
//! - [`w3c`]: the spec-exact `traceparent` parser.
//! - [`B3Sampler`]: the parent-based sampler that keeps the caller's B3 decision.
//! - [`ZipkinProcessor`] (feature `zipkin`): Zipkin v2 export through a bounded queue.
//!
//! # Example
//!
//! A service that keeps its own `main` and subscriber:
//!
//! ```no_run
//! use telemed_kit::config::{Env, ServiceIdentity};
//! use telemed_kit::opentelemetry::trace::{Tracer, TracerProvider};
//! use telemed_kit::telemetry::trace::{Tracing, TracingSettings};
//! use telemed_kit::tracing_subscriber::layer::SubscriberExt;
//! use telemed_kit::tracing_subscriber::util::SubscriberInitExt;
//!
//! let env = Env::process();
//! let identity = ServiceIdentity::from_env(&env, telemed_kit::service_info!()).unwrap_or_else(|e| e.exit());
//! let settings = TracingSettings::from_env(&env).unwrap_or_else(|e| e.exit());
//! let tracing = Tracing::new(&settings, &identity).expect("the first tracing part of the process");
//! telemed_kit::tracing_subscriber::registry().with(tracing.layer()).init();
//!
//! // Anywhere in the service, inside a request: a child of the request's server span.
//! let tracer = telemed_kit::opentelemetry::global::tracer("reminders");
//! tracer.in_span("plan reminders", |_| {});
//! ```
//!
//! # Without export
//!
//! Without an endpoint, no tracer provider is built: the request layer starts no spans and passes the inbound
//! context on unchanged, so that the traces Istio assembles stay connected; `opentelemetry::global::tracer`
//! then gives OpenTelemetry's no-op tracer, whose spans carry their parent's context onwards and record
//! nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, SpanExporter, SpanProcessor, TracerProviderBuilder,
};
use opentelemetry_semantic_conventions as semconv;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::config::{ConfigError, Env, ServiceIdentity};

pub mod b3;
mod export;
mod propagator;
mod sampler;
pub mod w3c;

#[cfg(feature = "zipkin")]
pub use export::ZipkinProcessor;
pub use export::{
    BatchSettings, DEFAULT_OTLP_ENDPOINT, DEFAULT_ZIPKIN_ENDPOINT, EXPORT_BATCH_SIZE,
    EXPORT_INTERVAL, EXPORT_TIMEOUT, ExportProcessor, ExportSettings, MAX_QUEUED_SPANS,
    OtlpSettings,
};
pub use propagator::{ParsePrecedenceError, Precedence, Propagator};
pub use sampler::{B3Sampler, DEBUG_ATTRIBUTE, SamplerSettings};

use b3::{B3Inject, B3Propagator};
use export::Drops;

/// The instrumentation scope of the spans the kit itself starts (server and client spans).
pub const TRACER_NAME: &str = "telemed-kit";

/// Propagation, sampling and export settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TracingSettings {
    /// `B3_INJECT`: `multi` (the `X-B3-*` headers Envoy uses), `single` (`b3`) or `both`. Defaults to `multi`.
    pub b3_inject: B3Inject,
    /// `TRACE_CONTEXT_PRECEDENCE`: `b3` or `w3c`, which context wins when a request carries both a valid B3
    /// trace and a valid `traceparent`. Defaults to `b3`.
    pub precedence: Precedence,
    /// The root sampling ratio.
    pub sampler: SamplerSettings,
    /// Span export.
    pub export: ExportSettings,
}

impl TracingSettings {
    /// Reads `B3_INJECT`, `TRACE_CONTEXT_PRECEDENCE`, `OTEL_TRACES_SAMPLER_ARG` and the export variables
    /// ([`ExportSettings::from_env`]).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            b3_inject: env.parse_or("B3_INJECT", B3Inject::default(), "multi, single or both")?,
            precedence: env.parse_or(
                "TRACE_CONTEXT_PRECEDENCE",
                Precedence::default(),
                "b3 or w3c",
            )?,
            sampler: SamplerSettings::from_env(env)?,
            export: ExportSettings::from_env(env)?,
        })
    }
}

/// Why the tracing part could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TracingError {
    /// The span export thread could not be started.
    #[error("could not start the span export thread: {0}")]
    ExportThread(#[source] std::io::Error),
    /// Another [`Tracing`] of this process already installed OpenTelemetry's global tracer provider and
    /// propagator. Build one per process, or build the second with [`TracingBuilder::install_global`] off.
    #[error(
        "OpenTelemetry's global tracer provider is already installed by telemed-kit in this process: build \
         Tracing once, or the second one with install_global(false)"
    )]
    GlobalAlreadyInstalled,
}

/// Set by the first [`Tracing`] that installs itself globally: OpenTelemetry's `global::set_*` replace silently,
/// and a second provider would leave spans of the first one's tracers in a provider nobody flushes.
static GLOBAL_INSTALLED: AtomicBool = AtomicBool::new(false);

/// The tracing part: the propagator, and the tracer provider when spans are exported.
///
/// Dropping it does not flush; [`Tracing::flush`] does, and the shutdown sequence calls it
/// ([`Runner::flush`](crate::shutdown::Runner::flush)).
#[derive(Debug)]
pub struct Tracing {
    propagator: Propagator,
    provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    drops: Vec<(&'static str, Arc<Drops>)>,
}

impl Tracing {
    /// The tracing part for `settings`, installed as OpenTelemetry's global tracer provider and propagator.
    pub fn new(
        settings: &TracingSettings,
        service: &ServiceIdentity,
    ) -> Result<Self, TracingError> {
        Self::builder(settings, service).build()
    }

    /// A builder, to leave the global installation out.
    pub fn builder<'a>(
        settings: &'a TracingSettings,
        service: &'a ServiceIdentity,
    ) -> TracingBuilder<'a> {
        TracingBuilder {
            settings,
            service,
            install_global: true,
            built_in_export: true,
            processors: Vec::new(),
        }
    }

    /// The propagator (B3 and W3C Trace Context), for the request layer and the outbound client.
    pub fn propagator(&self) -> Propagator {
        self.propagator
    }

    /// The tracer the kit's server and client spans come from, when spans are exported.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.tracer.clone()
    }

    /// The SDK tracer provider, when spans are exported.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// The `tracing` layer that turns spans of the service's own code (`#[tracing::instrument]`) into
    /// OpenTelemetry spans of the request's trace; `None` (a layer that does nothing) when nothing is exported.
    ///
    /// Filter it like the log layer (`.with_filter(log_settings.filter())`), so that the debug and trace spans
    /// of libraries do not become exported spans.
    pub fn layer<S>(&self) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        self.tracer
            .clone()
            .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// Reports the spans lost by the kit's export processors in `metrics`: `spans_dropped_total`, by exporter
    /// (`zipkin`, `otlp` or `custom` for [`TracingBuilder::exporter`]) and reason (`queue_full`, or
    /// `export_failed` for spans in a post the collector did not take).
    pub fn count_drops_in(&self, metrics: &crate::metrics::Metrics) {
        if !self.drops.is_empty() {
            metrics.register_collector(Box::new(SpanDropCollector(self.drops.clone())));
        }
    }

    /// Exports the spans still queued and stops export, within `timeout`; `true` when everything went out (or
    /// nothing is exported).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.provider
            .as_ref()
            .is_none_or(|provider| provider.shutdown_with_timeout(timeout).is_ok())
    }
}

impl crate::shutdown::Flush for Tracing {
    fn flush(&self, timeout: Duration) -> bool {
        Tracing::flush(self, timeout)
    }
}

/// Builds a [`Tracing`]; from [`Tracing::builder`].
#[must_use = "the builder does nothing until build is called"]
pub struct TracingBuilder<'a> {
    settings: &'a TracingSettings,
    service: &'a ServiceIdentity,
    install_global: bool,
    built_in_export: bool,
    processors: Vec<AddProcessor>,
}

/// Adds one processor of the service's own to the provider being built.
type AddProcessor = Box<
    dyn FnOnce(
        TracerProviderBuilder,
        &BatchSettings,
    ) -> std::io::Result<(TracerProviderBuilder, Option<Arc<Drops>>)>,
>;

impl std::fmt::Debug for TracingBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingBuilder")
            .field("install_global", &self.install_global)
            .field("built_in_export", &self.built_in_export)
            .field("processors", &self.processors.len())
            .finish_non_exhaustive()
    }
}

impl TracingBuilder<'_> {
    /// Whether to install the provider and the propagator as OpenTelemetry's globals. Defaults to true; only
    /// one `Tracing` per process may.
    pub fn install_global(mut self, install: bool) -> Self {
        self.install_global = install;
        self
    }

    /// Adds an OpenTelemetry `SpanExporter` of the service's own, run behind the kit's bounded queue with the
    /// `OTEL_BSP_*` settings ([`ExportProcessor`]): its lost spans are counted like the built-in exporters'.
    /// Next to the built-in export unless [`TracingBuilder::built_in_export`] is off.
    ///
    /// # Example
    ///
    /// ```
    /// use telemed_kit::config::{Env, ServiceIdentity};
    /// use telemed_kit::opentelemetry_sdk::error::OTelSdkResult;
    /// use telemed_kit::opentelemetry_sdk::trace::{SpanData, SpanExporter};
    /// use telemed_kit::telemetry::trace::{Tracing, TracingSettings};
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
    /// let settings = TracingSettings::from_env(&Env::process()).unwrap_or_else(|e| e.exit());
    /// let identity = ServiceIdentity { name: "reminders".into(), version: "1.0.0".into() };
    /// let tracing = Tracing::builder(&settings, &identity)
    ///     .exporter(Names)
    ///     .build()
    ///     .expect("the first tracing part of the process");
    /// assert!(tracing.tracer().is_some(), "spans are made for the service's exporter");
    /// # tracing.flush(std::time::Duration::from_secs(1));
    /// ```
    pub fn exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.processors.push(Box::new(move |builder, batch| {
            let processor = ExportProcessor::start(exporter, batch)?;
            let drops = processor.drops();
            Ok((builder.with_span_processor(processor), Some(drops)))
        }));
        self
    }

    /// Adds an OpenTelemetry `SpanProcessor` of the service's own as it is (the kit cannot count what it loses).
    /// Next to the built-in export unless [`TracingBuilder::built_in_export`] is off.
    pub fn processor<P: SpanProcessor + 'static>(mut self, processor: P) -> Self {
        self.processors.push(Box::new(move |builder, _| {
            Ok((builder.with_span_processor(processor), None))
        }));
        self
    }

    /// Whether the exporters the settings select (Zipkin, OTLP) are used. Defaults to true; off, only the
    /// service's own exporters and processors get spans.
    pub fn built_in_export(mut self, on: bool) -> Self {
        self.built_in_export = on;
        self
    }

    /// Builds the provider (when anything exports) and installs the globals.
    pub fn build(self) -> Result<Tracing, TracingError> {
        if self.install_global && GLOBAL_INSTALLED.swap(true, Ordering::AcqRel) {
            return Err(TracingError::GlobalAlreadyInstalled);
        }
        let propagator = Propagator::new(
            B3Propagator::new(self.settings.b3_inject),
            self.settings.precedence,
        );
        let install_global = self.install_global;
        let (provider, drops) = match self.provider() {
            Ok(built) => built,
            Err(error) => {
                if install_global {
                    GLOBAL_INSTALLED.store(false, Ordering::Release);
                }
                return Err(TracingError::ExportThread(error));
            }
        };
        let tracer = provider
            .as_ref()
            .map(|provider| provider.tracer(TRACER_NAME));
        if install_global {
            opentelemetry::global::set_text_map_propagator(propagator);
            if let Some(provider) = &provider {
                opentelemetry::global::set_tracer_provider(provider.clone());
            }
        }
        Ok(Tracing {
            propagator,
            provider,
            tracer,
            drops,
        })
    }

    /// The SDK provider with the kit's sampler, the resource and every processor, or `None` when nothing is
    /// exported.
    #[allow(clippy::type_complexity)]
    fn provider(
        self,
    ) -> std::io::Result<(Option<SdkTracerProvider>, Vec<(&'static str, Arc<Drops>)>)> {
        let export = &self.settings.export;
        let built_in = self.built_in_export && export.exports();
        if export.sdk_disabled || (!built_in && self.processors.is_empty()) {
            return Ok((None, Vec::new()));
        }
        let mut builder = SdkTracerProvider::builder()
            .with_sampler(B3Sampler::new(&self.settings.sampler))
            .with_resource(resource(self.service, &export.resource_attributes));
        let mut drops = Vec::new();
        if self.built_in_export {
            #[cfg(feature = "zipkin")]
            if let Some(endpoint) = &export.zipkin_endpoint {
                let mut tags = vec![(
                    semconv::resource::SERVICE_VERSION.to_owned(),
                    self.service.version.clone(),
                )];
                tags.extend(export.resource_attributes.iter().cloned());
                let zipkin = ZipkinProcessor::start(
                    endpoint.clone(),
                    &self.service.name,
                    &tags,
                    &export.batch,
                )?;
                drops.push(("zipkin", zipkin.drops()));
                builder = builder.with_span_processor(zipkin);
            }
            #[cfg(feature = "otlp")]
            if let Some(otlp) = &export.otlp {
                let processor = ExportProcessor::otlp(otlp, &export.batch)?;
                drops.push(("otlp", processor.drops()));
                builder = builder.with_span_processor(processor);
            }
        }
        for add in self.processors {
            let (next, counted) = add(builder, &export.batch)?;
            builder = next;
            drops.extend(counted.map(|counted| ("custom", counted)));
        }
        Ok((Some(builder.build()), drops))
    }
}

/// The resource of every exported span: `OTEL_RESOURCE_ATTRIBUTES`, then the service's name and version, which
/// win over the same keys there (the name already came from `OTEL_SERVICE_NAME` or that list).
fn resource(
    service: &ServiceIdentity,
    attributes: &[(String, String)],
) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(service.name.clone())
        .with_attribute(KeyValue::new(
            semconv::resource::SERVICE_VERSION,
            service.version.clone(),
        ))
        .build()
}

/// `spans_dropped_total`, read from the processors' counters at scrape time.
#[derive(Debug)]
struct SpanDropCollector(Vec<(&'static str, Arc<Drops>)>);

impl prometheus_client::collector::Collector for SpanDropCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;

        let mut family = encoder.encode_descriptor(
            "spans_dropped",
            "Spans lost before reaching the collector: the queue was full, or the collector did not take them",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (exporter, drops) in &self.0 {
            for (reason, count) in [
                ("queue_full", &drops.queue_full),
                ("export_failed", &drops.export_failed),
            ] {
                let labels = [("exporter", *exporter), ("reason", reason)];
                ConstCounter::new(count.load(Ordering::Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{Span as _, Tracer as _};
    use opentelemetry_sdk::trace::SpanData;

    use super::*;

    fn identity() -> ServiceIdentity {
        ServiceIdentity {
            name: "svc".into(),
            version: "1.0.0".into(),
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> TracingSettings {
        TracingSettings::from_env(&Env::from_pairs(pairs.iter().copied())).unwrap()
    }

    #[test]
    fn the_globals_are_installed_once_per_process() {
        // The only test of this binary that installs the globals: the rule is process-wide.
        let settings = settings(&[("B3_INJECT", "single")]);
        let first = Tracing::new(&settings, &identity()).unwrap();
        assert!(first.provider().is_none() && first.tracer().is_none());
        let mut injected = HashMap::new();
        let inbound = HashMap::from([(
            "b3".to_owned(),
            "463ac35c9f6413ad-a2fb4a1d1a96d312-1".to_owned(),
        )]);
        opentelemetry::global::get_text_map_propagator(|propagator| {
            let cx = propagator.extract(&inbound);
            propagator.inject_context(&cx, &mut injected);
        });
        assert_eq!(injected.get("b3"), inbound.get("b3"), "{injected:?}");

        let second = Tracing::new(&settings, &identity());
        assert!(
            matches!(second, Err(TracingError::GlobalAlreadyInstalled)),
            "{second:?}"
        );
        assert!(
            Tracing::builder(&settings, &identity())
                .install_global(false)
                .build()
                .is_ok()
        );
    }

    /// Spans as the exporter receives them, with the resource it was given; each export first waits for a
    /// permit from `gate` when there is one.
    #[derive(Debug, Default, Clone)]
    struct Recording {
        spans: Arc<std::sync::Mutex<Vec<SpanData>>>,
        resource: Arc<std::sync::Mutex<Option<opentelemetry_sdk::Resource>>>,
        gate: Option<Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>>,
    }

    impl SpanExporter for Recording {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            if let Some(gate) = &self.gate {
                let _ = gate.lock().unwrap().recv();
            }
            self.spans.lock().unwrap().extend(batch);
            Ok(())
        }

        fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
            *self.resource.lock().unwrap() = Some(resource.clone());
        }
    }

    #[test]
    fn a_services_own_exporter_gets_the_spans_and_the_resource_and_its_losses_are_counted() {
        let settings = settings(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=inttest,service.version=9",
            ),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ]);
        let (permit, gate) = std::sync::mpsc::channel();
        let recording = Recording {
            gate: Some(Arc::new(std::sync::Mutex::new(gate))),
            ..Recording::default()
        };
        let tracing = Tracing::builder(&settings, &identity())
            .exporter(recording.clone())
            .install_global(false)
            .build()
            .unwrap();
        let tracer = tracing.tracer().unwrap();
        // The first four fill the queue, and stay counted in it while their export waits for its permit.
        for n in 0..6 {
            tracer.start(format!("span {n}")).end();
        }
        permit.send(()).unwrap();
        let metrics = crate::metrics::Metrics::new(
            &crate::metrics::MetricsSettings::from_env(&Env::from_pairs::<&str, &str>([]), 8080)
                .unwrap(),
            &identity(),
        );
        tracing.count_drops_in(&metrics);
        assert!(tracing.flush(Duration::from_secs(10)));
        let names: Vec<String> = recording
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|span| span.name.to_string())
            .collect();
        assert_eq!(names, ["span 0", "span 1", "span 2", "span 3"]);
        let resource = recording.resource.lock().unwrap().clone().unwrap();
        let get = |key: &'static str| resource.get(&opentelemetry::Key::from_static_str(key));
        assert_eq!(get("service.name").unwrap().as_str(), "svc");
        // The binary's version wins over one in the attributes.
        assert_eq!(get("service.version").unwrap().as_str(), "1.0.0");
        assert_eq!(get("deployment.environment").unwrap().as_str(), "inttest");
        let scraped = metrics.encode();
        assert!(
            scraped.contains(r#"spans_dropped_total{exporter="custom",reason="queue_full"} 2"#),
            "{scraped}"
        );
    }

    #[test]
    fn the_sdk_disabled_makes_no_provider_not_even_for_a_services_own_exporter() {
        let settings = settings(&[("OTEL_SDK_DISABLED", "true")]);
        let tracing = Tracing::builder(&settings, &identity())
            .exporter(Recording::default())
            .install_global(false)
            .build()
            .unwrap();
        assert!(tracing.tracer().is_none() && tracing.provider().is_none());
        // Off by the builder instead, the built-in export goes and the service's own stays.
        let settings = super::tests::settings(&[("OTEL_TRACES_EXPORTER", "otlp")]);
        let tracing = Tracing::builder(&settings, &identity())
            .built_in_export(false)
            .install_global(false)
            .build()
            .unwrap();
        assert!(tracing.tracer().is_none());
    }

    #[cfg(feature = "zipkin")]
    #[test]
    fn with_an_endpoint_the_provider_keeps_b3_decisions_over_the_ratio() {
        let settings = settings(&[
            (
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                "http://127.0.0.1:9/api/v2/spans",
            ),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ]);
        let tracing = Tracing::builder(&settings, &identity())
            .install_global(false)
            .build()
            .unwrap();
        let tracer = tracing.tracer().unwrap();
        assert!(!tracer.start("root").span_context().is_sampled());
        let accepted = tracing.propagator().extract(&HashMap::from([(
            "b3".to_owned(),
            "463ac35c9f6413ad-a2fb4a1d1a96d312-1".to_owned(),
        )]));
        let child = tracer.start_with_context("child", &accepted);
        assert!(child.span_context().is_sampled());
        assert_eq!(
            format!("{}", child.span_context().trace_id()),
            "0000000000000000463ac35c9f6413ad"
        );
    }
}
