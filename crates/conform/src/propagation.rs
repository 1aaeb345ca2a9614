//! The upstream the checker serves itself, and what the service must send on to it.
//!
//! Inbound B3 is written and outbound B3 read with the kit's spec-exact propagator, through OpenTelemetry's
//! `TextMapPropagator` API, so the checker holds services to the same reading of B3 as the kit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use http::HeaderMap;
use telemed_kit::opentelemetry::propagation::TextMapPropagator;
use telemed_kit::telemetry::trace::b3::{B3Context, B3Inject, B3Propagator, Sampling};

/// The headers of every request the upstream received.
#[derive(Clone, Default)]
pub struct Upstream {
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Upstream {
    /// Serves on a free loopback port; returns its base URL.
    pub async fn start(&self) -> Result<String, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("could not bind the upstream: {error}"))?;
        let addr = listener
            .local_addr()
            .map_err(|error| format!("upstream address: {error}"))?;
        let app = Router::new().fallback(record).with_state(self.seen.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}"))
    }

    /// The headers of the first request that arrived with trace id `trace_id` (in any B3 form).
    pub fn find(&self, trace_id: &str) -> Option<HeaderMap> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|headers| {
                b3_of(headers)
                    .and_then(|b3| b3.trace_id_text())
                    .is_some_and(|id| &*id == trace_id)
            })
            .cloned()
    }

    /// How many requests arrived, to tell "no call" from "a call without the trace".
    pub fn count(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

async fn record(
    State(seen): State<Arc<Mutex<Vec<HeaderMap>>>>,
    headers: HeaderMap,
) -> &'static str {
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(headers);
    "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":0}"
}

fn as_map(headers: &HeaderMap) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            map.entry(name.as_str().to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    map
}

/// The B3 context of a request's headers, read as the kit reads them (`b3` decides when present).
pub fn b3_of(headers: &HeaderMap) -> Option<B3Context> {
    let cx = B3Propagator::new(B3Inject::Both).extract(&as_map(headers));
    cx.get::<B3Context>().copied()
}

/// One inbound trace context the checker sends, and the headers that carry it.
pub struct Inbound {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: String,
    pub sampling: Sampling,
    pub headers: Vec<(String, String)>,
}

/// Random lower-case hex of `digits` digits, never all zero.
pub fn random_hex(digits: usize) -> String {
    use std::hash::{BuildHasher, Hasher, RandomState};
    let mut out = String::new();
    while out.len() < digits {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(out.len());
        out.push_str(&format!("{:016x}", hasher.finish() | 1));
    }
    out.truncate(digits);
    out
}

impl Inbound {
    /// A context in the multi-header form (`single` false) or the `b3` header, with every other header the
    /// platform forwards.
    pub fn new(single: bool, sampling: Sampling) -> Self {
        let (trace_id, span_id, parent_id) = (random_hex(32), random_hex(16), random_hex(16));
        let mut headers = Vec::new();
        if single {
            let state = match sampling {
                Sampling::Deny => "0",
                Sampling::Debug => "d",
                _ => "1",
            };
            headers.push((
                "b3".to_owned(),
                format!("{trace_id}-{span_id}-{state}-{parent_id}"),
            ));
        } else {
            headers.push(("x-b3-traceid".to_owned(), trace_id.clone()));
            headers.push(("x-b3-spanid".to_owned(), span_id.clone()));
            headers.push(("x-b3-parentspanid".to_owned(), parent_id.clone()));
            match sampling {
                Sampling::Debug => headers.push(("x-b3-flags".to_owned(), "1".to_owned())),
                Sampling::Deny => headers.push(("x-b3-sampled".to_owned(), "0".to_owned())),
                _ => headers.push(("x-b3-sampled".to_owned(), "1".to_owned())),
            }
        }
        let flags = if sampling.is_sampled() == Some(true) {
            "01"
        } else {
            "00"
        };
        headers.extend([
            (
                "x-request-id".to_owned(),
                format!("conform-{}", random_hex(16)),
            ),
            (
                "x-ot-span-context".to_owned(),
                format!("{trace_id};{span_id};{parent_id};cs"),
            ),
            (
                "traceparent".to_owned(),
                format!("00-{trace_id}-{span_id}-{flags}"),
            ),
            (
                "tracestate".to_owned(),
                "conform=t61rcWkgMzE,other=1".to_owned(),
            ),
            (
                "x-audit-restriction-levels".to_owned(),
                "NotCitizen".to_owned(),
            ),
        ]);
        Self {
            trace_id,
            span_id,
            parent_id,
            sampling,
            headers,
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value)
    }

