//! The settings API against the key-value store stand-in, through real processes: conditional writes with
//! ETags, authentication relayed to the store, input checked before the store is called, and two instances
//! sharing one store without losing a write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    StandInServer, TOKEN, assert_problem, cache_disabled, call, delete_setting, get_setting,
    put_setting, start_service,
};

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
            ("Authorization", TOKEN),
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
fn a_bearer_token_is_required_and_relayed_for_the_store_to_decide() {
    let store = StandInServer::start();
    let service = start_service(&store.url(), &[]);
    let etag = store.create("shared", TEXT, "value");
    let before = store.calls();

    let unauthenticated: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        &[("Authorization", "Bearer")],
        &[("Authorization", "Bearer    ")],
    ];
    for headers in unauthenticated {
        for method in ["GET", "PUT", "DELETE"] {
            let mut headers = headers.to_vec();
            headers.push(("Content-Type", TEXT));
            headers.push(("If-Match", etag.as_str()));
            let response = call(&service, method, "/settings/shared", &headers, b"new");
            let context = format!("{method} with {headers:?}");
            assert_problem(&response, 401, &[], &context);
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer"),
                "{context}"
            );
        }
    }
    assert_eq!(
        store.calls(),
        before,
        "a request without a bearer never reaches the store or the cache"
    );

    // The store refuses the token `forbidden`; the service passes its 403 on. (A GET of a key this instance
    // has cached is answered from the cache to any authenticated caller: settings are shared, non-personal
    // configuration. So the GET here is of a key nobody has read through the service.)
    let forbidden = [
        ("Authorization", "Bearer forbidden"),
        ("Content-Type", TEXT),
    ];
    assert_problem(
        &call(&service, "GET", "/settings/shared", &forbidden, b""),
        403,
        &[],
        "GET with a refused token",
    );
    assert_problem(
        &call(
            &service,
            "PUT",
            "/settings/created-by-nobody",
            &forbidden,
            b"x",
        ),
        403,
        &[],
        "create with a refused token",
    );
    let mut update = forbidden.to_vec();
    update.push(("If-Match", etag.as_str()));
    assert_problem(
        &call(&service, "PUT", "/settings/shared", &update, b"x"),
        403,
        &[],
        "update with a refused token",
    );
    assert_problem(
        &call(&service, "DELETE", "/settings/shared", &update, b""),
        403,
        &[],
        "delete with a refused token",
    );
    let stored = store.read("shared");
    assert_eq!(
        (stored.body.as_str(), stored.header("etag")),
        ("value", Some(etag.as_str()))
    );
    assert_eq!(store.read("created-by-nobody").status, 404);
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
                    ("Authorization", TOKEN),
                    ("Content-Type", TEXT),
                    ("If-Match", "\"x\""),
                ],
                b"v",
            );
            assert_problem(&response, 400, &[], &format!("{method} {path}"));
        }
    }

    let put = |key: &str, content_type: Option<&str>, body: &[u8]| {
        let mut headers = vec![("Authorization", TOKEN)];
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
                ("Authorization", TOKEN),
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
