//! The proxy's header policy (`docs/http.md`, "Forwarding headers"):
//! identity and forwarding headers a client cannot spoof or strip,
//! hop-by-hop headers, request ids; and request framing a proxy must never
//! pass on ambiguously. Raw sockets, so nothing "fixes" the request first.

use super::gateway::{app, CHALLENGE};
use crate::support::{
    bearer, insert_token, raw, raw_get, read_until_closed, responses, Seen, MARGIN,
};

#[tokio::test]
async fn identity_headers_cannot_be_spoofed() {
    let app = app().await;
    let t = insert_token(&app.db, "alice", &["api", "orders:read"], 3600).await;
    let alice: i32 = app
        .db
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT account_id FROM accounts WHERE username = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // An id no account has, so a leak of the spoofed value cannot pass for
    // the real one.
    let spoof = "X-Authenticated-User: admin\r\nx-authenticated-scope: admin\r\nX-AUTHENTICATED-ACCOUNT-ID: 999999\r\n\
                 X_Authenticated_User: admin\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-User: admin\r\nForwarded: for=6.6.6.6\r\n\
                 X-Real-IP: 6.6.6.6\r\n";
    // Protected route: the gateway's values and nothing else.
    let r = raw_get(app.addr, "/api/x", &format!("{}{spoof}", bearer(&t))).await;
    assert_eq!(r.status, 200);
    let seen = Seen(r.json());
    assert_eq!(
        seen.header("x-authenticated-user").as_deref(),
        Some("alice")
    );
    assert_eq!(
        seen.header("x-authenticated-scope").as_deref(),
        Some("api orders:read")
    );
    assert_eq!(
        seen.header("x-authenticated-account-id"),
        Some(alice.to_string())
    );
    assert!(!seen.has("x_authenticated_user"));
    assert!(!seen.has("x-forwarded-user"));
    assert!(!seen.has("x-real-ip"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=\"test\"")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("test"));
    // The bearer token itself is not forwarded by default ...
    assert!(!seen.has("authorization"));
    // ... unless the route says so.
    let r = raw_get(app.addr, "/fwd", &bearer(&t)).await;
    assert_eq!(
        Seen(r.json()).header("authorization"),
        Some(format!("Bearer {t}"))
    );

    // Public route, no token: no identity headers at all, spoofed ones gone.
    let r = raw_get(app.addr, "/public", spoof).await;
    let seen = Seen(r.json());
    for h in [
        "x-authenticated-user",
        "x-authenticated-scope",
        "x-authenticated-account-id",
    ] {
        assert!(!seen.has(h), "{h}");
    }
}

#[tokio::test]
async fn connection_header_cannot_strip_the_gateways_headers() {
    let app = app().await;
    let t = insert_token(&app.db, "alice", &["api"], 3600).await;
    for conn in [
        "Connection: close, X-Authenticated-Scope, X-Authenticated-User, X-Request-Id, X-Forwarded-For\r\n",
        "Proxy-Connection: X-Authenticated-Scope\r\n",
    ] {
        let req = format!("GET /api/x HTTP/1.1\r\nHost: test\r\n{}{conn}\r\n", bearer(&t));
        let r = raw(app.addr, req.as_bytes()).await;
        assert_eq!(r.status, 200);
        let seen = Seen(r.json());
        assert_eq!(seen.header("x-authenticated-scope").as_deref(), Some("api"), "{conn}");
        assert_eq!(seen.header("x-authenticated-user").as_deref(), Some("alice"));
        assert!(seen.has("x-request-id"));
        assert!(seen.has("x-forwarded-for"));
    }
    // `Connection: Authorization` does not bypass authentication.
    let r = raw_get(app.addr, "/api/x", "Connection: Authorization\r\n").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let app = app().await;
    let r = raw_get(
        app.addr,
        "/public",
        "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n\
         Upgrade: h2c\r\nX-Custom: kept\r\nConnection: close, X-Drop-Me\r\nX-Drop-Me: 1\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = Seen(r.json());
    for h in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "x-drop-me",
    ] {
        assert!(!seen.has(h), "{h} was forwarded");
    }
    assert_eq!(seen.header("x-custom").as_deref(), Some("kept"));
    assert_eq!(
        seen.header("host").as_deref(),
        Some(&*app.upstream.addr.to_string())
    );
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_generated_otherwise_and_echoed() {
    let app = app().await;
    let r = raw_get(app.addr, "/public", "X-Request-Id: abc-123\r\n").await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(
        Seen(r.json()).header("x-request-id").as_deref(),
        Some("abc-123")
    );

    let long = "a".repeat(129);
    let r = raw_get(app.addr, "/public", &format!("X-Request-Id: {long}\r\n")).await;
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, long);
    assert_eq!(Seen(r.json()).header("x-request-id"), Some(id));

    let r = raw_get(app.addr, "/public", "").await;
    let id = r.header("x-request-id").unwrap().to_owned();
    assert!(!id.is_empty());
    assert_eq!(Seen(r.json()).header("x-request-id"), Some(id.clone()));
    let again = raw_get(app.addr, "/public", "").await;
    assert_ne!(again.header("x-request-id").unwrap(), id);
    // Rejections carry it too.
    let r = raw_get(app.addr, "/nowhere", "X-Request-Id: zz\r\n").await;
    assert_eq!(r.header("x-request-id"), Some("zz"));
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    use tokio::io::AsyncWriteExt;
    let app = app().await;
    // CL.TE: hyper decodes the chunked body, drops the length and
    // closes the connection after answering, so the smuggled second request
    // is never read. Exactly one response comes back, then EOF.
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    let (all, closed) = read_until_closed(&mut s, MARGIN).await;
    assert!(
        closed,
        "the connection must be closed after a CL.TE request"
    );
    let answers = responses(&all);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].status, 200);
    let seen = Seen(answers[0].json());
    assert_eq!(seen.path(), "/public");
    assert_eq!(seen.0["body_length"], 0);

    for (what, req) in [
        (
            "conflicting Content-Length",
            &b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"[..],
        ),
        ("signed Content-Length", b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello"),
        ("obfuscated TE", b"POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n"),
        ("obs-fold", b"GET /public HTTP/1.1\r\nHost: t\r\nX-Foo: a\r\n b\r\n\r\n"),
        ("space before colon", b"GET /public HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n"),
        (
            "HTTP/1.0 chunked",
            b"POST /public HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ] {
        let r = raw(app.addr, req).await;
        assert_eq!(r.status, 400, "{what}");
    }
    // Equal duplicate lengths are one length (RFC 9112 §6.3); the body the
    // upstream receives has exactly that length.
    let r = raw(
        app.addr,
        b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_length"], 5);
    assert_eq!(
        Seen(r.json()).header("content-length").as_deref(),
        Some("5")
    );
    // A chunked body is forwarded with its real length.
    let r = raw(
        app.addr,
        b"POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_length"], 5);
}

/// A token in a proxied form body is not a credential (RFC 6750 §2.2 is
/// optional and scopegate does not offer it): 401 with the bare
/// challenge, as with no credentials at all.
#[tokio::test]
async fn a_token_in_a_form_body_is_not_a_credential() {
    let app = app().await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    let body = format!("access_token={t}");
    let request = format!(
        "POST /api/x HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(app.addr, request.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    // The same token as a Bearer header is accepted (it is a valid one).
    assert_eq!(raw_get(app.addr, "/api/x", &bearer(&t)).await.status, 200);
}
