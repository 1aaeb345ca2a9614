//! Reading a fuzz input as HTTP header lines, shared by the propagation targets (`b3`, `trace_context`).

use telemed_kit::axum::http::{HeaderMap, HeaderName};
use telemed_kit::opentelemetry::propagation::Extractor;

/// The extractor shape `opentelemetry-http` gives an HTTP header map.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The input's lines as `(name, value)`: `name: value` (one space after the colon dropped, a trailing `\r`
/// too), and a line without `:` as a value of `default_name`, so that a seed can be a bare header value.
pub fn lines<'a>(
    data: &'a [u8],
    default_name: &'static [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    data.split(|byte| *byte == b'\n').map(move |line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.iter().position(|byte| *byte == b':') {
            None => (default_name, line),
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
        }
    })
}
