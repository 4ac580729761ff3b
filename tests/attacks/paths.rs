//! Section P: path and route-scope bypass, against `/admin` (scope
//! `admin`) and `/public` (no token). One normalization decides, and the
//! upstream receives exactly the normalized path (`docs/http.md`, "Path
//! normalization"); anything ambiguous is 400. Raw request lines, since a
//! client library would normalize or escape them first.

use crate::support::{bearer, insert_token, raw, raw_get, spawn_app, Seen};
use crate::{app, paths, ROUTES};

/// Cases P1, P2, P7: dot segments (plain and percent-encoded in any case)
/// and empty segments are resolved before the route is chosen: each
/// spelling is decided under `/admin`'s rules (401 without a token, 200
/// with the scope) and the upstream receives the normalized path.
#[tokio::test]
async fn p01_dot_segments_are_decided_and_forwarded_normalized() {
    let (app, rec) = app().await;
    let admin = insert_token(&app.db, "root", &["admin"], 3600).await;
    let user = insert_token(&app.db, "user", &["api"], 3600).await;
    let cases = [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2E/admin/users",
        "/public/.%2e/admin/users",
        "/public/%2e./admin/users",
        "//admin/users",
        "/./admin/users",
        "/admin/./users",
        "/admin//users",
    ];
    for path in cases {
        assert_eq!(raw_get(app.addr, path, "").await.status, 401, "{path}");
        let r = raw_get(app.addr, path, &bearer(&user)).await;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json()["error"], "insufficient_scope", "{path}");
        assert_eq!(
            raw_get(app.addr, path, &bearer(&admin)).await.status,
            200,
            "{path}"
        );
    }
    // A trailing dot segment names the directory: `/admin/users/.` is
    // `/admin/users/`, `/admin/.` is `/admin/` (RFC 3986 §5.2.4).
    for (path, forwarded) in [("/admin/users/.", "/admin/users/"), ("/admin/.", "/admin/")] {
        assert_eq!(raw_get(app.addr, path, "").await.status, 401, "{path}");
        assert_eq!(
            raw_get(app.addr, path, &bearer(&admin)).await.status,
            200,
            "{path}"
        );
        assert_eq!(
            rec.seen().last().map(|r| r.path.clone()).as_deref(),
            Some(forwarded)
        );
    }
    let seen = rec.settled(cases.len() + 2).await;
    assert_eq!(
        paths(&seen),
        [
            vec!["/admin/users"; cases.len()],
            vec!["/admin/users/", "/admin/"]
        ]
        .concat()
    );
}

/// Cases P3, P4, P5, P8, P10: encoded slashes and backslashes, raw
/// backslashes, NUL (encoded or raw), matrix parameters, overlong UTF-8
/// and malformed escapes are 400 `invalid_request` before any token is
/// looked at, and never forwarded.
#[tokio::test]
async fn p03_ambiguous_paths_are_400_and_never_forwarded() {
    let (app, rec) = app().await;
    let admin = insert_token(&app.db, "root", &["admin"], 3600).await;
    let cases: [&[u8]; 16] = [
        b"/public%2F..%2Fadmin",
        b"/public%2f..%2fadmin",
        b"/admin%2Fusers",
        b"/public/..%5Cadmin",
        b"/public/..%5cadmin",
        b"/public\\..\\admin",
        b"/admin%00.json",
        b"/admin\x00",
        b"/admin;jsessionid=x",
        b"/admin;/..;/secret",
        b"/public/..;/admin",
        b"/public/%c0%ae%c0%ae/admin",
        b"/public/%ff",
        b"/public/%zz",
        b"/public/%2",
        b"/public/../../admin",
    ];
    for path in cases {
        let what = String::from_utf8_lossy(path);
        for auth in [String::new(), bearer(&admin)] {
            let req = [
                b"GET ".as_slice(),
                path,
                b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n",
                auth.as_bytes(),
                b"\r\n",
            ]
            .concat();
            let r = raw(app.addr, &req).await;
            assert_eq!(r.status, 400, "{what}");
            // A raw NUL is refused by the HTTP parser itself (no body);
            // the rest by the path check.
            if !path.contains(&0) {
                assert_eq!(r.json()["error"], "invalid_request", "{what}");
                assert!(r.header("www-authenticate").is_none(), "{what}");
            }
        }
    }
    assert!(rec.settled(0).await.is_empty(), "{:?}", rec.seen());
}

/// Case P6: escapes are decoded once, and only unreserved characters:
/// `%252e%252e` stays a literal segment (no traversal) under `/public`,
/// and the upstream receives it exactly so, never decoded again.
#[tokio::test]
async fn p06_double_encoding_is_decoded_once() {
    let (app, rec) = app().await;
    let r = raw_get(app.addr, "/public/%252e%252e/admin", "").await;
    assert_eq!(r.status, 200);
    let r = raw_get(app.addr, "/public/%252E%252e/%2561dmin", "").await;
    assert_eq!(r.status, 200);
    let seen = rec.settled(2).await;
    assert_eq!(
        paths(&seen),
        ["/public/%252e%252e/admin", "/public/%252E%252e/%2561dmin"]
    );
}

/// Cases P7 (case), P9: routes are case-sensitive (`docs/http.md`, "Path
/// normalization"; the upstream is expected to be too) and prefixes match on
/// segment boundaries: `/ADMIN`, `/Admin/users`, `/adminx`, `/admin-x`,
/// `/publicx` match no route (404), and nothing is forwarded.
#[tokio::test]
async fn p07_routes_are_case_sensitive_and_segment_bounded() {
    let (app, rec) = app().await;
    let admin = insert_token(&app.db, "root", &["admin"], 3600).await;
    for path in [
        "/ADMIN",
        "/Admin/users",
        "/adminx",
        "/admin-x",
        "/adminx/users",
        "/publicx",
        "/public/../adminx",
    ] {
        let r = raw_get(app.addr, path, &bearer(&admin)).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found", "{path}");
    }
    assert!(rec.settled(0).await.is_empty(), "{:?}", rec.seen());
    // The boundary itself is the route.
    assert_eq!(raw_get(app.addr, "/admin", "").await.status, 401);
    assert_eq!(raw_get(app.addr, "/admin/x", "").await.status, 401);
}

/// Cases P11, P12: the query is not part of the path (`/public` decides,
/// the upstream receives the query unchanged); a fragment on the wire is
/// dropped by the HTTP parser before routing, so the decision and the
/// forwarded path are both without it (scopegate's choice instead of a
/// 400: what is decided is what is forwarded).
#[tokio::test]
async fn p11_query_and_fragment_never_change_the_route() {
    let app = spawn_app(ROUTES).await;
    let r = raw_get(app.addr, "/public?x=/../admin", "").await;
    assert_eq!(r.status, 200);
    let seen = Seen(r.json());
    assert_eq!(seen.path(), "/public");
    assert_eq!(seen.0["query"], "x=/../admin");
    let r = raw_get(app.addr, "/public?x=%2F..%2Fadmin&y=%00", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(Seen(r.json()).0["query"], "x=%2F..%2Fadmin&y=%00");
    // `/admin#x` is `/admin`: a token is required.
    assert_eq!(raw_get(app.addr, "/admin#x", "").await.status, 401);
    let r = raw_get(app.addr, "/public#/../admin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(Seen(r.json()).path(), "/public");
}
