//! The access-log line, written straight into the JSON writer.
//!
//! Every request writes one, so it skips what a general event pays for: `tracing`'s dispatch to each layer,
//! the field visitor, the checks of each field name against the reserved, duplicate and sensitive ones. Its
//! keys are fixed and none of them is any of those. The line is byte for byte what [`JsonLayer`](super::JsonLayer)
//! writes for the same `tracing` event (a test holds the two side by side); the caller still asks `tracing`
//! whether the event is enabled, so `LOG_LEVEL` directives such as `access=off` keep working. With
//! `LOG_FORMAT=pretty` the request layer logs through `tracing` as any other event.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::SystemTime;

use super::format::{self, Clock, EventType, Header, Severity};
use super::writer::LogWriter;
use crate::telemetry::redact::redact;

/// The `tracing` target, and the line's `subject`.
pub(crate) const TARGET: &str = "access";

/// What one access-log line says.
#[derive(Debug)]
pub(crate) struct AccessLine<'a> {
    pub(crate) severity: Severity,
    pub(crate) kind: EventType,
    /// One of the kit's fixed messages: plain text, nothing to escape or redact.
    pub(crate) body: &'static str,
    pub(crate) trace_id: Option<&'a str>,
    pub(crate) http_method: &'a str,
    pub(crate) uri_path: &'a str,
    pub(crate) status: u16,
    /// Milliseconds.
    pub(crate) duration: f64,
    pub(crate) http_user_agent: &'a str,
    pub(crate) request_id: &'a str,
}

/// Writes access-log lines as JSON.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    writer: LogWriter,
}

thread_local! {
    static LINE: RefCell<(Vec<u8>, Clock)> = RefCell::default();
}

impl AccessLog {
    pub(crate) fn new(writer: LogWriter) -> Self {
        Self { writer }
    }

    /// Formats and queues `line`; `false` if the writer dropped it under overload.
    pub(crate) fn write(&self, line: &AccessLine<'_>) -> bool {
        let time = SystemTime::now();
        let format = |(buf, clock): &mut (Vec<u8>, Clock)| {
            buf.clear();
            self.format(buf, clock, time, line);
            self.writer.write_line(line.severity, buf)
        };
        // A thread being torn down has no buffer left: it gets a fresh one rather than losing the line.
        LINE.try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut reused| format(&mut reused))
                .ok()
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| format(&mut Default::default()))
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
        if line.duration.is_finite() {
            // Writing into a Vec cannot fail; see `JsonLayer` for why `Display` gives a JSON number.
            let _ = write!(buf, "{}", line.duration);
        } else {
            let _ = write!(buf, "\"{}\"", line.duration);
        }
        text(buf, "http_user_agent", line.http_user_agent);
        text(buf, "request_id", line.request_id);
        format::end_line(buf);
    }
}

/// Appends `,"key":"value"` with the value redacted, as `JsonLayer` writes a string field.
fn text(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    format::string(buf, &redact(value));
}
