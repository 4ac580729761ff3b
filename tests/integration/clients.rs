//! The OAuth client registry against the real server and Postgres: the
//! store, the `client` commands of the binary, service accounts; and the
//! helpers the other `clients_*` modules share.

use scopegate::clients::store::{self, ClientError, NewClient};
use scopegate::testing::TestDb;

use crate::oauth::{db_exec, ensure_scope, hash_hex, login, new_account, CONFIG};
use crate::support::{spawn_app, TestApp};

/// A registered client: its id and, when confidential, its secret.
pub struct TestClient {
    pub id: i32,
    pub client_id: String,
    pub secret: Option<String>,
}

/// Register a client through the store (missing scopes are created).
pub async fn new_client(
    app: &TestApp,
    name: &str,
    scopes: &[&str],
    redirect_uris: &[&str],
    public: bool,
) -> TestClient {
    for s in scopes {
        ensure_scope(app, s).await;
    }
    let created = store::create(
        &app.state.db,
        NewClient {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
            public,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    TestClient {
        id: created.client.id,
        client_id: created.client.client_id.clone(),
        secret: created.secret.as_ref().map(|s| s.expose().to_owned()),
    }
}

#[tokio::test]
async fn clients_are_registered_with_generated_ids_and_a_hashed_secret() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(
        &app,
        "billing",
        &["orders:read"],
        &["https://billing.example/cb"],
        false,
    )
    .await;
    assert!(c.client_id.starts_with("sgc_") && c.client_id.len() == 26);
    let secret = c.secret.clone().unwrap();
    assert!(secret.starts_with("sgs_") && secret.len() == 47);
    // Stored as its SHA-256, never in clear.
    let conn = app.db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT secret_hash FROM clients WHERE client_id = $1",
            &[&c.client_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), hash_hex(&secret));
    let dump: String = conn
        .query_one("SELECT string_agg(c::text, ' ') FROM clients c", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!dump.contains(&secret));

    // A public client has no secret; it needs a redirect URI.
    let p = new_client(&app, "spa", &[], &["https://spa.example/cb"], true).await;
    assert!(p.secret.is_none());
    let e = store::create(
        &app.state.db,
        NewClient {
            name: "spa2".into(),
            public: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::InvalidField {
                field: "redirect_uris",
                ..
            }
        ),
        "{e}"
    );

    // Duplicates (whatever the case), unknown scopes, bad URIs and names.
    let dup = store::create(
        &app.state.db,
        NewClient {
            name: "BILLING".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(dup, ClientError::Duplicate(_)), "{dup}");
    let unknown = store::create(
        &app.state.db,
        NewClient {
            name: "x".into(),
            scopes: vec!["nope:read".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(unknown, ClientError::UnknownScope(_)), "{unknown}");
    for uri in [
        "http://evil.example/cb",
        "https://a.example/cb#f",
        "javascript:alert(1)",
    ] {
        let e = store::create(
            &app.state.db,
            NewClient {
                name: "y".into(),
                redirect_uris: vec![uri.into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::InvalidField {
                    field: "redirect_uris",
                    ..
                }
            ),
            "{uri}: {e}"
        );
    }
    let e = store::create(
        &app.state.db,
        NewClient {
            name: "a b".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::InvalidField { field: "name", .. }));

    // Lists, by name or id.
    let all = store::list(&app.state.db, None, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].name, "billing");
    assert_eq!(all[0].scopes, ["orders:read"]);
    assert_eq!(all[0].redirect_uris, ["https://billing.example/cb"]);
    assert!(!all[0].public && all[1].public);
    let by_id = store::find(&app.state.db, &c.client_id)
        .await
        .unwrap()
        .unwrap();
    let by_name = store::find(&app.state.db, "Billing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id, by_name);
    let json = serde_json::to_value(&by_id).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "client_id",
            "id",
            "name",
            "public",
            "redirect_uris",
            "scopes"
        ]
    );
}

#[tokio::test]
async fn service_accounts_exist_and_can_never_log_in() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(&app, "Reports", &["orders:read"], &[], false).await;
    let account = scopegate::accounts::store::find_account(&app.state.db, "client:reports")
        .await
        .unwrap()
        .expect("the service account exists");
    assert!(account.is_active);
    // Not with the secret, not with the column's value, not with anything.
    for pw in [
        c.secret.as_deref().unwrap(),
        scopegate::clients::SERVICE_ACCOUNT_PASSWORD,
        "",
        "x",
    ] {
        let r = login(&app, "client:reports", pw).await;
        assert!(r.status == 400, "{pw}: {}", r.status);
    }
    let before = app.state.oauth.hasher.computed();
    login(&app, "client:reports", "guess")
        .await
        .assert_error(400, "invalid_grant");
    // ... and the refusal costs a real verification (timing says nothing).
    assert_eq!(app.state.oauth.hasher.computed(), before + 1);
    // No password can be set on it.
    let e = scopegate::accounts::store::set_password(
        &app.state.db,
        &app.state.oauth.hasher,
        account.id,
        scopegate::accounts::Password::new("now-i-can-log-in"),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("service account"), "{e}");
    login(&app, "client:reports", "now-i-can-log-in")
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn deleting_a_client_removes_its_service_account_and_rotation_kills_the_old_secret() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(&app, "gone", &["orders:read"], &[], false).await;
    let old = c.secret.clone().unwrap();
    let (_, new) = store::rotate_secret(&app.state.db, c.id).await.unwrap();
    assert_ne!(new.expose(), old);
    let conn = app.db.pool().get().await.unwrap();
    let stored: String = conn
        .query_one(
            "SELECT secret_hash FROM clients WHERE client_pk = $1",
            &[&c.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, hash_hex(new.expose()));

    let p = new_client(&app, "pub", &[], &["https://p.example/cb"], true).await;
    assert!(matches!(
        store::rotate_secret(&app.state.db, p.id).await.unwrap_err(),
        ClientError::Public(_)
    ));

    store::delete(&app.state.db, c.id).await.unwrap();
    assert!(store::get(&app.state.db, c.id).await.unwrap().is_none());
    assert!(
        scopegate::accounts::store::find_account(&app.state.db, "client:gone")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store::delete(&app.state.db, c.id).await.unwrap_err(),
        ClientError::UnknownClient(_)
    ));
    // A human account that happens to hold the name blocks the client.
    new_account(&app, "client:taken", "pw-123456", &[], &[]).await;
    let e = store::create(
        &app.state.db,
        NewClient {
            name: "taken".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::AccountTaken(_)), "{e}");
    assert_eq!(
        db_exec(
            &app,
            "SELECT 1 FROM clients WHERE client_name = 'taken'",
            &[]
        )
        .await,
        0
    );
}

fn scopegate_cli(db: &TestDb) -> std::process::Command {
    let mut c = crate::support::scopegate();
    c.env("SCOPEGATE_DATABASE_URL", db.url.expose())
        .env("SCOPEGATE_LOG", "warn");
    c
}

fn run(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = scopegate_cli(db).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {stdout}"))
}

#[tokio::test]
async fn the_client_commands() {
    let app = spawn_app(CONFIG).await;
    ensure_scope(&app, "orders:read").await;
    let db = &app.db;
    let (code, out, err) = run(
        db,
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "orders:read",
            "--redirect-uri",
            "https://svc.example/cb",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let client_id = field(&out, "client_id:").to_owned();
    let secret = field(&out, "client_secret:").to_owned();
    assert!(client_id.starts_with("sgc_") && secret.starts_with("sgs_"));
    assert!(out.contains("client:svc"));

    let (code, out, _) = run(
        db,
        &[
            "client",
            "create",
            "spa",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:1/cb",
        ],
    );
    assert_eq!(code, 0);
    assert!(!out.contains("client_secret"), "{out}");

    let (code, out, _) = run(db, &["client", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&client_id) && out.contains("public") && out.contains("confidential"));
    assert!(!out.contains(&secret));

    for key in ["svc", client_id.as_str()] {
        let (code, out, _) = run(db, &["client", "show", key]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["client_id"], client_id.as_str());
        assert_eq!(v["scopes"][0], "orders:read");
        assert_eq!(v["service_account"], "client:svc");
        assert!(!out.contains(&secret));
    }

    let (code, out, _) = run(db, &["client", "rotate-secret", "svc"]);
    assert_eq!(code, 0);
    let new_secret = field(&out, "client_secret:");
    assert_ne!(new_secret, secret);

    // Usage errors exit 2 with one line naming the problem.
    for (args, needle) in [
        (vec!["client", "create", "svc"], "already exists"),
        (vec!["client", "create", "x", "--scope", "nope"], "nope"),
        (
            vec![
                "client",
                "create",
                "y",
                "--redirect-uri",
                "http://evil.example/",
            ],
            "loopback",
        ),
        (vec!["client", "show", "nobody"], "no client"),
        (vec!["client", "rotate-secret", "spa"], "public"),
        (vec!["client", "delete", "nobody"], "no client"),
    ] {
        let (code, _, err) = run(db, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let (code, out, _) = run(db, &["client", "delete", &client_id]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted client svc"));
    let (code, _, _) = run(db, &["client", "show", "svc"]);
    assert_eq!(code, 2);
}
