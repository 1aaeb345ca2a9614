//! Per-request telemetry: trace context in, request id, server span, access log.
//!
//! For each request, [`RequestTelemetry`]:
//! 1. extracts the B3 context (malformed headers start a new trace, never fail the request);
//! 2. when spans are exported, starts a server span, child of the inbound span; the sampler decides only when
//!    the caller deferred. When nothing is exported, the inbound context is kept unchanged, so that the
//!    outbound requests carry it on and the traces Istio assembles stay connected;
//! 3. takes `x-request-id` (or generates one) and the headers to forward into a
//!    [`RequestContext`] (current for the whole request);
//! 4. echoes `x-request-id` in the response, ends the span, and writes one access-log line.
//!
//! The quiet paths ([`DEFAULT_QUIET_PATHS`]: the probes `/healthz`, `/readyz`, `/livez` and `/metrics`) are
//! neither traced, counted nor access-logged unless they fail: the kubelet and Prometheus call them every few
//! seconds on every pod, and a line per call would drown the log.
//!
//! The access-log line uses the route template (`/settings/{key}`), never the raw path, which can carry CPR
//! numbers. Its severity follows the status: `low` below 400, `medium` with type `alert` for 4xx (a
//! plausible client error), `high` for 5xx.
//!
//! The layer must sit inside the router (`Router::layer`), where axum has matched the route.
//!
//! # Example
//!
//! An existing router gets B3 in and out, the request id, server spans, the access log and request metrics:
//!
//! ```
//! use axum::{Router, routing::get};
//! use telemed_kit::telemetry::{RequestTelemetryLayer, Telemetry};
//! use telemed_kit::telemetry::trace::b3::B3Inject;
//!
//! // In a service: Telemetry::builder(tracing.propagator()).tracer(tracing.tracer()).metrics(..).access_log(..)
//! let telemetry = Telemetry::propagation_only(B3Inject::Multi);
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RequestTelemetryLayer::new(telemetry));
//! ```

mod telemetry;

pub use telemetry::{DEFAULT_QUIET_PATHS, Telemetry, TelemetryBuilder};

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, header};
use opentelemetry::context::WithContext;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_semantic_conventions::trace as semconv;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::context::{self, RequestContext, X_REQUEST_ID};
use super::log::{ACCESS_TARGET, AccessLine, AccessLog, EventType, Severity};
use super::trace::b3::trace_id_text;
use crate::metrics::{InFlight, Label, Metrics, RouteInFlight, RouteMetrics};
use crate::redact;

/// Longest inbound `x-request-id` passed on; a longer or non-printable one is replaced by a fresh id.
const MAX_REQUEST_ID: usize = 128;

/// Applies [`RequestTelemetry`].
#[derive(Debug, Clone)]
pub struct RequestTelemetryLayer {
    telemetry: Telemetry,
}

impl RequestTelemetryLayer {
    /// The layer for `telemetry`'s propagator and tracer.
    pub fn new(telemetry: Telemetry) -> Self {
        Self { telemetry }
    }
}

impl<S> Layer<S> for RequestTelemetryLayer {
    type Service = RequestTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTelemetry {
            inner,
            telemetry: self.telemetry.clone(),
            route: Arc::default(),
        }
    }
}

/// Trace context, request id, server span and access log for each request; see the module docs.
#[derive(Debug, Clone)]
pub struct RequestTelemetry<S> {
    inner: S,
    telemetry: Telemetry,
    /// Names derived from the route this service serves, shared by its clones.
    route: Arc<OnceLock<RouteNames>>,
}

