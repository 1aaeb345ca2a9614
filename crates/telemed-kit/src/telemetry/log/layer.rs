//! The tracing layer that turns each event into one JSON line and queues it for the writer thread.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::format::{self, Clock, EventType, Header, Severity};
use super::writer::LogWriter;
use crate::redact;
use crate::telemetry::trace::b3::TraceIdText;
use crate::telemetry::{context, json};

/// Keys every line has; an event field with one of these names is written as `field_<name>` instead.
const RESERVED: [&str; 7] = ["time", "app", "body", "id", "severity", "subject", "type"];

/// Buffers kept above this size after an unusually large event are shrunk back, so that one huge message
/// does not pin memory in every thread that ever logged.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Formats events in the eHealth logging model and queues them on a [`LogWriter`].
///
/// See the [module documentation](super) for the line format. [`Logs::layer`](super::Logs::layer) builds it
/// over the stdout writer; tests build it over a capture buffer:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use tracing_subscriber::layer::SubscriberExt;
/// use telemed_kit::telemetry::log::{JsonLayer, QueueLimits, non_blocking};
///
/// struct Capture(Arc<Mutex<Vec<u8>>>);
///
/// impl std::io::Write for Capture {
///     fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
///         self.0.lock().unwrap().extend_from_slice(bytes);
///         Ok(bytes.len())
///     }
///
///     fn flush(&mut self) -> std::io::Result<()> {
///         Ok(())
///     }
/// }
///
/// let sink = Arc::new(Mutex::new(Vec::new()));
/// let (writer, guard) = non_blocking("my-service", Capture(sink.clone()), QueueLimits::default()).unwrap();
/// let subscriber = tracing_subscriber::registry().with(JsonLayer::new(writer));
/// tracing::subscriber::with_default(subscriber, || tracing::warn!(port = 8080, "cannot reach the store"));
/// assert!(guard.flush(Duration::from_secs(5)));
///
/// let line = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
/// let line: serde_json::Value = serde_json::from_str(&line).unwrap();
/// assert_eq!(line["severity"], "medium");
/// assert_eq!(line["port"], 8080);
/// ```
#[derive(Debug, Clone)]
pub struct JsonLayer {
    writer: LogWriter,
    redact: bool,
}

impl JsonLayer {
    /// A layer queueing its lines on `writer`, with redaction on.
    pub fn new(writer: LogWriter) -> Self {
        Self {
            writer,
            redact: true,
        }
    }

    /// Turns [redaction](crate::redact) of the body and string fields on or off. It is on unless
    /// turned off; turn it off only where no real data flows (a test of the masking itself, say).
    pub fn with_redaction(mut self, redact: bool) -> Self {
        self.redact = redact;
        self
    }
}

/// One thread's reusable buffers: after the first few events, formatting allocates nothing.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    body: Vec<u8>,
    extra: Vec<u8>,
    text: String,
    keys: Vec<Key>,
    clock: Clock,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        json::with_thread_buffers(&SCRATCH, |scratch: &mut Scratch| {
            let severity = self.format(event, scratch);
            self.writer.write_line(severity, &scratch.line);
        });
    }
}

impl JsonLayer {
    /// Formats `event` into `scratch.line` and returns its severity.
    fn format(&self, event: &Event<'_>, scratch: &mut Scratch) -> Severity {
        let time = SystemTime::now();
        let Scratch {
            line,
            body,
            extra,
            text,
            keys,
            clock,
        } = scratch;
        for buf in [&mut *line, &mut *body, &mut *extra] {
            buf.clear();
            if buf.capacity() > KEEP_CAPACITY {
                buf.shrink_to(KEEP_CAPACITY / 16);
            }
        }
        keys.clear();
        let metadata = event.metadata();
        let mut fields = Fields {
            body,
            extra,
            text,
            keys,
            redact: self.redact,
            has_body: false,
            kind: EventType::Event,
            critical: false,
        };
        event.record(&mut fields);
        if !fields.has_body {
            // Libraries log events without a message but with a name (OpenTelemetry's internal
            // `BatchSpanProcessor.ExportError`); the name is the best body such a line has.
            format::escape(fields.body, metadata.name());
        }
        let severity = if fields.critical {
            Severity::Critical
        } else {
            Severity::from_level(*metadata.level())
        };
        let kind = fields.kind;
        context::with_current(|current| {
            // Outside the kit's request layer, the trace of the current OpenTelemetry span, if any: a span of
            // `#[tracing::instrument]` entered under the tracing part's layer, or one made current by hand.
            let otel_trace_id;
            let id = match current.and_then(|current| current.trace_id.as_ref()) {
                Some(id) => Some(id),
                None => {
                    otel_trace_id = current_otel_trace_id();
                    otel_trace_id.as_ref()
                }
            };
            let header = Header {
                app: self.writer.app_json(),
                body,
                id,
                severity,
                subject: metadata.target(),
                kind,
            };
            format::begin_line(line, clock, time, &header);
        });
        line.extend_from_slice(extra);
        format::end_line(line);
        severity
    }
}

