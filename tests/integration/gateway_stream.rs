//! Bodies stream both ways, WebSocket upgrades pass after authorization,
//! HTTP/2 cleartext clients are served.

use futures_util::{SinkExt, StreamExt};

use crate::support::{insert_token, spawn_app};

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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A `scopegate serve` process of its own, so its memory is measured
/// apart from the test process (which runs other tests concurrently).
struct GatewayProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gateway_process(
    db: &scopegate::testing::TestDb,
    upstream: std::net::SocketAddr,
) -> GatewayProcess {
    let dir = tempfile::tempdir().unwrap();
    let port = scopegate::db::embedded::free_port().unwrap();
    let admin = scopegate::db::embedded::free_port().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n{}",
            ROUTES
                .replace("[server]\n", "")
                .replace("UPSTREAM", &format!("http://{upstream}"))
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("SCOPEGATE_DATABASE_URL", db.url.expose())
        .env("SCOPEGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Ready when it accepts connections (bounded; no fixed sleep).
    let start = std::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "gateway did not start"
        );
        tokio::task::yield_now().await;
    }
    GatewayProcess {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test]
async fn large_uploads_and_downloads_stream_without_buffering() {
    let db = scopegate::testing::TestDb::new().await;
    let upstream = crate::support::echo().await;
    let gw = gateway_process(&db, upstream.addr).await;
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
