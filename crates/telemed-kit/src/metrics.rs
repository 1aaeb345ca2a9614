//! Application metrics in the Prometheus text format, at `GET /metrics`.
//!
//! The eHealth platform scrapes Prometheus metrics ("Application Metrics"). The kit records, with no code in the
//! service:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `http_server_requests_total` | `method`, `route`, `status_class` | requests answered |
//! | `http_server_request_duration_seconds` | `method`, `route` | latency histogram |
//! | `http_server_requests_in_flight` | `route` | requests being handled |
//! | `http_client_requests_total` | `host`, `status_class` | outbound requests (`status_class="error"`: no answer) |
//! | `http_client_request_duration_seconds` | `host` | outbound latency histogram |
//! | `cache_hits_total`, `cache_misses_total`, `cache_loads_total`, `cache_load_errors_total`, `cache_evictions_total` | `cache` | per cache |
//! | `cache_entries` | `cache` | entries held |
//! | `shutdown_phase_duration_seconds` | `phase` | how long each shutdown phase took |
//! | `shutdown_requests_cut_off` | | requests still running when the drain ends, then when the hooks end |
//! | `log_lines_dropped_total` | `severity` | log lines dropped under overload (registered by the log part, [`Logs::count_drops_in`](crate::telemetry::log::Logs::count_drops_in)) |
//! | `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds` | | the process |
//! | `build_info` | `version`, `revision` | always 1 |
//!
//! Label values are bounded by construction: `route` is the route template (`/settings/{key}`) or `unmatched`,
//! never the raw path, which would grow without bound (and can carry CPR numbers); `host` comes from the
//! service's own configuration; `status_class` is `1xx` to `5xx`.
//!
//! `GET /metrics` is served on the application port, or on `METRICS_PORT` when set (to keep it off the port
//! the ingress exposes). It is neither access-logged nor traced. `METRICS_ENABLED=false` stops recording
//! (the benchmark compares both).
//!
//! The crate is `prometheus-client`, the Prometheus project's own Rust client: typed label sets, no global
//! registry, lock-free counters, and the 0.0.4 text format that `promtool` checks. The `metrics` facade with its
//! exporter was the alternative; it hashes label strings through a global recorder on every update.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::config::{ConfigError, Env, ServiceIdentity};

/// The path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// Latency buckets in seconds, from 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Metrics settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSettings {
    /// `METRICS_ENABLED`: record and serve metrics. Defaults to true.
    pub enabled: bool,
    /// `METRICS_PORT`: a separate port for `GET /metrics`. Defaults to unset: the application port.
    pub port: Option<u16>,
}

impl MetricsSettings {
    /// Reads `METRICS_ENABLED` and `METRICS_PORT`; the metrics port must differ from `app_port`.
    pub fn from_env(env: &Env, app_port: u16) -> Result<Self, ConfigError> {
        let enabled = env.bool_or("METRICS_ENABLED", true)?;
        let port = env.parse_with(
            "METRICS_PORT",
            "a port number from 1 to 65535, other than PORT",
            |raw| {
                raw.parse()
                    .ok()
                    .filter(|port| ![0, app_port].contains(port))
            },
        )?;
        Ok(Self { enabled, port })
    }
}

/// A text label value that is cheap to clone (an `Arc<str>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(Arc<str>);

