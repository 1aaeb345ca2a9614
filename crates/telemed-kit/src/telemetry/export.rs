//! Span export in Zipkin v2 JSON, when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set.
//!
//! Spans go through the SDK's batch processor: a bounded queue (2048 spans; when it is full, new spans are
//! dropped, never waited for) drained by its own thread, which posts batches with a 2 s timeout. A down or slow
//! collector therefore never slows a request and never grows memory; it only loses spans. At shutdown the queue
//! is flushed within the time the shutdown sequence gives it.
//!
//! The HTTP client for the collector is built on the first export, not at startup: building it loads the TLS
//! trust store, which would otherwise dominate the service's startup time.
//!
//! # A defect of opentelemetry-zipkin 0.33 worked around here
//!
//! Its span model has no `localEndpoint.serviceName` (only an address, which the kit does not set), always
//! writes `"debug": false`, and gives a root span the all-zero `parentId` where the v2 schema wants none. Without a service name Zipkin and Jaeger file every span under an unknown service;
//! without the debug flag a collector may drop a trace the caller forced. The kit's collector client completes
//! each batch before posting it: it sets `localEndpoint.serviceName` to `OTEL_SERVICE_NAME`, and turns the
//! sampler's [`DEBUG_ATTRIBUTE`](super::sampler::DEBUG_ATTRIBUTE) tag into `"debug": true`, and drops an all-zero
//! `parentId`. This runs on the
//! export thread, never on a request.

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// Time limit of one export request to the collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Spans waiting for export at most; more are dropped.
pub const MAX_QUEUED_SPANS: usize = 2048;

/// Export settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSettings {
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`: the collector's span endpoint, such as
    /// `http://zipkin.istio-system:9411/api/v2/spans`. Defaults to unset: no spans are exported, and the
    /// inbound trace context is forwarded unchanged.
    pub zipkin_endpoint: Option<String>,
}

impl ExportSettings {
    /// Reads `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let zipkin_endpoint = env.parse_with(
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "an http:// or https:// URL such as http://zipkin:9411/api/v2/spans",
            |raw| {
                let uri: http::Uri = raw.parse().ok()?;
                let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
                (scheme_ok && uri.host().is_some()).then(|| raw.to_owned())
            },
        )?;
        if zipkin_endpoint.is_some() && !cfg!(feature = "zipkin") {
            return Err(ConfigError::invalid(
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                zipkin_endpoint.as_deref().unwrap_or_default(),
                "unset: this binary was built without the kit's `zipkin` feature",
            ));
        }
        Ok(Self { zipkin_endpoint })
    }
}

/// Builds the tracer provider that exports to Zipkin, or `None` when export is off.
///
/// opentelemetry-zipkin marks its exporter deprecated in favour of OTLP; the platform's tracing (Istio with
/// Jaeger) takes Zipkin v2, so the kit keeps it until the platform accepts OTLP.
#[cfg(feature = "zipkin")]
#[allow(deprecated)]
pub(crate) fn tracer_provider(
    settings: &ExportSettings,
    sampler: super::sampler::B3Sampler,
    service_name: &str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, super::TelemetryError> {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    let Some(endpoint) = &settings.zipkin_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
        .with_collector_endpoint(endpoint.clone())
        .with_http_client(CollectorClient::new(service_name))
        .build()
        .map_err(|error| super::TelemetryError::Exporter(error.to_string()))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUED_SPANS)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(resource)
            .build(),
    ))
}

