//! `LOG_FORMAT=pretty`: tracing-subscriber's human-readable format, for local development only.
//!
//! It goes through the same queue and writer thread as the JSON lines (so flushing and the overload policy
//! are the same), and field values are redacted the same way; the drop report stays a JSON line.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::Field;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::registry::LookupSpan;

use super::format::Severity;
use super::writer::LogWriter;
use crate::redact;

/// The human-readable layer, writing through `writer`.
pub(super) fn layer<S>(writer: LogWriter) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(debug_fn(redacted_field).delimited(" "))
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(Queue(writer))
}

fn redacted_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let mut text = String::new();
    write!(text, "{value:?}")?;
    let text = if redact::is_sensitive_field(field.name()) {
        redact::MASK.into()
    } else {
        redact::redact(&text)
    };
    match field.name() {
        "message" => write!(writer, "{text}"),
        name => write!(writer, "{name}={text}"),
    }
}

/// Hands each formatted event to the queue at its level's severity.
struct Queue(LogWriter);

impl<'a> MakeWriter<'a> for Queue {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine {
            writer: &self.0,
            severity: Severity::Low,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        QueuedLine {
            writer: &self.0,
            severity: Severity::from_level(*meta.level()),
        }
    }
}

/// tracing-subscriber formats a whole event into its own buffer and writes it with one `write_all`, so each
/// `write` is one complete line.
struct QueuedLine<'a> {
    writer: &'a LogWriter,
    severity: Severity,
}

impl std::io::Write for QueuedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A dropped line is counted by the queue; failing here would only make tracing-subscriber retry.
        self.writer.write_line(self.severity, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
