//! The binary's command line: exit codes and messages.

use crate::support::scopegate;

#[test]
fn check_config_accepts_the_shipped_example() {
    let out = scopegate().args(["check-config"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = scopegate()
        .args(["--config", "config/dev.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_config_prints_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "nowhere"

[[routes]]
name = "a"
path = "/a"
upstream = "ftp://x"
methods = ["FETCH"]

[[routes]]
name = "a"
path = "/b"
upstream = "http://127.0.0.1:1"
public = true
scopes = ["x"]
"#,
    )
    .unwrap();
    let out = scopegate()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    for needle in [
        format!("{file}: server.listen:"),
        format!("{file}: routes[0] \"a\".upstream:"),
        format!("{file}: routes[0] \"a\".methods: unknown method \"FETCH\""),
        format!("{file}: routes[1] \"a\".public:"),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let out = scopegate()
        .args(["--config", "/nonexistent/x.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml: cannot read the file")
    );
}

#[test]
fn route_explain_names_route_upstream_and_scopes() {
    let out = scopegate()
        .args([
            "route",
            "explain",
            "GET",
            "/api/orders/../orders/7",
            "--host",
            "API.example.com:8080",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("route: orders"), "{text}");
    assert!(
        text.contains("upstream: http://127.0.0.1:9000/api/orders/7"),
        "{text}"
    );
    assert!(text.contains("all of: orders:read"), "{text}");

    let out = scopegate()
        .args(["route", "explain", "GET", "/nothing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = scopegate()
        .args([
            "route",
            "explain",
            "DELETE",
            "/api/orders",
            "--host",
            "api.example.com",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("405"));
}

#[test]
fn migrate_without_a_database_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "").unwrap();
    let out = scopegate()
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database configured"));
}

#[tokio::test]
async fn migrate_twice_applies_nothing_the_second_time() {
    let db = scopegate::testing::TestDb::new().await;
    // Start from an empty schema.
    db.pool()
        .get()
        .await
        .unwrap()
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "").unwrap();
    let run = || {
        scopegate()
            .arg("--config")
            .arg(&path)
            .arg("migrate")
            .env("SCOPEGATE_DATABASE_URL", db.url.expose())
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let all = crate::support::shipped_migrations();
    let expected = format!("applied {} migration(s): {}", all.len(), all.join(", "));
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(&expected),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    let second = run();
    assert_eq!(second.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing applied"));
}

#[test]
fn migrate_against_an_unreachable_server_names_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "").unwrap();
    let (_held, port) = crate::support::refusing_port();
    let out = scopegate()
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .env(
            "SCOPEGATE_DATABASE_URL",
            format!("postgres://someone:hunter2@127.0.0.1:{port}/db?connect_timeout=1"),
        )
        .env("SCOPEGATE_CONNECT_PATIENCE_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("postgres://someone@127.0.0.1:{port}/db")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
}

/// `echo --fixed` (the load harness's upstream) answers 200 `ok` to
/// anything, without describing the request.
#[tokio::test]
async fn echo_fixed_answers_ok_to_anything() {
    use std::io::BufRead;
    /// Stopped even when an assertion fails.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        scopegate()
            .args(["echo", "--fixed", "--listen", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The first line names the address it bound.
    let mut line = String::new();
    std::io::BufReader::new(child.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("fixed-response upstream listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let client = reqwest::Client::new();
    for req in [
        client.get(format!("{addr}/anything?x=1")),
        client
            .post(format!("{addr}/other"))
            .header("x-echo-bytes", "100")
            .body("a body"),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("content-type").is_none());
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"ok");
    }
}
