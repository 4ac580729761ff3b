//! `scopegate dev` from a fresh folder, as a new user runs it: from a
//! folder the `postgres` user cannot enter (a clone under a 0700 home or
//! temporary folder, as root in a container), with a cluster that no other
//! OS user can connect to.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scopegate::db::embedded::{Binaries, Cluster};

use crate::support::{raw, raw_get, scopegate};

/// How long `dev` may take to stop its gateway and its Postgres after a
/// signal.
const DEV_STOP: Duration = Duration::from_secs(30);

/// Where `dev` run in `project` keeps its cluster: in the folder for an
/// ordinary user; outside it (recorded in `.scopegate/cluster`) for root.
fn cluster_dir(project: &Path) -> Option<PathBuf> {
    if scopegate::db::embedded::running_as_root() {
        let recorded = std::fs::read_to_string(project.join(".scopegate/cluster")).ok()?;
        Some(PathBuf::from(recorded.trim()))
    } else {
        Some(project.join(".scopegate/postgres"))
    }
}

/// The `dev` process run in `project`. Dropped, pass or fail: SIGTERM
/// (`dev` then stops its Postgres itself), SIGKILL if it has not exited
/// within [`DEV_STOP`]; then its cluster, which runs in a process group of
/// its own and so outlives a killed `dev`, is stopped and deleted.
struct Dev {
    child: std::process::Child,
    project: PathBuf,
    /// The cluster's folder once known (`dev --reset` deletes the record
    /// that says where it is).
    data: Option<PathBuf>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < DEV_STOP {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let Some(data) = self.data.clone().or_else(|| cluster_dir(&self.project)) else {
            return;
        };
        if data.join("PG_VERSION").is_file() {
            if data.join("postmaster.pid").exists() {
                eprintln!(
                    "dev left Postgres running on {}: stopping it",
                    data.display()
                );
            }
            let destroyed = Binaries::locate()
                .map_err(|e| e.to_string())
                .and_then(|b| Cluster::open_or_init(b, &data).map_err(|e| e.to_string()))
                .and_then(|(c, _)| c.destroy().map_err(|e| e.to_string()));
            if let Err(e) = destroyed {
                eprintln!(
                    "could not stop and delete the dev cluster in {}: {e}",
                    data.display()
                );
            }
        }
        // Root's cluster lives outside the temporary folder: its (now
        // empty) folder too.
        if let Some(parent) = data.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Send `r`'s lines to `tx`, and go on reading to the end when nobody
/// listens any more: a closed pipe would make `dev`'s next message fail,
/// and `dev` with it, before it has stopped its Postgres.
fn lines_of(r: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
}

/// The browser flow of the printed authorize URL (`path`): the login page,
/// signing in as admin, the code exchange with RFC 7636's verifier (the
/// walk-through's). Returns the access token, after checking its scope.
async fn demo_token(gateway: std::net::SocketAddr, path: &str, password: &str) -> String {
    use crate::clients_authorize::{cookie, hidden_fields, location_params, param, VERIFIER};
    use crate::oauth::encode;
    use crate::support::send;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(path.split_once('?').unwrap().1.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert_eq!(param(&query, "scope"), Some("demo:read"));
    let browser = crate::clients_authorize::browser();
    let page = send(browser.get(format!("http://{gateway}{path}"))).await;
    assert_eq!(page.status, 200);
    let mut form = hidden_fields(&String::from_utf8_lossy(&page.body));
    form.push(("username".into(), "admin".into()));
    form.push(("password".into(), password.into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = send(
        browser
            .post(format!("http://{gateway}/oauth/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie(&page))
            .body(encode(&form)),
    )
    .await;
    assert_eq!(r.status, 302, "{}", String::from_utf8_lossy(&r.body));
    let code = param(&location_params(&r), "code").unwrap().to_owned();
    let r = send(
        browser
            .post(format!("http://{gateway}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", param(&query, "client_id").unwrap()),
                ("redirect_uri", param(&query, "redirect_uri").unwrap()),
                ("code_verifier", VERIFIER),
            ])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["scope"], "demo:read", "only the demo scope");
    r.json()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn dev_runs_from_a_private_folder_and_its_cluster_needs_a_password() {
    // A 0700 folder: the postgres user cannot enter it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let dev_toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0");
    std::fs::write(dir.path().join("config/dev.toml"), dev_toml).unwrap();

    let spawned = scopegate()
        .arg("dev")
        .current_dir(dir.path())
        .env("SCOPEGATE_DEV_UPSTREAM", "127.0.0.1:0")
        .env("SCOPEGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut dev = Dev {
        child: spawned,
        project: dir.path().to_owned(),
        data: None,
    };
    let (tx, rx) = mpsc::channel();
    lines_of(dev.child.stdout.take().unwrap(), tx.clone());
    lines_of(dev.child.stderr.take().unwrap(), tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut password = None;
    let mut gateway = None;
    let mut authorize = None;
    let mut demo_call = false;
    let mut seen = Vec::new();
    while password.is_none() || gateway.is_none() || authorize.is_none() || !demo_call {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("dev did not come up ({e}):\n{}", seen.join("\n")));
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = Some(p.trim().to_owned());
        }
        if let Some(g) = line.trim().strip_prefix("gateway        http://") {
            gateway = Some(g.trim().parse::<std::net::SocketAddr>().unwrap());
        }
        if let Some(url) = line.trim().strip_prefix("authorize: ") {
            authorize = Some(url.trim().to_owned());
        }
        // The walk-through shows what to do with the demo token.
        demo_call |= line.contains("$CODE_TOKEN") && line.contains("/demo/hello");
        seen.push(line);
    }
    let (password, gateway) = (password.unwrap(), gateway.unwrap());

    // The printed admin password logs in through the gateway.
    let form = format!("grant_type=password&username=admin&password={password}");
    let req = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let r = raw(gateway, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The printed authorize URL of the demo client serves the login page.
    let authorize = authorize.unwrap();
    let path = &authorize[authorize.find("/oauth/authorize").unwrap()..];
    let r = raw_get(gateway, path, "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("demo-app"));
    // Signing in as admin there yields a demo token, never an admin one.
    let token = demo_token(gateway, path, &password).await;
    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(
        raw_get(gateway, "/admin-area/hello", &bearer).await.status,
        403
    );
    let demo = raw_get(gateway, "/demo/hello", &bearer).await.status;
    // Authorized (the demo routes' upstream may be elsewhere in this test).
    assert!(demo != 401 && demo != 403, "{demo}");

    // Where is the cluster? In the folder for an ordinary user; outside it
    // (recorded in .scopegate/cluster) for root.
    let record = dir.path().join(".scopegate/cluster");
    let data_dir = cluster_dir(dir.path()).expect("root records the cluster's folder");
    dev.data = Some(data_dir.clone());
    if scopegate::db::embedded::running_as_root() {
        assert!(!data_dir.starts_with(dir.path()), "{}", data_dir.display());
    }
    assert!(data_dir.join("PG_VERSION").is_file());
    let port: u16 = std::fs::read_to_string(data_dir.with_file_name("postgres.port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Nobody connects without the password (no `trust`).
    let no_password = format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=5");
    let refused = tokio_postgres::connect(&no_password, tokio_postgres::NoTls).await;
    let err = refused
        .err()
        .expect("a connection without password is refused");
    // tokio-postgres says "invalid configuration: password missing" when
    // the server asks for a password the client does not have.
    let why = format!("{err:?}");
    assert!(
        why.contains("password"),
        "refused for another reason: {why}"
    );
    // The password file is its creator's alone.
    let pw_file = data_dir.with_file_name("postgres.password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pw_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "{:o}", mode);

    // Ctrl-C stops everything, Postgres included, and exits 0.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(dev.child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < DEV_STOP, "dev still running after Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "Postgres still running on {} after dev exited",
        data_dir.display()
    );

    // `dev --reset` deletes the cluster.
    let out = scopegate()
        .args(["dev", "--reset"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data_dir.exists());
    assert!(!pw_file.exists());
    assert!(!record.exists());
}