impl Label {
    /// A label value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerLabels {
    method: Label,
    route: Label,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: Label,
    route: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InFlightLabels {
    route: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClientLabels {
    host: Label,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HostLabels {
    host: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

struct Instruments {
    /// Locked to encode a scrape and to register a metric; recording never takes it.
    registry: Mutex<Registry>,
    server_requests: Family<ServerLabels, Counter>,
    server_duration: HistogramFamily<RouteLabels>,
    server_in_flight: Family<InFlightLabels, Gauge>,
    client_requests: Family<ClientLabels, Counter>,
    client_duration: HistogramFamily<HostLabels>,
    shutdown_phases: Family<PhaseLabels, Gauge<f64, AtomicU64>>,
    cut_off: Gauge,
}

/// The service's metrics; cheap to clone. A disabled instance records nothing.
#[derive(Clone)]
pub struct Metrics {
    inner: Option<Arc<Instruments>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

/// The label values of the status classes, by [`status_class`] index.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in [`STATUS_CLASSES`] of a status code's class; anything outside 100 to 499 counts as `5xx`.
fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

impl Metrics {
    /// Metrics that record nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// The kit's instruments and collectors for `service`, or [`Metrics::disabled`] when switched off.
    pub fn new(settings: &MetricsSettings, service: &ServiceIdentity) -> Self {
        if !settings.enabled {
            return Self::disabled();
        }
        let mut registry = Registry::default();
        let server_requests = Family::default();
        let server_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        let server_in_flight = Family::default();
        let client_requests = Family::default();
        let client_duration: HistogramFamily<HostLabels> =
            Family::new_with_constructor(latency_histogram);
        let shutdown_phases = Family::default();
        let cut_off = Gauge::default();
        registry.register(
            "http_server_requests",
            "HTTP requests answered",
            server_requests.clone(),
        );
        registry.register(
            "http_server_request_duration_seconds",
            "Time from receiving a request to its response, in seconds",
            server_duration.clone(),
        );
        registry.register(
            "http_server_requests_in_flight",
            "HTTP requests being handled",
            server_in_flight.clone(),
        );
        registry.register(
            "http_client_requests",
            "Outbound HTTP requests",
            client_requests.clone(),
        );
        registry.register(
            "http_client_request_duration_seconds",
            "Outbound request latency to the response head, in seconds",
            client_duration.clone(),
        );
        registry.register(
            "shutdown_phase_duration_seconds",
            "Duration of each phase of the last shutdown, in seconds",
            shutdown_phases.clone(),
        );
        registry.register(
            "shutdown_requests_cut_off",
            "Requests still running at the shutdown deadline",
            cut_off.clone(),
        );
        registry.register_collector(Box::new(Snapshots {
            version: service.version.clone(),
            revision: option_env!("GIT_REVISION").unwrap_or("unknown").to_owned(),
            started: SystemTime::now(),
        }));
        Self {
            inner: Some(Arc::new(Instruments {
                registry: Mutex::new(registry),
                server_requests,
                server_duration,
                server_in_flight,
                client_requests,
                client_duration,
                shutdown_phases,
                cut_off,
            })),
        }
    }

    /// Adds a metric of the service's own to the page, under `name` (without the `_total` suffix of a counter,
    /// which the encoder adds); nothing when metrics are disabled.
    ///
    /// # Example
    ///
    /// ```
    /// use telemed_kit::config::{Env, ServiceIdentity};
    /// use telemed_kit::metrics::{Metrics, MetricsSettings};
    /// use telemed_kit::prometheus_client::metrics::counter::Counter;
    ///
    /// let settings = MetricsSettings::from_env(&Env::from_pairs::<&str, &str>([]), 8080).unwrap();
    /// let identity = ServiceIdentity { name: "reminders".into(), version: "1.0.0".into() };
    /// let metrics = Metrics::new(&settings, &identity);
    /// let sent: Counter = Counter::default();
    /// metrics.register("reminders_sent", "Reminders sent to patients", sent.clone());
    /// sent.inc();
    /// assert!(metrics.encode().contains("reminders_sent_total 1"));
    /// ```
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Some(instruments) = &self.inner {
            instruments.registry().register(name, help, metric);
        }
    }

    /// Adds a collector, whose values are read at each scrape (the log part's dropped lines, say); nothing when
    /// metrics are disabled.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        if let Some(instruments) = &self.inner {
            instruments.registry().register_collector(collector);
        }
    }

    /// Counts a request on `route` as in flight until the returned guard is dropped.
    pub fn request_started(&self, route: &Label) -> Option<InFlight> {
        self.route_in_flight(route).start()
    }

    /// The in-flight gauge of `route`, for a caller that counts many requests on the same route.
    pub fn route_in_flight(&self, route: &Label) -> RouteInFlight {
        RouteInFlight(self.inner.as_ref().map(|instruments| {
            instruments
                .server_in_flight
                .get_or_create(&InFlightLabels {
                    route: route.clone(),
                })
                .clone()
        }))
    }

    /// Records an answered request.
    pub fn request_finished(&self, method: &Label, route: &Label, status: u16, duration: Duration) {
        self.route(method, route).finished(status, duration);
    }

    /// The instruments that count answered requests of `method` on `route`, for a caller that records many:
    /// each is looked up in its family once, on the first request it counts.
    pub fn route(&self, method: &Label, route: &Label) -> RouteMetrics {
        RouteMetrics {
            inner: self.inner.as_ref().map(|instruments| {
                Arc::new(RouteInstruments {
                    instruments: Arc::clone(instruments),
                    method: method.clone(),
                    route: route.clone(),
                    answered: Default::default(),
                    duration: OnceLock::new(),
                })
            }),
        }
    }

    /// Records an outbound request to `host`: its status, or `None` when no response came.
    pub fn outbound(&self, host: &str, status: Option<u16>, duration: Duration) {
        let Some(instruments) = &self.inner else {
            return;
        };
        let host = Label::new(host);
        instruments
            .client_requests
            .get_or_create(&ClientLabels {
                host: host.clone(),
                status_class: status.map_or("error", |status| STATUS_CLASSES[status_class(status)]),
            })
            .inc();
        instruments
            .client_duration
            .get_or_create(&HostLabels { host })
            .observe(duration.as_secs_f64());
    }

    /// Records how long a shutdown phase took.
    pub fn shutdown_phase(&self, phase: &'static str, duration: Duration) {
        if let Some(instruments) = &self.inner {
            instruments
                .shutdown_phases
                .get_or_create(&PhaseLabels { phase })
                .set(duration.as_secs_f64());
        }
    }

    /// Records the requests cut off: those still running when the drain ends (so that a scrape during the hooks
    /// sees them), then those still running after the hooks.
    pub fn requests_cut_off(&self, count: usize) {
        if let Some(instruments) = &self.inner {
            instruments
                .cut_off
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The current metrics in the Prometheus text format (0.0.4); empty when disabled.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Some(instruments) = &self.inner {
            // Writing into a String cannot fail; an encoder error would mean a bug in a collector, and a partial
            // page is still better than none.
            let _ = prometheus_client::encoding::prometheus_text::encode(
                &mut text,
                &instruments.registry(),
            );
        }
        text
    }

    /// The `GET /metrics` route (404 when disabled).
    pub fn routes(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            METRICS_PATH,
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.response() }
            }),
        )
    }

    fn response(&self) -> Response {
        if self.inner.is_none() {
            return StatusCode::NOT_FOUND.into_response();
        }
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            )],
            self.encode(),
        )
            .into_response()
    }
}

