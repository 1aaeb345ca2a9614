//! The access-log line, written straight into the JSON writer.
//!
//! Every request writes one, so it skips what a general event pays for: `tracing`'s dispatch to each layer,
//! the field visitor, the checks of each field name against the reserved, duplicate and sensitive ones. Its
//! keys are fixed and none of them is any of those. The line is byte for byte what [`JsonLayer`](super::JsonLayer)
//! writes for the same `tracing` event (a test holds the two side by side). Whether a line is written follows
//! `LOG_LEVEL` exactly as the kit's log layer decides for the same event (directives such as `access=off`
//! included): the decision per level is taken once, from the same filter, when the writer is built. With
//! `LOG_FORMAT=pretty` the request layer logs through `tracing` as any other event.

use std::cell::RefCell;
use std::time::SystemTime;

use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;

use super::format::{self, Clock, EventType, Header, Severity};
use super::settings::LogSettings;
use super::writer::LogWriter;
use crate::redact::redact;
use crate::telemetry::json;
use crate::telemetry::trace::b3::TraceIdText;

/// The `tracing` target, and the line's `subject`.
pub(crate) const TARGET: &str = "access";

/// What one access-log line says.
#[derive(Debug)]
pub(crate) struct AccessLine<'a> {
    pub(crate) severity: Severity,
    pub(crate) kind: EventType,
    /// One of the kit's fixed messages: plain text, nothing to escape or redact.
    pub(crate) body: &'static str,
    pub(crate) trace_id: Option<&'a TraceIdText>,
    pub(crate) http_method: &'a str,
    pub(crate) uri_path: &'a str,
    pub(crate) status: u16,
    /// Time to the response, in microseconds; the line gives milliseconds.
    pub(crate) duration_micros: u64,
    pub(crate) http_user_agent: &'a str,
    pub(crate) request_id: &'a str,
    /// `request_id` is one the kit generated, which redaction is known to leave as it is.
    pub(crate) request_id_clean: bool,
}

/// Writes the request layer's access-log lines as JSON, straight into a [`Logs`](super::Logs) queue; from
/// [`Logs::access_log`](super::Logs::access_log). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    writer: LogWriter,
    /// Whether `LOG_LEVEL` lets an access line through at INFO, WARN and ERROR.
    enabled: [bool; 3],
}

thread_local! {
    static LINE: RefCell<(Vec<u8>, Clock)> = RefCell::default();
}

impl AccessLog {
    pub(crate) fn new(writer: LogWriter, settings: &LogSettings) -> Self {
        // The filter is asked once, through a subscriber of its own, the way the log layer's copy of it will be
        // asked for each access event: the answer cannot change, since the filter is never reloaded.
        let subscriber = tracing_subscriber::registry().with(settings.filter());
        let enabled = tracing::subscriber::with_default(subscriber, || {
            [
                tracing::event_enabled!(target: TARGET, Level::INFO),
                tracing::event_enabled!(target: TARGET, Level::WARN),
                tracing::event_enabled!(target: TARGET, Level::ERROR),
            ]
        });
        Self { writer, enabled }
    }

    /// Whether `LOG_LEVEL` lets an access line of `level` through.
    pub(crate) fn enabled(&self, level: Level) -> bool {
        match level {
            Level::ERROR => self.enabled[2],
            Level::WARN => self.enabled[1],
            Level::INFO => self.enabled[0],
            _ => false,
        }
    }

    /// Formats and queues `line`; under overload the writer may drop it, and counts it.
    pub(crate) fn write(&self, line: &AccessLine<'_>) {
        let time = SystemTime::now();
        json::with_thread_buffers(&LINE, |(buf, clock): &mut (Vec<u8>, Clock)| {
            buf.clear();
            self.format(buf, clock, time, line);
            self.writer.write_line(line.severity, buf);
        });
    }

    fn format(
        &self,
        buf: &mut Vec<u8>,
        clock: &mut Clock,
        time: SystemTime,
        line: &AccessLine<'_>,
    ) {
        let header = Header {
            app: self.writer.app_json(),
            body: line.body.as_bytes(),
            id: line.trace_id,
            severity: line.severity,
            subject: TARGET,
            kind: line.kind,
        };
        format::begin_line(buf, clock, time, &header);
        text(buf, "http_method", line.http_method);
        text(buf, "uri_path", line.uri_path);
        buf.extend_from_slice(br#","status":"#);
        format::integer(buf, line.status);
        buf.extend_from_slice(br#","duration":"#);
        milliseconds(buf, line.duration_micros);
        text(buf, "http_user_agent", line.http_user_agent);
        if line.request_id_clean {
            field(buf, "request_id", line.request_id);
        } else {
            text(buf, "request_id", line.request_id);
        }
        format::end_line(buf);
    }
}

/// Appends `micros` as milliseconds, the way `Display` writes the `f64` `micros / 1000` (what `JsonLayer` writes
/// for the same field): up to three decimals, no trailing zeros, no point for a whole number.
fn milliseconds(buf: &mut Vec<u8>, micros: u64) {
    format::integer(buf, micros / 1000);
    let fraction = micros % 1000;
    if fraction != 0 {
        // Each digit is below 10, so the casts cannot truncate.
        let digits = [
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ];
        let significant = 3
            - usize::from(fraction.is_multiple_of(10))
            - usize::from(fraction.is_multiple_of(100));
        buf.push(b'.');
        buf.extend_from_slice(&digits[..significant]);
    }
}

/// Appends `,"key":"value"` with the value redacted, as `JsonLayer` writes a string field.
fn text(buf: &mut Vec<u8>, key: &str, value: &str) {
    field(buf, key, &redact(value));
}

/// Appends `,"key":"value"`, the value as it is.
fn field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    format::string(buf, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_read_as_the_float_display_writes_them() {
        let samples = (0..20_000)
            .chain([
                999_999,
                1_000_000,
                1_234_500,
                86_400_000_123,
                u64::from(u32::MAX),
            ])
            .chain(
                (0..64)
                    .map(|shift| 1u64 << shift)
                    .filter(|micros| *micros < 1 << 53),
            );
        for micros in samples {
            let mut buf = Vec::new();
            milliseconds(&mut buf, micros);
            // Exact below 2^53: the f64 is the closest to micros / 1000, whose shortest form is that decimal.
            let expected = (micros as f64 / 1000.0).to_string();
            assert_eq!(String::from_utf8_lossy(&buf), expected, "{micros}");
        }
    }
}
