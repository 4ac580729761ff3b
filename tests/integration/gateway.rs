//! The proxy path, row by row of the status table in `docs/http.md`, plus
//! the path and token attacks of `docs/security.md` (the header policy and
//! framing: `gateway_headers`). Raw sockets where a client library would
//! "fix" the request before sending it.

use std::time::{Duration, Instant};

use crate::support::{
    bearer, insert_token, raw, raw_get, read_one, read_until_closed, recorder, revoke_in_db,
    spawn_app, spawn_app_to, Seen, TestApp, CATCH_ALL, MARGIN,
};

pub const ROUTES: &str = r#"
[[routes]]
name = "public"
path = "/public"
upstream = "UPSTREAM"
public = true

[[routes]]
name = "orders"
path = "/api/orders"
methods = ["GET", "POST"]
upstream = "UPSTREAM"
scopes = ["orders:read"]

[[routes]]
name = "api"
path = "/api"
upstream = "UPSTREAM"
scopes = ["api"]

[[routes]]
name = "tenant"
path = "/api"
host = "tenant.example"
upstream = "UPSTREAM"
public = true

[[routes]]
name = "admin"
path = "/admin"
upstream = "UPSTREAM"
scopes = ["admin"]

[[routes]]
name = "any"
path = "/any"
upstream = "UPSTREAM"
any_scopes = ["a", "b"]

[[routes]]
name = "wild"
path = "/wild"
upstream = "UPSTREAM"
scopes = ["orders:*"]

[[routes]]
name = "strip"
path = "/strip"
upstream = "UPSTREAM"
strip_prefix = true
public = true

[[routes]]
name = "fwd"
path = "/fwd"
upstream = "UPSTREAM"
scopes = ["api"]
forward_authorization = true

[[routes]]
name = "down"
path = "/down"
upstream = "http://127.0.0.1:1"
public = true

[[routes]]
name = "slow"
path = "/slow"
upstream = "UPSTREAM"
public = true
timeout_secs = 1
"#;

pub async fn app() -> TestApp {
    spawn_app(&format!("[server]\nmax_body_bytes = 1000\n{ROUTES}")).await
}

pub const CHALLENGE: &str = "Bearer realm=\"scopegate\"";
const INVALID_TOKEN: &str = "Bearer realm=\"scopegate\", error=\"invalid_token\"";

#[tokio::test]
async fn bad_paths_are_400_and_never_reach_upstream() {
    let app = app().await;
    for path in [
        "/public%2F..%2Fadmin",
        "/admin%2fusers",
        "/public/..%5Cadmin",
        "/public\\..\\admin",
        "/admin%00.json",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%zz",
        "/..",
        "/public/../../admin",
        "/admin;jsessionid=x",
        "/admin;/..;/secret",
    ] {
        let r = raw_get(app.addr, path, "").await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.json()["error"], "invalid_request", "{path}");
        assert!(r.header("www-authenticate").is_none(), "{path}");
    }
}

