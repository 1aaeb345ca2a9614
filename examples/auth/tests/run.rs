//! The example as a real process, with the issuer stand-in serving keys and tokens over real HTTP: readiness
//! waits for the keys, a valid token reaches the handler, a missing one gets 401, a missing privilege 403, the
//! probes need no token, and a bad `AUTH_*` value exits 2 before anything binds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use issuer_standin::IssuerStandIn;
use serde_json::Value;
use telemed_kit::testing::{ServiceProcess, http_get, http_request};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The stand-in, served on 127.0.0.1 by a runtime of its own for the whole test.
fn issuer() -> (IssuerStandIn, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let standin = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let standin =
            IssuerStandIn::new(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(axum::serve(listener, standin.router()).into_future());
        standin
    });
    (standin, runtime)
}

fn body_is(expected: &'static str) -> impl FnMut(&Value) -> bool {
    move |line| line["body"] == expected
}

#[test]
fn tokens_are_verified_and_privileges_required() {
    let (standin, _runtime) = issuer();
    let issuer_url = standin.issuer("ehealth");
    let service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_example-auth"),
        &[
            ("AUTH_ISSUER", issuer_url.as_str()),
            ("READINESS_CHECK_INTERVAL", "200ms"),
            ("SHUTDOWN_DELAY", "100ms"),
        ],
    )
    .unwrap();
    service
        .wait_for_log(body_is("listening"), TIMEOUT)
        .expect("listening");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while http_get(service.addr(), "/healthz", TIMEOUT)
        .unwrap()
        .status
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: the keys did not load"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let bearer = |user: &str| format!("Bearer {}", standin.token("ehealth", user).unwrap());
    let practitioner = bearer("practitioner");
    let whoami = http_request(
        service.addr(),
        "GET",
        "/whoami",
        &[("Authorization", practitioner.as_str())],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    let caller = whoami.json().unwrap();
    assert_eq!(caller["user_type"], "PRACTITIONER");
    assert_eq!(
        caller["organization"],
        "https://fut.example/fhir/Organization/1"
    );

    let anonymous = http_get(service.addr(), "/whoami", TIMEOUT).unwrap();
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );

    let patient = bearer("patient");
    let refused = http_request(
        service.addr(),
        "POST",
        "/notes",
        &[("Authorization", patient.as_str())],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json().unwrap()["detail"],
        "the privilege Settings.write is required"
    );
    let written = http_request(
        service.addr(),
        "POST",
        "/notes",
        &[("Authorization", practitioner.as_str())],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!((written.status, written.body.as_str()), (200, "noted"));

    assert_eq!(
        http_get(service.addr(), "/livez", TIMEOUT).unwrap().status,
        200
    );
    assert_eq!(
        http_get(service.addr(), "/metrics", TIMEOUT)
            .unwrap()
            .status,
        200
    );
    // The refusals were logged with their reason, the tokens never.
    let token = practitioner.trim_start_matches("Bearer ");
    let lines = service.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("auth: request refused"))
    );
    assert!(lines.iter().all(|line| !line.contains(&token[..32])));
}

#[test]
fn a_bad_auth_value_exits_2_naming_it_before_binding() {
    for (variable, value) in [("AUTH_LEEWAY", "forever"), ("AUTH_ISSUER", "saml.inttest")] {
        let mut env = vec![("AUTH_ISSUER", "https://saml.example/auth/realms/ehealth")];
        env.retain(|(name, _)| *name != variable);
        env.push((variable, value));
        let service = ServiceProcess::spawn(env!("CARGO_BIN_EXE_example-auth"), &env).unwrap();
        let (status, lines) = service.finish(TIMEOUT).unwrap();
        assert_eq!(
            status.and_then(|status| status.code()),
            Some(2),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        let body = line["body"].as_str().unwrap();
        assert!(
            body.starts_with(&format!("{variable}=\"{value}\": expected ")),
            "{body}"
        );
        assert!(!lines.iter().any(|line| line.contains("listening")));
    }
}
