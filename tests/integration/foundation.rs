//! Foundation: migrations, schema, cascades, the embedded cluster.

use scopegate::db::embedded::{Binaries, Cluster};
use scopegate::testing::TestDb;

const SEED_TABLES: [(&str, &[&str]); 13] = [
    ("roles", &["role_id", "role_name", "role_description"]),
    (
        "scopes",
        &["scope_id", "scope_name", "scope_description", "scope_value"],
    ),
    (
        "access_tokens",
        &["token_id", "token", "active", "expires", "created"],
    ),
    (
        "refresh_tokens",
        &["refresh_token_id", "refresh_token", "expires"],
    ),
    (
        "accounts",
        &[
            "account_id",
            "first_name",
            "last_name",
            "username",
            "password",
            "is_active",
        ],
    ),
    ("role_scopes", &["mapping_id", "role_id", "scope_id"]),
    ("token_scopes", &["mapping_id", "token_id", "scope_id"]),
    (
        "refresh_token_scopes",
        &["mapping_id", "token_id", "scope_id"],
    ),
    (
        "refresh_token_tokens",
        &["mapping_id", "refresh_token_id", "access_token_id"],
    ),
    ("account_scopes", &["mapping_id", "account_id", "scope_id"]),
    ("account_roles", &["mapping_id", "account_id", "role_id"]),
    ("account_tokens", &["mapping_id", "account_id", "token_id"]),
    (
        "account_refresh_tokens",
        &["mapping_id", "account_id", "refresh_token_id"],
    ),
];

#[tokio::test]
async fn migrations_create_the_seed_tables_with_their_columns() {
    let db = TestDb::new().await;
    let pool = db.pool();
    let conn = pool.get().await.unwrap();
    for (table, columns) in SEED_TABLES {
        let rows = conn
            .query(
                "SELECT column_name::text FROM information_schema.columns
                  WHERE table_schema = 'public' AND table_name = $1",
                &[&table],
            )
            .await
            .unwrap();
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(!have.is_empty(), "table {table} is missing");
        for c in columns {
            assert!(
                have.iter().any(|h| h == c),
                "{table}.{c} is missing (have {have:?})"
            );
        }
    }
    let seeded: Vec<String> = conn
        .query("SELECT scope_value FROM scopes ORDER BY scope_value", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seeded, vec!["scopegate:admin", "scopegate:introspect"]);
}