    /// Checks the B3 context of what the service sent on: the same trace and sampling decision, and either the
    /// inbound span passed on unchanged (a service that records no spans) or a fresh span id whose parent, when
    /// sent, is the inbound span or a span of the service's own below it, never the inbound span's own parent.
    pub fn check_b3(&self, outbound: &HeaderMap) -> Result<String, String> {
        let want = "the rule wants the same trace id, the decision kept, and either the inbound span passed on \
                    unchanged or a fresh span id whose parent is the inbound span (or a span of the service's own)";
        let Some(b3) = b3_of(outbound) else {
            let present: Vec<_> = outbound
                .keys()
                .filter(|name| name.as_str() == "b3" || name.as_str().starts_with("x-b3-"))
                .map(|name| name.as_str().to_owned())
                .collect();
            return Err(format!(
                "the outbound call has no valid B3 context (B3 headers: {present:?}); {want}"
            ));
        };
        let trace = b3
            .trace_id_text()
            .map(|id| id.to_string())
            .unwrap_or_default();
        if trace != self.trace_id {
            return Err(format!(
                "outbound trace id {trace:?}, inbound {}; {want}",
                self.trace_id
            ));
        }
        if b3.sampling() != self.sampling {
            return Err(format!(
                "inbound sampling {:?}, outbound {:?}; {want}",
                self.sampling,
                b3.sampling()
            ));
        }
        let span = b3.span_id().map(|id| format!("{id}")).unwrap_or_default();
        let parent = b3.parent_span_id().map(|id| format!("{id}"));
        if span == self.span_id {
            // A service that records no spans passes the context on as it came; the mesh's sidecar spans keep
            // the trace whole. Anything between that and a span of its own breaks the trace.
            return if parent.as_deref() == Some(self.parent_id.as_str()) {
                Ok(format!(
                    "trace {trace}, span {span} and parent passed on unchanged (no span of the service's own), \
                     sampling {:?}",
                    b3.sampling()
                ))
            } else {
                Err(format!(
                    "outbound span id {span} is the inbound span's, but its parent is {parent:?}, not the inbound \
                     parent {}; {want}",
                    self.parent_id
                ))
            };
        }
        match parent.as_deref() {
            // B3 makes the parent id optional on the wire ("may be present"); the span's own export names it.
            None => {}
            Some(parent) if parent == self.parent_id => {
                return Err(format!(
                    "outbound parent id {parent} is the inbound parent, not the inbound span {}: the call was \
                     made a sibling of the inbound span; {want}",
                    self.span_id
                ));
            }
            Some(parent) if parent == span => {
                return Err(format!("outbound span {span} is its own parent; {want}"));
            }
            Some(_) => {}
        }
        let relation = match parent.as_deref() {
            None => "no parent id sent, which B3 allows".to_owned(),
            Some(parent) if parent == self.span_id => format!("parent {parent}, the inbound span"),
            Some(parent) => format!("parent {parent}, a span of the service's own"),
        };
        Ok(format!(
            "trace {trace}, fresh span {span} ({relation}), sampling {:?}",
            b3.sampling()
        ))
    }

    /// Checks the headers the platform forwards verbatim (traceparent may carry a fresh parent id of the same
    /// trace; tracestate may have an entry of the service's own in front).
    pub fn check_forwarded(&self, outbound: &HeaderMap) -> Result<String, String> {
        let got = |name: &str| outbound.get(name).and_then(|value| value.to_str().ok());
        for name in [
            "x-request-id",
            "x-ot-span-context",
            "x-audit-restriction-levels",
        ] {
            let want = self.header(name);
            if got(name) != Some(want) {
                return Err(format!(
                    "outbound {name} is {:?}, inbound {want:?}; the rule wants it passed on verbatim",
                    got(name)
                ));
            }
        }
        let traceparent = self.header("traceparent");
        match got("traceparent") {
            Some(value) if value == traceparent => {}
            Some(value) if same_w3c_trace(value, traceparent) => {}
            other => {
                return Err(format!(
                    "outbound traceparent is {other:?}, inbound {traceparent:?}; the rule wants it passed on (or \
                     the same trace with the service's span as parent)"
                ));
            }
        }
        let tracestate = self.header("tracestate");
        match got("tracestate") {
            Some(value) if value == tracestate || value.ends_with(&format!(",{tracestate}")) => {}
            other => {
                return Err(format!(
                    "outbound tracestate is {other:?}, inbound {tracestate:?}; the rule wants it passed on"
                ));
            }
        }
        Ok("x-request-id, x-ot-span-context, traceparent, tracestate, x-audit-restriction-levels passed on".into())
    }
}

/// Whether `sent` is a valid version-00 traceparent of the same trace and flags as `inbound`.
fn same_w3c_trace(sent: &str, inbound: &str) -> bool {
    let parts: Vec<&str> = sent.split('-').collect();
    let inbound: Vec<&str> = inbound.split('-').collect();
    parts.len() == 4
        && inbound.len() == 4
        && parts[0] == "00"
        && parts[1] == inbound[1]
        && parts[2].len() == 16
        && parts[2]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && parts[2] != "0000000000000000"
        && parts[3] == inbound[3]
}

/// Library defaults that do not name the application (lower case prefixes).
const LIBRARY_AGENTS: [&str; 22] = [
    "python-urllib",
    "python-requests",
    "python-httpx",
    "aiohttp",
    "java/",
    "java-http-client",
    "apache-httpclient",
    "okhttp",
    "go-http-client",
    "reqwest",
    "hyper",
    "axios",
    "node-fetch",
    "node",
    "undici",
    "got",
    "curl",
    "wget",
    "libwww-perl",
    "ruby",
    "dart",
    "jakarta",
];

