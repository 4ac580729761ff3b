//! The listener and the forward phase against hostile clients
//! (`docs/http.md`, "Connections", "Host", "Forwarding"): connections that
//! never speak, one `max_connections` for the process (WebSocket tunnels
//! included), Host checks, the client's own body errors, `SIGHUP`.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{
    raw, read_one, read_until_closed, recorder, spawn_app, spawn_app_to, CATCH_ALL, MARGIN,
};

fn with_server(server: &str) -> String {
    format!("[server]\n{server}\n{CATCH_ALL}")
}

/// Silent sockets, partial HTTP/2 prefaces and a preface followed by
/// nothing are all closed once `header_read_timeout` passes, so they
/// cannot hold `max_connections`: with exactly as many places as silent
/// sockets, a real request waits for them and then gets through.
#[tokio::test]
async fn silent_sockets_and_partial_prefaces_are_closed_at_the_header_read_timeout() {
    let timeout = Duration::from_secs(1);
    let n = 8;
    let app = spawn_app(&with_server(&format!(
        "header_read_timeout_secs = 1\nmax_connections = {}",
        3 * n
    )))
    .await;
    let start = Instant::now();
    let mut socks = Vec::new();
    for i in 0..3 * n {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
            _ => s
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap(),
        }
        socks.push(s);
    }
    // Every place is taken: this request waits for one.
    let real = tokio::spawn(async move {
        let r = raw(
            app.addr,
            b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        (r.status, app)
    });
    let closed = join_all(socks.iter_mut().map(|s| async {
        let (_, closed) = read_until_closed(s, 10 * timeout).await;
        (closed, start.elapsed())
    }))
    .await;
    for (i, (closed, took)) in closed.into_iter().enumerate() {
        assert!(closed, "socket {i} was never closed");
        assert!(
            took >= timeout * 9 / 10,
            "socket {i} closed early: {took:?}"
        );
        // A complete preface then silence gets one more period for the
        // goodbye (GOAWAY).
        assert!(
            took < 2 * timeout + MARGIN,
            "socket {i} closed late: {took:?}"
        );
    }
    let (status, _app) = tokio::time::timeout(2 * timeout + MARGIN, real)
        .await
        .expect("the real request never got through")
        .unwrap();
    assert_eq!(status, 200);
}

/// An HTTP/2 connection whose streams are all done is closed (GOAWAY) once
/// it has been idle for `header_read_timeout`.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let timeout = Duration::from_secs(1);
    let app = spawn_app(&with_server("header_read_timeout_secs = 1")).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/x", app.addr))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    // The server's idle period began a little before the client has read
    // the whole answer, so the lower bound has slack for that.
    let idle = Instant::now();
    let ended = tokio::time::timeout(2 * timeout + MARGIN, driver).await;
    let took = idle.elapsed();
    assert!(ended.is_ok(), "the idle connection was not closed");
    assert!(took >= timeout / 2, "closed early: {took:?}");
    // The client was still willing: it had not dropped its handle.
    drop(client);
}

/// Open a keep-alive connection and have one request answered on it.
async fn answered_keep_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_one(&mut s).await.status, 200);
    s
}

/// `max_connections` counts the connections of every proxy thread: with
/// four places taken, further connections are accepted by the kernel but
/// not served until one of the four closes (backpressure, not an error).
#[tokio::test]
async fn max_connections_is_one_limit_for_the_process() {
    let app = spawn_app(&with_server(
        "max_connections = 4\nheader_read_timeout_secs = 30",
    ))
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(answered_keep_alive(app.addr).await);
    }
    // Whichever proxy thread the kernel gives them to, none is served.
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        waiting.push(s);
    }
    let answered = join_all(waiting.iter_mut().map(|s| async {
        tokio::time::timeout(Duration::from_millis(500), read_one(s))
            .await
            .is_ok()
    }))
    .await;
    assert_eq!(answered, [false; 4], "served past max_connections");
    // One place frees: the waiting connections are served one after the
    // other (each closes after its answer).
    drop(open.pop());
    let answers = join_all(waiting.iter_mut().map(|s| async {
        tokio::time::timeout(Duration::from_secs(10), read_one(s))
            .await
            .map(|r| r.status)
    }))
    .await;
    for a in answers {
        assert_eq!(a.expect("a waiting connection was never served"), 200);
    }
}

