//! The eHealth logging model, line by line, and the planted secrets that must not reach any output.
//!
//! The allowed `severity` and `type` values are the kit's own ([`Severity`], [`EventType`]), so the checker and
//! the kit cannot drift apart.

use serde_json::Value;
use telemed_kit::telemetry::log::{EventType, Severity};

use crate::process::{Line, Stream, clip};

/// A synthetic CPR number: a valid date with a made-up sequence number, so that a redactor that looks for the
/// shape of a CPR number masks it.
pub const CPR_PLAIN: &str = "2512484417";
/// The same number in its dashed form.
pub const CPR_DASHED: &str = "251248-4417";
/// A bearer token shaped like a JWT; its middle part must never be seen.
pub const BEARER: &str = "eyJhbGciOiJSUzI1NiJ9.conform-bearer-secret-31d9.c2lnbmF0dXJl";
/// `conform-user:conform-basic-secret-7c1e` in Base64, as an `Authorization: Basic` credential.
pub const BASIC: &str = "Y29uZm9ybS11c2VyOmNvbmZvcm0tYmFzaWMtc2VjcmV0LTdjMWU=";
/// Secret query parameters and their planted values.
pub const SECRET_PARAMS: [(&str, &str); 4] = [
    ("access_token", "conform-query-token-8b2f"),
    ("api_key", "conform-api-key-5e0a"),
    ("password", "conform-password-96c4"),
    ("client_secret", "conform-client-secret-2d77"),
];

/// What must never appear, with a name for the report.
pub fn secrets() -> Vec<(&'static str, &'static str)> {
    let mut secrets = vec![
        ("CPR number", CPR_PLAIN),
        ("dashed CPR number", CPR_DASHED),
        ("bearer token", "conform-bearer-secret-31d9"),
        ("Basic credential", BASIC),
        ("Basic password", "conform-basic-secret-7c1e"),
    ];
    secrets.extend(SECRET_PARAMS);
    secrets
}

/// The query string that carries a CPR number and every secret parameter.
pub fn secret_query() -> String {
    let mut query = format!("patient={CPR_DASHED}");
    for (name, value) in SECRET_PARAMS {
        query.push_str(&format!("&{name}={value}"));
    }
    query
}

/// The first line on stdout that is not in the logging model, with why; `Ok` with the count when all are.
pub fn check_model(lines: &[Line], now_unix: i64) -> Result<usize, String> {
    let stdout: Vec<&Line> = lines
        .iter()
        .filter(|line| line.stream == Stream::Stdout)
        .collect();
    if stdout.is_empty() {
        return Err(
            "no line on stdout at all; the rule wants the log as JSON lines on stdout".to_owned(),
        );
    }
    for (index, line) in stdout.iter().enumerate() {
        if let Err(problem) = line_problem(line, now_unix) {
            return Err(format!(
                "stdout line {} {problem}: {}; the model wants one JSON object per line with time, app, body, \
                 severity, subject, type (and id)",
                index + 1,
                clip(&line.text, 200)
            ));
        }
    }
    Ok(stdout.len())
}