#[tokio::test]
async fn dot_segments_are_resolved_before_matching_and_forwarded_normalized() {
    let app = app().await;
    let admin = insert_token(&app.db, "root", &["admin"], 3600).await;
    let user = insert_token(&app.db, "user", &["api"], 3600).await;
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2E/admin/users",
        "/public/.%2e/admin/users",
        "//admin/./users",
        "/admin//users",
    ] {
        // Decided under /admin's rules, not /public's.
        let r = raw_get(app.addr, path, "").await;
        assert_eq!(r.status, 401, "{path}");
        let r = raw_get(app.addr, path, &bearer(&user)).await;
        assert_eq!(r.status, 403, "{path}");
        let r = raw_get(app.addr, path, &bearer(&admin)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(Seen(r.json()).path(), "/admin/users", "{path}");
    }
    // Double encoding is decoded once: a literal %2e%2e segment, no traversal.
    let r = raw_get(app.addr, "/public/%252e%252e/admin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(Seen(r.json()).path(), "/public/%252e%252e/admin");
    // Unreserved escapes are decoded, others kept (upper-cased).
    let r = raw_get(app.addr, "/public/%7euser/a%2cb?q=%2F", "").await;
    assert_eq!(r.status, 200);
    let seen = Seen(r.json());
    assert_eq!(seen.path(), "/public/~user/a%2Cb");
    // The query is not part of the path and reaches the upstream unchanged.
    assert_eq!(seen.0["query"], "q=%2F");
    // A fragment on the wire is dropped by the HTTP parser before
    // routing: the decision and the forwarded path are both without it.
    assert_eq!(raw_get(app.addr, "/admin#x", "").await.status, 401);
    let r = raw_get(app.addr, "/public#/../admin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(Seen(r.json()).path(), "/public");
    let r = raw_get(app.addr, "/public?x=/../admin", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(Seen(r.json()).0["query"], "x=/../admin");
}

#[tokio::test]
async fn routing_is_longest_prefix_on_segment_boundaries() {
    let app = app().await;
    let t = insert_token(&app.db, "u", &["api", "orders:read"], 3600).await;
    let only_api = insert_token(&app.db, "v", &["api"], 3600).await;
    // /api/orders/7 -> orders (needs orders:read): only_api is refused.
    assert_eq!(
        raw_get(app.addr, "/api/orders/7", &bearer(&t)).await.status,
        200
    );
    assert_eq!(
        raw_get(app.addr, "/api/orders/7", &bearer(&only_api))
            .await
            .status,
        403
    );
    assert_eq!(
        raw_get(app.addr, "/api/orders", &bearer(&only_api))
            .await
            .status,
        403
    );
    // /api/ordersx is not under /api/orders: the /api route applies.
    assert_eq!(
        raw_get(app.addr, "/api/ordersx", &bearer(&only_api))
            .await
            .status,
        200
    );
    // /apix matches nothing.
    assert_eq!(raw_get(app.addr, "/apix", &bearer(&t)).await.status, 404);
    // Host-specific route beats the host-less one (case-insensitive, port ignored).
    let r = raw(
        app.addr,
        b"GET /api/x HTTP/1.1\r\nHost: Tenant.Example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "public tenant route");
    assert_eq!(raw_get(app.addr, "/api/x", "").await.status, 401);
}

#[tokio::test]
async fn no_route_is_404_and_wrong_method_is_405_with_allow() {
    let app = app().await;
    let r = raw_get(app.addr, "/nowhere", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = raw(
        app.addr,
        b"DELETE /api/orders/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
}

/// `CONNECT` and `TRACE` are never proxied, on any route: 405 with every
/// configurable method in `Allow` (`docs/http.md`, "Status codes"), and
/// nothing reaches the upstream.
#[tokio::test]
async fn connect_and_trace_are_405_and_never_proxied() {
    let rec = recorder().await;
    let app = spawn_app_to(&format!("{CATCH_ALL}{ROUTES}"), rec.addr).await;
    for (m, target) in [
        ("TRACE", "/public"),
        ("TRACE", "/anything"),
        ("CONNECT", "internal:22"),
        ("CONNECT", "t:80"),
    ] {
        let r = raw(
            app.addr,
            format!("{m} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 405, "{m} {target}");
        assert_eq!(
            r.header("allow"),
            Some(scopegate::config::ALLOW_ALL_METHODS),
            "{m} {target}"
        );
        assert_eq!(r.json()["error"], "method_not_allowed", "{m} {target}");
    }
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());
}

/// `OPTIONS *` asks about the server, not a resource: it is never routed
/// (not as `/`, not to a catch-all route), but refused as a target that is
/// not a path (`docs/http.md`, "Status codes" and "Path normalization").
#[tokio::test]
async fn options_asterisk_is_400_and_never_routed() {
    let rec = recorder().await;
    let app = spawn_app_to(&format!("{CATCH_ALL}{ROUTES}"), rec.addr).await;
    let r = raw(
        app.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    assert!(r.header("x-request-id").is_some());
    // The same method on a path is proxied: the refusal is the target's.
    let r = raw(
        app.addr,
        b"OPTIONS / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = rec.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("OPTIONS", "/")
    );
}

/// Upstream connections are kept alive and reused (`docs/http.md`,
/// "Upstream connections"): requests one after another on one client
/// connection, with bodies of every size both ways, reach the upstream on
/// one connection.
#[tokio::test]
async fn upstream_connections_are_reused() {
    use tokio::io::AsyncWriteExt;
    let rec = recorder().await;
    let app = spawn_app_to(ROUTES, rec.addr).await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let requests: [&[u8]; 5] = [
        b"GET /public/a HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /public/b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /public/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET /public/d HTTP/1.1\r\nHost: t\r\nX-Echo-Bytes: 300000\r\n\r\n",
        b"GET /public/e HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for r in requests {
        s.write_all(r).await.unwrap();
        assert_eq!(read_one(&mut s).await.status, 200);
    }
    let seen = rec.settled(requests.len()).await;
    let peers: std::collections::HashSet<_> = seen.iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 1, "upstream connections: {peers:?}");
}

#[tokio::test]
async fn credentials_rows() {
    let app = app().await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;

    // No credentials -> 401 with the bare challenge.
    let r = raw_get(app.addr, "/api/x", "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    assert!(r.json()["error"].is_string());

    // Another scheme -> as with no credentials.
    let r = raw_get(app.addr, "/api/x", "Authorization: Basic dXNlcjpwdw==\r\n").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));

    // Malformed Bearer, several Authorization headers, token in the query -> 400.
    for extra in [
        "Authorization: Bearer\r\n".to_owned(),
        "Authorization: Bearer \r\n".to_owned(),
        "Authorization: Bearer a,b\r\n".to_owned(),
        format!("Authorization: Bearer  {t}\r\n"),
        format!("{}{}", bearer(&t), bearer(&t)),
    ] {
        let r = raw_get(app.addr, "/api/x", &extra).await;
        assert_eq!(r.status, 400, "{extra:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"scopegate\", error=\"invalid_request\""),
            "{extra:?}"
        );
    }
    let r = raw_get(app.addr, &format!("/api/x?access_token={t}"), "").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");

    // The scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = raw_get(
            app.addr,
            "/api/x",
            &format!("Authorization: {scheme} {t}\r\n"),
        )
        .await;
        assert_eq!(r.status, 200, "{scheme}");
    }
}

#[tokio::test]
async fn unknown_expired_revoked_and_inactive_are_invalid_token() {
    let app = app().await;
    let unknown = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    let expired = insert_token(&app.db, "old", &["api"], -10).await;
    let revoked = insert_token(&app.db, "rev", &["api"], 3600).await;
    revoke_in_db(&app.db, &revoked).await;
    let inactive = insert_token(&app.db, "gone", &["api"], 3600).await;
    let conn = app.db.pool().get().await.unwrap();
    conn.execute(
        "UPDATE accounts SET is_active = false WHERE username = 'gone'",
        &[],
    )
    .await
    .unwrap();
    for (what, t) in [
        ("unknown", unknown.as_str()),
        ("expired", &expired),
        ("revoked", &revoked),
        ("inactive", &inactive),
        ("garbage", "not-one-of-ours"),
        ("refresh-shaped", &unknown.replace("sga_", "sgr_")),
    ] {
        let r = raw_get(app.addr, "/api/x", &bearer(t)).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some(INVALID_TOKEN), "{what}");
        assert_eq!(r.json()["error"], "invalid_token", "{what}");
    }
    // A public route still validates a token that is sent.
    assert_eq!(
        raw_get(app.addr, "/public", &bearer(&unknown)).await.status,
        401
    );
    assert_eq!(raw_get(app.addr, "/public", "").await.status, 200);
}

#[tokio::test]
async fn scopes_all_of_any_of_and_wildcards() {
    let app = app().await;
    let a = insert_token(&app.db, "a", &["a"], 3600).await;
    let none = insert_token(&app.db, "n", &["zzz"], 3600).await;
    let orders_star = insert_token(&app.db, "o", &["orders:*"], 3600).await;
    let orders_write = insert_token(&app.db, "w", &["orders:write"], 3600).await;
    assert_eq!(raw_get(app.addr, "/any", &bearer(&a)).await.status, 200);
    let r = raw_get(app.addr, "/any", &bearer(&none)).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"scopegate\", error=\"insufficient_scope\", scope=\"a b\"")
    );
    assert_eq!(r.json()["error"], "insufficient_scope");
    // Route requires orders:* -> any orders:... grant satisfies it.
    assert_eq!(
        raw_get(app.addr, "/wild", &bearer(&orders_write))
            .await
            .status,
        200
    );
    // Granted orders:* satisfies orders:read.
    assert_eq!(
        raw_get(app.addr, "/api/orders", &bearer(&orders_star))
            .await
            .status,
        200
    );
    let r = raw_get(app.addr, "/api/orders", &bearer(&none)).await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"scopegate\", error=\"insufficient_scope\", scope=\"orders:read\"")
    );
}

