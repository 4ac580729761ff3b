//! Section H: identity, hop-by-hop and Host headers, header limits,
//! bodies over the limit.

use tokio::net::TcpStream;

use crate::support::{raw, recorder, spawn_app_to, CATCH_ALL};
use crate::{app, exchange};

fn with_server(server: &str) -> String {
    format!("[server]\n{server}\n{CATCH_ALL}")
}

/// Header limits: more than 100 fields, or a header section over
/// `max_header_bytes`: 431 and closed, nothing forwarded.
///
/// Case H12.
#[tokio::test]
async fn h12_too_many_or_too_large_headers_are_431() {
    let (app, rec) = app().await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(20000));
    for (what, headers) in [("101 fields", many), ("one 20 KB field", big)] {
        let req = format!("GET /public HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        let (rs, closed) = exchange(&app, req.as_bytes()).await;
        assert!(closed, "{what}");
        assert_eq!(rs.len(), 1, "{what}");
        assert_eq!(rs[0].status, 431, "{what}");
    }
    assert!(rec.settled(0).await.is_empty());
}

/// Host checks (RFC 9112 §3.2, RFC 9110 §7.2): a 400 and nothing reaches
/// the upstream, so an invalid value never travels in `X-Forwarded-Host`.
///
/// Case H7.
#[tokio::test]
async fn h07_missing_and_invalid_hosts_are_400_and_never_forwarded() {
    let rec = recorder().await;
    let app = spawn_app_to(&with_server(""), rec.addr).await;
    for (what, head) in [
        ("no Host on HTTP/1.1", "GET /x HTTP/1.1\r\n"),
        ("userinfo", "GET /x HTTP/1.1\r\nHost: a@b\r\n"),
        ("space", "GET /x HTTP/1.1\r\nHost: a b\r\n"),
        ("empty", "GET /x HTTP/1.1\r\nHost: \r\n"),
        ("port too large", "GET /x HTTP/1.1\r\nHost: a:99999\r\n"),
        ("port not a number", "GET /x HTTP/1.1\r\nHost: a:x\r\n"),
        ("empty port", "GET /x HTTP/1.1\r\nHost: a:\r\n"),
        ("path in host", "GET /x HTTP/1.1\r\nHost: a/b\r\n"),
    ] {
        let r = raw(
            app.addr,
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.json()["error"], "invalid_request", "{what}");
    }
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());
    // HTTP/1.0 may omit Host; a valid one is forwarded as X-Forwarded-Host.
    let r = raw(app.addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200);
    let r = raw(
        app.addr,
        b"GET /x HTTP/1.1\r\nHost: api.example:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = rec.settled(2).await;
    assert!(seen[0].header("x-forwarded-host").is_empty());
    assert_eq!(seen[1].header("x-forwarded-host"), ["api.example:8080"]);
}

/// An HTTP/2 request whose `host` header disagrees with `:authority` is
/// malformed (RFC 9113 §8.3.1); cookie crumbs are joined into one
/// `Cookie` for the HTTP/1.1 upstream (RFC 9113 §8.2.3).
///
/// Case H7.
#[tokio::test]
async fn h07_http2_authority_must_match_host_and_cookies_are_joined() {
    let rec = recorder().await;
    let app = spawn_app_to(&with_server(""), rec.addr).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let send = |req: http::Request<()>| {
        let mut client = client.clone();
        async move {
            let (res, _) = client.send_request(req, true).unwrap();
            res.await.unwrap().status()
        }
    };
    let req = http::Request::get("http://a.example/x")
        .header("host", "evil.example")
        .body(())
        .unwrap();
    assert_eq!(send(req).await, 400);
    let req = http::Request::get("http://a.example/x")
        .header("host", "A.example")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(())
        .unwrap();
    assert_eq!(send(req).await, 200);
    let seen = rec.settled(1).await;
    assert_eq!(seen.len(), 1, "the mismatched request was forwarded");
    assert_eq!(seen[0].header("cookie"), ["a=1; b=2; c=3"]);
    assert_eq!(seen[0].header("x-forwarded-host"), ["A.example"]);
}

