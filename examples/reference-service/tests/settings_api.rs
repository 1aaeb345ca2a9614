//! The settings API against the key-value store stand-in, through real processes: conditional writes with
//! ETags, tokens verified against the issuer stand-in and the verified token relayed to the store, the write
//! privilege, input checked before the store is called, and two instances sharing one store without losing a
//! write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    StandInServer, assert_problem, cache_disabled, call, delete_setting, get_setting, issuer,
    put_setting, reader_token, start_service, token,
};
use kvstore_standin::{Failure, Faults};

const TEXT: &str = "text/plain; charset=utf-8";

#[test]
fn create_read_update_and_delete_follow_the_etags() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    let port = store.port().to_string();
    let no_leak = [port.as_str()];

    let created = put_setting(&service, "greeting", "hej", None);
    assert_eq!(created.status, 201, "create: {}", created.body);
    let etag1 = created
        .header("etag")
        .expect("an ETag on create")
        .to_owned();
    assert!(etag1.starts_with('"') && etag1.ends_with('"'), "{etag1}");

    let read = get_setting(&service, "greeting");
    assert_eq!(read.status, 200);
    assert_eq!(read.body, "hej");
    assert_eq!(read.header("content-type"), Some(TEXT));
    assert_eq!(read.header("etag"), Some(etag1.as_str()));
    assert_eq!(read.header("cache-control"), Some("no-cache"));

    let updated = put_setting(&service, "greeting", "hej igen", Some(&etag1));
    assert_eq!(updated.status, 200, "update: {}", updated.body);
    let etag2 = updated.header("etag").unwrap().to_owned();
    assert_ne!(etag2, etag1, "every write gets a new ETag");
    // The writing instance dropped its cached copy: the new value at once.
    let read = get_setting(&service, "greeting");
    assert_eq!(
        (read.body.as_str(), read.header("etag")),
        ("hej igen", Some(etag2.as_str()))
    );

    assert_problem(
        &put_setting(&service, "greeting", "overwritten", Some(&etag1)),
        412,
        &no_leak,
        "update with a stale ETag",
    );
    assert_problem(
        &put_setting(&service, "greeting", "overwritten", None),
        428,
        &no_leak,
        "update of an existing key without If-Match",
    );
    assert_problem(
        &delete_setting(&service, "greeting", None),
        428,
        &no_leak,
        "delete without If-Match",
    );
    assert_problem(
        &delete_setting(&service, "greeting", Some(&etag1)),
        412,
        &no_leak,
        "delete with a stale ETag",
    );
    // None of the refused writes touched the value.
    let stored = store.read("greeting");
    assert_eq!(
        (stored.body.as_str(), stored.header("etag")),
        ("hej igen", Some(etag2.as_str()))
    );

    let deleted = delete_setting(&service, "greeting", Some(&etag2));
    assert_eq!((deleted.status, deleted.body.as_str()), (204, ""));
    assert_problem(
        &get_setting(&service, "greeting"),
        404,
        &no_leak,
        "read after delete",
    );
    assert_eq!(store.read("greeting").status, 404);
    assert_problem(
        &put_setting(&service, "never-created", "x", Some(&etag2)),
        404,
        &no_leak,
        "update of a key that does not exist",
    );

    let json = r#"{"limits": [1, 2.5, null], "name": "Ærø"}"#.as_bytes();
    let created = call(
        &service,
        "PUT",
        "/settings/limits.v1",
        &[
            ("Authorization", token()),
            ("Content-Type", "application/json"),
        ],
        json,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let read = get_setting(&service, "limits.v1");
    assert_eq!(read.header("content-type"), Some("application/json"));
    assert_eq!(read.body.as_bytes(), json, "stored byte for byte");
}

