//! Section S, slow and silent clients: slowloris, slow bodies, slow
//! readers, idle sockets, connection and tunnel floods (`docs/http.md`,
//! "Connections"). Each must leave the gateway serving, and nothing but
//! complete, valid requests may reach the upstream.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::h2::app;
use crate::support::{
    raw, read_one, read_until_closed, recorder, responses, spawn_app, spawn_app_to, CATCH_ALL,
    MARGIN,
};
use crate::{exchange, ROUTES as FRAMING_ROUTES};

fn with_server(server: &str) -> String {
    format!("[server]\n{server}\n{CATCH_ALL}")
}

/// A body that stops arriving: the upstream waits for it, and the route
/// deadline answers 504; the upstream never saw a complete body.
///
/// Case S6.
#[tokio::test]
async fn s06_a_slow_post_body_is_cut_off_by_the_deadline() {
    let rec = recorder().await;
    let app = spawn_app_to(
        &FRAMING_ROUTES.replace("[server]\n", "[server]\nrequest_timeout_secs = 1\n"),
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
    rec.arrived(1, Duration::from_secs(5)).await;
    drop(s);
    let seen = rec.settled(0).await;
    assert_eq!(seen[0].body_complete, Some(false), "{seen:?}");
    assert!(seen[0].body_bytes <= 1000);
}

/// A client that never reads its response: the download stalls against
/// the client's TCP window (nothing is buffered without bound), and other
/// clients are served meanwhile.
///
/// Case S7.
#[tokio::test]
async fn s07_a_client_that_never_reads_does_not_stall_others() {
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

/// Silent sockets, partial HTTP/2 prefaces and a preface followed by
/// nothing are all closed once `header_read_timeout` passes, so they
/// cannot hold `max_connections`: with exactly as many places as silent
/// sockets, a real request waits for them and then gets through.
///
/// Cases S5, S8.
#[tokio::test]
async fn s05_silent_sockets_and_partial_prefaces_are_closed_at_the_header_read_timeout() {
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
///
/// Case S8.
#[tokio::test]
async fn s08_an_idle_http2_connection_is_closed() {
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
///
/// Case S8.
#[tokio::test]
async fn s08_max_connections_is_one_limit_for_the_process() {
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
///
/// Case S8.
#[tokio::test]
async fn s08_websocket_tunnels_count_against_max_connections_and_idle_out() {
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

/// Send `head` one byte every 100 ms, endlessly repeated, until the
/// gateway closes the connection (`Some`: how long after `from`) or
/// `bound` has passed since `from` (`None`).
async fn trickle(
    s: &mut TcpStream,
    head: &[u8],
    from: Instant,
    bound: Duration,
) -> Option<Duration> {
    for b in head.iter().cycle() {
        if s.write_all(&[*b]).await.is_err() {
            return Some(from.elapsed());
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(from.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
        if from.elapsed() > bound {
            return None;
        }
    }
    None
}

/// Case S5: slowloris, a head trickled one byte at a time. The header
/// read timeout bounds the whole head, not the gap between bytes: with
/// `header_read_timeout_secs = 1` and a byte every 100 ms (each gap well
/// within the timeout), the connection is closed about 1 s after it
/// opened, and nothing reaches the upstream.
#[tokio::test]
async fn s05_a_trickled_head_is_cut_off_at_the_header_read_timeout() {
    let timeout = Duration::from_secs(1);
    let rec = recorder().await;
    let app = spawn_app_to(&with_server("header_read_timeout_secs = 1"), rec.addr).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let start = Instant::now();
    // Longer than the timeout at 10 bytes a second.
    let head = format!("GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: {}", "a".repeat(200));
    let took = trickle(&mut s, head.as_bytes(), start, timeout + MARGIN)
        .await
        .expect("never closed");
    assert!(took >= timeout * 9 / 10, "closed early: {took:?}");
    assert!(rec.seen().is_empty(), "{:?}", rec.seen());
}

/// Case S5 on a kept-alive connection: after a first request is answered,
/// the next head is trickled. The connection's idle timer is the only
/// header timer (`docs/security.md`, "Slow clients and resource limits"),
/// so the head must be complete within `header_read_timeout` of the first
/// answer: the connection is closed then, at once, not after a second
/// period, and only the first request reached the upstream.
#[tokio::test]
async fn s05_a_head_trickled_after_a_kept_alive_request_is_cut_off() {
    let timeout = Duration::from_secs(2);
    let rec = recorder().await;
    let app = spawn_app_to(&with_server("header_read_timeout_secs = 2"), rec.addr).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_one(&mut s).await.status, 200);
    let head = b"GET /second HTTP/1.1\r\nHost: t\r\nX-Pad: ";
    let took = trickle(&mut s, head, Instant::now(), 3 * timeout)
        .await
        .expect("the trickled head was never cut off");
    assert!(took >= timeout * 9 / 10, "closed early: {took:?}");
    // A second idle period (a goodbye) would end it at twice the timeout.
    assert!(took < timeout * 3 / 2, "closed late: {took:?}");
    let paths: Vec<String> = rec.seen().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/first"]);
}
