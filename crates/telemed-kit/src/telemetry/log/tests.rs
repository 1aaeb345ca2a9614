//! The log layer end to end: events in, lines out of a capture sink through the real writer thread.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tracing_subscriber::layer::SubscriberExt;

use super::*;
use crate::telemetry::context::{self, RequestContext};
use crate::telemetry::trace::b3::TraceIdText;

const FIXED: [&str; 7] = ["time", "app", "body", "id", "severity", "subject", "type"];
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "informational"];
const TYPES: [&str; 4] = ["event", "alert", "alarm", "task"];
/// Generous: only reached when the code under test is broken.
const FLUSH: Duration = Duration::from_secs(10);

/// A sink that keeps everything written to it (also for the request layer's access-log tests).
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sink whose writes block until [`Gate::open`], like a pipe nobody reads; it reports each write it enters.
#[derive(Clone)]
struct Gate {
    open: Arc<(Mutex<bool>, Condvar)>,
    entered: mpsc::SyncSender<()>,
    out: Capture,
}

impl Gate {
    fn new() -> (Self, mpsc::Receiver<()>) {
        let (entered, receiver) = mpsc::sync_channel(1024);
        let gate = Self {
            open: Arc::default(),
            entered,
            out: Capture::default(),
        };
        (gate, receiver)
    }

    fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.entered.try_send(());
        let (open, changed) = &*self.open;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn subscriber(layer: JsonLayer) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(layer)
}

/// Runs `emit` with a JSON layer over a capture sink and returns the raw output once flushed.
fn raw_output(redaction: bool, emit: impl FnOnce()) -> String {
    let capture = Capture::default();
    let (writer, guard) =
        non_blocking("test-app", capture.clone(), QueueLimits::default()).unwrap();
    let layer = JsonLayer::new(writer).with_redaction(redaction);
    tracing::subscriber::with_default(subscriber(layer), emit);
    assert!(guard.flush(FLUSH));
    capture.text()
}

/// Every line, parsed, after checking each is one JSON object with the fixed keys and allowed values.
fn lines(emit: impl FnOnce()) -> Vec<Map<String, Value>> {
    parse(&raw_output(true, emit))
}

fn parse(output: &str) -> Vec<Map<String, Value>> {
    assert!(output.is_empty() || output.ends_with('\n'), "{output:?}");
    output.lines().map(checked_line).collect()
}

fn checked_line(line: &str) -> Map<String, Value> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
        panic!("not a JSON object: {line:?}");
    };
    // A repeated key would parse, keeping one value: count the keys in the text as well.
    let keys_in_text = serde_json::Deserializer::from_str(line)
        .into_iter::<Value>()
        .count();
    assert_eq!(keys_in_text, 1, "{line}");
    assert_no_repeated_keys(line);
    for key in FIXED.iter().filter(|key| **key != "id") {
        assert!(
            object[*key].is_string(),
            "{key} missing or not a string: {line}"
        );
    }
    let time = object["time"].as_str().unwrap();
    assert_eq!(time.len(), 27, "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
    humantime::parse_rfc3339(time).unwrap();
    assert!(
        SEVERITIES.contains(&object["severity"].as_str().unwrap()),
        "{line}"
    );
    assert!(TYPES.contains(&object["type"].as_str().unwrap()), "{line}");
    if let Some(id) = object.get("id") {
        assert!(id.is_string(), "{line}");
    }
    object
}

/// serde_json keeps the last of repeated keys silently; a visitor sees every one.
fn assert_no_repeated_keys(line: &str) {
    struct Keys(Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            mut self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                self.0.push(key);
            }
            Ok(self.0)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let keys = serde::Deserializer::deserialize_map(&mut deserializer, Keys(Vec::new())).unwrap();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "repeated key in {line}");
}

fn extra_keys(line: &Map<String, Value>) -> BTreeSet<&str> {
    line.keys()
        .map(String::as_str)
        .filter(|key| !FIXED.contains(key))
        .collect()
}