/// The `http_server_requests_in_flight` gauge of one route, looked up once ([`Metrics::route_in_flight`]): the
/// request layer keeps one per route, so that a request counts itself in and out without hashing its route
/// into the gauge family each time.
#[derive(Debug, Clone, Default)]
pub struct RouteInFlight(Option<Gauge>);

impl RouteInFlight {
    /// Counts a request as in flight until the returned guard is dropped; `None` when metrics are off.
    pub fn start(&self) -> Option<InFlight> {
        let gauge = self.0.as_ref()?;
        gauge.inc();
        Some(InFlight {
            gauge: gauge.clone(),
        })
    }
}

/// The instruments counting answered requests of one method on one route ([`Metrics::route`]); cheap to
/// clone. The request layer keeps one per route and method, so that a request is counted without hashing its
/// labels into the families each time. An instrument joins the scrape only once it has counted a request.
#[derive(Debug, Clone, Default)]
pub struct RouteMetrics {
    inner: Option<Arc<RouteInstruments>>,
}

#[derive(Debug)]
struct RouteInstruments {
    instruments: Arc<Instruments>,
    method: Label,
    route: Label,
    /// `http_server_requests_total`, by [`status_class`] index.
    answered: [OnceLock<Counter>; STATUS_CLASSES.len()],
    duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    /// Records an answered request; nothing when metrics are off.
    pub fn finished(&self, status: u16, duration: Duration) {
        let Some(route) = &self.inner else {
            return;
        };
        let class = status_class(status);
        route.answered[class]
            .get_or_init(|| {
                route
                    .instruments
                    .server_requests
                    .get_or_create(&ServerLabels {
                        method: route.method.clone(),
                        route: route.route.clone(),
                        status_class: STATUS_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        route
            .duration
            .get_or_init(|| {
                route
                    .instruments
                    .server_duration
                    .get_or_create(&RouteLabels {
                        method: route.method.clone(),
                        route: route.route.clone(),
                    })
                    .clone()
            })
            .observe(duration.as_secs_f64());
    }
}

/// Keeps a request counted in `http_server_requests_in_flight` until dropped (also when the request is
/// cancelled or panics).
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Instruments {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Registering and encoding cannot leave the registry half-changed, so a poisoned lock is still usable.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments").finish_non_exhaustive()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Values read at scrape time: caches, the process, the build.
#[derive(Debug)]
struct Snapshots {
    version: String,
    revision: String,
    started: SystemTime,
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for Snapshots {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let caches = crate::cache::all_stats();
        type CacheField = fn(&crate::cache::CacheStats) -> u64;
        let cache_counters: [(&str, &str, CacheField); 5] = [
            (
                "cache_hits",
                "Cache lookups answered from the cache",
                |stats| stats.hits + stats.negative_hits,
            ),
            (
                "cache_misses",
                "Cache lookups that found nothing",
                |stats| stats.misses,
            ),
            ("cache_loads", "Loader runs", |stats| stats.loads),
            ("cache_load_errors", "Loader runs that failed", |stats| {
                stats.load_errors
            }),
            (
                "cache_evictions",
                "Entries removed to stay within the size bound",
                |stats| stats.evictions,
            ),
        ];
        for (name, help, field) in cache_counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (cache, stats) in &caches {
                let labels = [("cache", Label(cache.clone()))];
                ConstCounter::new(field(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "cache_entries",
            "Entries held",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (cache, stats) in &caches {
            let labels = [("cache", Label(cache.clone()))];
            ConstGauge::new(i64::try_from(stats.entries).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }

        if let Some(rss) = process_rss_bytes() {
            encode_gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss as f64,
            )?;
        }
        if let Some(fds) = process_open_fds() {
            encode_gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                fds as f64,
            )?;
        }
        let start = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        encode_gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            start,
        )?;
        let mut family = encoder.encode_descriptor(
            "build_info",
            "Version and revision of the build; always 1",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        let labels = [
            ("version", self.version.as_str()),
            ("revision", self.revision.as_str()),
        ];
        ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}

fn process_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn process_open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        let service = ServiceIdentity {
            name: "svc".into(),
            version: "1.2.3".into(),
        };
        Metrics::new(
            &MetricsSettings {
                enabled: true,
                port: None,
            },
            &service,
        )
    }

    #[test]
    fn records_requests_by_route_template_and_status_class() {
        let metrics = metrics();
        let route = Label::new("/settings/{key}");
        let get = Label::new("GET");
        let in_flight = metrics.request_started(&route);
        assert!(
            metrics
                .encode()
                .contains("http_server_requests_in_flight{route=\"/settings/{key}\"} 1")
        );
        let kept = metrics.route_in_flight(&route);
        let second = kept.start();
        assert!(
            metrics
                .encode()
                .contains("http_server_requests_in_flight{route=\"/settings/{key}\"} 2")
        );
        drop((in_flight, second));
        let answered = metrics.route(&get, &route);
        let text = metrics.encode();
        assert!(!text.contains("http_server_requests_total{"), "{text}");
        assert!(
            !text.contains("http_server_request_duration_seconds_count{"),
            "{text}"
        );
        // A kept `RouteMetrics` and a one-off call count into the same series.
        answered.finished(200, Duration::from_millis(3));
        metrics.request_finished(&get, &route, 204, Duration::from_millis(3));
        answered.finished(503, Duration::from_millis(3));
        metrics.outbound("kvstore.example", None, Duration::from_millis(1));
        let text = metrics.encode();
        assert!(
            text.contains("http_server_requests_in_flight{route=\"/settings/{key}\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("http_server_requests_total{method=\"GET\",route=\"/settings/{key}\",status_class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(text.contains("status_class=\"5xx\"} 1"), "{text}");
        assert!(text.contains(
            "http_client_requests_total{host=\"kvstore.example\",status_class=\"error\"} 1"
        ));
        assert!(text.contains(
            "http_server_request_duration_seconds_count{method=\"GET\",route=\"/settings/{key}\"} 3"
        ));
        assert!(text.contains("build_info{version=\"1.2.3\""), "{text}");
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
    }

    #[test]
    fn disabled_metrics_record_and_serve_nothing() {
        let metrics = Metrics::disabled();
        assert!(metrics.request_started(&Label::new("/")).is_none());
        assert!(metrics.route_in_flight(&Label::new("/")).start().is_none());
        metrics.request_finished(&Label::new("GET"), &Label::new("/"), 200, Duration::ZERO);
        metrics
            .route(&Label::new("GET"), &Label::new("/"))
            .finished(200, Duration::ZERO);
        assert_eq!(metrics.encode(), "");
        assert_eq!(metrics.response().status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_metrics_port_must_differ_from_the_app_port() {
        let env = Env::from_pairs([("METRICS_PORT", "8080")]);
        let error = MetricsSettings::from_env(&env, 8080).unwrap_err();
        assert_eq!(error.variable(), "METRICS_PORT");
        let env = Env::from_pairs([("METRICS_PORT", "9090"), ("METRICS_ENABLED", "false")]);
        let settings = MetricsSettings::from_env(&env, 8080).unwrap();
        assert_eq!((settings.enabled, settings.port), (false, Some(9090)));
    }
}
