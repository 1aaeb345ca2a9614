//! Lifecycle of a kit service as a real process with real signals: probes, the shutdown phases, the deadline
//! watchdog, a stalled runtime, PID 1, and configuration errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use telemed_kit::testing::{HttpResponse, ServiceProcess, Signal, http_get, http_request};

const BIN: &str = env!("CARGO_BIN_EXE_kit-testbed");
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn start(env: &[(&str, &str)]) -> ServiceProcess {
    let service = ServiceProcess::spawn(BIN, env).expect("spawn the testbed");
    service
        .wait_for_log(|line| line["body"] == "listening", START_TIMEOUT)
        .expect("the service logs that it is listening");
    service
}

fn body_contains(needle: &'static str) -> impl FnMut(&Value) -> bool {
    move |line| {
        line["body"]
            .as_str()
            .is_some_and(|body| body.contains(needle))
    }
}

fn get(service: &ServiceProcess, path: &str) -> HttpResponse {
    http_get(service.addr(), path, PROBE_TIMEOUT)
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// Runs `GET path` on its own thread, so that it can be in flight while the test goes on.
fn get_in_background(
    service: &ServiceProcess,
    path: &str,
    timeout: Duration,
) -> mpsc::Receiver<std::io::Result<HttpResponse>> {
    let (sender, receiver) = mpsc::channel();
    let (addr, path) = (service.addr(), path.to_owned());
    std::thread::spawn(move || {
        let _ = sender.send(http_get(addr, &path, timeout));
    });
    receiver
}

/// The `drained` field of the `hooks` phase line: whether every request finished before the drain deadline.
fn drained(lines: &[String]) -> Option<bool> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["phase"] == "hooks")
        .and_then(|line| line["drained"].as_bool())
}

/// Probes `/healthz` until it stops answering 503 `starting`, for at most 5 s: the startup task logs its end just
/// before it lets readiness go, so a probe right after that line may still see the last moment of startup.
fn ready_after_startup(service: &ServiceProcess) -> HttpResponse {
    let since = Instant::now();
    loop {
        let answer = get(service, "/healthz");
        if answer.status != 503 {
            return answer;
        }
        assert_eq!(answer.json().unwrap()["status"], "starting");
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "readiness still 503 5 s after the startup task finished"
        );
    }
}

// The startup task is held until the test releases it (not a fixed delay that the first probe had to beat): on a
// loaded machine this test's probes may come late, but never after startup ends, which only the test decides.
#[test]
fn readiness_is_503_until_a_slow_startup_task_completes() {
    let service = start(&[("TESTBED_STARTUP_HELD", "true")]);
    let ready = get(&service, "/healthz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json().unwrap()["status"], "starting");
    assert_eq!(
        get(&service, "/livez").status,
        200,
        "liveness does not wait for startup"
    );
    assert!(
        !service
            .lines()
            .iter()
            .any(|line| line.contains("startup task finished")),
        "the held startup task finished by itself: {:#?}",
        service.lines()
    );

    assert_eq!(get(&service, "/startup/release").status, 200);
    service
        .wait_for_log(
            body_contains("startup task finished"),
            Duration::from_secs(10),
        )
        .expect("the startup task finishes once released");
    let ready = ready_after_startup(&service);
    assert_eq!(
        (ready.status, ready.json().unwrap()["status"].as_str()),
        (200, Some("ready"))
    );
    assert_eq!(get(&service, "/readyz").status, 200);
    assert_eq!(
        http_request(service.addr(), "HEAD", "/healthz", &[], b"", PROBE_TIMEOUT)
            .unwrap()
            .status,
        200,
        "probes answer HEAD"
    );
}

#[test]
fn a_failed_startup_task_shuts_the_service_down_with_exit_1() {
    let service = start(&[
        ("TESTBED_STARTUP_HELD", "true"),
        ("TESTBED_STARTUP_FAILS", "true"),
        ("SHUTDOWN_DELAY", "200ms"),
        ("SHUTDOWN_GRACE_PERIOD", "3s"),
    ]);
    let starting = get(&service, "/healthz");
    assert_eq!(
        (starting.status, starting.json().unwrap()["status"].as_str()),
        (503, Some("starting"))
    );
    assert_eq!(get(&service, "/startup/release").status, 200);
    let (status, lines) = service.finish(Duration::from_secs(10)).unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(1));
    let failed: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["body"] == "startup task failed: shutting down")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert_eq!(
        (failed[0]["type"].as_str(), failed[0]["task"].as_str()),
        (Some("alarm"), Some("warm-up"))
    );
}