#[test]
fn each_line_has_the_fixed_keys_and_the_event_fields() {
    let lines = lines(|| {
        tracing::info!(port = 8080, ready = true, service = "svc", "listening");
        tracing::warn!("no fields");
    });
    assert_eq!(lines.len(), 2);
    let listening = &lines[0];
    assert_eq!(listening["app"], "test-app");
    assert_eq!(listening["body"], "listening");
    assert_eq!(listening["severity"], "low");
    assert_eq!(listening["type"], "event");
    assert_eq!(listening["subject"], module_path!());
    assert!(!listening.contains_key("id"));
    assert_eq!(
        extra_keys(listening),
        BTreeSet::from(["port", "ready", "service"])
    );
    assert_eq!(listening["port"], 8080);
    assert_eq!(listening["ready"], true);
    assert_eq!(listening["service"], "svc");
    assert!(extra_keys(&lines[1]).is_empty());

    let before = SystemTime::now() - Duration::from_secs(1);
    let time = humantime::parse_rfc3339(lines[1]["time"].as_str().unwrap()).unwrap();
    assert!(time >= before && time <= SystemTime::now(), "{time:?}");
}

#[test]
fn severity_follows_the_level_and_the_critical_field() {
    let lines = lines(|| {
        tracing::trace!("t");
        tracing::debug!("d");
        tracing::info!("i");
        tracing::warn!("w");
        tracing::error!("e");
        tracing::error!(severity = "critical", "c");
        crate::critical!("c2");
        tracing::info!(severity = "high", "not a way to raise severity");
    });
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["body"].as_str().unwrap(),
                line["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("t", "informational"),
            ("d", "informational"),
            ("i", "low"),
            ("w", "medium"),
            ("e", "high"),
            ("c", "critical"),
            ("c2", "critical"),
            ("not a way to raise severity", "low"),
        ]
    );
    assert!(!lines[5].contains_key("field_severity"));
    assert_eq!(lines[6]["type"], "alarm");
    assert_eq!(lines[7]["field_severity"], "high");
}

