//! `scopegate dev` from a fresh folder, as a new user runs it: from a
//! folder the `postgres` user cannot enter (a clone under a 0700 home or
//! temporary folder, as root in a container), with a cluster that no other
//! OS user can connect to.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{raw, raw_get};

/// The `dev` process, stopped (SIGKILL) if the test fails before it does.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(r: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// The browser flow of the printed authorize URL (`path`): the login page,
/// signing in as admin, the code exchange with RFC 7636's verifier (the
/// walk-through's). Returns the access token, after checking its scope.
async fn demo_token(gateway: std::net::SocketAddr, path: &str, password: &str) -> String {
    use crate::clients_authorize::{cookie, hidden_fields, location_params, param, VERIFIER};
    use crate::oauth::{encode, send};
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

    let mut child = Dev(Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .arg("dev")
        .current_dir(dir.path())
        .env_remove("SCOPEGATE_CONFIG")
        .env_remove("SCOPEGATE_DATABASE_URL")
        .env_remove("SCOPEGATE_LISTEN")
        .env("SCOPEGATE_DEV_UPSTREAM", "127.0.0.1:0")
        .env("SCOPEGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let (tx, rx) = mpsc::channel();
    lines_of(child.0.stdout.take().unwrap(), tx.clone());
    lines_of(child.0.stderr.take().unwrap(), tx);
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
    let data_dir = if scopegate::db::embedded::running_as_root() {
        let recorded = std::fs::read_to_string(&record).expect("root records the cluster's folder");
        let recorded = std::path::PathBuf::from(recorded.trim());
        assert!(!recorded.starts_with(dir.path()), "{}", recorded.display());
        recorded
    } else {
        dir.path().join(".scopegate/postgres")
    };
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
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");

    // `dev --reset` deletes the cluster.
    let out = Command::new(env!("CARGO_BIN_EXE_scopegate"))
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
