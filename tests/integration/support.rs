//! Spawning the real thing for a test: a database of its own, an echo
//! upstream on port 0, the gateway on port 0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scopegate::app::{App, State};
use scopegate::config::{Config, EnvOverrides};
use scopegate::testing::TestDb;
use tokio::sync::watch;

/// How late a timeout, a deadline or a clock-based window may be observed
/// on a loaded 2-core machine: every timing bound is a configured value
/// plus this.
pub const MARGIN: Duration = Duration::from_secs(2);

/// `Authorization: Bearer <token>` as a raw header line.
pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// The statement the validation cache fills from (`tokens::lookup`), as
/// `pg_stat_statements` shows it.
pub const TOKEN_LOOKUP: &str = "WHERE t.token = $1";

/// The statement a password login reads the account and its hash with
/// (`accounts::credentials::find_login`).
pub const ACCOUNT_LOOKUP: &str =
    "SELECT account_id, password, is_active FROM accounts WHERE username = $1";

/// How long a statement count must hold still to be read as final.
const STATS_QUIET: Duration = Duration::from_millis(200);

/// [`TestDb::statement_calls`] once the count holds still for
/// [`STATS_QUIET`]: Postgres records a statement when its transaction
/// ends, a moment after the client already has the rows, so a count read
/// right after an answer may still be short.
pub async fn statement_calls_settled(db: &TestDb, fragment: &str) -> i64 {
    let deadline = Instant::now() + 5 * MARGIN;
    let mut last = db.statement_calls(fragment).await;
    loop {
        tokio::time::sleep(STATS_QUIET).await;
        let now = db.statement_calls(fragment).await;
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the count of {fragment:?} never held still"
        );
        last = now;
    }
}

/// A loopback port that refuses connections for as long as the returned
/// socket lives: bound (so nobody else can take it) but not listening.
/// Unlike a port that "was free a moment ago", it cannot turn out to be
/// someone else's server.
pub fn refusing_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}

/// A running echo upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

