//! The process around the requests: a broken configuration on reload and
//! at startup, SIGTERM with requests and refreshes in flight, a log
//! nobody reads (`docs/security.md`, "Faults", F8, F10, F15).

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scopegate::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{account_in, login_at};
use crate::support::{echo, http, raw_get, read_one, send, Serve, MARGIN};

fn route(name: &str, upstream: SocketAddr) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://{upstream}\"\npublic = true\n\n"
    )
}

/// `name` of the admin listener's `/metrics` at `admin`, as a number.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let r = send(http().get(format!("http://{admin}/metrics"))).await;
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}:\n{text}"))
}

/// F8: each kind of broken file sent with SIGHUP (a syntax error, an
/// invalid scope, a route without upstream, two routes of one name, a
/// route an identical earlier one shadows, an unknown key, a route under
/// `/oauth`) is refused whole: the errors and
/// the refusal are logged, the previous routes keep serving, nothing of
/// the new file is applied, and `/metrics` counts it and says the last
/// reload failed. A valid file then applies (and clears that), and one
/// with no routes serves no route (deny all, never allow all). The same
/// broken file at startup: exit 2, naming the key.
#[tokio::test]
async fn f08_a_broken_config_is_refused_whole_and_the_old_one_serves() {
    let db = TestDb::new().await;
    let up = echo().await;
    let mut gw = Serve::start(&db, &route("old", up.addr));
    assert_eq!(raw_get(gw.addr, "/old/x", "").await.status, 200);
    let new = route("new", up.addr);
    let broken = [
        ("syntax", format!("{new}[[routes]\nname = \"x\"\n")),
        (
            "scope",
            format!("{new}[[routes]]\nname = \"s\"\npath = \"/s\"\nupstream = \"http://{}\"\nscopes = [\"two words\"]\n", up.addr),
        ),
        ("upstream", format!("{new}[[routes]]\nname = \"u\"\npath = \"/u\"\npublic = true\n")),
        ("duplicate", format!("{new}{}", route("new", up.addr))),
        (
            "shadowed",
            format!("{new}{}", route("new", up.addr).replace("\"new\"", "\"twin\"")),
        ),
        ("unknown key", format!("{new}[cache]\nmax_entires = 5\n")),
        ("oauth", format!("{new}{}", route("oauth", up.addr).replace("/oauth", "/oauth/x"))),
    ];
    for (i, (what, text)) in broken.iter().enumerate() {
        gw.rewrite_config(text);
        gw.signal(libc::SIGHUP);
        gw.wait_for_line(5 * MARGIN, |l| l.contains("invalid configuration"));
        gw.wait_for_line(5 * MARGIN, |l| l.contains("reload refused"));
        assert_eq!(raw_get(gw.addr, "/old/x", "").await.status, 200, "{what}");
        assert_eq!(raw_get(gw.addr, "/new/x", "").await.status, 404, "{what}");
        assert_eq!(
            metric(gw.admin, "scopegate_reload_failures_total").await,
            (i + 1) as f64,
            "{what}"
        );
        assert_eq!(metric(gw.admin, "scopegate_reload_last_failed").await, 1.0);
        // The same file at startup: refused, naming what to fix.
        let out = crate::support::scopegate()
            .arg("--config")
            .arg(&gw.config)
            .arg("serve")
            .env("SCOPEGATE_DATABASE_URL", db.url.expose())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}");
        assert!(!out.stderr.is_empty(), "{what}: no error printed");
    }
    assert!(gw.child.try_wait().unwrap().is_none());

    gw.rewrite_config(&new);
    gw.signal(libc::SIGHUP);
    gw.wait_for_line(5 * MARGIN, |l| l.contains("configuration reloaded"));
    assert_eq!(raw_get(gw.addr, "/new/x", "").await.status, 200);
    assert_eq!(raw_get(gw.addr, "/old/x", "").await.status, 404);
    assert_eq!(metric(gw.admin, "scopegate_reload_last_failed").await, 0.0);

    gw.rewrite_config("");
    gw.signal(libc::SIGHUP);
    gw.wait_for_line(5 * MARGIN, |l| l.contains("configuration reloaded"));
    assert_eq!(raw_get(gw.addr, "/new/x", "").await.status, 404);
    assert_eq!(raw_get(gw.addr, "/", "").await.status, 404);
}