#[tokio::test]
async fn every_foreign_key_cascades() {
    let db = TestDb::new().await;
    let conn = db.pool().get().await.unwrap();
    let rows = conn
        .query(
            "SELECT conrelid::regclass::text, confupdtype::text, confdeltype::text, confrelid::regclass::text
               FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap();
    assert!(
        rows.len() >= 16,
        "expected the association tables' foreign keys"
    );
    for r in rows {
        let table: String = r.get(0);
        let upd: String = r.get(1);
        let del: String = r.get(2);
        let target: String = r.get(3);
        assert_eq!(upd, "c", "{table}: ON UPDATE CASCADE");
        // refresh_tokens' own parent/successor links are SET NULL on delete.
        if table == "refresh_tokens" && target == "refresh_tokens" {
            assert_eq!(del, "n", "{table}: ON DELETE SET NULL");
        } else {
            assert_eq!(del, "c", "{table}: ON DELETE CASCADE");
        }
    }
}

#[tokio::test]
async fn deleting_an_account_removes_its_association_rows() {
    let db = TestDb::new().await;
    let conn = db.pool().get().await.unwrap();
    conn.batch_execute(
        "INSERT INTO accounts (account_id, username, password) VALUES (1, 'alice', 'x');
         INSERT INTO roles (role_id, role_name) VALUES (1, 'r');
         INSERT INTO account_roles (account_id, role_id) VALUES (1, 1);
         INSERT INTO account_scopes (account_id, scope_id) SELECT 1, scope_id FROM scopes;
         INSERT INTO access_tokens (token_id, token, expires, created) VALUES (1, repeat('a', 64), 0, 0);
         INSERT INTO account_tokens (account_id, token_id) VALUES (1, 1);
         INSERT INTO refresh_tokens (refresh_token_id, refresh_token, expires) VALUES (1, repeat('b', 64), 0);
         INSERT INTO account_refresh_tokens (account_id, refresh_token_id) VALUES (1, 1);",
    )
    .await
    .unwrap();
    let count = |table: &'static str| {
        let conn = &conn;
        async move {
            conn.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("account_scopes").await, 2);
    conn.execute("DELETE FROM accounts WHERE account_id = 1", &[])
        .await
        .unwrap();
    for t in [
        "account_roles",
        "account_scopes",
        "account_tokens",
        "account_refresh_tokens",
    ] {
        assert_eq!(count(t).await, 0, "{t} rows survived the account");
    }
    // The role and the scopes themselves stay.
    assert_eq!(count("roles").await, 1);
    assert_eq!(count("scopes").await, 2);
}

#[tokio::test]
async fn migrating_twice_applies_nothing_the_second_time() {
    let db = TestDb::new().await;
    let pool = db.pool();
    // The template was migrated already: a run applies nothing.
    let report = scopegate::db::migrate::run(&pool).await.unwrap();
    assert!(report.applied.is_empty(), "{:?}", report.applied);

    // From an empty database: first run applies everything, second nothing.
    let conn = pool.get().await.unwrap();
    conn.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    drop(conn);
    let first = scopegate::db::migrate::run(&pool).await.unwrap();
    assert_eq!(first.applied, crate::support::shipped_migrations());
    let second = scopegate::db::migrate::run(&pool).await.unwrap();
    assert!(second.applied.is_empty());
}

#[tokio::test]
async fn the_grace_window_sweeper_reads_an_index_not_the_table() {
    let db = TestDb::new().await;
    let conn = db.pool().get().await.unwrap();
    // Many rotated-and-erased rows, a few still sealed.
    conn.batch_execute(
        "INSERT INTO refresh_tokens (refresh_token, expires, rotated_at, successor_sealed)
         SELECT md5(i::text) || md5((-i)::text), 0, i,
                CASE WHEN i % 5000 = 0 THEN '\\x00'::bytea END
           FROM generate_series(1, 20000) AS i;
         ANALYZE refresh_tokens;",
    )
    .await
    .unwrap();
    let plan: Vec<String> = conn
        .query(
            &format!("EXPLAIN {}", scopegate::tokens::rotate::SWEEP_SEALED),
            &[&10_000i64],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(plan.contains("refresh_tokens_sealed_idx"), "{plan}");
}

/// Stops and deletes the cluster in `data` when dropped, also when an
/// assertion fails with the server running.
struct DestroyOnDrop {
    bins: Binaries,
    data: std::path::PathBuf,
}

impl Drop for DestroyOnDrop {
    fn drop(&mut self) {
        if !self.data.join("PG_VERSION").is_file() {
            return;
        }
        if let Ok((cluster, _)) = Cluster::open_or_init(self.bins.clone(), &self.data) {
            if let Err(e) = cluster.destroy() {
                eprintln!(
                    "could not destroy the test cluster in {}: {e}",
                    self.data.display()
                );
            }
        }
    }
}

#[test]
fn embedded_cluster_starts_is_reused_and_stops() {
    let bins = Binaries::locate().expect("Postgres binaries on this machine");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = dir.path().join("pg");
    let _guard = DestroyOnDrop {
        bins: bins.clone(),
        data: data.clone(),
    };

    let (cluster, created) = Cluster::open_or_init(bins.clone(), &data).unwrap();
    assert!(created);
    assert!(data.join("PG_VERSION").is_file());
    assert!(cluster.start(true).unwrap(), "we started it");
    assert!(cluster.is_running());
    let port = cluster.port();
    // Already running: start() says so and leaves it alone.
    assert!(!cluster.start(true).unwrap());
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("server accepts connections");
    cluster.stop(false).unwrap();
    assert!(!cluster.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // Second open: reused, same port, starts again.
    let (again, created) = Cluster::open_or_init(bins, &data).unwrap();
    assert!(!created);
    assert_eq!(again.port(), port);
    assert!(again.start(true).unwrap());
    again.stop(true).unwrap();
    assert!(!again.is_running());
}