/// Without the `zipkin` feature nothing is exported; [`ExportSettings::from_env`] rejects an endpoint.
#[cfg(not(feature = "zipkin"))]
pub(crate) fn tracer_provider(
    _settings: &ExportSettings,
    _sampler: super::sampler::B3Sampler,
    _service_name: &str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, super::TelemetryError> {
    Ok(None)
}

// The batch processor runs exports on its own thread with a plain executor, outside any tokio runtime, so the
// collector client is reqwest's blocking one; it is built on first use (see the module docs).
#[cfg(feature = "zipkin")]
#[derive(Debug)]
struct CollectorClient {
    /// `"localEndpoint":{"serviceName":"..."}`, the service name JSON-escaped.
    local_endpoint: Vec<u8>,
    client: std::sync::OnceLock<reqwest::blocking::Client>,
}

#[cfg(feature = "zipkin")]
impl CollectorClient {
    fn new(service_name: &str) -> Self {
        let name = serde_json::Value::from(service_name).to_string();
        Self {
            local_endpoint: format!(r#""localEndpoint":{{"serviceName":{name}}}"#).into_bytes(),
            client: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(feature = "zipkin")]
#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for CollectorClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let client = reqwest::blocking::Client::builder()
                    .timeout(EXPORT_TIMEOUT)
                    .build()?;
                self.client.get_or_init(|| client)
            }
        };
        let (parts, body) = request.into_parts();
        let body = complete_spans(&body, &self.local_endpoint);
        client
            .send_bytes(http::Request::from_parts(parts, body.into()))
            .await
    }
}