impl<S, B, ResBody> Service<Request<B>> for RequestTelemetry<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = context::Scoped<ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path();
        let telemetry = self.telemetry.inner();
        let quiet = telemetry.is_quiet(path);
        let matched = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let metrics = &telemetry.metrics;
        let cached = self.route.get_or_init(|| RouteNames::new(matched, true));
        let uncached;
        let names = if *cached.template == *matched {
            cached
        } else {
            uncached = RouteNames::new(matched, false);
            &uncached
        };
        let route = names.label.clone();
        let method = request.method().clone();
        let standard = standard_method(&method);
        let access = telemetry.access_log.clone();
        // Looked up on the route's first counted request: probes and scrapes must not appear in the metrics,
        // not even as a zero.
        let (in_flight, answered) = if quiet {
            (None, None)
        } else {
            let in_flight = names
                .in_flight
                .get_or_init(|| metrics.route_in_flight(&names.label))
                .start();
            (in_flight, Some(names.metrics(metrics, &method, standard)))
        };

        let inbound = telemetry
            .propagator
            .extract_from_headers(&opentelemetry::Context::new(), request.headers());
        let otel = match &telemetry.tracer {
            Some(tracer) if !quiet => {
                // Room for the status code added at the end, so that the span's attributes allocate once.
                let mut attributes = Vec::with_capacity(3);
                attributes.push(KeyValue::new(
                    semconv::HTTP_REQUEST_METHOD,
                    method_value(&method, standard),
                ));
                attributes.push(KeyValue::new(
                    semconv::HTTP_ROUTE,
                    Arc::clone(&names.template),
                ));
                let span = tracer
                    .span_builder(names.span_name(&method, standard))
                    .with_kind(SpanKind::Server)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &inbound);
                inbound.with_span(span)
            }
            _ => inbound,
        };

        let inbound_id = request
            .headers()
            .get(&X_REQUEST_ID)
            .filter(|value| valid_request_id(value))
            .cloned();
        let request_id_generated = inbound_id.is_none();
        let request_id = inbound_id.unwrap_or_else(new_request_id);
        let user_agent = request.headers().get(header::USER_AGENT).cloned();
        let mut context = RequestContext {
            trace_id: trace_id_text(&otel),
            request_id: Some(request_id.clone()),
            request_id_generated,
            otel,
            ..RequestContext::default()
        };
        context.capture(request.headers());
        let context = Arc::new(context);

        let response = self.inner.call(request);
        // A sampled span becomes the current OpenTelemetry context while the handler runs, so that spans of
        // the service's own code (`#[instrument]`) are its children. Unsampled requests skip the cost.
        let response = if context.otel.span().is_recording() {
            Either::Left(opentelemetry::context::FutureExt::with_context(
                response,
                context.otel.clone(),
            ))
        } else {
            Either::Right(response)
        };
        let scoped = context.clone();
        context::scope(
            scoped,
            ResponseFuture {
                inner: response,
                finish: Some(Finish {
                    started,
                    context,
                    request_id,
                    method,
                    route,
                    user_agent,
                    access,
                    answered,
                    quiet,
                    _in_flight: in_flight,
                }),
            },
        )
    }
}

pin_project! {
    /// Response future of [`RequestTelemetry`]: once the response is there, it echoes `x-request-id`, ends
    /// the server span, counts the request and writes the access-log line. It runs inside the request's
    /// [`context::scope`], so that whatever it logs carries the request's trace id.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Either<WithContext<F>, F>,
        finish: Option<Finish>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("finished", &self.finish.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        // A request that failed below this layer or was cut off ends here too: its in-flight count drops with
        // `finish`, and its span ends when the span is dropped.
        if let Some(finish) = this.finish.take()
            && let Ok(response) = &mut result
        {
            finish.answered(response);
        }
        Poll::Ready(result)
    }
}

/// What a request keeps for its end, from the start of [`RequestTelemetry::call`].
struct Finish {
    started: Instant,
    context: Arc<RequestContext>,
    request_id: HeaderValue,
    method: Method,
    route: Label,
    user_agent: Option<HeaderValue>,
    access: Option<AccessLog>,
    answered: Option<RouteMetrics>,
    /// A probe or a scrape: access-logged only when it fails.
    quiet: bool,
    /// Held for its drop, which takes the request out of the route's in-flight gauge.
    _in_flight: Option<InFlight>,
}

impl Finish {
    fn answered<ResBody>(self, response: &mut Response<ResBody>) {
        let status = response.status().as_u16();
        response.headers_mut().insert(X_REQUEST_ID, self.request_id);
        let span = self.context.otel.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(""));
            }
        }
        span.end();
        let elapsed = self.started.elapsed();
        if let Some(answered) = self.answered {
            answered.finished(status, elapsed);
        }
        if !self.quiet || status >= 400 {
            access_log(
                self.access.as_ref(),
                &self.method,
                self.route.as_str(),
                status,
                elapsed,
                self.user_agent.as_ref(),
                &self.context,
            );
        }
    }
}

const STANDARD_COUNT: usize = 9;

/// The methods whose names are cached; a request with another method gets its names built for it.
static STANDARD_METHODS: [(Method, &str); STANDARD_COUNT] = [
    (Method::GET, "GET"),
    (Method::HEAD, "HEAD"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::DELETE, "DELETE"),
    (Method::PATCH, "PATCH"),
    (Method::OPTIONS, "OPTIONS"),
    (Method::TRACE, "TRACE"),
    (Method::CONNECT, "CONNECT"),
];

