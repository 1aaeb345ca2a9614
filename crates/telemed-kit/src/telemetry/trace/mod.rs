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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
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
    EXPORT_BATCH_SIZE, EXPORT_INTERVAL, EXPORT_TIMEOUT, ExportSettings, MAX_QUEUED_SPANS,
};
pub use propagator::{ParsePrecedenceError, Precedence, Propagator};
pub use sampler::{B3Sampler, DEBUG_ATTRIBUTE, SamplerSettings};

use b3::{B3Inject, B3Propagator};

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
    /// Reads `B3_INJECT`, `TRACE_CONTEXT_PRECEDENCE`, `OTEL_TRACES_SAMPLER_ARG` and `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
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
#[derive(Debug)]
#[must_use = "the builder does nothing until build is called"]
pub struct TracingBuilder<'a> {
    settings: &'a TracingSettings,
    service: &'a ServiceIdentity,
    install_global: bool,
}

impl TracingBuilder<'_> {
    /// Whether to install the provider and the B3 propagator as OpenTelemetry's globals. Defaults to true; only
    /// one `Tracing` per process may.
    pub fn install_global(mut self, install: bool) -> Self {
        self.install_global = install;
        self
    }

    /// Builds the provider (when exporting) and installs the globals.
    pub fn build(self) -> Result<Tracing, TracingError> {
        if self.install_global && GLOBAL_INSTALLED.swap(true, Ordering::AcqRel) {
            return Err(TracingError::GlobalAlreadyInstalled);
        }
        let propagator = Propagator::new(
            B3Propagator::new(self.settings.b3_inject),
            self.settings.precedence,
        );
        let provider = match provider(self.settings, self.service) {
            Ok(provider) => provider,
            Err(error) => {
                if self.install_global {
                    GLOBAL_INSTALLED.store(false, Ordering::Release);
                }
                return Err(error);
            }
        };
        let tracer = provider
            .as_ref()
            .map(|provider| provider.tracer(TRACER_NAME));
        if self.install_global {
            opentelemetry::global::set_text_map_propagator(propagator);
            if let Some(provider) = &provider {
                opentelemetry::global::set_tracer_provider(provider.clone());
            }
        }
        Ok(Tracing {
            propagator,
            provider,
            tracer,
        })
    }
}

/// The SDK provider with the kit's sampler and exporter, or `None` when nothing is exported.
#[cfg(feature = "zipkin")]
fn provider(
    settings: &TracingSettings,
    service: &ServiceIdentity,
) -> Result<Option<SdkTracerProvider>, TracingError> {
    let Some(endpoint) = &settings.export.zipkin_endpoint else {
        return Ok(None);
    };
    let zipkin = ZipkinProcessor::start(endpoint.clone(), &service.name)
        .map_err(TracingError::ExportThread)?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service.name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(zipkin)
            .with_sampler(B3Sampler::new(&settings.sampler))
            .with_resource(resource)
            .build(),
    ))
}

/// Without the `zipkin` feature nothing is exported; [`ExportSettings::from_env`] rejects an endpoint.
#[cfg(not(feature = "zipkin"))]
fn provider(
    _settings: &TracingSettings,
    _service: &ServiceIdentity,
) -> Result<Option<SdkTracerProvider>, TracingError> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{Span as _, Tracer as _};

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