#[test]
fn type_field_overrides_the_default_and_bad_values_fall_back() {
    let lines = lines(|| {
        tracing::info!("plain");
        tracing::error!(r#type = "alarm", "raw identifier");
        tracing::warn!(r#type = "alert", "alert");
        tracing::info!(r#type = "task", "task");
        tracing::info!(r#type = "event", "event");
        tracing::info!(r#type = "ALARM", "any case");
        tracing::info!(r#type = "page-someone", "invalid");
        tracing::info!(r#type = 3, "a number");
        crate::alert!(field = "birthDate", "macro alert");
        crate::alarm!(target: "custom::target", "macro alarm");
    });
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["body"].as_str().unwrap(),
                line["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("plain", "event"),
            ("raw identifier", "alarm"),
            ("alert", "alert"),
            ("task", "task"),
            ("event", "event"),
            ("any case", "alarm"),
            ("invalid", "event"),
            ("a number", "event"),
            ("macro alert", "alert"),
            ("macro alarm", "alarm"),
        ]
    );
    // tracing records `r#type` under the name `type`: no `r#type` key, nothing left over.
    assert!(extra_keys(&lines[1]).is_empty(), "{:?}", lines[1]);
    assert_eq!(lines[6]["field_type"], "page-someone");
    assert_eq!(lines[7]["field_type"], 3);
    assert_eq!(lines[8]["severity"], "medium");
    assert_eq!(lines[8]["field"], "birthDate");
    assert_eq!(lines[9]["severity"], "high");
    assert_eq!(lines[9]["subject"], "custom::target");
}

#[test]
fn id_is_the_request_trace_id_inside_a_request_only() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let trace_id = "463ac35c9f6413ad48485a3953bb6124";
    let lines = lines(|| {
        tracing::info!("before");
        runtime.block_on(context::scope(
            Arc::new(RequestContext::with_trace_id(TraceIdText::new(
                opentelemetry::trace::TraceId::from_hex(trace_id).unwrap(),
                false,
            ))),
            async {
                tracing::info!("inside");
                tokio::task::yield_now().await;
                tracing::info!("inside after a yield");
            },
        ));
        runtime.block_on(context::scope(Arc::new(RequestContext::default()), async {
            tracing::info!("request without a trace id")
        }));
        tracing::info!("after");
    });
    let ids: Vec<Option<&str>> = lines
        .iter()
        .map(|line| line.get("id").map(|id| id.as_str().unwrap()))
        .collect();
    assert_eq!(ids, [None, Some(trace_id), Some(trace_id), None, None]);
}

#[test]
fn field_values_keep_their_json_types() {
    #[derive(Debug)]
    struct Point {
        #[allow(dead_code, reason = "read by Debug")]
        x: i32,
    }
    let error = std::io::Error::other("disk \"full\"");
    let output = raw_output(true, || {
        tracing::info!(
            negative = -5i64,
            unsigned = u64::MAX,
            wide = u128::MAX,
            ratio = 0.25f64,
            whole = 2.0f64,
            not_a_number = f64::NAN,
            yes = true,
            no = false,
            text = "plain",
            shown = %"display value",
            debugged = ?Point { x: 1 },
            error = &error as &(dyn std::error::Error + 'static),
            "values"
        );
    });
    // serde_json reads integers beyond 64 bits as floats: check the text.
    assert!(
        output.contains(&format!(",\"wide\":{},", u128::MAX)),
        "{output}"
    );
    let line = &parse(&output)[0];
    assert_eq!(line["negative"], -5);
    assert_eq!(line["unsigned"], u64::MAX);
    assert_eq!(line["ratio"], 0.25);
    assert_eq!(line["whole"], 2.0);
    assert_eq!(line["not_a_number"], "NaN");
    assert_eq!(line["yes"], true);
    assert_eq!(line["no"], false);
    assert_eq!(line["text"], "plain");
    assert_eq!(line["shown"], "display value");
    assert_eq!(line["debugged"], "Point { x: 1 }");
    assert_eq!(line["error"], "disk \"full\"");
}

#[test]
fn fields_named_like_fixed_keys_are_renamed_and_never_repeated() {
    let lines = lines(|| {
        tracing::info!(
            time = 1,
            app = "other",
            body = "b",
            id = "i",
            subject = "s",
            "renamed"
        );
        tracing::info!(app = "first", field_app = "second", "clash after renaming");
        tracing::info!(x = 1, x = 2, "repeated field");
        tracing::info!(message = "explicit message field");
    });
    let renamed = &lines[0];
    assert_eq!(renamed["app"], "test-app");
    assert_eq!(renamed["body"], "renamed");
    assert!(!renamed.contains_key("id"));
    assert_eq!(renamed["field_time"], 1);
    assert_eq!(renamed["field_app"], "other");
    assert_eq!(renamed["field_body"], "b");
    assert_eq!(renamed["field_id"], "i");
    assert_eq!(renamed["field_subject"], "s");
    assert_eq!(lines[1]["field_app"], "first");
    assert_eq!(lines[2]["x"], 1);
    assert_eq!(lines[3]["body"], "explicit message field");
}

#[test]
fn planted_secrets_never_reach_the_output() {
    let cpr = "0101901234";
    let cpr_dashed = "311299-4321";
    let token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2ln";
    let emit = || {
        tracing::info!("patient {cpr} opened");
        tracing::warn!(patient = cpr_dashed, "lookup failed");
        tracing::info!(uri = %format_args!("/cb?code={token}&state=1"), "callback");
        tracing::info!(header = format!("Bearer {token}").as_str(), "forwarding");
        tracing::info!(password = "hunter2-hunter2", authorization = ?token, "named like secrets");
        let error = std::io::Error::other(format!("no patient {cpr} for token={token}"));
        tracing::error!(%error, "store failed");
    };
    let output = raw_output(true, emit);
    for secret in [cpr, cpr_dashed, token, "hunter2"] {
        assert!(!output.contains(secret), "{secret} leaked: {output}");
    }
    let lines = parse(&output);
    assert_eq!(lines[0]["body"], "patient xxxxxxxxxx opened");
    assert_eq!(lines[2]["uri"], "/cb?code=xxxxxxxxxx&state=1");
    assert_eq!(lines[3]["header"], "Bearer xxxxxxxxxx");
    assert_eq!(lines[4]["password"], "xxxxxxxxxx");
    assert_eq!(lines[4]["authorization"], "xxxxxxxxxx");

    // The same events with redaction off show what was masked: the test above can fail.
    let unmasked = raw_output(false, emit);
    for secret in [cpr, cpr_dashed, token, "hunter2"] {
        assert!(unmasked.contains(secret), "{secret} missing: {unmasked}");
    }
}

#[test]
fn hostile_text_still_makes_one_valid_line_per_event() {
    let nasty = [
        "quote \" and backslash \\",
        "new\nline and \r\n and \t tab",
        "controls \u{0}\u{7}\u{1b}[31m\u{7f}",
        "unicode æøå 🩺 \u{2028}\u{feff}",
        "}{\"injected\":true}",
    ];
    let lines = lines(|| {
        for text in nasty {
            tracing::info!(field = text, "{text}");
        }
        tracing::info!("strange key \" = \n" = "v", "odd field name");
    });
    assert_eq!(lines.len(), nasty.len() + 1);
    for (line, text) in lines.iter().zip(nasty) {
        assert_eq!(line["body"], text);
        assert_eq!(line["field"], text);
        assert!(!line.contains_key("injected"));
    }
    assert_eq!(lines[nasty.len()]["strange key \" = \n"], "v");
}

#[test]
fn lines_from_many_threads_are_never_interleaved() {
    let lines = lines(|| {
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let dispatch = dispatch.clone();
                scope.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for n in 0..500 {
                            tracing::info!(thread, n, padding = "x".repeat(n % 97), "line");
                        }
                    });
                });
            }
        });
    });
    assert_eq!(lines.len(), 2000);
    for thread in 0..4 {
        let ns: Vec<u64> = lines
            .iter()
            .filter(|line| line["thread"] == thread)
            .map(|line| line["n"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ns,
            (0..500).collect::<Vec<_>>(),
            "thread {thread} out of order"
        );
    }
}

