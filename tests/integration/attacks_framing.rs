//! HTTP/1.1 framing and smuggling, header limits, pipelining, slow and
//! aborted bodies (`docs/security.md`, "Attack cases"): raw bytes on a
//! socket, since an HTTP client would fix what these send, against a
//! recording upstream that shows what did and did not reach it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    read_until_closed, recorder, responses, spawn_app_to, Recorded, Recorder, Resp, TestApp,
};

const ROUTES: &str = r#"
[server]
max_body_bytes = 100000

[[routes]]
name = "public"
path = "/public"
upstream = "UPSTREAM"
public = true

[[routes]]
name = "admin"
path = "/admin"
upstream = "UPSTREAM"
scopes = ["admin"]
"#;

async fn app() -> (TestApp, Recorder) {
    let rec = recorder().await;
    let app = spawn_app_to(ROUTES, rec.addr).await;
    (app, rec)
}

/// Send `bytes`, read until the gateway closes the connection (bounded),
/// and split what came back into responses.
async fn exchange(app: &TestApp, bytes: &[u8]) -> (Vec<Resp>, bool) {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let (all, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    (responses(&all), closed)
}

fn paths(seen: &[Recorded]) -> Vec<&str> {
    seen.iter().map(|r| r.path.as_str()).collect()
}

const SMUGGLED: &str = "GET /admin/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// CL.TE: the body is read as chunked, the length ignored, the connection
/// closed after the answer; the bytes after the chunked body are never a
/// request (RFC 9112 §6.1, §6.3).
#[tokio::test]
async fn cl_te_is_read_as_chunked_and_closed() {
    let (app, rec) = app().await;
    let req = format!(
        "POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    let (rs, closed) = exchange(&app, req.as_bytes()).await;
    assert!(closed);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
    let seen = rec.settled(0).await;
    assert_eq!(paths(&seen), ["/public"]);
    assert_eq!(seen[0].body_bytes, 0);
}

/// TE.CL: chunked wins; the chunk that looks like a request is body, and
/// the upstream receives it as body of the one request it sees.
#[tokio::test]
async fn te_cl_chunk_is_body_not_a_request() {
    let (app, rec) = app().await;
    let inner = SMUGGLED;
    let req = format!(
        "POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    let (rs, closed) = exchange(&app, req.as_bytes()).await;
    assert!(closed);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
    let seen = rec.settled(0).await;
    assert_eq!(paths(&seen), ["/public"]);
    assert_eq!(seen[0].body_bytes, inner.len() as u64);
}

/// Framing hyper's parser refuses: 400 without a body, connection closed,
/// nothing reaches the upstream.
#[tokio::test]
async fn malformed_framing_is_400_and_closed() {
    let (app, rec) = app().await;
    let post = |headers: &str, body: &str| {
        format!("POST /public HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}{SMUGGLED}")
    };
    let cases = [
        ("two different Content-Length", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")),
        ("Content-Length list", post("Content-Length: 5, 6\r\n", "hello!")),
        ("Content-Length +5", post("Content-Length: +5\r\n", "hello")),
        ("Content-Length 0x5", post("Content-Length: 0x5\r\n", "hello")),
        ("Content-Length 05x", post("Content-Length: 05x\r\n", "hello")),
        ("Content-Length -1", post("Content-Length: -1\r\n", "hello")),
        ("Content-Length huge", post("Content-Length: 99999999999999999999\r\n", "hello")),
        ("Content-Length empty", post("Content-Length: \r\n", "hello")),
        ("TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n")),
        ("TE chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n")),
        ("TE identity", post("Transfer-Encoding: identity\r\n", "")),
        ("TE gzip (not chunked last)", post("Transfer-Encoding: gzip\r\n", "0\r\n\r\n")),
        ("space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n")),
        ("tab before colon", post("Content-Length\t: 5\r\n", "hello")),
        ("obs-fold", post("X-Foo: a\r\n b\r\n", "")),
        ("obs-fold of Transfer-Encoding", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n")),
        ("NUL in a value", post("X-Foo: a\0b\r\n", "")),
        ("bare CR in a value", post("X-Foo: a\rb\r\n", "")),
        ("header name with a space", post("X Foo: a\r\n", "")),
        ("no colon", post("X-Foo\r\n", "")),
        (
            "HTTP/1.0 with Transfer-Encoding",
            format!("POST /public HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        ("request line with two spaces", format!("GET  /public HTTP/1.1\r\nHost: t\r\n\r\n{SMUGGLED}")),
        ("unknown version", format!("GET /public HTTP/1.2\r\nHost: t\r\n\r\n{SMUGGLED}")),
        ("HTTP/0.9 style", format!("GET /public\r\n\r\n{SMUGGLED}")),
    ];
    let mut wrong = Vec::new();
    for (what, req) in &cases {
        let (rs, closed) = exchange(&app, req.as_bytes()).await;
        let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
        if !closed || statuses != [400] {
            wrong.push(format!("{what}: closed {closed}, {statuses:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(rec.settled(0).await.is_empty(), "{:?}", rec.seen());
}

/// A bare LF as a line terminator in the head is recognized, as RFC 9112
/// §2.2 allows, by the gateway's parser alone: the upstream receives
/// headers the gateway re-serialized with CRLF, so both agree on where the
/// request ends. A request after it is a request of its own, authorized
/// like any other (here a 401).
#[tokio::test]
async fn bare_lf_line_endings_are_read_one_way() {
    let (app, rec) = app().await;
    let last = "GET /admin/after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    for (what, head) in [
        (
            "in a header line",
            "GET /public/a HTTP/1.1\r\nHost: t\r\nX-Foo: a\nX-Bar: b\r\n\r\n",
        ),
        (
            "after the request line",
            "GET /public/b HTTP/1.1\nHost: t\r\n\r\n",
        ),
    ] {
        let (rs, closed) = exchange(&app, format!("{head}{last}").as_bytes()).await;
        assert!(closed, "{what}");
        let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 401], "{what}");
    }
    let seen = rec.settled(0).await;
    assert_eq!(paths(&seen), ["/public/a", "/public/b"]);
    assert_eq!(seen[0].header("x-foo"), ["a"]);
    assert_eq!(seen[0].header("x-bar"), ["b"]);
}

/// Bad chunked framing inside an accepted request: the client's 400 (the
/// upstream may see the start of the body, never a completed one nor a
/// second request).
#[tokio::test]
async fn bad_chunk_framing_is_400() {
    let (app, rec) = app().await;
    for (what, body) in [
        ("size Z", "Z\r\nhello\r\n0\r\n\r\n"),
        ("size -1", "-1\r\nhello\r\n0\r\n\r\n"),
        ("size 0x5", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        (
            "bare CR in a chunk extension",
            "5;a\rb\r\nhello\r\n0\r\n\r\n",
        ),
        ("data longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
        ("size overflow", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ] {
        let req = format!(
            "POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}"
        );
        let (rs, closed) = exchange(&app, req.as_bytes()).await;
        assert!(closed, "{what}");
        assert_eq!(rs.len(), 1, "{what}: {rs:?}");
        assert_eq!(rs[0].status, 400, "{what}");
    }
    for seen in rec.settled(0).await {
        assert_eq!(seen.path, "/public");
        assert_ne!(seen.body_complete, Some(true), "{seen:?}");
    }
}

/// Lenient spellings hyper accepts, as the RFC allows, with the upstream
/// getting the one meaning the gateway decided on (never two requests):
/// equal duplicate lengths, OWS around a value, `chunked` in any case.
#[tokio::test]
async fn tolerated_spellings_have_one_meaning() {
    let (app, rec) = app().await;
    for (what, headers, body, len) in [
        (
            "equal duplicate Content-Length",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "hello",
            5,
        ),
        (
            "trailing OWS in Content-Length",
            "Content-Length: 5 \r\n",
            "hello",
            5,
        ),
        (
            "Chunked in capitals",
            "Transfer-Encoding: Chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
            5,
        ),
        (
            "leading tab before chunked",
            "Transfer-Encoding:\tchunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
            5,
        ),
    ] {
        let req = format!(
            "POST /public HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n{body}{SMUGGLED}"
        );
        let (rs, _) = exchange(&app, req.as_bytes()).await;
        assert_eq!(rs.len(), 1, "{what}: {rs:?}");
        assert_eq!(rs[0].status, 200, "{what}");
        assert_eq!(rs[0].json()["body_length"], len, "{what}");
    }
    let seen = rec.settled(0).await;
    assert!(seen.iter().all(|r| r.path == "/public"), "{seen:?}");
    assert_eq!(seen.len(), 4);
    // The upstream gets framing of the gateway's own making: the exact
    // length when it is known, chunked otherwise; never the client's.
    for r in &seen {
        assert_eq!(r.body_bytes, 5);
        assert!(
            r.header("content-length") == ["5"] || r.header("transfer-encoding") == ["chunked"],
            "{r:?}"
        );
    }
}

/// Pipelined requests after a 401: each is answered in order as its own
/// request. A rejected request's body is skipped as body, never parsed as
/// a request, and a request that needs a token still needs one.
#[tokio::test]
async fn pipelining_after_a_401_does_not_desync() {
    let (app, rec) = app().await;
    let body = SMUGGLED;
    let req = format!(
        "POST /admin/x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}\
         GET /admin/y HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /public/z HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (rs, closed) = exchange(&app, req.as_bytes()).await;
    assert!(closed);
    let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200]);
    // Only the public request reached the upstream; the rejected POST's
    // body was skipped as body.
    assert_eq!(paths(&rec.settled(0).await), ["/public/z"]);
}

/// Header limits: more than 100 fields, or a header section over
/// `max_header_bytes`: 431 and closed, nothing forwarded.
#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
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

/// A body that stops arriving: the upstream waits for it, and the route
/// deadline answers 504; the upstream never saw a complete body.
#[tokio::test]
async fn a_slow_post_body_is_cut_off_by_the_deadline() {
    let rec = recorder().await;
    let app = spawn_app_to(
        &ROUTES.replace("[server]\n", "[server]\nrequest_timeout_secs = 1\n"),
        rec.addr,
    )
    .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let start = Instant::now();
    let (all, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let took = start.elapsed();
    let rs = responses(&all);
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].status, 504);
    assert!(took < Duration::from_secs(4), "{took:?}");
    let seen = rec.settled(0).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_complete, Some(false));
    assert!(seen[0].body_bytes <= 10);
}

/// A client that goes away mid-upload: the upstream request is cancelled
/// (its body ends in an error) rather than left waiting.
#[tokio::test]
async fn a_client_abort_mid_upload_cancels_the_upstream_request() {
    let (app, rec) = app().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'x'; 1000]).await.unwrap();
    // Wait until the upstream has the request, then vanish.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rec.seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(s);
    let seen = rec.settled(0).await;
    assert_eq!(seen[0].body_complete, Some(false), "{seen:?}");
    assert!(seen[0].body_bytes <= 1000);
}

/// A client that never reads its response: the download stalls against
/// the client's TCP window (nothing is buffered without bound), and other
/// clients are served meanwhile.
#[tokio::test]
async fn a_client_that_never_reads_does_not_stall_others() {
    let (app, _rec) = app().await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /public/big HTTP/1.1\r\nHost: t\r\nx-echo-bytes: 67108864\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..5 {
        let (rs, _) = exchange(
            &app,
            b"GET /public/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(rs[0].status, 200);
    }
    // The slow reader's connection is still open, its answer unread.
    let mut one = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(100), slow.read(&mut one)).await;
    assert!(still_open.map_or(true, |r| r.is_ok_and(|n| n == 1)));
}

/// An upstream that resets mid-body after sending its head: the client's
/// connection is aborted (the status was already sent), and the gateway
/// goes on serving.
#[tokio::test]
async fn an_upstream_reset_mid_body_aborts_the_client_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                if got.starts_with(b"GET /public/ok") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    .await;
                let _ = s.write_all(&[b'x'; 1000]).await;
                let _ = s.flush().await;
                // SO_LINGER 0: close with a reset, not a FIN.
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    let app = spawn_app_to(ROUTES, up).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /public/reset HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (all, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "the client connection was not aborted");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = all.len() - all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
    assert!(body < 100000, "the body looked complete");
    let (rs, _) = exchange(
        &app,
        b"GET /public/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(rs[0].status, 200);
}