fn line_problem(line: &Line, now_unix: i64) -> Result<(), String> {
    if !line.utf8 {
        return Err("is not UTF-8".to_owned());
    }
    let value: Value = serde_json::from_str(&line.text).map_err(|_| "is not JSON".to_owned())?;
    let object = value
        .as_object()
        .ok_or_else(|| "is JSON but not an object".to_owned())?;
    let string = |key: &str| -> Result<&str, String> {
        match object.get(key) {
            None => Err(format!("has no `{key}`")),
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(format!("has `{key}` {other}, not a string")),
        }
    };
    let time = string("time")?;
    match parse_utc(time) {
        None => {
            return Err(format!(
                "has `time` {time:?}, not UTC RFC 3339 such as 2019-03-01T08:58:26.986123Z"
            ));
        }
        Some(seconds) if (seconds - now_unix).abs() > 3600 => {
            return Err(format!("has `time` {time}, more than an hour from now"));
        }
        Some(_) => {}
    }
    if string("app")?.is_empty() {
        return Err("has an empty `app`".to_owned());
    }
    string("body")?;
    if string("subject")?.is_empty() {
        return Err("has an empty `subject`".to_owned());
    }
    let severity = string("severity")?;
    if !Severity::ALL
        .iter()
        .any(|allowed| allowed.as_str() == severity)
    {
        return Err(format!(
            "has `severity` {severity:?}, not one of critical, high, medium, low, informational"
        ));
    }
    let kind = string("type")?;
    if EventType::parse(kind).is_none_or(|parsed| parsed.as_str() != kind) {
        return Err(format!(
            "has `type` {kind:?}, not one of alarm, alert, event, task"
        ));
    }
    if let Some(id) = object.get("id") {
        let valid = id.as_str().is_some_and(|id| {
            (id.len() == 16 || id.len() == 32)
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !valid {
            return Err(format!(
                "has `id` {id}, not a trace id of 16 or 32 lower-case hex digits"
            ));
        }
    }
    Ok(())
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, `None` for anything else.
fn parse_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (head, rest) = (bytes.get(..19)?, bytes.get(19..)?);
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = head.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0_i64, |acc, b| acc * 10 + i64::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, want)| head[at] != want) {
        return None;
    }
    let fraction_ok = match rest {
        [b'Z'] => true,
        [b'.', fraction @ .., b'Z'] => {
            (1..=9).contains(&fraction.len()) && fraction.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if !fraction_ok {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), so no date crate is needed for one comparison.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The first planted secret found in any output line, named with the line.
pub fn check_secrets(lines: &[Line]) -> Result<usize, String> {
    let secrets = secrets();
    for (index, line) in lines.iter().enumerate() {
        if let Some((name, _)) = secrets.iter().find(|(_, value)| line.text.contains(value)) {
            let stream = match line.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            return Err(format!(
                "the planted {name} is in output line {} ({stream}): {}; the rule wants no CPR numbers, tokens \
                 or credentials in any output",
                index + 1,
                clip(&line.text, 200)
            ));
        }
    }
    Ok(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> Line {
        Line {
            stream: Stream::Stdout,
            text: text.to_owned(),
            utf8: true,
        }
    }

    const NOW: i64 = 1_551_430_706; // 2019-03-01T08:58:26Z

    fn good() -> serde_json::Map<String, Value> {
        let value = serde_json::json!({"time": "2019-03-01T08:58:26.986123Z", "app": "svc", "body": "hello",
            "id": "80f198ee56343ba864fe8b2a57d3eff7", "severity": "low", "subject": "main", "type": "event"});
        value.as_object().cloned().unwrap_or_default()
    }

    fn with(key: &str, value: Option<Value>) -> Line {
        let mut line = good();
        match value {
            Some(value) => line.insert(key.to_owned(), value),
            None => line.remove(key),
        };
        out(&Value::Object(line).to_string())
    }

    #[test]
    fn a_line_in_the_model_passes_and_each_broken_field_fails() {
        assert_eq!(check_model(&[with("extra", Some("x".into()))], NOW), Ok(1));
        assert_eq!(check_model(&[with("id", None)], NOW), Ok(1));
        let broken = [
            with("time", Some("2019-03-01 08:58:26".into())),
            with("time", Some("2019-03-01T08:58:26.986123+01:00".into())),
            with("time", Some("2029-03-01T08:58:26Z".into())),
            with("app", None),
            with("body", Some(3.into())),
            with("severity", Some("INFO".into())),
            with("severity", Some("warning".into())),
            with("type", Some("Event".into())),
            with("subject", Some("".into())),
            with("id", Some("ABC".into())),
            out("plain text"),
            out("[1, 2]"),
        ];
        for line in broken {
            assert!(
                check_model(std::slice::from_ref(&line), NOW).is_err(),
                "{}",
                line.text
            );
        }
        assert!(check_model(&[], NOW).is_err(), "no line at all");
    }

    #[test]
    fn times_parse_to_the_epoch() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2019-03-01T08:58:26.986123Z"), Some(NOW));
        assert_eq!(parse_utc("2019-13-01T08:58:26Z"), None);
    }

    #[test]
    fn every_planted_secret_is_found_and_masked_forms_are_not() {
        for (name, value) in secrets() {
            let line = out(&format!("{{\"body\": \"x {value} y\"}}"));
            let error = check_secrets(&[line]).err().unwrap_or_default();
            assert!(error.contains(name), "{name}: {error}");
        }
        assert_eq!(
            check_secrets(&[out("/patients/xxxxxxxxxx?access_token=xxxxxxxxxx")]),
            Ok(1)
        );
    }
}
