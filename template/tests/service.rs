//! The service as a real process: its routes and probes answer, SIGTERM turns readiness off while requests are
//! still served, and the process exits 0 after its shutdown hook; a bad variable exits 2 before anything binds.
{%- if auth %}
//! The application routes need a valid access token from the issuer stand-in, and `POST /notes` a privilege;
//! the probes and /metrics need none.
{%- endif %}

#![allow(clippy::unwrap_used, clippy::expect_used)]
{% if auth %}
use std::sync::OnceLock;
{%- endif %}
use std::time::Duration;
{% if auth %}
use issuer_standin::IssuerStandIn;
{%- endif %}
use serde_json::Value;
{%- if kvstore or auth %}
use telemed_kit::axum::Router;
{%- endif %}
{%- if auth %}
use telemed_kit::testing::{HttpResponse, ServiceProcess, Signal, http_get, http_request};
{%- else %}
use telemed_kit::testing::{HttpResponse, ServiceProcess, Signal, http_get};
{%- endif %}

const BIN: &str = env!("CARGO_BIN_EXE_{{project-name}}");
const TIMEOUT: Duration = Duration::from_secs(20);
/// The platform's terminationGracePeriodSeconds, and the kit's default SHUTDOWN_GRACE_PERIOD.
const GRACE_PERIOD: Duration = Duration::from_secs(10);
{%- if kvstore or auth %}

/// A listener on 127.0.0.1 for a stand-in: its address is known before the stand-in is made.
fn local_listener() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

/// Serves `router` on `listener` for the length of the test process.
fn serve(listener: std::net::TcpListener, router: Router) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            telemed_kit::axum::serve(listener, router).await.unwrap();
        });
    });
}
{%- endif %}
{%- if kvstore %}

/// The kit's in-memory key-value store stand-in.
fn kvstore_url() -> String {
    let listener = local_listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    serve(listener, kvstore_standin::router());
    url
}
{%- endif %}
{%- if auth %}

/// The kit's stand-in for the eHealth token issuer, one for the test process: its keys for the services under
/// test, its tokens for the requests.
fn issuer() -> &'static IssuerStandIn {
    static ISSUER: OnceLock<IssuerStandIn> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let listener = local_listener();
        let standin =
            IssuerStandIn::new(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        serve(listener, standin.router());
        standin
    })
}

/// An `Authorization` value with a token of the stand-in's test user `user` (`practitioner`, `patient`, ...).
fn bearer(user: &str) -> String {
    format!("Bearer {}", issuer().token("ehealth", user).unwrap())
}
{%- endif %}

fn start(env: &[(&str, &str)]) -> ServiceProcess {
{%- if kvstore or auth %}
    let mut env = env.to_vec();
{%- endif %}
{%- if kvstore %}
    let kvstore = kvstore_url();
    env.push(("KVSTORE_URL", &kvstore));
{%- endif %}
{%- if auth %}
    let issuer_url = issuer().issuer("ehealth");
    env.push(("AUTH_ISSUER", &issuer_url));
{%- endif %}
{%- if kvstore or auth %}
    let service = ServiceProcess::spawn(BIN, &env).unwrap();
{%- else %}
    let service = ServiceProcess::spawn(BIN, env).unwrap();
{%- endif %}
    service
        .wait_for_log(|line| line["body"] == "listening", TIMEOUT)
        .expect("the service logs that it is listening");
    service
}

/// GET{% if auth %} without a token{% endif %}.
fn get(service: &ServiceProcess, path: &str) -> HttpResponse {
    http_get(service.addr(), path, TIMEOUT).unwrap_or_else(|error| panic!("GET {path}: {error}"))
}
{%- if auth %}

/// A request with `Authorization: <authorization>`, or without the header for `None`.
fn send(service: &ServiceProcess, method: &str, path: &str, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<_> = authorization.map(|value| ("Authorization", value)).into_iter().collect();
    http_request(service.addr(), method, path, &headers, b"", TIMEOUT)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}
{%- endif %}

/// GET of an application route{% if auth %}, with a token of the issuer stand-in's practitioner{% endif %}.
fn get_route(service: &ServiceProcess, path: &str) -> HttpResponse {
{%- if auth %}
    send(service, "GET", path, Some(&bearer("practitioner")))
{%- else %}
    get(service, path)
{%- endif %}
}

/// Waits until the readiness check `check` has logged that it is up, which may also have come before the lines
/// waited for so far (the background checks start before the service logs that it is listening).
fn wait_for_check_up(service: &ServiceProcess, check: &str) {
    let is_up = |line: &Value| line["body"] == "readiness check is up" && line["check"] == check;
    let seen = service
        .lines()
        .iter()
        .any(|line| serde_json::from_str::<Value>(line).is_ok_and(|line| is_up(&line)));
    if !seen {
        service
            .wait_for_log(is_up, TIMEOUT)
            .unwrap_or_else(|| panic!("no `{check}` check up: {:#?}", service.lines()));
    }
}

