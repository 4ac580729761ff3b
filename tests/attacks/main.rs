//! The attack cases of `docs/security.md` ("Attack cases"), one module per
//! section, each case's id in its test's name or doc comment. Raw bytes on
//! a socket (or raw HTTP/2 frames) where a client library would fix what a
//! case sends, against a recording upstream that shows what did and did
//! not reach it. Its own test binary, so its throwaway Postgres cluster is
//! its own.

// Not every helper of the shared harness is used here.
#[allow(unused_imports)]
#[path = "../integration/support/mod.rs"]
mod support;

mod bearer;
mod endpoints;
mod framing;
mod h2;
mod headers;
mod paths;
mod slow;

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::{
    read_until_closed, recorder, responses, spawn_app_to, Recorded, Recorder, Resp, TestApp,
};

/// A public route and one that needs the scope `admin`, both to the
/// recorder.
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

/// The gateway on [`ROUTES`] in front of a recorder.
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

/// The paths the recorder saw, in order.
fn paths(seen: &[Recorded]) -> Vec<&str> {
    seen.iter().map(|r| r.path.as_str()).collect()
}