#[test]
fn an_event_logged_while_formatting_another_leaves_the_line_intact() {
    struct Noisy;
    impl std::fmt::Debug for Noisy {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            tracing::info!("logged from Debug");
            f.write_str("noisy")
        }
    }
    // tracing itself discards an event dispatched from inside another (it would recurse otherwise).
    let lines = lines(|| tracing::info!(value = ?Noisy, "outer"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["body"], "outer");
    assert_eq!(lines[0]["value"], "noisy");
}

#[test]
fn overload_drops_lines_below_high_keeps_high_and_reports_the_drops() {
    let (gate, entered) = Gate::new();
    let (writer, guard) =
        non_blocking("test-app", gate.clone(), QueueLimits::new(2048, 64 * 1024)).unwrap();
    let padding = "p".repeat(150);
    tracing::subscriber::with_default(subscriber(JsonLayer::new(writer)), || {
        tracing::info!("first");
        // The writer thread now holds "first" and is stuck writing it.
        entered.recv_timeout(FLUSH).unwrap();
        for n in 0..100 {
            tracing::info!(n, padding, "low");
        }
        tracing::warn!(padding, "medium");
        for n in 0..20 {
            tracing::error!(n, padding, "high");
        }
        crate::critical!(padding, "critical");
    });
    let dropped = guard.dropped();
    assert!(dropped.low > 0 && dropped.low < 100, "{dropped:?}");
    assert_eq!(dropped.medium, 1);
    assert_eq!((dropped.high, dropped.critical), (0, 0));
    assert_eq!(dropped.total(), dropped.low + 1);

    gate.open();
    assert!(guard.flush(FLUSH));
    let lines = parse(&gate.out.text());
    let bodies: Vec<&str> = lines
        .iter()
        .map(|line| line["body"].as_str().unwrap())
        .collect();
    let count = |body: &str| bodies.iter().filter(|b| **b == body).count();
    assert_eq!(bodies[0], "first");
    assert_eq!(count("low") as u64 + dropped.low, 100);
    assert_eq!(count("medium"), 0);
    assert_eq!(count("high"), 20);
    assert_eq!(count("critical"), 1);

    let report_body = format!("dropped {} log lines under overload", dropped.total());
    let report = bodies.iter().position(|b| *b == report_body).unwrap();
    assert!(report > bodies.iter().rposition(|b| *b == "critical").unwrap());
    let report = &lines[report];
    assert_eq!(report["severity"], "medium");
    assert_eq!(report["type"], "alert");
    assert_eq!(report["app"], "test-app");
    assert_eq!(report["dropped_low"], dropped.low);
    assert_eq!(report["dropped_medium"], 1);
    assert_eq!(report["dropped_high"], 0);
    assert_eq!(count(&report_body), 1);
}