pub async fn echo() -> Upstream {
    let listener = scopegate::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(scopegate::server::serve(
        listener,
        Arc::new(scopegate::echo::Echo),
        Default::default(),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    Upstream { addr, _stop: tx }
}

/// A running gateway with its database and upstream.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<State>,
    pub db: TestDb,
    pub upstream: Upstream,
    pub _stop: watch::Sender<bool>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Parse a config whose `UPSTREAM` placeholders become the echo's address;
/// listeners are forced to port 0 and the database to `db`.
pub fn config(toml: &str, upstream: SocketAddr, db: &TestDb) -> Config {
    let text = toml.replace("UPSTREAM", &format!("http://{upstream}"));
    let mut c = Config::parse(&text, "test.toml", &EnvOverrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.database.url = Some(db.url.clone());
    c
}

/// Start the gateway on a fresh database with the given config text.
pub async fn spawn_app(toml: &str) -> TestApp {
    let db = TestDb::new().await;
    spawn_app_on(toml, db).await
}

pub async fn spawn_app_on(toml: &str, db: TestDb) -> TestApp {
    let url = db.url.clone();
    spawn_app_via(toml, db, url).await
}

/// See [`scopegate::testing::insert_token`].
pub async fn insert_token(db: &TestDb, username: &str, scopes: &[&str], ttl_secs: i64) -> String {
    scopegate::testing::insert_token(&db.pool(), username, scopes, ttl_secs).await
}

/// Mark a token revoked in the database, as another replica or the CLI
/// would (the database pushes the revocation to listening gateways).
pub async fn revoke_in_db(db: &TestDb, token: &str) {
    let hash = scopegate::tokens::hash_hex(&scopegate::tokens::hash(token));
    let conn = db.pool().get().await.unwrap();
    let n = conn
        .execute(
            "UPDATE access_tokens SET active = false WHERE token = $1",
            &[&hash],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Mark a token revoked in the database without the push (its triggers
/// off for this one statement), as a replica whose listener is down would
/// see it.
pub async fn revoke_in_db_unannounced(db: &TestDb, token: &str) {
    let hash = scopegate::tokens::hash_hex(&scopegate::tokens::hash(token));
    let mut conn = db.pool().get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await
        .unwrap();
    let n = tx
        .execute(
            "UPDATE access_tokens SET active = false WHERE token = $1",
            &[&hash],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    tx.commit().await.unwrap();
}

/// A plain HTTP/1.1 client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A plain HTTP/1.1 client whose connections come from `ip` (any
/// 127.0.0.0/8 address on Linux): another client address as the gateway
/// sees it, for the per-address login throttle.
pub fn http_from(ip: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .local_address(ip)
        .build()
        .unwrap()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Send `request` (a complete HTTP/1.1 request, bytes as given: no URL
/// normalization by a client library) and read one response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_one(&mut s).await
}

/// Read one response (head and `Content-Length` body) off `s`, leaving the
/// connection open.
pub async fn read_one(s: &mut tokio::net::TcpStream) -> RawResponse {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // The head byte by byte, so nothing past it is consumed.
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return parse_response(&buf),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let start = buf.len();
    buf.resize(start + len, 0);
    let mut got = start;
    while got < buf.len() {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    parse_response(&buf)
}

/// Parse one response: head, then what follows as the body.
pub fn parse_response(buf: &[u8]) -> RawResponse {
    let end = find(buf, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `GET path` with optional extra header lines, over a raw socket.
pub async fn raw_get(addr: SocketAddr, path: &str, extra: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    raw(addr, req.as_bytes()).await
}

/// The request the echo upstream saw, from its JSON answer.
pub struct Seen(pub serde_json::Value);

impl Seen {
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.0["headers"][name].as_array().map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
    pub fn has(&self, name: &str) -> bool {
        self.0["headers"].get(name).is_some()
    }
}

/// Start the gateway on `db`, reaching its database through `url` instead
/// (e.g. `db.url_via(&fault_proxy)`, to cut the database mid-test).
pub async fn spawn_app_via(toml: &str, db: TestDb, url: scopegate::config::Secret) -> TestApp {
    spawn_app_inner(toml, db, url, None).await
}

/// Start the gateway on a fresh database with its `UPSTREAM` placeholders
/// pointing at `upstream` (e.g. a [`Recorder`]) instead of an echo.
pub async fn spawn_app_to(toml: &str, upstream: SocketAddr) -> TestApp {
    let db = TestDb::new().await;
    let url = db.url.clone();
    spawn_app_inner(toml, db, url, Some(upstream)).await
}

async fn spawn_app_inner(
    toml: &str,
    db: TestDb,
    url: scopegate::config::Secret,
    to: Option<SocketAddr>,
) -> TestApp {
    let upstream = echo().await;
    let mut config = config(toml, to.unwrap_or(upstream.addr), &db);
    config.database.url = Some(url.clone());
    let tls = scopegate::db::DbTls::from_url(&url).unwrap();
    let pool = scopegate::db::pool(&url, &tls, config.database.pool_size).unwrap();
    let app = App::build(config, pool).unwrap();
    let addr = app.proxy_addr();
    let admin = app.admin_addr();
    let state = app.state().clone();
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(app.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    ready(admin).await;
    TestApp {
        addr,
        admin,
        state,
        db,
        upstream,
        _stop: tx,
    }
}

/// Wait (bounded) until the admin listener's `/readyz` says the database
/// answers: the pool then holds a connection, so a test's first request
/// does not pay for connecting. A test whose database is unreachable on
/// purpose goes on after the bound.
async fn ready(admin: SocketAddr) {
    let url = format!("http://{admin}/readyz");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        if let Ok(r) = http().get(&url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A `scopegate serve` process on its own config file, with its stderr
/// (the log) read line by line; killed when dropped (pass or fail).
pub struct Serve {
    pub child: std::process::Child,
    /// The proxy listener's address, from the readiness line.
    pub addr: std::net::SocketAddr,
    /// The admin listener's address, from the same line.
    pub admin: std::net::SocketAddr,
    pub config: std::path::PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every stderr line read so far, in order.
    pub log: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Start `serve` on `db` with `config_text` (its listeners forced to
    /// port 0) and wait for its readiness line ("scopegate listening").
    pub fn start(db: &TestDb, config_text: &str) -> Serve {
        Serve::start_with(&db.url, config_text, &[], &[("NO_COLOR", Some("1"))])
    }

    /// [`Serve::start`] with `SCOPEGATE_DATABASE_URL` set to `url` (e.g.
    /// [`TestDb::url_to`], with TLS parameters).
    pub fn start_on(url: &scopegate::config::Secret, config_text: &str) -> Serve {
        Serve::start_with(url, config_text, &[], &[("NO_COLOR", Some("1"))])
    }

    /// [`Serve::start_on`] with `args` before the `serve` command (e.g.
    /// `--log-format json`) and `env` set (`None`: removed) in the
    /// process's environment. The readiness line is read in either log
    /// format.
    pub fn start_with(
        url: &scopegate::config::Secret,
        config_text: &str,
        args: &[&str],
        env: &[(&str, Option<&str>)],
    ) -> Serve {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gw.toml");
        std::fs::write(&config, Self::with_port_zero(config_text)).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"));
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .arg("serve")
            .env("SCOPEGATE_DATABASE_URL", url.expose())
            .env("SCOPEGATE_LOG", "info")
            .env_remove("SCOPEGATE_LOG_FORMAT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            config,
            lines,
            log: Vec::new(),
            _dir: dir,
        };
        let line = serve.wait_for_line(std::time::Duration::from_secs(30), |l| {
            l.contains("scopegate listening")
        });
        let addresses = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(json) => (
                json["proxy"].as_str().unwrap().to_owned(),
                json["admin"].as_str().unwrap().to_owned(),
            ),
            Err(_) => {
                let (_, rest) = line.split_once("scopegate listening proxy=").unwrap();
                let proxy = rest.split(' ').next().unwrap().to_owned();
                let (_, rest) = line.split_once(" admin=").unwrap();
                (proxy, rest.split(' ').next().unwrap().to_owned())
            }
        };
        serve.addr = addresses.0.parse().unwrap();
        serve.admin = addresses.1.parse().unwrap();
        serve
    }

    /// `[server]` listeners on port 0, whatever the text says.
    fn with_port_zero(text: &str) -> String {
        let body = text.replace("[server]\n", "");
        format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{body}")
    }

    /// Replace the config file (listeners again on port 0).
    pub fn rewrite_config(&self, config_text: &str) {
        std::fs::write(&self.config, Self::with_port_zero(config_text)).unwrap();
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// The next log line that satisfies `pred`, within `within`; panics
    /// (with what was seen) when the log ends or time runs out.
    pub fn wait_for_line(
        &mut self,
        within: std::time::Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                    seen.push(line);
                }
                Err(e) => panic!("no such log line ({e}); saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The migrations the repository ships (`migrations/V<n>__<name>.sql`), in
/// the order they apply: what a migration run on an empty database reports.
pub fn shipped_migrations() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut found: Vec<(u32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".sql")?;
            let version = stem.strip_prefix('V')?.split("__").next()?.parse().ok()?;
            Some((version, stem.to_owned()))
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no migrations in {dir}");
    found.into_iter().map(|(_, name)| name).collect()
}

/// What a [`Recorder`] upstream received in one request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Body bytes received, counted as they arrive (also when the body
    /// ends in an error).
    pub body_bytes: u64,
    /// `None` while the body is still arriving; then whether it ended
    /// cleanly.
    pub body_complete: Option<bool>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream that records every request it receives (head, and how much
/// body arrived) and answers `200 {"path": ..., "body_length": ...}`;
/// `x-echo-delay-ms` delays the answer, `x-echo-bytes: N` answers N bytes.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Recorded>>>,
    _stop: watch::Sender<bool>,
}

impl Recorder {
    /// Every request received so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

struct Recording(Arc<std::sync::Mutex<Vec<Recorded>>>);

impl scopegate::server::Handler for Recording {
    async fn handle(
        self: Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
        _conn: scopegate::server::Conn,
    ) -> http::Response<scopegate::body::Body> {
        use http_body_util::BodyExt;
        let index = {
            let mut seen = self.0.lock().unwrap();
            seen.push(Recorded {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body_bytes: 0,
                body_complete: None,
            });
            seen.len() - 1
        };
        let header_u64 = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let delay = header_u64("x-echo-delay-ms");
        let download = header_u64("x-echo-bytes");
        let path = req.uri().path().to_owned();
        let mut body = req.into_body();
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        self.0.lock().unwrap()[index].body_bytes += d.len() as u64;
                    }
                }
                Err(_) => {
                    complete = false;
                    break;
                }
            }
        }
        let len = {
            let mut seen = self.0.lock().unwrap();
            seen[index].body_complete = Some(complete);
            seen[index].body_bytes
        };
        if let Some(ms) = delay {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if let Some(n) = download {
            let mut r = http::Response::new(scopegate::body::full(vec![b'x'; n as usize]));
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
            return r;
        }
        http::Response::new(scopegate::body::json(
            &serde_json::json!({"path": path, "body_length": len}),
        ))
    }
}

pub async fn recorder() -> Recorder {
    let listener = scopegate::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(scopegate::server::serve(
        listener,
        Arc::new(Recording(seen.clone())),
        Default::default(),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    Recorder {
        addr,
        seen,
        _stop: tx,
    }
}

/// Read from `s` until the peer closes it (EOF or reset) or `bound`
/// passes; returns what was read and whether it was closed.
pub async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    bound: std::time::Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (all, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}