/// The index of `method` in [`STANDARD_METHODS`].
fn standard_method(method: &Method) -> Option<usize> {
    STANDARD_METHODS
        .iter()
        .position(|(known, _)| known == method)
}

static METHOD_LABELS: LazyLock<[Label; STANDARD_COUNT]> = LazyLock::new(|| {
    STANDARD_METHODS
        .each_ref()
        .map(|(_, name)| Label::new(*name))
});

fn method_label(method: &Method, standard: Option<usize>) -> Label {
    match standard {
        Some(index) => METHOD_LABELS[index].clone(),
        None => Label::new(method.as_str()),
    }
}

fn method_value(method: &Method, standard: Option<usize>) -> Value {
    match standard {
        Some(index) => Value::from(STANDARD_METHODS[index].1),
        None => Value::from(method.to_string()),
    }
}

/// What a request's telemetry needs from its route template, built on the route's first request and reused:
/// each request would otherwise allocate the metric label, the span name and the span's route attribute, and
/// look up the route's in-flight gauge.
#[derive(Debug)]
struct RouteNames {
    template: Arc<str>,
    label: Label,
    in_flight: OnceLock<RouteInFlight>,
    /// Request counters by standard method, when `interned`.
    answered: [OnceLock<RouteMetrics>; STANDARD_COUNT],
    /// Span names by standard method, when `interned`.
    span_names: [OnceLock<&'static str>; STANDARD_COUNT],
    interned: bool,
}

impl RouteNames {
    fn new(template: &str, interned: bool) -> Self {
        let template: Arc<str> = template.into();
        Self {
            label: Label::new(Arc::clone(&template)),
            in_flight: OnceLock::new(),
            template,
            answered: Default::default(),
            span_names: Default::default(),
            interned,
        }
    }

    /// The instruments counting the route's answered requests of `method`.
    fn metrics(&self, metrics: &Metrics, method: &Method, standard: Option<usize>) -> RouteMetrics {
        match standard {
            Some(index) if self.interned => self.answered[index]
                .get_or_init(|| metrics.route(&METHOD_LABELS[index], &self.label))
                .clone(),
            _ => metrics.route(&method_label(method, standard), &self.label),
        }
    }

    /// `"{method} {template}"`. The SDK takes span names as `Cow<'static, str>`, so the interned names are
    /// leaked: once per standard method of a route the router was built with, a fixed set like the routes.
    fn span_name(&self, method: &Method, standard: Option<usize>) -> Cow<'static, str> {
        match standard {
            Some(index) if self.interned => {
                Cow::Borrowed(self.span_names[index].get_or_init(|| {
                    Box::leak(format!("{method} {}", self.template).into_boxed_str())
                }))
            }
            _ => Cow::Owned(format!("{method} {}", self.template)),
        }
    }
}

fn access_log(
    direct: Option<&AccessLog>,
    method: &http::Method,
    route: &str,
    status: u16,
    elapsed: Duration,
    user_agent: Option<&HeaderValue>,
    context: &RequestContext,
) {
    // Milliseconds with microsecond precision: CIM's unit, without float noise in the line.
    let duration_micros = u64::try_from((elapsed.as_nanos() + 500) / 1000).unwrap_or(u64::MAX);
    // Exact below 2^53 µs (285 years).
    let duration = duration_micros as f64 / 1000.0;
    let user_agent = user_agent
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let request_id = context.request_id().unwrap_or("");
    let method = method.as_str();
    // tracing needs the level as a constant at each call site, hence one expansion per level. Both branches
    // write the same line; see `log::AccessLog`.
    macro_rules! access_event {
        ($level:expr, $kind:ident, $body:literal) => {
            match direct {
                Some(direct) => {
                    if direct.enabled($level) {
                        direct.write(&AccessLine {
                            severity: Severity::from_level($level),
                            kind: EventType::$kind,
                            body: $body,
                            trace_id: context.trace_id.as_ref(),
                            http_method: method,
                            uri_path: route,
                            status,
                            duration_micros,
                            http_user_agent: user_agent,
                            request_id,
                            request_id_clean: context.request_id_generated,
                        });
                    }
                }
                None => tracing::event!(
                    target: ACCESS_TARGET,
                    $level,
                    r#type = EventType::$kind.as_str(),
                    http_method = method,
                    uri_path = route,
                    status,
                    duration,
                    http_user_agent = user_agent,
                    request_id,
                    $body
                ),
            }
        };
    }
    match status {
        500.. => access_event!(tracing::Level::ERROR, Event, "request failed"),
        400..=499 => access_event!(tracing::Level::WARN, Alert, "request rejected"),
        _ => access_event!(tracing::Level::INFO, Event, "request"),
    }
}