#[test]
fn a_verified_token_is_required_and_is_the_one_relayed_to_the_store() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    let etag = store.create("shared", TEXT, "value");
    let before = store.calls();

    // Signed by a key the issuer never published: a forged token.
    let forger = issuer_standin::IssuerStandIn::new(&issuer().standin.issuer("")).unwrap();
    let forged = format!(
        "Bearer {}",
        forger.token(common::REALM, "practitioner").unwrap()
    );
    let expired_claims = {
        let mut claims = issuer()
            .standin
            .user_claims(common::REALM, "practitioner", "Tests", 60)
            .unwrap();
        claims["exp"] = serde_json::json!(1_000_000_000);
        claims
    };
    let expired = format!("Bearer {}", issuer().standin.sign(&expired_claims).unwrap());
    let unauthenticated: [&[(&str, &str)]; 7] = [
        &[],
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        &[("Authorization", "Bearer    ")],
        &[("Authorization", "Bearer test-token")],
        &[("Authorization", forged.as_str())],
        &[("Authorization", expired.as_str())],
        // Two headers, each a valid token: which one would be relayed? Neither: refused.
        &[
            ("Authorization", token()),
            ("Authorization", reader_token()),
        ],
    ];
    for headers in unauthenticated {
        for method in ["GET", "PUT", "DELETE"] {
            let mut headers = headers.to_vec();
            headers.push(("Content-Type", TEXT));
            headers.push(("If-Match", etag.as_str()));
            let response = call(&service, method, "/settings/shared", &headers, b"new");
            let context = format!(
                "{method} with {} Authorization header(s)",
                headers.len() - 2
            );
            assert_problem(&response, 401, &[], &context);
            assert_eq!(
                response.header("www-authenticate"),
                Some(r#"Bearer error="invalid_token""#),
                "{context}"
            );
        }
    }
    assert_eq!(
        store.calls(),
        before,
        "a request without a valid token never reaches the store or the cache"
    );

    // A valid token without the write privilege reads, and is refused writes by name, before the store.
    let reader = [("Authorization", reader_token()), ("Content-Type", TEXT)];
    let read = call(&service, "GET", "/settings/shared", &reader, b"");
    assert_eq!((read.status, read.body.as_str()), (200, "value"));
    let mut update = reader.to_vec();
    update.push(("If-Match", etag.as_str()));
    for (method, path, headers) in [
        ("PUT", "/settings/created-by-a-reader", &reader[..]),
        ("PUT", "/settings/shared", &update[..]),
        ("DELETE", "/settings/shared", &update[..]),
    ] {
        let response = call(&service, method, path, headers, b"x");
        let context = format!("{method} {path} by a reader");
        assert_problem(&response, 403, &[], &context);
        assert!(
            response.body.contains("Settings.write"),
            "{context}: {}",
            response.body
        );
    }
    let calls_after_reads = store.calls();

    // What the store received is exactly the verified token of the request, never another.
    let written = put_setting(&service, "shared", "by the writer", Some(&etag));
    assert_eq!(written.status, 200, "{}", written.body);
    assert_eq!(
        store.calls(),
        calls_after_reads + 1,
        "the refused writes never reached the store"
    );
    let relayed = store.probe.authorizations();
    assert_eq!(relayed.last().map(String::as_str), Some(token()));
    assert!(
        relayed
            .iter()
            .all(|value| value == token() || value == reader_token()),
        "only verified tokens reach the store: {relayed:?}"
    );

    // The store may still refuse a verified caller (its own privileges); the service passes its 403 on. (A
    // GET of a key this instance has cached is answered from the cache to any authenticated caller: settings
    // are shared, non-personal configuration. So the GET here is of a key nobody has read through the service.)
    store.create("uncached", TEXT, "value");
    store
        .standin
        .set_faults(Faults::failure(Failure::Forbidden));
    assert_problem(
        &get_setting(&service, "uncached"),
        403,
        &[],
        "GET refused by the store",
    );
    assert_problem(
        &put_setting(&service, "created-by-nobody", "x", None),
        403,
        &[],
        "create refused by the store",
    );
    store.standin.clear_faults();
    assert_eq!(store.read("created-by-nobody").status, 404);
}

#[test]
fn the_write_privilege_is_the_configured_one() {
    let store = StandInServer::start();
    let service = start_service(
        &store.url(),
        &[("SETTINGS_WRITE_PRIVILEGE", "Settings.admin")],
    );
    let refused = put_setting(&service, "theme", "dark", None);
    assert_problem(&refused, 403, &[], "a writer without Settings.admin");
    assert!(refused.body.contains("Settings.admin"), "{}", refused.body);
    assert_eq!(store.read("theme").status, 404);
    assert_eq!(
        get_setting(&service, "theme").status,
        404,
        "reading needs no privilege"
    );
}