/// Checks the outbound `User-Agent`: present, `product/version`, and not a library's default.
pub fn check_user_agent(outbound: &HeaderMap) -> Result<String, String> {
    let want =
        "the rule wants the application's own name and version, such as CGI-CC360-COPD/1.0.3";
    let Some(agent) = outbound
        .get("user-agent")
        .and_then(|value| value.to_str().ok())
    else {
        return Err(format!("the outbound call has no User-Agent; {want}"));
    };
    let lower = agent.to_ascii_lowercase();
    if let Some(library) = LIBRARY_AGENTS.iter().find(|library| {
        lower.starts_with(*library)
            && lower[library.len()..]
                .chars()
                .next()
                .is_none_or(|next| !next.is_ascii_alphabetic() || library.ends_with('/'))
    }) {
        return Err(format!(
            "User-Agent {agent:?} is the default of {library}, not the application; {want}"
        ));
    }
    let product = agent.split_whitespace().next().unwrap_or_default();
    match product.split_once('/') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            Ok(format!("User-Agent {agent:?}"))
        }
        _ => Err(format!(
            "User-Agent {agent:?} has no product/version; {want}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    #[test]
    fn b3_outbound_rules() {
        let inbound = Inbound::new(false, Sampling::Accept);
        let fresh = random_hex(16);
        let good = headers(&[
            ("x-b3-traceid", &inbound.trace_id),
            ("x-b3-spanid", &fresh),
            ("x-b3-parentspanid", &inbound.span_id),
            ("x-b3-sampled", "1"),
        ]);
        assert!(inbound.check_b3(&good).is_ok());
        let verbatim = headers(&[
            ("x-b3-traceid", &inbound.trace_id),
            ("x-b3-spanid", &inbound.span_id),
            ("x-b3-parentspanid", &inbound.parent_id),
            ("x-b3-sampled", "1"),
        ]);
        assert!(inbound.check_b3(&verbatim).unwrap().contains("unchanged"));
        let reparented = headers(&[
            ("x-b3-traceid", &inbound.trace_id),
            ("x-b3-spanid", &inbound.span_id),
            ("x-b3-sampled", "1"),
        ]);
        assert!(
            inbound
                .check_b3(&reparented)
                .unwrap_err()
                .contains("inbound span's")
        );
        let sibling = format!("{}-{fresh}-1-{}", inbound.trace_id, inbound.parent_id);
        assert!(
            inbound
                .check_b3(&headers(&[("b3", &sibling)]))
                .unwrap_err()
                .contains("sibling")
        );
        let without_parent = format!("{}-{fresh}-1", inbound.trace_id);
        assert!(
            inbound
                .check_b3(&headers(&[("b3", &without_parent)]))
                .is_ok()
        );
        let dropped = format!("{}-{fresh}-0-{}", inbound.trace_id, inbound.span_id);
        assert!(
            inbound
                .check_b3(&headers(&[("b3", &dropped)]))
                .unwrap_err()
                .contains("sampling")
        );
        let other_trace = format!("{}-{fresh}-1-{}", random_hex(32), inbound.span_id);
        assert!(
            inbound
                .check_b3(&headers(&[("b3", &other_trace)]))
                .unwrap_err()
                .contains("trace id")
        );
        assert!(inbound.check_b3(&HeaderMap::new()).is_err());
    }

    #[test]
    fn user_agents() {
        for good in [
            "CGI-CC360-COPD/1.0.3",
            "reference-service/0.1.0",
            "nodejs-app/2.0 (team x)",
        ] {
            assert!(
                check_user_agent(&headers(&[("user-agent", good)])).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "Python-urllib/3.11",
            "Java/17.0.2",
            "okhttp/4.12.0",
            "Go-http-client/1.1",
            "reqwest/0.13",
            "axios/1.6.0",
            "curl/8.0",
            "my-service",
            "",
        ] {
            assert!(
                check_user_agent(&headers(&[("user-agent", bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(check_user_agent(&HeaderMap::new()).is_err());
    }

    #[test]
    fn forwarded_headers_verbatim_or_same_w3c_trace() {
        let inbound = Inbound::new(true, Sampling::Accept);
        let mut pairs: Vec<(&str, &str)> = inbound
            .headers
            .iter()
            .filter(|(name, _)| name != "b3")
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert!(inbound.check_forwarded(&headers(&pairs)).is_ok());
        let reparented = format!("00-{}-{}-01", inbound.trace_id, random_hex(16));
        pairs.retain(|(name, _)| *name != "traceparent");
        pairs.push(("traceparent", &reparented));
        assert!(inbound.check_forwarded(&headers(&pairs)).is_ok());
        pairs.retain(|(name, _)| *name != "x-audit-restriction-levels");
        assert!(
            inbound
                .check_forwarded(&headers(&pairs))
                .unwrap_err()
                .contains("x-audit")
        );
    }
}