#[test]
fn a_blocked_sink_bounds_memory_even_for_high_lines() {
    let (gate, entered) = Gate::new();
    let limits = QueueLimits::new(1024, 4096);
    let (writer, guard) = non_blocking("test-app", gate.clone(), limits).unwrap();
    let padding = "p".repeat(200);
    tracing::subscriber::with_default(subscriber(JsonLayer::new(writer)), || {
        tracing::info!("first");
        entered.recv_timeout(FLUSH).unwrap();
        for n in 0..100 {
            tracing::error!(n, padding, "high");
        }
    });
    let dropped = guard.dropped();
    assert!(dropped.high > 0, "{dropped:?}");
    gate.open();
    assert!(guard.flush(FLUSH));
    let output = gate.out.text();
    let kept = output.matches("\"body\":\"high\"").count();
    assert_eq!(kept as u64 + dropped.high, 100);
    let kept_bytes: usize = output
        .lines()
        .filter(|line| line.contains("\"body\":\"high\""))
        .map(|line| line.len() + 1)
        .sum();
    assert!(
        kept_bytes <= limits.capacity + limits.reserve,
        "{kept_bytes}"
    );
}

#[test]
fn flush_waits_for_lines_queued_before_it() {
    let (gate, entered) = Gate::new();
    let (writer, guard) = non_blocking("test-app", gate.clone(), QueueLimits::default()).unwrap();
    let layer = JsonLayer::new(writer);
    tracing::subscriber::with_default(subscriber(layer), || {
        tracing::info!("first");
        entered.recv_timeout(FLUSH).unwrap();
        tracing::info!("second");
    });
    // The writer is stuck: a flush cannot complete and says so when its time is up.
    assert!(!guard.flush(Duration::from_millis(20)));
    assert!(gate.out.text().is_empty());

    let flusher = {
        let guard = guard.clone();
        let out = gate.out.clone();
        std::thread::spawn(move || (guard.flush(FLUSH), out.text()))
    };
    gate.open();
    let (flushed, seen) = flusher.join().unwrap();
    assert!(flushed);
    let bodies: Vec<_> = parse(&seen)
        .into_iter()
        .map(|line| line["body"].clone())
        .collect();
    assert_eq!(bodies, ["first", "second"]);
}

