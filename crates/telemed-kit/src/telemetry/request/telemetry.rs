//! [`Telemetry`]: what the request layer and the outbound client share.

use std::sync::Arc;

use opentelemetry_sdk::trace::SdkTracer;

use crate::metrics::Metrics;
use crate::telemetry::log::AccessLog;
use crate::telemetry::trace::Propagator;
use crate::telemetry::trace::b3::{B3Inject, B3Propagator};

/// The paths the request layer leaves out of spans, metrics and the access log unless they fail: the kit's
/// probes ([`health`](crate::health)) and `/metrics` ([`metrics`](crate::metrics)), which the kubelet and
/// Prometheus call every few seconds on every pod.
pub const DEFAULT_QUIET_PATHS: [&str; 4] = ["/healthz", "/readyz", "/livez", "/metrics"];

/// What [`RequestTelemetryLayer`](super::RequestTelemetryLayer) and the outbound
/// [`Client`](crate::http::Client) share: the propagator and, as far as they are used, the tracer, the metrics
/// and the access log. Cheap to clone.
///
/// Built from the other parts with [`Telemetry::builder`]; every piece but the propagator is optional, so that
/// a service can adopt request telemetry one piece at a time.
///
/// # Example
///
/// ```
/// use telemed_kit::metrics::{Metrics, MetricsSettings};
/// use telemed_kit::telemetry::Telemetry;
/// use telemed_kit::telemetry::trace::b3::{B3Inject, B3Propagator};
/// # let identity = telemed_kit::config::ServiceIdentity { name: "svc".into(), version: "1.0.0".into() };
/// # let metrics_settings = MetricsSettings::from_env(&telemed_kit::config::Env::from_pairs::<&str, &str>([]), 8080).unwrap();
///
/// let metrics = Metrics::new(&metrics_settings, &identity);
/// let telemetry = Telemetry::builder(B3Propagator::new(B3Inject::Multi))
///     .metrics(metrics)
///     .build();
/// assert!(telemetry.tracer().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) propagator: Propagator,
    pub(super) tracer: Option<SdkTracer>,
    pub(super) metrics: Metrics,
    /// Access-log lines go straight to the JSON writer; `None` logs them as `tracing` events.
    pub(super) access_log: Option<AccessLog>,
    pub(super) quiet_paths: Box<[Box<str>]>,
}

impl Telemetry {
    /// A builder starting from `propagator` (a [`Propagator`], or a [`B3Propagator`] with B3 first): the trace
    /// context in and out, the request id and the request context.
    pub fn builder(propagator: impl Into<Propagator>) -> TelemetryBuilder {
        TelemetryBuilder {
            propagator: propagator.into(),
            tracer: None,
            metrics: Metrics::disabled(),
            access_log: None,
            quiet_paths: DEFAULT_QUIET_PATHS.map(Box::from).into(),
        }
    }

    /// Propagation only: no spans, no metrics, access-log lines as `tracing` events.
    pub fn propagation_only(inject: B3Inject) -> Self {
        Self::builder(B3Propagator::new(inject)).build()
    }

    /// The metrics the request layer and the client record into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The propagator (B3 and W3C Trace Context).
    pub fn propagator(&self) -> &Propagator {
        &self.inner.propagator
    }

    /// The tracer, when spans are exported.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.inner.tracer.as_ref()
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    /// Whether `path` is one of the quiet paths (see [`DEFAULT_QUIET_PATHS`]).
    pub(super) fn is_quiet(&self, path: &str) -> bool {
        self.quiet_paths.iter().any(|quiet| **quiet == *path)
    }
}

/// Builds a [`Telemetry`]; from [`Telemetry::builder`].
#[derive(Debug)]
#[must_use = "the builder does nothing until build is called"]
pub struct TelemetryBuilder {
    propagator: Propagator,
    tracer: Option<SdkTracer>,
    metrics: Metrics,
    access_log: Option<AccessLog>,
    quiet_paths: Box<[Box<str>]>,
}

impl TelemetryBuilder {
    /// The tracer for server and client spans ([`Tracing::tracer`](crate::telemetry::trace::Tracing::tracer));
    /// `None`, the default, starts no spans and passes the inbound trace context on unchanged.
    pub fn tracer(mut self, tracer: Option<SdkTracer>) -> Self {
        self.tracer = tracer;
        self
    }

    /// The metrics to record requests into. Defaults to [`Metrics::disabled`].
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The direct writer of access-log lines ([`Logs::access_log`](crate::telemetry::log::Logs::access_log)).
    /// Defaults to `None`: access-log lines are `tracing` events (target `access`) like any other.
    pub fn access_log(mut self, access_log: Option<AccessLog>) -> Self {
        self.access_log = access_log;
        self
    }

    /// The paths left out of spans, metrics and the access log unless they fail. Defaults to
    /// [`DEFAULT_QUIET_PATHS`].
    pub fn quiet_paths<P: Into<Box<str>>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.quiet_paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The shared handle.
    pub fn build(self) -> Telemetry {
        Telemetry {
            inner: Arc::new(Inner {
                propagator: self.propagator,
                tracer: self.tracer,
                metrics: self.metrics,
                access_log: self.access_log,
                quiet_paths: self.quiet_paths,
            }),
        }
    }
}