#[test]
fn route_and_probes_answer() {
    let service = start(&[("READINESS_CHECK_INTERVAL", "100ms")]);
    assert_eq!(get(&service, "/livez").status, 200);
{%- if kvstore %}
    let checks = ["kvstore"{% if auth %}, "auth-keys"{% endif %}];
{%- else %}
    let checks = ["dependencies"{% if auth %}, "auth-keys"{% endif %}];
{%- endif %}
    for check in checks {
        wait_for_check_up(&service, check);
    }
    let ready = get(&service, "/healthz");
    let body = ready.json().unwrap();
    assert_eq!((ready.status, body["status"].as_str()), (200, Some("ready")), "{body}");
    for check in checks {
        assert_eq!(body["checks"][check]["status"], "up", "{body}");
    }
{%- if auth %}
    assert_eq!(get(&service, "/metrics").status, 200, "metrics need no token");
{%- endif %}

    let about = get_route(&service, "/");
    assert_eq!(about.status, 200, "{}", about.body);
    let about = about.json().unwrap();
    assert_eq!(about["name"], env!("CARGO_PKG_NAME"));
    assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&service, "/no-such-route").status, 404);
}
{%- if auth %}

#[test]
fn application_routes_need_a_valid_token_and_writes_a_privilege() {
    let service = start(&[]);
    let refused = |response: HttpResponse, what: &str| {
        assert_eq!(response.status, 401, "{what}: {}", response.body);
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{what}"
        );
    };
    for path in ["/", "/whoami"] {
        refused(get(&service, path), &format!("GET {path} without a token"));
    }
    refused(send(&service, "POST", "/notes", None), "POST /notes without a token");
    // The same issuer URL and claims, signed by a key the issuer never published.
    let base_url = issuer().issuer("ehealth").replace("/auth/realms/ehealth", "");
    let forged = IssuerStandIn::new(&base_url).unwrap().token("ehealth", "practitioner").unwrap();
    refused(
        send(&service, "GET", "/", Some(&format!("Bearer {forged}"))),
        "a token signed by another key",
    );

    let whoami = send(&service, "GET", "/whoami", Some(&bearer("patient")));
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    assert_eq!(whoami.json().unwrap()["user_type"], "PATIENT");

    let forbidden = send(&service, "POST", "/notes", Some(&bearer("patient")));
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    assert_eq!(forbidden.header("content-type"), Some("application/problem+json"));
    let problem = forbidden.json().unwrap();
    assert_eq!(problem["status"], 403, "{problem}");
    assert_eq!(problem["detail"], "the privilege Patient.write is required", "{problem}");

    let written = send(&service, "POST", "/notes", Some(&bearer("practitioner")));
    assert_eq!(written.status, 204, "{}", written.body);
}
{%- endif %}

#[test]
fn sigterm_turns_readiness_off_keeps_serving_through_the_delay_then_exits_0() {
    let mut service = start(&[("SHUTDOWN_DELAY", "2s")]);
    assert_eq!(get_route(&service, "/").status, 200);

    service.signal(Signal::Term).unwrap();
    service
        .wait_for_log(|line| line["phase"] == "readiness_off", TIMEOUT)
        .expect("shutdown starts");
    let ready = get(&service, "/healthz");
    assert_eq!(
        (ready.status, ready.json().unwrap()["status"].as_str()),
        (503, Some("shutting_down"))
    );
    assert_eq!(get_route(&service, "/").status, 200, "requests are still served during SHUTDOWN_DELAY");

    // Inside the platform's 10 s grace period (the kit's default): by the service's own clock, its exit line
    // comes before the kit's deadline (grace period minus its 500 ms margin); the wait here adds 1 s only for
    // this test being scheduled late on a loaded machine.
    let status = service
        .wait_exit(GRACE_PERIOD + Duration::from_secs(1))
        .unwrap()
        .expect("exits inside the grace period");
    let lines = service.lines();
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    let exit_ms = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["phase"] == "exit")
        .and_then(|line| line["elapsed_ms"].as_u64())
        .expect("the exit phase line");
    assert!(
        exit_ms < 9_500,
        "exited {exit_ms} ms after SIGTERM, past the deadline"
    );
    assert!(
        lines.iter().any(|line| line.contains(r#""hook":"goodbye""#)),
        "the shutdown hook ran: {lines:#?}"
    );
}

#[test]
fn an_invalid_variable_exits_2_with_one_line_naming_it() {
    let service = ServiceProcess::spawn(BIN, &[("SHUTDOWN_DELAY", "soon")]).unwrap();
    let (status, lines) = service.finish(TIMEOUT).unwrap();
    assert_eq!(status.and_then(|status| status.code()), Some(2));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(r#"SHUTDOWN_DELAY=\"soon\": expected"#), "{}", lines[0]);
}
{%- if auth %}

#[test]
fn a_missing_or_bad_auth_issuer_exits_2_naming_it_before_binding() {
    for (issuer, expected) in [
        (None, "AUTH_ISSUER is not set: expected "),
        (Some("saml.inttest"), r#"AUTH_ISSUER=\"saml.inttest\": expected "#),
    ] {
{%- if kvstore %}
        let mut env = vec![("KVSTORE_URL", "http://127.0.0.1:9")];
{%- else %}
        let mut env = Vec::new();
{%- endif %}
        env.extend(issuer.map(|issuer| ("AUTH_ISSUER", issuer)));
        let service = ServiceProcess::spawn(BIN, &env).unwrap();
        let (status, lines) = service.finish(TIMEOUT).unwrap();
        assert_eq!(status.and_then(|status| status.code()), Some(2), "{lines:#?}");
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains(expected), "{}", lines[0]);
    }
}
{%- endif %}
