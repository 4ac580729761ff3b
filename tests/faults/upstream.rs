//! Upstreams that refuse, reset, stall or lose their client mid-upload
//! (`docs/security.md`, "Faults", F5, F6, F7).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    raw_get, read_until_closed, recorder, refusing_port, spawn_app_to, Serve, MARGIN,
};

/// An upstream that reads each request head and then does `then` with
/// the connection.
async fn upstream<F, Fut>(then: F) -> SocketAddr
where
    F: Fn(TcpStream, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let then = std::sync::Arc::new(then);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let then = then.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                then(s, head).await;
            });
        }
    });
    addr
}

/// Close `s` with a reset (SO_LINGER 0), not a FIN.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

fn public_route(name: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://{upstream}\"\npublic = true\n{extra}\n"
    )
}

/// F5: an upstream that refuses the connection is 502; one that resets
/// it before answering is 502; one that resets it mid-body, after the
/// status went out, aborts the client's connection (the body visibly
/// short), is logged with the request's id, and the gateway goes on
/// serving (no panic, no restart).
#[tokio::test]
async fn f05_refused_and_reset_upstreams_are_502_or_an_aborted_body_and_logged() {
    let db = scopegate::testing::TestDb::new().await;
    let (_refusing, port) = refusing_port();
    let down: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let early = upstream(|s, _| async move { reset(s) }).await;
    let midway = upstream(|mut s, head| async move {
        if head.starts_with(b"GET /midway/ok") {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
        reset(s);
    })
    .await;
    let config = format!(
        "{}{}{}",
        public_route("down", down, ""),
        public_route("early", early, ""),
        public_route("midway", midway, "")
    );
    let mut gw = Serve::start(&db, &config);

    let r = raw_get(gw.addr, "/down/x", "").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");
    let r = raw_get(gw.addr, "/early/x", "").await;
    assert_eq!(r.status, 502);

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /midway/big HTTP/1.1\r\nHost: t\r\nX-Request-Id: f05-midway-1\r\n\r\n")
        .await
        .unwrap();
    let (all, closed) = read_until_closed(&mut s, 5 * MARGIN).await;
    assert!(closed, "the client connection was not aborted");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        all.len() - head_end < 100000,
        "the body looked complete: {} bytes",
        all.len() - head_end
    );
    // Logged, with the request's id.
    gw.wait_for_line(5 * MARGIN, |l| {
        l.contains("upstream response body failed") && l.contains("f05-midway-1")
    });
    // Still serving, still the same process.
    assert_eq!(raw_get(gw.addr, "/midway/ok", "").await.status, 200);
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway exited");
    let metrics = reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.contains("route=\"midway\"") && l.contains("kind=\"request\""))
        .unwrap_or_else(|| panic!("no upstream error counter for midway:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(
        !gw.log.iter().any(|l| l.contains("panicked")),
        "{:#?}",
        gw.log
    );
}

/// F6: an upstream that accepts and never answers gets 504 at the
/// route's `timeout_secs`, not before and not much after; the stalled
/// connection does not hold up other requests.
#[tokio::test]
async fn f06_a_stalled_upstream_is_504_at_the_route_timeout() {
    // Says when the slow request has reached the upstream.
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let arrival = arrived.clone();
    let stalled = upstream(move |s, _| {
        arrival.notify_one();
        async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(s);
        }
    })
    .await;
    let ok = recorder().await;
    let timeout = Duration::from_secs(1);
    let config = format!(
        "{}{}",
        public_route(
            "stalled",
            stalled,
            &format!("timeout_secs = {}", timeout.as_secs())
        ),
        public_route("ok", ok.addr, "")
    );
    let app = spawn_app_to(&config, ok.addr).await;
    let slow = raw_get(app.addr, "/stalled/x", "");
    let meanwhile = async {
        arrived.notified().await;
        let start = Instant::now();
        let r = raw_get(app.addr, "/ok/x", "").await;
        (r.status, start.elapsed())
    };
    let start = Instant::now();
    let (r, (other, other_took)) = tokio::join!(slow, meanwhile);
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert!(took >= timeout * 9 / 10, "504 too early: {took:?}");
    assert!(took < timeout + MARGIN, "504 too late: {took:?}");
    assert_eq!(other, 200);
    assert!(other_took < timeout, "held up: {other_took:?}");
}

/// The gateway process's TCP connections to `port` (established), read
/// from `/proc`: the socket inodes among its file descriptors that the
/// kernel's table lists with that remote port.
fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f[2].rsplit(':').next().unwrap();
            u16::from_str_radix(remote_port, 16).ok() == Some(port)
                && f[3] == "01"
                && inodes.contains(f[9])
        })
        .count()
}

/// F7: clients that vanish mid-upload: each upstream request is cancelled
/// (its body ends in an error, short of what was declared), and the
/// gateway keeps no connection to the upstream for them afterwards (a
/// forwarding task left behind would hold one); it goes on serving.
#[tokio::test]
async fn f07_an_aborted_upload_cancels_the_upstream_request_and_frees_it() {
    let db = scopegate::testing::TestDb::new().await;
    let rec = recorder().await;
    let mut gw = Serve::start(&db, &public_route("up", rec.addr, ""));
    let pid = gw.child.id();
    const ABORTS: usize = 20;
    for i in 0..ABORTS {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"POST /up/x HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&[b'x'; 1000]).await.unwrap();
        // Wait until the upstream has the request, then vanish.
        rec.arrived(i + 1, 5 * MARGIN).await;
        reset(s);
    }
    let seen = rec.settled(ABORTS).await;
    for r in &seen {
        assert_eq!(r.body_complete, Some(false), "{r:?}");
        assert!(r.body_bytes < 50000, "{r:?}");
    }
    let deadline = Instant::now() + 5 * MARGIN;
    loop {
        let held = connections_to(pid, rec.addr.port());
        if held == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway still holds {held} connections to the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(raw_get(gw.addr, "/up/ok", "").await.status, 200);
    gw.signal(libc::SIGTERM);
    let status = gw.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
