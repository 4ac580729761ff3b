//! Accounts, scopes and roles: the `account|scope|role` commands of the
//! real binary, the store's rules, and the bootstrap administrator.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use scopegate::accounts::bootstrap::bootstrap;
use scopegate::accounts::store::{self, NewAccount, StoreError};
use scopegate::accounts::Password;
use scopegate::testing::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use std::time::{Duration, Instant};

use crate::oauth::{login, new_account, CONFIG};
use crate::support::{http, send, spawn_app, TestApp, MARGIN};

/// An empty config file: defaults, the database from the environment.
fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("scopegate.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    path
}

struct Cli {
    url: String,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new(app: &TestApp) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        Cli {
            url: app.db.url.expose().to_owned(),
            config: config_file(dir.path()),
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::from(crate::support::scopegate());
        c.env("SCOPEGATE_DATABASE_URL", &self.url)
            .env("SCOPEGATE_LOG", "warn")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Run with `stdin` fed to the process.
    async fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[tokio::test]
async fn account_create_reads_the_password_from_stdin() {
    let app = spawn_app(CONFIG).await;
    let cli = Cli::new(&app);
    assert_exit(
        &cli.run(&["scope", "create", "Read orders", "orders:read"], "")
            .await,
        0,
    );
    assert_exit(
        &cli.run(&["role", "create", "clerk", "--scope", "orders:read"], "")
            .await,
        0,
    );
    let out = cli
        .run(
            &[
                "account",
                "create",
                "Olivia",
                "--first-name",
                "Olivia",
                "--role",
                "clerk",
            ],
            "correct horse battery\n",
        )
        .await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("created account olivia"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stdout).contains("correct horse")
            && !text(&out.stderr).contains("correct horse")
    );

    let r = login(&app, "olivia", "correct horse battery").await;
    assert_eq!(r.json()["scope"], "orders:read", "the role's scope");

    // Duplicates (in any case) and unknown names: one line, exit 2.
    let out = cli.run(&["account", "create", "OLIVIA"], "pw\n").await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stderr).trim().lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let out = cli
        .run(&["account", "create", "pete", "--role", "nope"], "pw\n")
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("no role named \"nope\""),
        "{}",
        text(&out.stderr)
    );
    let out = cli
        .run(
            &["account", "create", "pete", "--scope", "nope:read"],
            "pw\n",
        )
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("nope:read"),
        "{}",
        text(&out.stderr)
    );
    assert!(store::find_account(&app.state.db, "pete")
        .await
        .unwrap()
        .is_none());
    // No password on stdin, or a bad username.
    assert_exit(&cli.run(&["account", "create", "quinn"], "").await, 2);
    assert_exit(&cli.run(&["account", "create", "a b"], "pw\n").await, 2);
    assert_exit(
        &cli.run(&["scope", "create", "dup", "orders:read"], "")
            .await,
        2,
    );
    assert_exit(
        &cli.run(&["scope", "create", "bad", "has space"], "").await,
        2,
    );
    // A scope's name is unique too.
    let out = cli
        .run(&["scope", "create", "Read orders", "orders:other"], "")
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("a scope named"),
        "{}",
        text(&out.stderr)
    );
    assert_exit(&cli.run(&["role", "create", "clerk"], "").await, 2);
}