/// Bad chunked framing from the client is the client's error: 400 (413
/// past `max_body_bytes`), not a 502, and the upstream never receives a
/// byte past the limit.
///
/// Cases H13, A7.
#[tokio::test]
async fn h13_a_clients_bad_body_is_400_or_413_never_502() {
    let rec = recorder().await;
    let app = spawn_app_to(&with_server("max_body_bytes = 1024"), rec.addr).await;
    for (what, body) in [
        ("chunk size Z", &b"Z\r\nhello\r\n0\r\n\r\n"[..]),
        ("bare LF after the size", b"5\nhello\r\n0\r\n\r\n"),
        ("bare LF after the data", b"5\r\nhello\n0\r\n\r\n"),
        ("size overflow", b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ] {
        let mut req = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let r = raw(app.addr, &req).await;
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.json()["error"], "invalid_request", "{what}");
    }
    // Over the limit, streamed: 1000 bytes pass, the next chunk would not.
    let mut req = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        req.extend_from_slice(b"3e8\r\n");
        req.extend_from_slice(&[b'x'; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(app.addr, &req).await;
    assert_eq!(r.status, 413);
    for seen in rec.seen() {
        assert!(seen.body_bytes <= 1024, "{seen:?}");
        assert_ne!(seen.body_complete, Some(true), "{seen:?}");
    }
    // The upstream is fine: the next request goes through.
    let r = raw(
        app.addr,
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_length"], 5);
}

/// A password login for `username` from a client that claims `xff`.
async fn login_via(app: &crate::support::TestApp, xff: &str, username: &str) -> u16 {
    let form = format!("grant_type=password&username={username}&password=wrong");
    let req = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Forwarded-For: {xff}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    raw(app.addr, req.as_bytes()).await.status
}

/// From a peer that is not a trusted proxy, `X-Forwarded-For` is a lie:
/// the upstream is told the peer, and the login throttle counts the peer.
///
/// Case H1.
#[tokio::test]
async fn h01_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let rec = recorder().await;
    let app = spawn_app_to(
        &format!(
            "[login]\nmax_failures = 3\nmax_failures_per_ip = 3\n{}",
            with_server("trusted_proxies = [\"10.0.0.0/8\"]")
        ),
        rec.addr,
    )
    .await;
    let r = raw(
        app.addr,
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = rec.settled(1).await;
    assert_eq!(seen[0].header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        seen[0].header("forwarded"),
        ["for=127.0.0.1;proto=http;host=\"t\""]
    );
    // Three failures from "three clients" are three failures of one peer.
    for (i, xff) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        assert_eq!(login_via(&app, xff, &format!("u{i}")).await, 400);
    }
    assert_eq!(login_via(&app, "203.0.113.4", "u4").await, 429);
}

/// From a trusted proxy, the client is the right-most `X-Forwarded-For`
/// entry that is not itself trusted: the upstream's `X-Forwarded-For`
/// extends the chain with the peer, `Forwarded` names the client, and the
/// login throttle counts each client on its own.
///
/// Case H1.
#[tokio::test]
async fn h01_behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
    let rec = recorder().await;
    let app = spawn_app_to(
        &format!(
            "[login]\nmax_failures = 3\nmax_failures_per_ip = 3\n{}",
            with_server("trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]")
        ),
        rec.addr,
    )
    .await;
    let r = raw(
        app.addr,
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
          X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = rec.settled(1).await;
    assert_eq!(
        seen[0].header("x-forwarded-for"),
        ["6.6.6.6, 203.0.113.9, 10.1.2.3, 127.0.0.1"]
    );
    assert_eq!(
        seen[0].header("forwarded"),
        ["for=203.0.113.9;proto=http;host=\"t\""]
    );
    // Client A uses up its failures; client B, behind the same proxy, and
    // a forged entry left of B's address, do not share them.
    for i in 0..3 {
        assert_eq!(login_via(&app, "203.0.113.1", &format!("a{i}")).await, 400);
    }
    assert_eq!(login_via(&app, "203.0.113.1", "a3").await, 429);
    assert_eq!(login_via(&app, "203.0.113.1, 203.0.113.2", "b0").await, 400);
    assert_eq!(login_via(&app, "203.0.113.2", "b1").await, 400);
}

/// Case H7: the client's Host chooses among configured routes only, and
/// never builds a URL. An unlisted Host gets the host-less routes (here a
/// token is required; the `tenant.example` route would be public), and the
/// metadata's issuer and endpoints are the configured issuer whatever Host
/// says. Host with a different absolute-form authority: see case H8.
#[tokio::test]
async fn h07_host_never_names_the_issuer_or_an_unlisted_route() {
    let rec = recorder().await;
    let app = spawn_app_to(
        r#"
[oauth]
issuer = "https://auth.example.com"

[[routes]]
name = "tenant"
path = "/api"
host = "tenant.example"
upstream = "UPSTREAM"
public = true

[[routes]]
name = "api"
path = "/api"
upstream = "UPSTREAM"
scopes = ["api"]
"#,
        rec.addr,
    )
    .await;
    let get = |host: &'static str, path: &'static str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let addr = app.addr;
        async move { raw(addr, req.as_bytes()).await }
    };
    assert_eq!(get("tenant.example", "/api/x").await.status, 200);
    for host in [
        "evil.example",
        "tenant.example.evil.example",
        "evil.example:443",
    ] {
        let r = get(host, "/api/x").await;
        assert_eq!(r.status, 401, "{host}");
    }
    assert_eq!(rec.settled(1).await.len(), 1);
    let r = get("evil.example", "/.well-known/oauth-authorization-server").await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains("evil"), "{body}");
    assert_eq!(r.json()["issuer"], "https://auth.example.com");
    assert_eq!(
        r.json()["token_endpoint"],
        "https://auth.example.com/oauth/token"
    );
}