/// Completes a batch as opentelemetry-zipkin 0.33 serialises it (see the module docs): every span gets the
/// service's `local_endpoint`, a root span loses its all-zero `parentId`, and a span carrying the sampler's debug
/// tag loses the tag and gets `"debug":true`.
///
/// The crate writes each span with serde's derive, in a fixed field order, with an empty `localEndpoint` (the kit
/// sets no address), and `tags` before `debug`. Editing those bytes costs a scan of the batch; parsing it into
/// `serde_json::Value` and writing it again cost about as much as the crate's own encoding, on the core that
/// serves requests. A quoted key can only match where it is a key: inside a JSON string its quotes are escaped.
/// The telemetry end-to-end tests check the result against the Zipkin v2 schema.
#[cfg(feature = "zipkin")]
fn complete_spans(batch: &[u8], local_endpoint: &[u8]) -> Vec<u8> {
    use memchr::memmem::Finder;

    const ROOT_PARENT: &[u8] = br#""parentId":"0000000000000000","#;
    const EMPTY_ENDPOINT: &[u8] = br#""localEndpoint":{}"#;
    const DEBUG_OFF: &[u8] = br#""debug":false"#;
    const DEBUG_ON: &[u8] = br#""debug":true"#;
    let debug_tag = format!(r#""{}":"true""#, super::sampler::DEBUG_ATTRIBUTE);
    let finders = [
        Finder::new(ROOT_PARENT),
        Finder::new(EMPTY_ENDPOINT),
        Finder::new(debug_tag.as_bytes()),
        Finder::new(DEBUG_OFF),
    ];
    // One pass into one buffer: batches run to hundreds of KiB, and every extra copy is a fresh allocation.
    let find_from = |finder: &Finder, from: usize| finder.find(&batch[from..]).map(|at| from + at);
    let mut next = finders.each_ref().map(|finder| find_from(finder, 0));
    let mut out = Vec::with_capacity(batch.len() + batch.len() / 8);
    let (mut copied, mut debug_pending) = (0, false);
    while let Some((pattern, at)) = next
        .iter()
        .enumerate()
        .filter_map(|(pattern, at)| at.map(|at| (pattern, at)))
        .min_by_key(|&(_, at)| at)
    {
        out.extend_from_slice(&batch[copied..at]);
        let mut end = at + finders[pattern].needle().len();
        match pattern {
            0 => {}
            1 => out.extend_from_slice(local_endpoint),
            2 => {
                // Take the separating comma with the tag; with no other tag left, take the whole `"tags":{}`.
                if batch.get(end) == Some(&b',') {
                    end += 1;
                } else if out.ends_with(b",") {
                    out.pop();
                } else if out.ends_with(br#","tags":{"#) && batch.get(end) == Some(&b'}') {
                    out.truncate(out.len() - br#","tags":{"#.len());
                    end += 1;
                }
                debug_pending = true;
            }
            _ if debug_pending => {
                out.extend_from_slice(DEBUG_ON);
                debug_pending = false;
            }
            _ => out.extend_from_slice(DEBUG_OFF),
        }
        copied = end;
        for (finder, position) in finders.iter().zip(&mut next) {
            if position.is_some_and(|position| position < copied) {
                *position = find_from(finder, copied);
            }
        }
    }
    out.extend_from_slice(&batch[copied..]);
    out
}

#[cfg(all(test, feature = "zipkin"))]
mod tests {
    use serde_json::json;

    use super::*;

    fn complete(batch: &str) -> serde_json::Result<serde_json::Value> {
        let client = CollectorClient::new("settings \"eu\"");
        serde_json::from_slice(&complete_spans(batch.as_bytes(), &client.local_endpoint))
    }

    #[test]
    fn spans_get_the_service_name_the_marked_ones_the_debug_flag_and_roots_no_parent() {
        // As opentelemetry-zipkin writes them: its field order, no spaces.
        let batch = concat!(
            r#"[{"traceId":"a","parentId":"0000000000000000","id":"1","kind":"SERVER","localEndpoint":{},"#,
            r#""tags":{"b3.debug":"true"},"debug":false,"shared":false},"#,
            r#"{"traceId":"a","parentId":"00f067aa0ba902b7","id":"2","localEndpoint":{},"#,
            r#""tags":{"http.route":"/","b3.debug":"true","server.address":"x"},"debug":false,"shared":false},"#,
            r#"{"traceId":"b","parentId":"00f067aa0ba902b7","id":"3","localEndpoint":{},"#,
            r#""tags":{"http.route":"/"},"debug":false,"shared":false}]"#,
        );
        let name = json!({"serviceName": "settings \"eu\""});
        assert_eq!(
            complete(batch).unwrap(),
            json!([
                {"traceId": "a", "id": "1", "kind": "SERVER", "localEndpoint": name, "debug": true,
                 "shared": false},
                {"traceId": "a", "parentId": "00f067aa0ba902b7", "id": "2", "localEndpoint": name,
                 "tags": {"http.route": "/", "server.address": "x"}, "debug": true, "shared": false},
                {"traceId": "b", "parentId": "00f067aa0ba902b7", "id": "3", "localEndpoint": name,
                 "tags": {"http.route": "/"}, "debug": false, "shared": false},
            ])
        );
    }

    #[test]
    fn the_debug_tag_is_removed_wherever_it_stands_among_the_tags() {
        for tags in [
            r#"{"b3.debug":"true","a":"1","b":"2"}"#,
            r#"{"a":"1","b3.debug":"true","b":"2"}"#,
            r#"{"a":"1","b":"2","b3.debug":"true"}"#,
        ] {
            let batch = format!(
                r#"[{{"id":"1","localEndpoint":{{}},"tags":{tags},"debug":false,"shared":false}}]"#
            );
            let completed: serde_json::Value =
                serde_json::from_slice(&complete_spans(batch.as_bytes(), b"\"localEndpoint\":{}"))
                    .unwrap();
            assert_eq!(completed[0]["tags"], json!({"a": "1", "b": "2"}), "{tags}");
            assert_eq!(completed[0]["debug"], true, "{tags}");
        }
    }

    #[test]
    fn quoted_patterns_inside_string_values_are_left_alone() {
        let note =
            r#"\"b3.debug\":\"true\" \"localEndpoint\":{} \"parentId\":\"0000000000000000\","#;
        let batch = format!(
            r#"[{{"id":"1","localEndpoint":{{}},"tags":{{"note":"{note}"}},"debug":false,"shared":false}}]"#
        );
        let completed = complete(&batch).unwrap();
        assert_eq!(completed[0]["tags"]["note"], note.replace('\\', ""));
        assert_eq!(completed[0]["debug"], false);
    }
}