/// `scopegate account disable` is another process: the gateway's cache is
/// not told, so a token it already trusts is rejected once the trust
/// window (`max_staleness_secs`) has passed (`docs/operations.md`, "Token
/// cache consistency") — not before a re-check, never later than that.
#[tokio::test]
async fn the_cli_disabling_an_account_rejects_its_cached_token_within_max_staleness() {
    let staleness = Duration::from_secs(1);
    let app = spawn_app(&format!(
        "[cache]\nmax_staleness_secs = {}\n{CONFIG}",
        staleness.as_secs()
    ))
    .await;
    let cli = Cli::new(&app);
    new_account(&app, "dora", "pw", &["orders:read"], &[]).await;
    let (access, _) = login(&app, "dora", "pw").await.pair();
    let orders = |token: String| {
        let url = app.url("/api/orders");
        async move { send(http().get(url).bearer_auth(token)).await }
    };
    // Validated, and now in the cache.
    assert_eq!(orders(access.clone()).await.status, 200);
    let hits = app.state.tokens.counts().hits;
    assert_eq!(orders(access.clone()).await.status, 200);
    assert_eq!(app.state.tokens.counts().hits, hits + 1, "not cached");

    assert_exit(&cli.run(&["account", "disable", "dora"], "").await, 0);
    let disabled = Instant::now();
    loop {
        let r = orders(access.clone()).await;
        if r.status == 401 {
            assert_eq!(r.json()["error"], "invalid_token");
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"scopegate\", error=\"invalid_token\"")
            );
            break;
        }
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            disabled.elapsed() < staleness + MARGIN,
            "the disabled account's token still passes after {:?}",
            disabled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn account_administration_commands() {
    let app = spawn_app(CONFIG).await;
    let cli = Cli::new(&app);
    assert_exit(
        &cli.run(
            &[
                "scope",
                "create",
                "w",
                "orders:write",
                "--description",
                "Write",
            ],
            "",
        )
        .await,
        0,
    );
    new_account(&app, "rob", "first", &["orders:read"], &[]).await;

    let out = cli.run(&["account", "list"], "").await;
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("rob"));
    let out = cli.run(&["account", "show", "ROB"], "").await;
    assert_exit(&out, 0);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["username"], "rob");
    assert_eq!(shown["scopes"], serde_json::json!(["orders:read"]));
    assert_exit(&cli.run(&["account", "show", "nobody"], "").await, 2);

    assert_exit(
        &cli.run(&["account", "grant", "rob", "--scope", "orders:write"], "")
            .await,
        0,
    );
    assert_eq!(
        login(&app, "rob", "first").await.json()["scope"],
        "orders:read orders:write"
    );
    assert_exit(
        &cli.run(&["account", "grant", "rob", "--role", "nope"], "")
            .await,
        2,
    );
    assert_exit(&cli.run(&["account", "grant", "rob"], "").await, 2);

    let (access, _) = login(&app, "rob", "first").await.pair();
    assert_exit(&cli.run(&["account", "disable", "rob"], "").await, 0);
    login(&app, "rob", "first")
        .await
        .assert_error(400, "invalid_grant");
    assert_exit(&cli.run(&["account", "enable", "rob"], "").await, 0);
    login(&app, "rob", "first").await.pair();

    assert_exit(
        &cli.run(&["account", "set-password", "rob"], "second\n")
            .await,
        0,
    );
    login(&app, "rob", "first")
        .await
        .assert_error(400, "invalid_grant");
    let (access2, refresh2) = login(&app, "rob", "second").await.pair();
    assert_eq!(
        crate::oauth::introspect(&app, &access).await["active"],
        false,
        "set-password revokes"
    );

    assert_exit(&cli.run(&["account", "revoke-tokens", "rob"], "").await, 0);
    assert_eq!(
        crate::oauth::introspect(&app, &access2).await["active"],
        false
    );
    crate::oauth::refresh(&app, &refresh2)
        .await
        .assert_error(400, "invalid_grant");

    let out = cli.run(&["scope", "list"], "").await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("scopegate:introspect")
            && text(&out.stdout).contains("orders:write")
    );
    assert_exit(&cli.run(&["scope", "delete", "orders:write"], "").await, 0);
    assert_exit(&cli.run(&["scope", "delete", "orders:write"], "").await, 2);
    assert_exit(
        &cli.run(&["role", "create", "r1", "--scope", "orders:read"], "")
            .await,
        0,
    );
    let out = cli.run(&["role", "list"], "").await;
    assert!(text(&out.stdout).contains("r1"));
    assert_exit(&cli.run(&["role", "delete", "r1"], "").await, 0);
    assert_exit(&cli.run(&["role", "delete", "r1"], "").await, 2);
}

#[tokio::test]
async fn usernames_are_unique_after_normalization() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "Zoë", "pw", &[], &[]).await;
    let create = |username: &str| {
        store::create_account(
            &app.state.db,
            &app.state.oauth.hasher,
            NewAccount {
                username: username.into(),
                password: Password::new("pw"),
                first_name: None,
                last_name: None,
                scopes: vec![],
                roles: vec![],
            },
        )
    };
    let dup = create("ＺＯË").await;
    assert!(
        matches!(dup, Err(StoreError::DuplicateAccount(ref u)) if u == "zoë"),
        "{dup:?}"
    );
    let bad = create("zoe\u{200b}").await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    login(&app, "ZOË", "pw").await.pair();
}

/// Scope values become ids in the order they were given (what accounts,
/// roles and clients are granted); the first unknown value is the error.
#[tokio::test]
async fn scope_values_resolve_to_ids_in_order() {
    use scopegate::accounts::scopes::{resolve_scopes, ResolveError};
    let db = TestDb::new().await;
    let pool = db.pool();
    let b = store::create_scope(&pool, "b", "res:b", None)
        .await
        .unwrap();
    let a = store::create_scope(&pool, "a", "res:a", None)
        .await
        .unwrap();
    let conn = pool.get().await.unwrap();
    let values = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ids = resolve_scopes(&conn, &values(&["res:a", "res:b", "res:a"]))
        .await
        .unwrap();
    assert_eq!(ids, [a.id, b.id, a.id]);
    assert!(resolve_scopes(&conn, &[]).await.unwrap().is_empty());
    let unknown = resolve_scopes(&conn, &values(&["res:a", "res:c", "res:d"])).await;
    assert!(
        matches!(unknown, Err(ResolveError::Unknown(ref v)) if v == "res:c"),
        "{unknown:?}"
    );
}