/// An upstream that holds every request until `go` fires, then answers
/// `200 ok`; `arrived` counts the requests it holds.
async fn held_upstream() -> (
    SocketAddr,
    tokio::sync::watch::Receiver<usize>,
    tokio::sync::watch::Sender<bool>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = tokio::sync::watch::channel(0usize);
    let (go, go_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let arrived_tx = arrived_tx.clone();
            let mut go_rx = go_rx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                arrived_tx.send_modify(|n| *n += 1);
                let _ = go_rx.wait_for(|g| *g).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    (addr, arrived, go)
}

/// The refresh tokens of a family that are usable now, by the database.
async fn live_in_family(db: &TestDb, member_hash: &str) -> Vec<String> {
    let conn = db.pool().get().await.unwrap();
    conn.query(
        "SELECT r.refresh_token FROM refresh_tokens r
          WHERE r.active AND r.rotated_at IS NULL
            AND COALESCE(r.family_id, r.refresh_token_id) =
                (SELECT COALESCE(family_id, refresh_token_id) FROM refresh_tokens WHERE refresh_token = $1)",
        &[&member_hash],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn hash_hex(token: &str) -> String {
    scopegate::tokens::hash_hex(&scopegate::tokens::hash(token))
}

/// F10: SIGTERM while a proxied request and refreshes are in flight.
/// The listener stops accepting; the proxied request finishes (with
/// `Connection: close`); refreshes held inside their transaction (by a
/// row lock the test holds) either commit during the drain — the client
/// gets the new pair, the family has exactly that one live token — or,
/// still held when `shutdown_grace_secs` is over, are rolled back whole
/// (the family keeps exactly its old token, nothing half-rotated); the
/// process exits 0.
#[tokio::test]
async fn f10_sigterm_drains_requests_and_refreshes_commit_or_roll_back_whole() {
    let grace = Duration::from_secs(2);
    let db = TestDb::new().await;
    let (upstream, mut arrived, go) = held_upstream().await;
    let config = format!(
        "[server]\nshutdown_grace_secs = {}\nrequest_timeout_secs = 300\n[login]\nmax_failures = 1000\nmax_failures_per_ip = 1000\n{}",
        grace.as_secs(),
        route("held", upstream)
    );
    account_in(&db, "rita", "pw", &[]).await;
    let mut gw = Serve::start(&db, &config);
    // Two families that will commit, two that will roll back.
    let mut families = Vec::new();
    for _ in 0..4 {
        families.push(login_at(gw.addr, "rita", "pw").await.pair().1);
    }
    let (commit, rollback) = families.split_at(2);

    // A proxied request in flight, on a connection of its own.
    let mut proxied = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    proxied
        .write_all(b"GET /held/x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    arrived.wait_for(|n| *n == 1).await.unwrap();

    // Hold each family's row, then present its refresh token: the
    // refresh waits inside its transaction.
    let pool = db.pool();
    let mut lockers = Vec::new();
    for rt in &families {
        let c = pool.get().await.unwrap();
        c.batch_execute("BEGIN").await.unwrap();
        c.execute(
            "SELECT 1 FROM refresh_tokens WHERE refresh_token = $1 FOR UPDATE",
            &[&hash_hex(rt)],
        )
        .await
        .unwrap();
        lockers.push(c);
    }
    let addr = gw.addr;
    let refreshes: Vec<_> = families
        .iter()
        .map(|rt| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let body = form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", &rt)
                    .finish();
                http()
                    .post(format!("http://{addr}/oauth/token"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
            })
        })
        .collect();
    // Wait until all four wait for the locks; their sessions.
    let watching = db.pool();
    let watcher = watching.get().await.unwrap();
    let start = Instant::now();
    let waiting: Vec<i32> = loop {
        let pids: Vec<i32> = watcher
            .query_one(
                "SELECT COALESCE(array_agg(pid), '{}') FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if pids.len() == 4 {
            break pids;
        }
        assert!(start.elapsed() < 5 * MARGIN, "{pids:?} waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    gw.signal(libc::SIGTERM);
    let start = Instant::now();
    while tokio::net::TcpStream::connect(gw.addr).await.is_ok() {
        assert!(start.elapsed() < MARGIN, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Release the first two families and the proxied request.
    let (first, rest) = lockers.split_at_mut(2);
    for c in first.iter_mut() {
        c.batch_execute("COMMIT").await.unwrap();
    }
    go.send(true).unwrap();
    let r = read_one(&mut proxied).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    let mut answers = Vec::new();
    for (i, task) in refreshes.into_iter().enumerate() {
        if i < 2 {
            let r = task.await.unwrap().unwrap();
            assert_eq!(r.status(), 200);
            let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            answers.push(j["refresh_token"].as_str().unwrap().to_owned());
        } else {
            answers.push(String::new());
            // Still held: cut off at the end of the grace period.
            let r = tokio::time::timeout(grace + MARGIN, task)
                .await
                .unwrap()
                .unwrap();
            assert!(
                r.is_err(),
                "a refresh held past the grace period was answered"
            );
        }
    }
    let code = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(start.elapsed() < grace + MARGIN, "still running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(code, Some(0));
    // The process is gone; let the rolled-back sessions end.
    for c in rest.iter_mut() {
        c.batch_execute("COMMIT").await.unwrap();
    }
    let start = Instant::now();
    loop {
        let left: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&waiting],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            start.elapsed() < 5 * MARGIN,
            "{left} sessions of the gateway remain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (old, new) in commit.iter().zip(&answers[..2]) {
        assert_eq!(
            live_in_family(&db, &hash_hex(old)).await,
            vec![hash_hex(new)]
        );
    }
    for old in rollback {
        assert_eq!(
            live_in_family(&db, &hash_hex(old)).await,
            vec![hash_hex(old)]
        );
    }
}

/// F15: nobody reads the log (a full pipe, as with a full disk behind
/// it): requests are still answered; log lines are dropped, not waited
/// for.
#[test]
fn f15_a_log_nobody_reads_never_blocks_requests() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"open\"\npath = \"/open\"\npublic = true\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut child = crate::support::scopegate()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("SCOPEGATE_DATABASE_URL", db.url.expose())
        .env("SCOPEGATE_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let _child = KillOnDrop(child);
    // Read up to the readiness line, then never again.
    let mut stderr = std::io::BufReader::new(pipe);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        if let Some((_, rest)) = line.split_once("scopegate listening proxy=") {
            break rest.split(' ').next().unwrap().trim().to_owned();
        }
    };
    let addr: SocketAddr = addr.parse().unwrap();
    // Each answer logs a line (~200 bytes) and each 502 a warning: 3000
    // requests fill the pipe (64 KiB) many times over.
    let start = Instant::now();
    rt.block_on(async {
        for i in 0..3000 {
            // 502: the upstream port is closed; the answer is what counts.
            let one = Instant::now();
            assert_eq!(raw_get(addr, "/open/x", "").await.status, 502);
            assert!(
                one.elapsed() < MARGIN,
                "request {i} waited {:?}",
                one.elapsed()
            );
        }
    });
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    // All that time the pipe was full (the log's writer blocked on it):
    // what waits in it is a pipe's worth.
    let fd = std::os::fd::AsRawFd::as_raw_fd(stderr.get_ref());
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe we own writes one int.
    assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut waiting) }, 0);
    assert!(waiting >= 60 * 1024, "only {waiting} bytes in the pipe");
    drop(stderr);
}

/// The child process, killed and reaped when the test ends (pass or fail).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