fn valid_request_id(value: &HeaderValue) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value.as_bytes().iter().all(|byte| byte.is_ascii_graphic())
}

/// A random UUID v4 from the tracer's random source, in the form Envoy generates, that redaction leaves as it
/// is.
///
/// About one random UUID in 2,000 holds `DDMMYY-SSSS` (the end of its first group, all of its second) and
/// would be masked in the access log while the response carries it unmasked, so that the two could no
/// longer be matched; such an id is drawn again. The access log relies on this and writes a generated id
/// without redacting it, so even the fallback after eight unlucky draws (never seen) is a clean id.
///
/// The id's bytes are shared, not copied, when the request context and the response each take the header.
fn new_request_id() -> HeaderValue {
    for _ in 0..8 {
        let uuid = uuid::Builder::from_random_bytes(rand_u128().to_be_bytes()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid.hyphenated().encode_lower(&mut text);
        let clean = !may_hold_cpr(id.as_bytes()) || !redact::contains_cpr(id);
        if clean && let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)) {
            return value;
        }
    }
    HeaderValue::from_static("00000000-0000-4000-8000-000000000000")
}

/// Whether a hyphenated UUID has digits where a CPR number could stand: `DDMMYY-SSSS` fits only across the
/// end of the first group and the whole second, ten digits in a row only in the last group (the others are
/// four characters long). About 39 ids in 40 have neither and skip redaction's full check.
fn may_hold_cpr(id: &[u8]) -> bool {
    let digits = |from: usize, to: usize| {
        id.get(from..to)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let mut run = 0;
    let ten_in_a_row = id.get(24..).unwrap_or_default().iter().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run == 10
    });
    (digits(2, 8) && digits(9, 13)) || ten_in_a_row
}