// ---------------------------------------------------------------------------
// Bootstrap

#[tokio::test]
async fn bootstrap_creates_one_administrator_once() {
    let app = spawn_app(CONFIG).await;
    let hasher = &app.state.oauth.hasher;
    let created = bootstrap(&app.state.db, hasher)
        .await
        .unwrap()
        .expect("no admin yet");
    assert_eq!(created.username, "admin");
    assert_eq!(created.password.len(), 24);
    assert!(format!("{created:?}").contains("[redacted]"));
    let r = login(&app, "admin", created.password.expose()).await;
    assert_eq!(r.json()["scope"], "scopegate:admin scopegate:introspect");
    assert!(
        bootstrap(&app.state.db, hasher).await.unwrap().is_none(),
        "only once"
    );
}

#[tokio::test]
async fn bootstrap_never_replaces_a_disabled_admin_and_counts_roles_too() {
    let app = spawn_app(CONFIG).await;
    let hasher = &app.state.oauth.hasher;
    new_account(&app, "admin", "pw", &["scopegate:admin"], &[]).await;
    store::set_active(&app.state.db, "admin", false)
        .await
        .unwrap();
    assert!(
        bootstrap(&app.state.db, hasher).await.unwrap().is_none(),
        "a disabled admin is an admin: nothing is created"
    );
    assert_eq!(accounts_named_like_admin(&app).await, vec!["admin"]);

    let app = spawn_app(CONFIG).await;
    store::create_role(&app.state.db, "root", None, &["scopegate:admin".into()])
        .await
        .unwrap();
    new_account(&app, "alice", "pw", &[], &["root"]).await;
    store::set_active(&app.state.db, "alice", false)
        .await
        .unwrap();
    assert!(bootstrap(&app.state.db, &app.state.oauth.hasher)
        .await
        .unwrap()
        .is_none());

    // Nobody holds the scope, but the name is taken: the new one is admin2.
    let app = spawn_app(CONFIG).await;
    new_account(&app, "admin", "pw", &[], &[]).await;
    let created = bootstrap(&app.state.db, &app.state.oauth.hasher)
        .await
        .unwrap()
        .expect("no account holds scopegate:admin");
    assert_eq!(created.username, "admin2");
}

async fn accounts_named_like_admin(app: &TestApp) -> Vec<String> {
    let conn = app.db.pool().get().await.unwrap();
    conn.query(
        "SELECT username FROM accounts WHERE username LIKE 'admin%' ORDER BY username",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn serve_logs_how_to_re_enable_a_disabled_admin_and_prints_nothing() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "admin", "pw", &["scopegate:admin"], &[]).await;
    store::set_active(&app.state.db, "admin", false)
        .await
        .unwrap();
    let cli = Cli::new(&app);
    let mut c = cli.command(&["serve"]);
    c.env("SCOPEGATE_LOG", "info");
    let mut child = c.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        log.push_str(&line);
        log.push('\n');
        if line.contains("scopegate listening") {
            break;
        }
    }
    child.kill().await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        log.contains("scopegate account enable admin"),
        "the log says how to re-enable it:\n{log}"
    );
    assert!(
        !text(&out.stdout).contains("password"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(accounts_named_like_admin(&app).await, vec!["admin"]);
}

#[tokio::test]
async fn serve_prints_the_bootstrap_password_once_and_never_logs_it() {
    let app = spawn_app(CONFIG).await;
    let cli = Cli::new(&app);
    let run = |cli: &Cli| {
        let mut c = cli.command(&["serve"]);
        c.env("SCOPEGATE_LOG", "info");
        c.spawn().unwrap()
    };
    // First start: a line with the password on stdout.
    let mut child = run(&cli);
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password = None;
    while let Some(line) = stdout.next_line().await.unwrap() {
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = Some(p.to_owned());
            break;
        }
    }
    let password = password.expect("serve printed the password");
    assert_eq!(password.len(), 24);
    // Wait until it listens (its log says so), then stop it.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        log.push_str(&line);
        log.push('\n');
        if line.contains("scopegate listening") {
            break;
        }
    }
    child.kill().await.unwrap();
    assert!(
        !log.contains(&password),
        "the password reached the log:\n{log}"
    );
    login(&app, "admin", &password).await.pair();

    // Second start: nothing to create, nothing printed.
    let mut child = run(&cli);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    while let Some(line) = stderr.next_line().await.unwrap() {
        if line.contains("scopegate listening") {
            break;
        }
    }
    child.kill().await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        !text(&out.stdout).contains("password"),
        "{}",
        text(&out.stdout)
    );
}
