//! The pieces of a log line: severity and type values, the timestamp and the fixed keys.
//!
//! Everything here appends to a caller's `Vec<u8>`, so that the layer can reuse one buffer per thread and
//! the writer thread and the startup error can share the exact same shape.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::telemetry::trace::b3::TraceIdText;

pub(crate) use crate::telemetry::json::{escape, integer, string};

/// The `severity` of a line, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// `informational`: TRACE and DEBUG events.
    Informational,
    /// `low`: INFO events.
    Low,
    /// `medium`: WARN events.
    Medium,
    /// `high`: ERROR events.
    High,
    /// `critical`: ERROR events with the field `severity = "critical"` (see [`critical!`](crate::critical)).
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Self; 5] = [
        Self::Informational,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// The platform's mapping of a tracing level.
    pub fn from_level(level: tracing::Level) -> Self {
        match level {
            tracing::Level::ERROR => Self::High,
            tracing::Level::WARN => Self::Medium,
            tracing::Level::INFO => Self::Low,
            _ => Self::Informational,
        }
    }

    /// The value of the `severity` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "informational",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The `type` of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EventType {
    /// `event`: normal operation. The default.
    #[default]
    Event,
    /// `alert`: a plausible error, such as bad input from a client.
    Alert,
    /// `alarm`: needs manual action.
    Alarm,
    /// `task`: a scheduled or background job.
    Task,
}

impl EventType {
    /// Parses a `type` field value; `None` for anything but the four allowed values (in any case).
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Event, Self::Alert, Self::Alarm, Self::Task]
            .into_iter()
            .find(|kind| value.eq_ignore_ascii_case(kind.as_str()))
    }

    /// The value of the `type` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Alert => "alert",
            Self::Alarm => "alarm",
            Self::Task => "task",
        }
    }
}

/// The formatted date and time of the last whole second seen, so that most lines only format microseconds.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    second: Option<u64>,
    prefix: [u8; 20],
}

/// The last second RFC 3339 can write with a four-digit year: 9999-12-31T23:59:59Z.
const MAX_SECOND: u64 = 253_402_300_799;

impl Clock {
    /// Appends `time` as UTC RFC 3339 with microseconds and `Z`: `2019-03-01T08:58:26.986123Z`.
    ///
    /// A clock set before 1970 writes the epoch rather than failing: a log line with a wrong time is more
    /// useful than none.
    pub(crate) fn write(&mut self, buf: &mut Vec<u8>, time: SystemTime) {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs().min(MAX_SECOND);
        if self.second != Some(second) {
            self.prefix = format_second(second);
            self.second = Some(second);
        }
        buf.extend_from_slice(&self.prefix);
        let mut micros = [b'0'; 7];
        write_padded(&mut micros[..6], since_epoch.subsec_micros());
        micros[6] = b'Z';
        buf.extend_from_slice(&micros);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for a second since the epoch (Howard Hinnant's `civil_from_days`).
fn format_second(second: u64) -> [u8; 20] {
    let days = second / 86_400;
    let of_day = second % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);

    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |range: std::ops::Range<usize>, value: u64| {
        write_padded(&mut out[range], u32::try_from(value).unwrap_or(0));
    };
    put(0..4, year);
    put(5..7, month);
    put(8..10, day);
    put(11..13, of_day / 3600);
    put(14..16, of_day / 60 % 60);
    put(17..19, of_day % 60);
    out
}

/// Writes `value` right-aligned in `out`, zero-padded (the caller sized `out` for the value).
fn write_padded(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The fixed keys of a line, in the order they are written.
pub(crate) struct Header<'a> {
    /// The service name, already a JSON string with its quotes.
    pub(crate) app: &'a [u8],
    /// The message, already escaped, without quotes.
    pub(crate) body: &'a [u8],
    /// The request's trace id, or `None` outside a request (then the key is left out).
    pub(crate) id: Option<&'a TraceIdText>,
    pub(crate) severity: Severity,
    pub(crate) subject: &'a str,
    pub(crate) kind: EventType,
}

/// Appends `{"time":…,"app":…,"body":…,["id":…,]"severity":…,"subject":…,"type":…`; the caller
/// appends any extra `,"key":value` pairs and then [`end_line`].
pub(crate) fn begin_line(
    buf: &mut Vec<u8>,
    clock: &mut Clock,
    time: SystemTime,
    header: &Header<'_>,
) {
    buf.extend_from_slice(b"{\"time\":\"");
    clock.write(buf, time);
    buf.extend_from_slice(b"\",\"app\":");
    buf.extend_from_slice(header.app);
    buf.extend_from_slice(b",\"body\":\"");
    buf.extend_from_slice(header.body);
    buf.push(b'"');
    if let Some(id) = header.id {
        // Hex digits only: nothing to escape.
        buf.extend_from_slice(b",\"id\":\"");
        buf.extend_from_slice(id.as_str().as_bytes());
        buf.push(b'"');
    }
    buf.extend_from_slice(b",\"severity\":\"");
    buf.extend_from_slice(header.severity.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"subject\":");
    string(buf, header.subject);
    buf.extend_from_slice(b",\"type\":\"");
    buf.extend_from_slice(header.kind.as_str().as_bytes());
    buf.push(b'"');
}

/// Closes the object and the line.
pub(crate) fn end_line(buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn time_matches_humantime_across_calendar_edges() {
        let mut clock = Clock::default();
        let seconds = [
            0,
            59,
            86_399,
            951_782_400,   // 2000-02-29
            951_868_799,   // 2000-02-29T23:59:59
            1_551_430_706, // 2019-03-01T08:58:26
            4_107_542_400, // 2100-03-01
            4_107_456_000, // 2100-02-28
            1_709_164_800, // 2024-02-29
            MAX_SECOND,
        ];
        let mut buf = Vec::new();
        for second in seconds {
            for micros in [0, 1, 986_123, 999_999] {
                let time = UNIX_EPOCH + Duration::new(second, micros * 1000 + 999);
                buf.clear();
                clock.write(&mut buf, time);
                let expected = humantime::format_rfc3339_micros(time).to_string();
                assert_eq!(String::from_utf8_lossy(&buf), expected);
            }
        }
        // Every day of four years, covering each month length and a leap year.
        for day in 10_950..10_950 + 4 * 366 {
            let time = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3_723);
            buf.clear();
            clock.write(&mut buf, time);
            assert_eq!(
                String::from_utf8_lossy(&buf),
                humantime::format_rfc3339_micros(time).to_string()
            );
        }
    }

    #[test]
    fn time_before_the_epoch_writes_the_epoch() {
        let mut buf = Vec::new();
        Clock::default().write(&mut buf, UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(buf, b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn type_values_parse_only_the_allowed_four() {
        assert_eq!(EventType::parse("alarm"), Some(EventType::Alarm));
        assert_eq!(EventType::parse("ALERT"), Some(EventType::Alert));
        assert_eq!(EventType::parse("task"), Some(EventType::Task));
        assert_eq!(EventType::parse("event"), Some(EventType::Event));
        assert_eq!(EventType::parse("alarms"), None);
        assert_eq!(EventType::parse(""), None);
    }
}