fn rand_u128() -> u128 {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    u128::from_be_bytes(RandomIdGenerator::default().new_trace_id().to_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::telemetry::log::LogSettings;
    use crate::telemetry::log::tests::Capture;
    use crate::telemetry::log::{JsonLayer, QueueLimits, non_blocking};
    use crate::telemetry::trace::b3::TraceIdText;

    /// The lines `access_log` writes for one request through `tracing` and the JSON layer, then directly,
    /// under the `LOG_LEVEL` directives `filter`; the request id is generated or one holding a CPR number.
    fn both_ways(
        filter: &str,
        method: &Method,
        status: u16,
        user_agent: &str,
        generated_id: bool,
    ) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let capture = Capture::default();
        let (writer, guard) =
            non_blocking("settings", capture.clone(), QueueLimits::default()).unwrap();
        let settings =
            LogSettings::from_env(&crate::config::Env::from_pairs([("LOG_LEVEL", filter)]))
                .unwrap();
        let direct = AccessLog::new(writer.clone(), &settings);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(filter))
            .with(JsonLayer::new(writer));
        let trace_id = opentelemetry::trace::TraceId::from_hex("00f067aa0ba902b7").unwrap();
        let context = Arc::new(RequestContext {
            trace_id: Some(TraceIdText::new(trace_id, true)),
            request_id: Some(if generated_id {
                new_request_id()
            } else {
                HeaderValue::from_static("req-0101901234")
            }),
            request_id_generated: generated_id,
            ..RequestContext::default()
        });
        let user_agent = HeaderValue::from_str(user_agent).unwrap();
        let elapsed = Duration::from_micros(1_234_567);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // As in a request: the context is current, so the layer finds the trace id where the line's `id` comes from.
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(context::scope(context.clone(), async {
                for way in [None, Some(&direct)] {
                    access_log(
                        way,
                        method,
                        "/settings/{key}",
                        status,
                        elapsed,
                        Some(&user_agent),
                        &context,
                    );
                }
            }))
        });
        assert!(guard.flush(Duration::from_secs(10)));
        let output = capture.text();
        output
            .lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(serde_json::Value::Object(mut object)) => {
                    // Written a moment apart; everything else must match, key order included.
                    assert!(object.remove("time").is_some_and(|time| time.is_string()));
                    assert_eq!(object.get("duration"), Some(&serde_json::json!(1234.567)));
                    object
                }
                _ => panic!("not a JSON object: {line}"),
            })
            .collect()
    }

    #[test]
    fn generated_request_ids_are_left_as_they_are_by_redaction() {
        // Without the redraw, about ten of these would be masked.
        for _ in 0..20_000 {
            let id = new_request_id();
            let text = id.to_str().unwrap();
            assert_eq!(redact::redact(text), text);
            assert!(valid_request_id(&id));
        }
    }

    #[test]
    fn ids_whose_digits_stand_where_no_cpr_number_fits_hold_none() {
        // Mostly the digits 0 to 4, so that both places a CPR number fits are often all digits and often a
        // date; xorshift, seeded, so that a failure can be repeated.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut checked, mut masked) = (0, 0);
        for _ in 0..200_000 {
            let mut id = [b'-'; 36];
            for (index, byte) in id.iter_mut().enumerate() {
                if ![8, 13, 18, 23].contains(&index) {
                    let draw = next();
                    *byte = if draw % 16 < 15 {
                        b'0' + (draw >> 8) as u8 % 4 + if index % 2 == 0 { 0 } else { 1 }
                    } else {
                        b'a' + (draw >> 8) as u8 % 6
                    };
                }
            }
            let text = std::str::from_utf8(&id).unwrap();
            let holds = redact::contains_cpr(text);
            assert!(may_hold_cpr(&id) || !holds, "{text}");
            checked += usize::from(may_hold_cpr(&id));
            masked += usize::from(holds);
        }
        // The draw must reach both outcomes, or the assertion above tests nothing.
        assert!(masked > 1_000 && checked > masked, "{masked} of {checked}");
        assert!(may_hold_cpr(b"00010190-1234-4000-8000-000000000000"));
        assert!(may_hold_cpr(b"0000000a-000a-4000-8000-a0101901234a"));
    }

    #[test]
    fn the_direct_access_line_is_the_line_the_json_layer_writes() {
        let purge = Method::from_bytes(b"PURGE").unwrap_or_default();
        for (method, status, user_agent, generated_id) in [
            (Method::GET, 200, "curl/8.5", false),
            (Method::GET, 200, "curl/8.5", true),
            (Method::PUT, 404, "probe \"quoted\" 010190-1234", false),
            (purge, 503, "Bearer abc.def", true),
        ] {
            let lines = both_ways("info", &method, status, user_agent, generated_id);
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert_eq!(lines[0], lines[1]);
            let keys = |line: &serde_json::Map<_, _>| line.keys().cloned().collect::<Vec<String>>();
            assert_eq!(keys(&lines[0]), keys(&lines[1]));
            assert_eq!(lines[0]["id"], "00f067aa0ba902b7");
            assert_eq!(lines[0]["status"], status);
            let text = serde_json::Value::from(lines[0].clone()).to_string();
            for secret in ["0101901234", "010190-1234", "abc.def"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    }

    #[test]
    fn the_direct_access_line_obeys_the_log_level() {
        assert!(both_ways("info,access=off", &Method::GET, 200, "x", false).is_empty());
        assert!(both_ways("warn", &Method::GET, 200, "x", false).is_empty());
        let rejected = both_ways("warn", &Method::GET, 404, "x", false);
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0]["severity"], "medium");
        assert_eq!(rejected[0]["type"], "alert");
    }

    #[test]
    fn an_interned_route_builds_each_span_name_once() {
        let names = RouteNames::new("/settings/{key}", true);
        let first = names.span_name(&Method::PUT, standard_method(&Method::PUT));
        let again = names.span_name(&Method::PUT, standard_method(&Method::PUT));
        assert_eq!(first, "PUT /settings/{key}");
        assert!(
            matches!((&first, &again), (Cow::Borrowed(a), Cow::Borrowed(b)) if std::ptr::eq(*a, *b))
        );
        assert_eq!(
            names.span_name(&Method::GET, standard_method(&Method::GET)),
            "GET /settings/{key}"
        );
    }

    #[test]
    fn other_methods_and_uncached_routes_get_names_of_their_own() {
        let purge = Method::from_bytes(b"PURGE").unwrap_or_default();
        let names = RouteNames::new("/cache", true);
        assert_eq!(standard_method(&purge), None);
        assert!(
            matches!(names.span_name(&purge, None), Cow::Owned(name) if name == "PURGE /cache")
        );
        assert_eq!(method_value(&purge, None), Value::from("PURGE"));
        assert_eq!(method_label(&purge, None).as_str(), "PURGE");

        let uncached = RouteNames::new("/other", false);
        let get = standard_method(&Method::GET);
        assert!(
            matches!(uncached.span_name(&Method::GET, get), Cow::Owned(name) if name == "GET /other")
        );
        assert_eq!(method_label(&Method::GET, get).as_str(), "GET");
    }
}
