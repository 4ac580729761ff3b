//! The proxy listener's front door: what every request goes through,
//! whoever answers it (the gateway or `/oauth/*`).

use std::time::Duration;

use crate::support::{raw, spawn_app, Serve, CATCH_ALL};

#[tokio::test]
async fn oauth_answers_carry_the_request_id_like_proxied_ones() {
    let app = spawn_app(CATCH_ALL).await;
    let form = "grant_type=nonsense";
    let req = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: oauth-abc\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let r = raw(app.addr, req.as_bytes()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-request-id"), Some("oauth-abc"));
    // Without one (or with an insane one), a fresh id is generated and echoed.
    let req =
        "GET /oauth/userinfo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: a b\r\n\r\n";
    let r = raw(app.addr, req.as_bytes()).await;
    assert_eq!(r.status, 401);
    let id = r.header("x-request-id").expect("a generated request id");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    // Unknown endpoints under /oauth are answered here too (404), with an id.
    let r = raw(
        app.addr,
        b"GET /oauth/nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.header("x-request-id").is_some());
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

/// Every spelling of `/oauth/token` reaches the token endpoint (which
/// answers `GET` with 405 `Allow: POST`, `no-store`); none is proxied to
/// the catch-all route, so credentials never reach an upstream.
#[tokio::test]
async fn oauth_is_recognized_on_the_normalized_path() {
    let app = spawn_app(CATCH_ALL).await;
    for path in [
        "/oauth/token",
        "//oauth/token",
        "/./oauth/token",
        "/%6Fauth/token",
        "/%6fauth/token",
        "/public/../oauth/token",
        "/oauth//token",
        "/oauth/x/../token",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = raw(app.addr, req.as_bytes()).await;
        assert_eq!(r.status, 405, "{path}");
        assert_eq!(r.header("allow"), Some("POST"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        // The echo upstream would have answered 200 with the request as JSON.
        assert!(r.json().get("method").is_none(), "{path} was proxied");
    }
    for path in ["/.well-known/anything", "//.well-known/x", "/oauth"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = raw(app.addr, req.as_bytes()).await;
        assert_eq!(r.status, 404, "{path}");
    }
    // Paths that merely look alike are proxied.
    for path in ["/oauthx/token", "/api/oauth/token", "/.well-knownx"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = raw(app.addr, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["path"], path);
    }
}

/// The access log: one line per request, the same fields whether the
/// gateway proxied it or `/oauth/*` answered it. Checked on the real
/// binary's stderr, as an operator sees it.
#[tokio::test]
async fn one_access_line_format_for_proxied_and_oauth_requests() {
    let db = scopegate::testing::TestDb::new().await;
    let upstream = crate::support::echo().await;
    let mut serve = Serve::start(
        &db,
        &CATCH_ALL.replace("UPSTREAM", &format!("http://{}", upstream.addr)),
    );
    let addr = serve.addr;

    let r = raw(
        addr,
        b"GET /public/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: log-proxied\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let form = "grant_type=password&username=nobody&password=wrong";
    let req = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Request-Id: log-oauth\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    assert_eq!(raw(addr, req.as_bytes()).await.status, 400);

    let access = |id: &'static str| {
        move |line: &str| {
            line.contains("scopegate::access") && field(line, "request_id").as_deref() == Some(id)
        }
    };
    let proxied = serve.wait_for_line(Duration::from_secs(30), access("log-proxied"));
    let oauth = serve.wait_for_line(Duration::from_secs(30), access("log-oauth"));
    assert_eq!(
        field_names(&proxied),
        field_names(&oauth),
        "\n{proxied}\n{oauth}"
    );
    assert_eq!(
        field_names(&proxied),
        ["peer", "method", "route", "status", "request_id", "micros"]
    );
    assert_eq!(field(&proxied, "route").as_deref(), Some("everything"));
    assert_eq!(field(&proxied, "status").as_deref(), Some("200"));
    assert_eq!(field(&oauth, "route").as_deref(), Some("oauth:token"));
    assert_eq!(field(&oauth, "status").as_deref(), Some("400"));
    assert_eq!(field(&oauth, "method").as_deref(), Some("POST"));
    // The password never reaches the log.
    assert!(!oauth.contains("wrong"), "{oauth}");
}

/// `key=value` fields of a tracing text line, in order (values unquoted).
fn fields(line: &str) -> Vec<(String, String)> {
    let Some((_, rest)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((start, _)) = chars.peek().copied() {
        let Some(eq) = rest[start..].find('=') else {
            break;
        };
        let key = rest[start..start + eq].trim().to_owned();
        let vstart = start + eq + 1;
        let (value, end) = if rest[vstart..].starts_with('"') {
            let close = rest[vstart + 1..]
                .find('"')
                .map_or(rest.len(), |i| vstart + 1 + i);
            (
                rest[vstart + 1..close].to_owned(),
                (close + 1).min(rest.len()),
            )
        } else {
            let e = rest[vstart..].find(' ').map_or(rest.len(), |i| vstart + i);
            (rest[vstart..e].to_owned(), e)
        };
        out.push((key, value));
        while chars.peek().is_some_and(|(i, _)| *i < end + 1) {
            chars.next();
        }
    }
    out
}

fn field(line: &str, name: &str) -> Option<String> {
    fields(line)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn field_names(line: &str) -> Vec<String> {
    fields(line).into_iter().map(|(k, _)| k).collect()
}