/// Case H8: an absolute-form target is 400 (a reverse proxy is not a
/// forward proxy), whatever its authority and Host, and nothing is
/// proxied anywhere.
#[tokio::test]
async fn h08_absolute_form_is_400_and_never_proxied() {
    let (app, rec) = app().await;
    for (target, host) in [
        ("http://internal:8080/admin", "internal:8080"),
        ("http://internal:8080/public", "t"),
        ("http://127.0.0.1:1/public", "t"),
        ("https://t/public", "t"),
    ] {
        let (rs, _) = exchange(
            &app,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(rs.len(), 1, "{target}");
        assert_eq!(rs[0].status, 400, "{target}");
    }
    assert!(rec.settled(0).await.is_empty(), "{:?}", rec.seen());
}

/// Case H11: an upgrade is authorized before anything is forwarded: a
/// WebSocket handshake on a protected route without a token is 401 (never
/// a 101) and reaches no upstream; an `Upgrade: h2c` request is served as
/// the plain HTTP/1.1 request it also is, without the upgrade headers
/// (no h2c smuggling past the gateway).
#[tokio::test]
async fn h11_upgrades_are_authorized_first_and_h2c_is_not_passed_on() {
    let (app, rec) = app().await;
    let ws = "GET /admin/ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let (rs, closed) = exchange(&app, ws.as_bytes()).await;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 401);
    assert!(closed || rs[0].header("upgrade").is_none());
    assert!(rec.settled(0).await.is_empty(), "{:?}", rec.seen());
    let h2c = "GET /public/h2c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
               Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    let (rs, _) = exchange(&app, h2c.as_bytes()).await;
    assert_eq!(rs.first().map(|r| r.status), Some(200), "{rs:?}");
    let seen = rec.settled(1).await;
    assert_eq!(seen.len(), 1);
    for h in ["upgrade", "http2-settings", "connection"] {
        assert!(seen[0].header(h).is_empty(), "{h}: {:?}", seen[0]);
    }
}

/// Cases H1, H2: every spelling of the gateway's identity headers (any
/// case, `_` for `-`) and every `X-Forwarded-*`, `Forwarded`, `X-Real-IP`
/// from the client is removed before the gateway sets its own: the
/// upstream sees exactly one value of each, the gateway's. `X-User-Id` is
/// no header of the gateway's and passes as any other header (upstreams
/// trust only `X-Authenticated-*`, `docs/security.md`, "Identity header
/// spoofing").
#[tokio::test]
async fn h01_spoofed_identity_headers_never_reach_the_upstream() {
    let (app, rec) = app().await;
    let admin = crate::support::insert_token(&app.db, "root", &["admin"], 3600).await;
    let spoof = "X-Authenticated-User: alice\r\nx-authenticated-user: bob\r\nX-AUTHENTICATED-SCOPE: admin\r\n\
                 X_Authenticated_User: carol\r\nx_authenticated-Account-Id: 999999\r\nX-Authenticated-Client: c\r\n\
                 X-Forwarded-User: dave\r\nX-Forwarded-For: 6.6.6.6\r\nX_Forwarded_Host: evil\r\n\
                 Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-User-Id: 7\r\n";
    let (rs, _) = exchange(
        &app,
        format!(
            "GET /admin/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}{spoof}\r\n",
            crate::support::bearer(&admin)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(rs[0].status, 200);
    let (rs, _) = exchange(
        &app,
        format!("GET /public/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{spoof}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(rs[0].status, 200);
    let seen = rec.settled(2).await;
    let (authorized, anonymous) = (&seen[0], &seen[1]);
    assert_eq!(authorized.header("x-authenticated-user"), ["root"]);
    assert_eq!(authorized.header("x-authenticated-scope"), ["admin"]);
    assert_eq!(authorized.header("x-authenticated-account-id").len(), 1);
    assert_ne!(authorized.header("x-authenticated-account-id"), ["999999"]);
    for r in [authorized, anonymous] {
        for (name, _) in &r.headers {
            assert!(!name.contains('_'), "{name} reached the upstream");
        }
        assert!(r.header("x-authenticated-client").is_empty());
        assert!(r.header("x-forwarded-user").is_empty());
        assert!(r.header("x-real-ip").is_empty());
        assert_eq!(r.header("x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(
            r.header("forwarded"),
            ["for=127.0.0.1;proto=http;host=\"t\""]
        );
        assert_eq!(r.header("x-user-id"), ["7"]);
    }
    for h in [
        "x-authenticated-user",
        "x-authenticated-scope",
        "x-authenticated-account-id",
    ] {
        assert!(anonymous.header(h).is_empty(), "{h}");
    }
}