#[tokio::test]
async fn upstream_refused_is_502_and_slow_is_504() {
    let app = app().await;
    let r = raw_get(app.addr, "/down", "").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");
    // /slow's `timeout_secs = 1`; the upstream answers well after it.
    let timeout = Duration::from_secs(1);
    let delay = timeout + 2 * MARGIN;
    let start = Instant::now();
    let r = raw_get(
        app.addr,
        "/slow",
        &format!("x-echo-delay-ms: {}\r\n", delay.as_millis()),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert!(took >= timeout * 9 / 10, "504 too early: {took:?}");
    assert!(took < timeout + MARGIN, "504 too late: {took:?}");
}

#[tokio::test]
async fn oversized_headers_are_431_and_declared_bodies_413() {
    let app = app().await;
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let r = raw_get(app.addr, "/public", &big).await;
    assert_eq!(r.status, 431);
    let r = raw(
        app.addr,
        b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 413);
    // At the limit it passes.
    let body = "x".repeat(1000);
    let r = raw(
        app.addr,
        format!("POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_length"], 1000);
    // A streamed (chunked) body past the limit: 413, and the upstream
    // never gets a byte past it — tests/attacks/headers.rs,
    // `h13_a_clients_bad_body_is_400_or_413_never_502`.
}

#[tokio::test]
async fn strip_prefix_forwards_the_rest() {
    let app = app().await;
    let r = raw_get(app.addr, "/strip/a/b?x=1", "").await;
    let seen = Seen(r.json());
    assert_eq!(seen.path(), "/a/b");
    assert_eq!(seen.0["query"], "x=1");
    let r = raw_get(app.addr, "/strip", "").await;
    assert_eq!(Seen(r.json()).path(), "/");
}

#[tokio::test]
async fn absolute_form_and_duplicate_host_are_rejected() {
    let app = app().await;
    let r = raw(
        app.addr,
        b"GET http://internal:8080/public HTTP/1.1\r\nHost: internal:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = raw(
        app.addr,
        b"GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
}

/// `header_read_timeout_secs` of the two tests below.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A gateway with [`HEADER_READ_TIMEOUT`], and a connection to it.
async fn short_header_timeout() -> (TestApp, tokio::net::TcpStream) {
    let app = spawn_app(&format!(
        "[server]\nheader_read_timeout_secs = {}\n{ROUTES}",
        HEADER_READ_TIMEOUT.as_secs()
    ))
    .await;
    let s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    (app, s)
}

#[tokio::test]
async fn slow_headers_are_cut_off_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let timeout = HEADER_READ_TIMEOUT;
    let (_app, mut s) = short_header_timeout().await;
    let start = Instant::now();
    // Slowloris: a header section that never ends.
    s.write_all(b"GET /public HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n")
        .await
        .unwrap();
    let (buf, closed) = read_until_closed(&mut s, timeout + MARGIN).await;
    let took = start.elapsed();
    assert!(closed, "the connection was not closed within {took:?}");
    assert!(took >= timeout * 9 / 10, "closed too early: {took:?}");
    // Whatever was sent back, it was not a proxied 200.
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

/// A kept-alive HTTP/1.1 connection is closed once it has been idle for
/// `header_read_timeout` after its last answer, and not before: each
/// request starts the idle period again (`docs/http.md`, "Connections").
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let timeout = HEADER_READ_TIMEOUT;
    let (_app, mut s) = short_header_timeout().await;
    // Four requests 0.6 of the timeout apart (1.8 timeouts in all): the
    // connection outlives the timeout because each one restarts it.
    for i in 0..4 {
        s.write_all(b"GET /public HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_one(&mut s).await.status, 200);
        if i < 3 {
            let (_, closed) = read_until_closed(&mut s, timeout * 6 / 10).await;
            assert!(!closed, "closed after less than the timeout idle");
        }
    }
    let idle = Instant::now();
    let (_, closed) = read_until_closed(&mut s, 2 * timeout + MARGIN).await;
    let took = idle.elapsed();
    assert!(closed, "the idle connection was not closed within {took:?}");
    assert!(took >= timeout * 9 / 10, "closed too early: {took:?}");
}

#[tokio::test]
async fn the_server_request_timeout_caps_route_timeouts() {
    let cap = Duration::from_secs(1);
    let app = spawn_app(&format!(
        "[server]\nrequest_timeout_secs = {}\n{ROUTES}",
        cap.as_secs()
    ))
    .await;
    // /public has the default 30 s route timeout; the server caps it.
    let delay = cap + 2 * MARGIN;
    let start = Instant::now();
    let r = raw_get(
        app.addr,
        "/public",
        &format!("x-echo-delay-ms: {}\r\n", delay.as_millis()),
    )
    .await;
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(took >= cap * 9 / 10, "504 too early: {took:?}");
    assert!(took < cap + MARGIN, "504 too late: {took:?}");
}