#[test]
fn flush_returns_at_once_when_nothing_is_queued_or_the_writer_is_gone() {
    let (writer, guard) =
        non_blocking("test-app", Capture::default(), QueueLimits::default()).unwrap();
    assert!(guard.flush(Duration::ZERO));
    assert!(writer.write_line(Severity::Low, b"{}\n"));
    drop(writer);
    assert!(guard.flush(FLUSH));
    // The writer thread has ended with its producers: nothing is left to wait for.
    assert!(guard.flush(Duration::ZERO));
}

#[test]
fn dropping_the_guard_writes_what_is_queued() {
    let capture = Capture::default();
    let (writer, guard) =
        non_blocking("test-app", capture.clone(), QueueLimits::default()).unwrap();
    // Kept alive, as the global subscriber's writer is at process exit: the writer thread is not told to
    // finish, so only the guard's drop makes it write now.
    let _producer = writer.clone();
    tracing::subscriber::with_default(subscriber(JsonLayer::new(writer)), || {
        for n in 0..100 {
            tracing::info!(n, "before exit");
        }
    });
    drop(guard);
    assert_eq!(parse(&capture.text()).len(), 100);
}

#[test]
fn pretty_format_is_human_readable_redacted_and_queued() {
    let capture = Capture::default();
    let (writer, guard) =
        non_blocking("test-app", capture.clone(), QueueLimits::default()).unwrap();
    let subscriber = tracing_subscriber::registry().with(pretty::layer(writer));
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(
            patient = "0101901234",
            password = "hunter2",
            port = 8080,
            "opened 311299-4321"
        );
    });
    assert!(guard.flush(FLUSH));
    let output = capture.text();
    assert_eq!(output.lines().count(), 1, "{output}");
    assert!(output.contains("WARN"), "{output}");
    assert!(output.contains("opened xxxxxxxxxx"), "{output}");
    assert!(output.contains("patient=\"xxxxxxxxxx\""), "{output}");
    assert!(output.contains("password=xxxxxxxxxx"), "{output}");
    assert!(output.contains("port=8080"), "{output}");
    assert!(serde_json::from_str::<Value>(output.trim()).is_err());
}

#[test]
fn an_event_without_a_message_takes_its_name_as_body() {
    let lines = lines(|| {
        tracing::error!(name: "BatchSpanProcessor.ExportError", error = "connection refused");
    });
    assert_eq!(lines[0]["body"], "BatchSpanProcessor.ExportError");
    assert_eq!(lines[0]["error"], "connection refused");
}

#[test]
fn outside_a_request_the_id_is_the_current_opentelemetry_span_s_trace() {
    use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let span = provider.tracer("test").start("work");
    let trace_id = span.span_context().trace_id();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let inbound = "463ac35c9f6413ad";
    let lines = lines(|| {
        let _current = opentelemetry::Context::current_with_span(span).attach();
        tracing::info!("in the span");
        // Inside a request, the request's trace id as it travelled wins.
        runtime.block_on(context::scope(
            Arc::new(RequestContext::with_trace_id(TraceIdText::new(
                opentelemetry::trace::TraceId::from_hex(inbound).unwrap(),
                true,
            ))),
            async { tracing::info!("in a request") },
        ));
    });
    assert_eq!(lines[0]["id"], format!("{trace_id}"));
    assert_eq!(lines[0]["id"].as_str().map(str::len), Some(32));
    assert_eq!(lines[1]["id"], inbound);
}

