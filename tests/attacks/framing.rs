//! Section A: HTTP/1.1 framing and smuggling. Raw bytes on a socket,
//! since an HTTP client would fix what these send; the smuggled request is
//! `GET /admin/smuggled` appended after the body.

use crate::{app, exchange, paths};

const SMUGGLED: &str = "GET /admin/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// CL.TE: the body is read as chunked, the length ignored, the connection
/// closed after the answer; the bytes after the chunked body are never a
/// request (RFC 9112 §6.1, §6.3).
///
/// Case A1.
#[tokio::test]
async fn a01_cl_te_is_read_as_chunked_and_closed() {
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
///
/// Case A2.
#[tokio::test]
async fn a02_te_cl_chunk_is_body_not_a_request() {
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
///
/// Cases A3, A5, A6, A8, A9, A10, A11.
#[tokio::test]
async fn a03_malformed_framing_is_400_and_closed() {
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
///
/// Cases A7, A10.
#[tokio::test]
async fn a10_bare_lf_line_endings_are_read_one_way() {
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
///
/// Case A7.
#[tokio::test]
async fn a07_bad_chunk_framing_is_400() {
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
///
/// Cases A4, A5, A6.
#[tokio::test]
async fn a04_tolerated_spellings_have_one_meaning() {
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
///
/// Case A12.
#[tokio::test]
async fn a12_pipelining_after_a_401_does_not_desync() {
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

/// Case A6 (repeated): `Transfer-Encoding` sent twice is one list (RFC
/// 9110 §5.3). A list whose last coding is not `chunked` is refused by
/// hyper; `chunked` twice (RFC 9112 §7.1: never applied more than once)
/// and a coding before the final `chunked` by the gateway, since it
/// decodes no other coding and would forward a body the upstream reads
/// differently: 400, closed, nothing upstream.
#[tokio::test]
async fn a06_repeated_transfer_encoding() {
    let (app, rec) = app().await;
    for (what, headers) in [
        (
            "chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "chunked, chunked",
            "Transfer-Encoding: chunked, chunked\r\n",
        ),
        (
            "chunked then identity",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        ),
        (
            "gzip then chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "chunked then empty",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
        ),
    ] {
        let req = format!(
            "POST /public HTTP/1.1\r\nHost: t\r\n{headers}\r\n5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
        );
        let (rs, closed) = exchange(&app, req.as_bytes()).await;
        let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [400], "{what}");
        assert!(closed, "{what}");
    }
    assert!(rec.settled(0).await.is_empty(), "{:?}", rec.seen());
    // One `chunked`, in any case and with OWS, is the framing it says.
    let req = "POST /public HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
               Transfer-Encoding:  CHUNKED \r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (rs, _) = exchange(&app, req.as_bytes()).await;
    assert_eq!(rs[0].status, 200);
    assert_eq!(rec.settled(1).await[0].body_bytes, 5);
}