/// The trace id of OpenTelemetry's current span, when it has a valid one (32 hex digits: a span does not know
/// the width its trace id arrived in).
fn current_otel_trace_id() -> Option<TraceIdText> {
    use opentelemetry::trace::TraceContextExt as _;
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let span_context = span.span_context();
        span_context
            .is_valid()
            .then(|| TraceIdText::new(span_context.trace_id(), false))
    })
}

/// An extra key: a field name, perhaps with `field_` in front.
#[derive(Clone, Copy)]
struct Key {
    renamed: bool,
    name: &'static str,
}

impl Key {
    fn same_as(self, other: Self) -> bool {
        match (self.renamed, other.renamed) {
            (true, false) => other.name.strip_prefix("field_") == Some(self.name),
            (false, true) => other.same_as(self),
            _ => self.name == other.name,
        }
    }
}

/// The visitor that sorts an event's fields into the body, the `type`/`severity` overrides and extra keys.
struct Fields<'a> {
    body: &'a mut Vec<u8>,
    extra: &'a mut Vec<u8>,
    /// Where `Debug` values are formatted before redaction and escaping.
    text: &'a mut String,
    keys: &'a mut Vec<Key>,
    redact: bool,
    has_body: bool,
    kind: EventType,
    critical: bool,
}

/// An extra field's value.
enum Value<'v> {
    /// A string, redacted and escaped.
    Text(&'v str),
    Signed(i128),
    Unsigned(u128),
    Bool(bool),
    Float(f64),
}

impl Fields<'_> {
    /// Handles a value that arrives as text (`&str` fields, or `Debug`/`Display` values once formatted).
    fn text(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" if !self.has_body => {
                self.has_body = true;
                let value = self.redacted(value);
                format::escape(self.body, &value);
            }
            "type" | "r#type" => match EventType::parse(value) {
                Some(kind) => self.kind = kind,
                None => self.extra(field.name(), Value::Text(value)),
            },
            "severity" if value == Severity::Critical.as_str() => self.critical = true,
            name => self.extra(name, Value::Text(value)),
        }
    }

    fn redacted<'v>(&self, value: &'v str) -> std::borrow::Cow<'v, str> {
        if self.redact {
            redact::redact(value)
        } else {
            std::borrow::Cow::Borrowed(value)
        }
    }

    /// Appends `,"name":value` unless the key is already taken; reserved names become `field_<name>`.
    fn extra(&mut self, name: &'static str, value: Value<'_>) {
        let name = name.strip_prefix("r#").unwrap_or(name);
        let key = Key {
            renamed: RESERVED.contains(&name),
            name,
        };
        // Duplicate field names (or `app` next to `field_app`) keep the first value: a JSON object with a
        // repeated key is read differently by different parsers.
        if self.keys.iter().any(|taken| taken.same_as(key)) {
            return;
        }
        self.keys.push(key);
        self.extra.extend_from_slice(b",\"");
        if key.renamed {
            self.extra.extend_from_slice(b"field_");
        }
        format::escape(self.extra, name);
        self.extra.extend_from_slice(b"\":");
        match value {
            Value::Text(text) => {
                self.extra.push(b'"');
                if self.redact && redact::is_sensitive_field(name) {
                    self.extra.extend_from_slice(redact::MASK.as_bytes());
                } else {
                    let text = self.redacted(text);
                    format::escape(self.extra, &text);
                }
                self.extra.push(b'"');
            }
            Value::Signed(number) => format::integer(self.extra, number),
            Value::Unsigned(number) => format::integer(self.extra, number),
            Value::Bool(true) => self.extra.extend_from_slice(b"true"),
            Value::Bool(false) => self.extra.extend_from_slice(b"false"),
            // `Display` for a finite f64 is the shortest text that reads back exactly, without an exponent:
            // a valid JSON number. Writing into a Vec cannot fail.
            Value::Float(number) if number.is_finite() => {
                let _ = write!(self.extra, "{number}");
            }
            // JSON has no NaN or infinity; a string keeps the value visible.
            Value::Float(number) => {
                let _ = write!(self.extra, "\"{number}\"");
            }
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = std::mem::take(self.text);
        text.clear();
        // Writing into a String cannot fail; a `Debug` impl that reports an error leaves what it wrote.
        let _ = write!(text, "{value:?}");
        self.text(field, &text);
        *self.text = text;
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra(field.name(), Value::Signed(value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra(field.name(), Value::Unsigned(value.into()));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.extra(field.name(), Value::Signed(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.extra(field.name(), Value::Unsigned(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra(field.name(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra(field.name(), Value::Float(value));
    }
}