/// A `tracing` layer of the service's own that counts the events it sees.
#[derive(Clone, Default)]
struct EventCounter(Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventCounter {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn log_settings(pairs: &[(&str, &str)]) -> LogSettings {
    LogSettings::from_env(&crate::config::Env::from_pairs(pairs.iter().copied())).unwrap()
}

fn identity() -> crate::config::ServiceIdentity {
    crate::config::ServiceIdentity {
        name: "test-app".into(),
        version: "1.0.0".into(),
    }
}

#[test]
fn the_log_part_applies_log_level_to_its_own_layer_alone() {
    let capture = Capture::default();
    let logs = Logs::to_sink(
        &log_settings(&[("LOG_LEVEL", "warn")]),
        &identity(),
        capture.clone(),
        QueueLimits::default(),
    )
    .unwrap();
    let counter = EventCounter::default();
    let subscriber = tracing_subscriber::registry()
        .with(counter.clone())
        .with(logs.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("debug");
        tracing::info!("info");
        tracing::warn!("warn");
    });
    assert!(logs.guard().flush(FLUSH));
    let bodies: Vec<String> = parse(&capture.text())
        .iter()
        .map(|line| line["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["warn"]);
    assert_eq!(counter.0.load(std::sync::atomic::Ordering::Relaxed), 3);
    // The direct access-log writer decides as the layer does, whatever the other layer wants.
    let access = logs.access_log().unwrap();
    assert!(!access.enabled(tracing::Level::INFO));
    assert!(access.enabled(tracing::Level::WARN) && access.enabled(tracing::Level::ERROR));
    let pretty = Logs::to_sink(
        &log_settings(&[("LOG_FORMAT", "pretty")]),
        &identity(),
        Capture::default(),
        QueueLimits::default(),
    )
    .unwrap();
    assert!(pretty.access_log().is_none());
}

#[test]
fn two_layers_of_one_log_part_write_each_line_twice_whole() {
    let capture = Capture::default();
    let logs = Logs::to_sink(
        &log_settings(&[]),
        &identity(),
        capture.clone(),
        QueueLimits::default(),
    )
    .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(logs.layer())
        .with(logs.layer());
    tracing::subscriber::with_default(subscriber, || {
        for n in 0..50 {
            tracing::info!(n, "twice");
        }
    });
    assert!(logs.guard().flush(FLUSH));
    let lines = parse(&capture.text());
    assert_eq!(lines.len(), 100);
    for n in 0..50 {
        let count = lines.iter().filter(|line| line["n"] == n).count();
        assert_eq!(count, 2, "line {n}");
    }
}

#[test]
fn the_log_part_reports_its_dropped_lines_in_the_metrics() {
    let (gate, entered) = Gate::new();
    let logs = Logs::to_sink(
        &log_settings(&[]),
        &identity(),
        gate.clone(),
        QueueLimits::new(2048, 0),
    )
    .unwrap();
    let metrics = crate::metrics::Metrics::new(
        &crate::metrics::MetricsSettings::from_env(
            &crate::config::Env::from_pairs::<&str, &str>([]),
            8080,
        )
        .unwrap(),
        &identity(),
    );
    logs.count_drops_in(&metrics);
    let padding = "p".repeat(150);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(logs.layer()), || {
        tracing::info!("first");
        entered.recv_timeout(FLUSH).unwrap();
        for n in 0..100 {
            tracing::info!(n, padding, "low");
        }
        tracing::error!(padding, "high");
    });
    let dropped = logs.guard().dropped();
    assert!(dropped.low > 0 && dropped.high == 1, "{dropped:?}");
    let page = metrics.encode();
    assert!(
        page.contains(&format!(
            "log_lines_dropped_total{{severity=\"low\"}} {}",
            dropped.low
        )),
        "{page}"
    );
    assert!(
        page.contains("log_lines_dropped_total{severity=\"high\"} 1"),
        "{page}"
    );
    gate.open();
    assert!(logs.guard().flush(FLUSH));
}

#[test]
fn only_one_stdout_log_part_runs_per_process() {
    // The only test of this binary that builds the stdout part: the rule is process-wide.
    let first = Logs::stdout(&log_settings(&[]), &identity());
    assert!(first.is_ok());
    let second = Logs::stdout(&log_settings(&[]), &identity());
    assert!(matches!(second, Err(LogError::StdoutTaken)), "{second:?}");
    assert!(
        second
            .unwrap_err()
            .to_string()
            .contains("already runs in this process")
    );
}
