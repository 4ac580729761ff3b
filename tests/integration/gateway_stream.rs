//! Bodies stream both ways, WebSocket upgrades pass after authorization,
//! HTTP/2 cleartext clients are served.

use futures_util::{SinkExt, StreamExt};

use crate::support::{insert_token, read_until_closed, spawn_app, Serve, MARGIN};

const ROUTES: &str = r#"
[server]
max_body_bytes = 1073741824

[[routes]]
name = "files"
path = "/files"
upstream = "UPSTREAM"
public = true

[[routes]]
name = "ws"
path = "/ws"
upstream = "UPSTREAM"
scopes = ["chat"]
"#;

const SIZE: u64 = 256 * 1024 * 1024;

/// `shutdown_grace_secs` when the config does not set it
/// (`docs/configuration.md`).
const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// `ROUTES` pointing at `upstream`.
fn routes(upstream: std::net::SocketAddr) -> String {
    ROUTES.replace("UPSTREAM", &format!("http://{upstream}"))
}

/// The process's peak resident set (`VmHWM`): a gateway that buffers a
/// body and frees it afterwards still shows here.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn large_uploads_and_downloads_stream_without_buffering() {
    let db = scopegate::testing::TestDb::new().await;
    let upstream = crate::support::echo().await;
    let gw = Serve::start(&db, &routes(upstream.addr));
    let pid = gw.child.id();
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    let client = reqwest::Client::new();
    // Warm up connection pools and allocator arenas.
    client
        .get(url("/files/warm"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let base = rss_kib(pid);

    // Upload: 256 MiB generated on the fly, counted by the upstream.
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let n = SIZE / chunk.len() as u64;
    let stream =
        futures_util::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let res = client
        .post(url("/files/up"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(seen["body_length"], SIZE);
    let after_upload = rss_kib(pid);

    // Download: 256 MiB produced by the upstream, consumed as a stream.
    let res = client
        .get(url("/files/down"))
        .header("x-echo-bytes", SIZE.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut got: u64 = 0;
    while let Some(c) = body.next().await {
        got += c.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);
    let after_download = rss_kib(pid);

    let growth = after_upload.max(after_download).saturating_sub(base);
    assert!(
        growth < 32 * 1024,
        "gateway RSS grew by {growth} KiB while streaming 256 MiB each way"
    );
}

#[tokio::test]
async fn websocket_echo_through_the_gateway_after_authorization() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app(ROUTES).await;
    let token = insert_token(&app.db, "chatter", &["chat"], 3600).await;
    let url = format!("ws://{}/ws/room", app.addr);

    // Without a token: refused before any 101.
    let err = tokio_tungstenite::connect_async(url.clone())
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
        other => panic!("expected an HTTP 401, got {other:?}"),
    }

    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.status(), 101);
    assert!(res.headers().get("x-request-id").is_some());
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &[1u8, 2, 3]
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn h2c_clients_are_served_and_upstream_sees_http11() {
    let app = spawn_app(ROUTES).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = client.get(app.url("/files/x?y=1")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-request-id").is_some());
    let seen: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(seen["path"], "/files/x");
    assert_eq!(seen["query"], "y=1");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["x-forwarded-host"][0], app.addr.to_string());

    // Several streams on one connection, one of them rejected.
    let (a, b) = tokio::join!(
        client.get(app.url("/files/a")).send(),
        client.get(app.url("/ws/nope")).send()
    );
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 401);
}

/// An upstream for one request: it reads the request head, says so on
/// the first channel, and answers `200 ok` once the returned sender fires
/// (or is dropped); until then the connection stays open and silent.
async fn held_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = arrived_tx.send(());
        let _ = go_rx.await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
    });
    (addr, arrived_rx, go_tx)
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let db = scopegate::testing::TestDb::new().await;
    // An upstream that holds its answer until the test says so.
    let (upstream, arrived_rx, go_tx) = held_upstream().await;
    let mut gw = Serve::start(&db, &routes(upstream));
    let url = format!("http://{}/files/slow", gw.addr);
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new().get(url).send().await?;
        let status = r.status().as_u16();
        Ok::<_, reqwest::Error>((status, r.text().await?))
    });
    arrived_rx.await.unwrap();

    let pid = i32::try_from(gw.child.id()).unwrap();
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // Shutdown has begun when the listener stops accepting.
    let start = std::time::Instant::now();
    while tokio::net::TcpStream::connect(gw.addr).await.is_ok() {
        assert!(start.elapsed() < MARGIN, "still accepting after SIGTERM");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The request that was in flight still completes ...
    let _ = go_tx.send(());
    let (status, body) = in_flight.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    // ... and then the process exits cleanly.
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            start.elapsed() < DEFAULT_SHUTDOWN_GRACE + MARGIN,
            "still running after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(code, Some(0));
}

/// A request still in flight when `shutdown_grace_secs` is over (its
/// upstream never answers) is cut off: the client's connection is closed
/// at the end of the grace period, not before, and the process exits 0.
#[tokio::test]
async fn sigterm_closes_what_is_still_in_flight_after_the_grace_period_then_exits_0() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    let grace = Duration::from_secs(1);
    let db = scopegate::testing::TestDb::new().await;
    // An upstream that never answers (the go-ahead is never given).
    let (upstream, arrived_rx, _never) = held_upstream().await;
    // Route and request deadlines far past the grace period: only the
    // shutdown can end this request.
    let config = routes(upstream).replace(
        "[server]\n",
        &format!(
            "[server]\nshutdown_grace_secs = {}\nrequest_timeout_secs = 300\n",
            grace.as_secs()
        ),
    );
    let mut gw = Serve::start(&db, &config);
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"GET /files/never HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    arrived_rx.await.unwrap();

    gw.signal(libc::SIGTERM);
    let start = Instant::now();
    let (answer, closed) = read_until_closed(&mut client, grace + MARGIN).await;
    let took = start.elapsed();
    assert!(closed, "the connection outlived the grace period: {took:?}");
    assert!(
        took >= grace * 9 / 10,
        "closed before the grace period: {took:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let code = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            start.elapsed() < grace + MARGIN,
            "still running {:?} after SIGTERM",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(code, Some(0));
}