#[test]
fn keys_sizes_and_media_types_are_checked_before_the_store_is_called() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    let before = store.calls();

    let long_key = "k".repeat(129);
    let bad_keys = [
        "..",
        ".",
        "%2e%2e",
        "%2E.",
        "a%2Fb",
        "%2F",
        "..%2F..%2Fetc%2Fpasswd",
        "a%20b",
        "a%3Fb",
        "a%00b",
        "%FF",
        "%zz",
        "caf%C3%A9",
        long_key.as_str(),
    ];
    for key in bad_keys {
        let path = format!("/settings/{key}");
        for method in ["GET", "PUT", "DELETE"] {
            let response = call(
                &service,
                method,
                &path,
                &[
                    ("Authorization", token()),
                    ("Content-Type", TEXT),
                    ("If-Match", "\"x\""),
                ],
                b"v",
            );
            assert_problem(&response, 400, &[], &format!("{method} {path}"));
        }
    }

    let put = |key: &str, content_type: Option<&str>, body: &[u8]| {
        let mut headers = vec![("Authorization", token())];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        call(&service, "PUT", &format!("/settings/{key}"), &headers, body)
    };
    let limit = 64 * 1024;
    assert_problem(
        &put("big", Some(TEXT), &vec![b'a'; limit + 1]),
        413,
        &[],
        "65 537 bytes",
    );
    for content_type in [
        None,
        Some("text/html"),
        Some("application/xml"),
        Some("application/json; charset=iso-8859-1"),
        Some("multipart/form-data; boundary=x"),
        Some("application/x-www-form-urlencoded"),
    ] {
        assert_problem(
            &put("typed", content_type, b"{}"),
            415,
            &[],
            &format!("Content-Type {content_type:?}"),
        );
    }
    for (content_type, body) in [
        ("application/json", &b"{\"unterminated\": "[..]),
        ("application/json", b""),
        ("application/json", b"{'single': 'quotes'}"),
        (TEXT, b"\xff\xfe not UTF-8"),
    ] {
        assert_problem(
            &put("parsed", Some(content_type), body),
            400,
            &[],
            &format!("{content_type} body {body:?}"),
        );
    }
    for if_match in ["unquoted", "W/\"weak\"", "\"a\", \"b\"", "*"] {
        let response = call(
            &service,
            "PUT",
            "/settings/conditional",
            &[
                ("Authorization", token()),
                ("Content-Type", TEXT),
                ("If-Match", if_match),
            ],
            b"v",
        );
        assert_problem(&response, 400, &[], &format!("If-Match {if_match}"));
    }
    assert_eq!(
        store.calls(),
        before,
        "nothing refused for its form reached the store"
    );

    // The limits are inclusive.
    let longest = "k".repeat(128);
    assert_eq!(put(&longest, Some(TEXT), b"v").status, 201);
    assert_eq!(
        put("exactly-64-KiB", Some(TEXT), &vec![b'a'; limit]).status,
        201
    );
    assert_eq!(get_setting(&service, "exactly-64-KiB").body.len(), limit);
    assert_eq!(
        put("charset", Some("TEXT/PLAIN; Charset=UTF-8"), b"v").status,
        201
    );
}

/// Two instances, one store: nothing is shared between the instances but the store, so any instance can answer
/// any request, and the store's ETags keep concurrent writers from losing each other's writes.
///
/// Convergence bound: each instance caches a read for the TTL of 30 s, with up to 10 % jitter. A write drops
/// the writing instance's copy at once (proved below), but another instance may answer from its copy until
/// that expires: a stale read lasts at most 33 s after the write. Staleness never loses a write, because an
/// update carrying the stale ETag is refused by the store (412), which is what the test shows. (The TTL is
/// not configurable, so the test does not wait it out.)
#[test]
fn two_instances_share_the_store_and_stale_etags_cannot_overwrite() {
    let store = StandInServer::start();
    let a = start_service(&store.url(), &[]);
    let b = start_service(&store.url(), &[]);

    let created = put_setting(&a, "plan", "v1", None);
    assert_eq!(created.status, 201);
    let etag1 = created.header("etag").unwrap().to_owned();

    let read = get_setting(&b, "plan");
    assert_eq!(
        (read.status, read.body.as_str(), read.header("etag")),
        (200, "v1", Some(etag1.as_str())),
        "a write through A is read through B"
    );

    let updated = put_setting(&a, "plan", "v2", Some(&etag1));
    assert_eq!(updated.status, 200);
    let etag2 = updated.header("etag").unwrap().to_owned();
    let read = get_setting(&a, "plan");
    assert_eq!(
        (read.body.as_str(), read.header("etag")),
        ("v2", Some(etag2.as_str())),
        "the writing instance reads its own write at once"
    );

    let read = get_setting(&b, "plan");
    if cache_disabled() {
        assert_eq!(
            (read.body.as_str(), read.header("etag")),
            ("v2", Some(etag2.as_str()))
        );
    } else {
        // B still has its copy from before A's update: stale, for at most the TTL.
        assert_eq!(
            (read.body.as_str(), read.header("etag")),
            ("v1", Some(etag1.as_str()))
        );
    }
    assert_problem(
        &put_setting(&b, "plan", "v2-from-b", Some(&etag1)),
        412,
        &[],
        "B updates with the ETag it read before A's update",
    );
    // B's failed write dropped B's copy too: B now sees A's update, and can build on it.
    let read = get_setting(&b, "plan");
    assert_eq!(
        (read.body.as_str(), read.header("etag")),
        ("v2", Some(etag2.as_str()))
    );
    let updated = put_setting(&b, "plan", "v3", Some(&etag2));
    assert_eq!(updated.status, 200);
    let etag3 = updated.header("etag").unwrap().to_owned();

    assert_problem(
        &put_setting(&a, "plan", "v2-again", Some(&etag2)),
        412,
        &[],
        "A updates with the ETag of its own, now overwritten, write",
    );
    let stored = store.read("plan");
    assert_eq!(
        (stored.body.as_str(), stored.header("etag")),
        ("v3", Some(etag3.as_str())),
        "the store holds the last successful write"
    );
    for instance in [&a, &b] {
        let read = get_setting(instance, "plan");
        assert_eq!(
            (read.body.as_str(), read.header("etag")),
            ("v3", Some(etag3.as_str()))
        );
    }
}