/// A WebSocket tunnel keeps its connection's place for as long as it is
/// open, and is closed after `request_timeout_secs` without traffic in
/// either direction; traffic keeps it open.
#[tokio::test]
async fn websocket_tunnels_count_against_max_connections_and_idle_out() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let idle = Duration::from_secs(2);
    let app = spawn_app(&with_server(
        "max_connections = 4\nheader_read_timeout_secs = 30\nrequest_timeout_secs = 2",
    ))
    .await;
    let url = format!("ws://{}/ws", app.addr);
    let addr = app.addr;
    let open = move |url: String| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
        ws
    };
    let start = Instant::now();
    let mut tunnels = Vec::new();
    for _ in 0..4 {
        tunnels.push(open(url.clone()).await);
    }
    // A fifth tunnel waits for a place.
    let fifth = tokio::spawn(open(url.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth tunnel opened past max_connections"
    );
    // One tunnel talks every 400 ms and stays open; the three others idle
    // out after `idle`, and the fifth gets a place.
    let mut busy = tunnels.pop().unwrap();
    let talker = tokio::spawn(async move {
        let until = Instant::now() + idle + Duration::from_secs(1);
        while Instant::now() < until {
            busy.send(Message::text("ping")).await.unwrap();
            assert_eq!(busy.next().await.unwrap().unwrap(), Message::text("ping"));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        busy
    });
    for mut ws in tunnels {
        let end = tokio::time::timeout(idle + MARGIN, ws.next()).await;
        let took = start.elapsed();
        match end {
            Ok(None) | Ok(Some(Err(_))) => {}
            Ok(Some(Ok(m))) if m.is_close() => {}
            other => panic!("an idle tunnel was not closed: {other:?}"),
        }
        assert!(took >= idle * 9 / 10, "closed early: {took:?}");
    }
    let fifth = tokio::time::timeout(idle + MARGIN, fifth)
        .await
        .expect("the fifth tunnel never got a place")
        .unwrap();
    let mut busy = talker.await.unwrap();
    // Past the idle timeout, the talking tunnel is still open.
    busy.send(Message::text("still")).await.unwrap();
    assert_eq!(busy.next().await.unwrap().unwrap(), Message::text("still"));
    drop(fifth);
}

/// At shutdown a tunnel is in flight like a request: it goes on during
/// `shutdown_grace_secs`, and is closed when the grace period is over.
#[tokio::test]
async fn websocket_tunnels_drain_at_shutdown() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let grace = Duration::from_secs(1);
    let app = spawn_app(&with_server("shutdown_grace_secs = 1")).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", app.addr), tcp)
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));
    let start = Instant::now();
    app._stop.send(true).unwrap();
    // Draining: new connections are no longer accepted...
    let deadline = Instant::now() + MARGIN;
    while TcpStream::connect(app.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...but the tunnel still carries traffic within the grace period.
    ws.send(Message::text("during")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("during"));
    assert!(start.elapsed() < grace, "too slow to tell");
    let end = tokio::time::timeout(grace + MARGIN, ws.next()).await;
    let took = start.elapsed();
    match end {
        Ok(None) | Ok(Some(Err(_))) => {}
        Ok(Some(Ok(m))) if m.is_close() => {}
        other => panic!("the tunnel outlived the grace period: {other:?}"),
    }
    assert!(
        took >= grace * 9 / 10,
        "closed before the grace period: {took:?}"
    );
}

/// Host checks (RFC 9112 §3.2, RFC 9110 §7.2): a 400 and nothing reaches
/// the upstream, so an invalid value never travels in `X-Forwarded-Host`.
#[tokio::test]
async fn missing_and_invalid_hosts_are_400_and_never_forwarded() {
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
#[tokio::test]
async fn http2_authority_must_match_host_and_cookies_are_joined() {
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
#[tokio::test]
async fn a_clients_bad_body_is_400_or_413_never_502() {
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
#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
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
#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
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
