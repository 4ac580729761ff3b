//! `SIGHUP` reloads the configuration of a running `serve`: new routes
//! serve without a restart, a request in flight finishes on the config it
//! started with, and an invalid file leaves the old routes serving.

use std::time::Duration;

use crate::support::{echo, raw, Serve};

fn routes(upstream: std::net::SocketAddr, names: &[&str]) -> String {
    let mut s = String::new();
    for name in names {
        s.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://{upstream}\"\npublic = true\n\n"
        ));
    }
    s
}

async fn status(addr: std::net::SocketAddr, path: &str, extra: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    raw(addr, req.as_bytes()).await.status
}

#[tokio::test]
async fn sighup_swaps_routes_and_keeps_serving_through_bad_files() {
    let db = scopegate::testing::TestDb::new().await;
    let up = echo().await;
    let mut serve = Serve::start(&db, &routes(up.addr, &["old"]));
    let addr = serve.addr;
    assert_eq!(status(addr, "/old/x", "").await, 200);
    assert_eq!(status(addr, "/new/x", "").await, 404);

    // A request on a route that the next reload removes, held by its
    // upstream across that reload.
    let held = HeldUpstream::start().await;
    let held_route = format!(
        "[[routes]]\nname = \"held\"\npath = \"/held\"\nupstream = \"http://{}\"\npublic = true\n",
        held.addr
    );
    serve.rewrite_config(&format!("{}{held_route}", routes(up.addr, &["old"])));
    serve.signal(libc::SIGHUP);
    serve.wait_for_line(Duration::from_secs(10), |l| {
        l.contains("configuration reloaded")
    });
    let in_flight = tokio::spawn(async move {
        raw(
            addr,
            b"GET /held/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    let release = held.arrived().await;

    serve.rewrite_config(&routes(up.addr, &["new"]));
    serve.signal(libc::SIGHUP);
    serve.wait_for_line(Duration::from_secs(10), |l| {
        l.contains("configuration reloaded")
    });
    assert_eq!(status(addr, "/new/x", "").await, 200);
    assert_eq!(status(addr, "/old/x", "").await, 404);
    assert_eq!(status(addr, "/held/x", "").await, 404);
    let _ = release.send(());
    let r = in_flight.await.unwrap();
    assert_eq!(
        r.status, 200,
        "the in-flight request finished on its config"
    );
    assert_eq!(r.body, b"held");

    // An invalid file: every error logged, the previous routes keep serving.
    serve.rewrite_config(&format!(
        "{}[[routes]]\nname = \"bad\"\npath = \"no-slash\"\nupstream = \"ftp://x\"\n",
        routes(up.addr, &["newer"])
    ));
    serve.signal(libc::SIGHUP);
    let first = serve.wait_for_line(Duration::from_secs(10), |l| {
        l.contains("invalid configuration")
    });
    assert!(first.contains("routes[1]"), "{first}");
    serve.wait_for_line(Duration::from_secs(10), |l| l.contains("reload refused"));
    assert_eq!(status(addr, "/new/x", "").await, 200);
    assert_eq!(status(addr, "/newer/x", "").await, 404);
    // Still running after every signal.
    assert!(serve.child.try_wait().unwrap().is_none());
    // Two reloads applied, one refused, as /metrics counts them.
    let metrics =
        crate::support::send(crate::support::http().get(format!("http://{}/metrics", serve.admin)))
            .await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.lines().any(|l| l == "scopegate_reloads_total 2"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "scopegate_reload_failures_total 1"),
        "{text}"
    );
}

/// An upstream that tells when a request arrived and answers only when
/// released.
struct HeldUpstream {
    addr: std::net::SocketAddr,
    arrivals: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
}

impl HeldUpstream {
    async fn start() -> HeldUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, arrivals) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (release, wait) = tokio::sync::oneshot::channel();
                    if tx.send(release).await.is_err() {
                        return;
                    }
                    let _ = wait.await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nheld")
                        .await;
                });
            }
        });
        HeldUpstream { addr, arrivals }
    }

    /// Wait until a request is at this upstream; send on the answer to let
    /// it go.
    async fn arrived(mut self) -> tokio::sync::oneshot::Sender<()> {
        tokio::time::timeout(Duration::from_secs(10), self.arrivals.recv())
            .await
            .expect("the request reached the upstream")
            .expect("the upstream is running")
    }
}