#[test]
fn sigterm_turns_readiness_off_serves_through_the_delay_and_drains_in_flight_requests() {
    let service = start(&[("SHUTDOWN_DELAY", "1s"), ("SHUTDOWN_GRACE_PERIOD", "5s")]);
    assert_eq!(get(&service, "/healthz").status, 200);
    let in_flight = get_in_background(&service, "/slow?ms=2000", Duration::from_secs(10));
    service
        .wait_for_log(
            body_contains("slow request started"),
            Duration::from_secs(5),
        )
        .expect("the slow request reaches its handler");

    let signalled = Instant::now();
    service.signal(Signal::Term).unwrap();
    // Readiness turns 503 the moment shutdown starts: the service's own readiness_off line says how long that
    // took from the signal, so a loaded machine delaying this test's polling cannot fail it, and the 503 must be
    // seen while the service is still in its delay (no drain line yet), which is the property the kubelet needs.
    while get(&service, "/healthz").status != 503 {
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "readiness still 200 when the 1 s delay is over"
        );
    }
    assert!(
        !service
            .lines()
            .iter()
            .any(|line| line.contains(r#""phase":"drain""#)),
        "the 503 came only after the delay: {:#?}",
        service.lines()
    );
    let readiness_off = service
        .wait_for_log(
            |line| line["phase"] == "readiness_off",
            Duration::from_secs(1),
        )
        .expect("the readiness_off line");
    let off_after = readiness_off["elapsed_ms"].as_u64().unwrap();
    assert!(
        off_after < 100,
        "readiness turned off {off_after} ms after the signal"
    );

    let during_delay = get(&service, "/livez");
    assert_eq!(
        during_delay.status, 200,
        "a new connection during the delay is served"
    );
    assert_eq!(
        during_delay.header("connection"),
        Some("close"),
        "keep-alive clients are told to reconnect"
    );

    let finished = in_flight
        .recv()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!((finished.status, finished.body.as_str()), (200, "done"));

    let (status, lines) = service.finish(Duration::from_secs(5)).unwrap();
    assert_eq!(
        status.expect("exits inside the grace period").code(),
        Some(0)
    );
    assert!(
        signalled.elapsed() < Duration::from_millis(4500),
        "exits before the deadline"
    );
    let phases: Vec<String> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["phase"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(phases, ["readiness_off", "drain", "hooks", "flush", "exit"]);
    assert_eq!(drained(&lines), Some(true), "{lines:#?}");
}

#[test]
fn a_request_that_never_finishes_is_cut_off_before_the_deadline_with_exit_1() {
    let service = start(&[("SHUTDOWN_DELAY", "500ms"), ("SHUTDOWN_GRACE_PERIOD", "3s")]);
    let _hanging = get_in_background(&service, "/hang", Duration::from_secs(10));
    service
        .wait_for_log(
            body_contains("hanging request started"),
            Duration::from_secs(5),
        )
        .expect("the request reaches its handler");
    let signalled = Instant::now();
    service.signal(Signal::Term).unwrap();
    let (status, lines) = service.finish(Duration::from_secs(5)).unwrap();
    let elapsed = signalled.elapsed();
    assert_eq!(status.and_then(|status| status.code()), Some(1));
    assert!(
        elapsed < Duration::from_millis(2500),
        "exited {elapsed:?} after SIGTERM, deadline is 2.5 s"
    );
    let cut_off: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("requests cut off"))
        .collect();
    assert_eq!(cut_off.len(), 1, "one cut-off line: {lines:#?}");
    let line: Value = serde_json::from_str(cut_off[0]).unwrap();
    assert_eq!(line["requests_cut_off"], 1);
    assert_eq!(drained(&lines), Some(false), "{lines:#?}");
}

#[test]
fn a_blocked_runtime_fails_liveness_then_recovers_and_cannot_stop_the_deadline() {
    let service = start(&[
        ("LIVENESS_STALL_THRESHOLD", "500ms"),
        ("SHUTDOWN_DELAY", "500ms"),
        ("SHUTDOWN_GRACE_PERIOD", "3s"),
    ]);
    assert_eq!(get(&service, "/livez").status, 200);

    // One blocking request occupies the runtime's only worker for 5 s.
    let blocked = get_in_background(&service, "/block?ms=5000", Duration::from_secs(10));
    service
        .wait_for_log(
            body_contains("blocking request started"),
            Duration::from_secs(5),
        )
        .expect("the worker is blocked");
    // The documented outcome with no worker free (crate::health): /livez cannot answer at all, which the kubelet
    // counts as a failed probe. The connection is accepted (the process is up) and the read times out; a refused
    // connection, a reset or any answer is a different failure and fails here.
    let stalled = http_get(service.addr(), "/livez", PROBE_TIMEOUT);
    assert!(
        matches!(&stalled, Err(error)
            if matches!(error.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)),
        "liveness must go unanswered while the only worker is blocked: {stalled:?}"
    );
    assert_eq!(blocked.recv().unwrap().unwrap().body, "unblocked");
    let recovered = Instant::now();
    while get(&service, "/livez").status != 200 {
        assert!(
            recovered.elapsed() < Duration::from_secs(2),
            "liveness recovers once the stall ends"
        );
    }

    // Block the worker past the whole grace period, then ask for shutdown: the watchdog thread still ends the
    // process at the deadline.
    let _ = get_in_background(&service, "/block?ms=20000", Duration::from_secs(30));
    service
        .wait_for_log(
            body_contains("blocking request started"),
            Duration::from_secs(5),
        )
        .expect("the worker is blocked again");
    let signalled = SystemTime::now();
    let signalled_instant = Instant::now();
    service.signal(Signal::Term).unwrap();
    let (status, lines) = service.finish(Duration::from_secs(6)).unwrap();
    // The grace period plus 1 s for this test's own wait being scheduled late; the exact bounds are the
    // service's own below.
    assert!(
        signalled_instant.elapsed() < Duration::from_secs(4),
        "the process outlived the grace period: {:?}",
        signalled_instant.elapsed()
    );
    assert_eq!(
        status.expect("the watchdog ends the process").code(),
        Some(1)
    );
    // When the watchdog fired, by the service's own clock (its alarm line's time): this test's thread being
    // scheduled late on a loaded machine moves neither bound. The signal is sent after `signalled`, so firing
    // before 2.5 s would be early (1 ms for the line's time being cut to microseconds); after 3 s, the kubelet's
    // SIGKILL would have come first.
    let alarm: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["type"] == "alarm" && line["requests_cut_off"].is_u64())
        .collect();
    assert_eq!(alarm.len(), 1, "one watchdog alarm: {lines:#?}");
    let fired = humantime::parse_rfc3339(alarm[0]["time"].as_str().unwrap())
        .unwrap()
        .duration_since(signalled)
        .unwrap();
    assert!(
        fired >= Duration::from_millis(2499),
        "the watchdog fired before the deadline: {fired:?}"
    );
    assert!(
        fired < Duration::from_secs(3),
        "the watchdog fired after the grace period: {fired:?}"
    );
    assert_eq!(alarm[0]["requests_cut_off"], 1, "{lines:#?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut service = start(&[("SHUTDOWN_DELAY", "2s"), ("SHUTDOWN_GRACE_PERIOD", "5s")]);
    service.signal(Signal::Int).unwrap();
    service
        .wait_for_log(
            |line| line["phase"] == "readiness_off",
            Duration::from_secs(5),
        )
        .expect("shutdown starts");
    let second = Instant::now();
    service.signal(Signal::Term).unwrap();
    let status = service
        .wait_exit(Duration::from_secs(1))
        .unwrap()
        .expect("exits at once");
    assert_eq!(status.code(), Some(128 + 15));
    assert!(second.elapsed() < Duration::from_secs(1));
}

#[test]
fn shutdown_hooks_run_after_draining() {
    let service = start(&[
        ("SHUTDOWN_DELAY", "200ms"),
        ("SHUTDOWN_GRACE_PERIOD", "3s"),
        ("TESTBED_HOOK_DURATION", "100ms"),
    ]);
    service.signal(Signal::Term).unwrap();
    let (status, lines) = service.finish(Duration::from_secs(5)).unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(0));
    let positions: Vec<usize> = [
        "stopped accepting",
        "shutdown hook finished",
        "shutdown complete",
    ]
    .into_iter()
    .map(|needle| {
        lines
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("missing {needle:?} in {lines:#?}"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "phases out of order: {lines:#?}"
    );
}

#[test]
fn sigterm_is_handled_when_the_service_is_pid_1() {
    let mut command = Command::new("unshare");
    // --kill-child: should the test fail and kill unshare, the service in the namespace goes too.
    command.args(["--pid", "--fork", "--mount-proc", "--kill-child", BIN]);
    let service = ServiceProcess::spawn_command(
        &mut command,
        &[("SHUTDOWN_DELAY", "200ms"), ("SHUTDOWN_GRACE_PERIOD", "3s")],
    )
    .expect("unshare is available and we may create a PID namespace");
    service
        .wait_for_log(|line| line["body"] == "listening", START_TIMEOUT)
        .expect("the service starts as PID 1");
    // `unshare --fork` waits for its child, which is PID 1 in the new namespace; signal that child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", service.pid())).unwrap();
    let pid1: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status_file = std::fs::read_to_string(format!("/proc/{pid1}/status")).unwrap();
    let ns_pid = status_file
        .lines()
        .find(|line| line.starts_with("NSpid:"))
        .unwrap();
    assert!(
        ns_pid.split_whitespace().last() == Some("1"),
        "the service is PID 1 in its namespace: {ns_pid}"
    );

    telemed_kit::testing::send_signal(pid1, Signal::Term).unwrap();
    let (status, lines) = service.finish(Duration::from_secs(5)).unwrap();
    assert_eq!(status.expect("PID 1 handles SIGTERM").code(), Some(0));
    assert!(lines.iter().any(|line| line.contains("shutdown complete")));
}

#[test]
fn each_invalid_configuration_value_exits_2_with_one_line() {
    let cases = [
        ("PORT", "80a", "expected a port number from 1 to 65535"),
        ("PORT", "0", "expected a port number from 1 to 65535"),
        ("OTEL_SERVICE_NAME", "bad name!", "expected a service name"),
        (
            "SHUTDOWN_GRACE_PERIOD",
            "ten seconds",
            "expected a duration such as 500ms or 10s",
        ),
        (
            "SHUTDOWN_GRACE_PERIOD",
            "1s",
            "expected a duration from 2s 500ms to 1h",
        ),
        (
            "SHUTDOWN_DELAY",
            "3",
            "expected a duration such as 500ms or 10s",
        ),
        ("SHUTDOWN_DELAY", "9s", "expected at most 7s 500ms"),
        (
            "LIVENESS_STALL_THRESHOLD",
            "fast",
            "expected a duration such as 500ms or 10s",
        ),
        (
            "LIVENESS_STALL_THRESHOLD",
            "1ms",
            "expected a duration of at least 100ms",
        ),
        (
            "READINESS_CHECK_INTERVAL",
            "often",
            "expected a duration such as 500ms or 10s",
        ),
        (
            "READINESS_CHECK_TIMEOUT",
            "1ms",
            "expected a duration of at least 10ms",
        ),
        ("LOG_FORMAT", "xml", "expected json or pretty"),
        ("LOG_LEVEL", "loud=[", "expected a level"),
    ];
    for (variable, value, expected) in cases {
        // `timeout` turns a configuration wrongly accepted (a service that keeps running) into a failure.
        let output = Command::new("timeout")
            .args(["10", BIN])
            .env("PORT", "1")
            .env(variable, value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stdout}"
        );
        assert_eq!(
            lines.len(),
            1,
            "{variable}={value}: exactly one line, got {stdout}"
        );
        let line: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
        let body = line["body"].as_str().unwrap();
        assert!(
            body.starts_with(&format!("{variable}={value:?}: ")),
            "{body}"
        );
        assert!(body.contains(expected), "{body} should contain {expected}");
        assert_eq!(
            (line["severity"].as_str(), line["type"].as_str()),
            (Some("high"), Some("alarm"))
        );
        assert!(
            output.stderr.is_empty(),
            "no backtrace or other noise: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_runner_keeps_plain_axum_serve_accepting_through_the_delay_then_drains_and_exits_0() {
    let service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_kit-testbed-axum"),
        &[("SHUTDOWN_DELAY", "1s"), ("SHUTDOWN_GRACE_PERIOD", "5s")],
    )
    .unwrap();
    service
        .wait_for_log(|line| line["body"] == "listening", START_TIMEOUT)
        .expect("the service logs that it is listening");
    let ready = Instant::now();
    while get(&service, "/healthz").status != 200 {
        assert!(ready.elapsed() < START_TIMEOUT, "never ready");
    }
    let in_flight = get_in_background(&service, "/slow?ms=2000", Duration::from_secs(10));
    service
        .wait_for_log(body_contains("slow request started"), START_TIMEOUT)
        .expect("the slow request reaches its handler");

    let signalled = Instant::now();
    service.signal(Signal::Term).unwrap();
    while get(&service, "/healthz").status != 503 {
        assert!(
            signalled.elapsed() < START_TIMEOUT,
            "readiness never turned 503"
        );
    }
    let during_delay = get(&service, "/livez");
    assert_eq!(
        during_delay.status, 200,
        "axum still accepts a new connection"
    );
    assert_eq!(during_delay.header("connection"), Some("close"));

    let finished = in_flight
        .recv()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!((finished.status, finished.body.as_str()), (200, "done"));
    let (status, lines) = service.finish(Duration::from_secs(5)).unwrap();
    assert_eq!(
        status.expect("exits inside the grace period").code(),
        Some(0)
    );
    assert!(signalled.elapsed() < Duration::from_millis(4500));
    let phases: Vec<String> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["phase"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(phases, ["readiness_off", "drain", "hooks", "flush", "exit"]);
}
