//! The cleanup sweep deletes expired tokens, fully expired refresh
//! families and expired authorization codes, in batches, and nothing that
//! still lives (nor an exchanged code whose tokens live).

use std::time::Duration;

use scopegate::clients::codes::{self, NewCode};
use scopegate::clients::store::NewClient;
use scopegate::db::unix_now;
use scopegate::testing::TestDb;
use scopegate::tokens::sweep::{sweep, Swept};

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.pool()
        .get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// A refresh token of `family` (its own id when `None`) expiring at `expires`.
async fn refresh(db: &TestDb, family: Option<i64>, expires: i64) -> i64 {
    let conn = db.pool().get().await.unwrap();
    let hash = scopegate::tokens::hash_hex(&scopegate::tokens::hash(
        &scopegate::tokens::generate(scopegate::tokens::Kind::Refresh).unwrap(),
    ));
    let id: i64 = conn
        .query_one(
            "INSERT INTO refresh_tokens (refresh_token, expires, family_id) VALUES ($1, $2, $3)
             RETURNING refresh_token_id",
            &[&hash, &expires, &family],
        )
        .await
        .unwrap()
        .get(0);
    if family.is_none() {
        conn.execute(
            "UPDATE refresh_tokens SET family_id = refresh_token_id WHERE refresh_token_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    }
    id
}

#[tokio::test]
async fn expired_rows_go_and_live_ones_stay() {
    let db = TestDb::new().await;
    let now = unix_now();
    // Five expired access tokens, two live ones (with their scope links).
    for i in 0..5 {
        scopegate::testing::insert_token(&db.pool(), "old", &["api"], -10 - i).await;
    }
    let live_a = scopegate::testing::insert_token(&db.pool(), "new", &["api"], 3600).await;
    let live_b = scopegate::testing::insert_token(&db.pool(), "new", &["api"], 60).await;
    // A family that is wholly expired (three rotations), and one whose
    // rotated members expired while its newest member lives.
    let dead = refresh(&db, None, now - 100).await;
    refresh(&db, Some(dead), now - 50).await;
    refresh(&db, Some(dead), now - 1).await;
    let alive = refresh(&db, None, now - 100).await;
    refresh(&db, Some(alive), now + 3600).await;

    assert_eq!(count(&db, "SELECT count(*) FROM access_tokens").await, 7);
    assert_eq!(count(&db, "SELECT count(*) FROM token_scopes").await, 7);
    // Batches of 2: the sweep repeats until everything expired is gone.
    let swept = sweep(&db.pool(), now, 2).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            access_tokens: 5,
            refresh_tokens: 3,
            authorization_codes: 0,
        }
    );
    assert_eq!(count(&db, "SELECT count(*) FROM access_tokens").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM token_scopes").await, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM account_tokens").await, 2);
    let live: Vec<String> = db
        .pool()
        .get()
        .await
        .unwrap()
        .query("SELECT token FROM access_tokens ORDER BY token", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut expected: Vec<String> = [&live_a, &live_b]
        .iter()
        .map(|t| scopegate::tokens::hash_hex(&scopegate::tokens::hash(t)))
        .collect();
    expected.sort();
    assert_eq!(live, expected);
    // The live family keeps every member, the expired ones included.
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM refresh_tokens WHERE family_id = {alive}")
        )
        .await,
        2
    );
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 2);
    // Nothing left to do.
    assert_eq!(sweep(&db.pool(), now, 2).await.unwrap(), Swept::default());
}

/// A new authorization code for `client_pk` and `account_id`, living `ttl`
/// from now; returns its row id.
async fn code(db: &TestDb, client_pk: i32, account_id: i32, scope_id: i32, ttl: u64) -> i64 {
    let code = codes::create(
        &db.pool(),
        NewCode {
            client_pk,
            account_id,
            redirect_uri: "https://app.example.com/cb",
            code_challenge: &codes::challenge_of(&"v".repeat(43)),
            scope_ids: &[scope_id],
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            ttl: Duration::from_secs(ttl),
        },
    )
    .await
    .unwrap();
    db.pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT code_id FROM authorization_codes WHERE code = $1",
            &[&scopegate::clients::secret::hash_hex(code.expose())],
        )
        .await
        .unwrap()
        .get(0)
}

/// Mark `code_id` exchanged for the pair whose refresh token is `refresh_id`.
async fn exchanged(db: &TestDb, code_id: i64, refresh_id: i64) {
    db.pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE authorization_codes SET used_at = $2, refresh_token_id = $3 WHERE code_id = $1",
            &[&code_id, &unix_now(), &refresh_id],
        )
        .await
        .unwrap();
}

async fn codes_left(db: &TestDb) -> Vec<i64> {
    db.pool()
        .get()
        .await
        .unwrap()
        .query(
            "SELECT code_id FROM authorization_codes ORDER BY code_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn expired_codes_go_and_exchanged_ones_stay_while_their_tokens_live() {
    let db = TestDb::new().await;
    let pool = db.pool();
    let client = scopegate::clients::store::create(
        &pool,
        NewClient {
            name: "web".into(),
            scopes: vec!["scopegate:introspect".into()],
            redirect_uris: vec!["https://app.example.com/cb".into()],
            public: true,
        },
    )
    .await
    .unwrap()
    .client;
    scopegate::testing::insert_token(&pool, "carol", &[], 3600).await;
    let conn = pool.get().await.unwrap();
    let account: i32 = conn
        .query_one(
            "SELECT account_id FROM accounts WHERE username = 'carol'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let scope: i32 = conn
        .query_one(
            "SELECT scope_id FROM scopes WHERE scope_value = 'scopegate:introspect'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(conn);

    // Codes live 60 s or 600 s; the sweep runs as if 120 s had passed.
    let now = unix_now();
    let later = now + 120;
    for _ in 0..3 {
        code(&db, client.id, account, scope, 60).await;
    }
    let live = code(&db, client.id, account, scope, 600).await;
    // Exchanged codes, now expired: one whose tokens live on, one whose
    // refresh family expired before the sweep.
    let kept = code(&db, client.id, account, scope, 60).await;
    exchanged(&db, kept, refresh(&db, None, later + 3600).await).await;
    let spent = code(&db, client.id, account, scope, 60).await;
    exchanged(&db, spent, refresh(&db, None, now + 100).await).await;
    assert_eq!(codes_left(&db).await.len(), 6);
    assert_eq!(
        count(&db, "SELECT count(*) FROM authorization_code_scopes").await,
        6
    );

    // Batches of 2: the three expired, never exchanged codes take two.
    // The spent code goes with its refresh token's family, counted there.
    let swept = sweep(&pool, later, 2).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            access_tokens: 0,
            refresh_tokens: 1,
            authorization_codes: 3,
        }
    );
    assert_eq!(codes_left(&db).await, [live, kept]);
    assert_eq!(
        count(&db, "SELECT count(*) FROM authorization_code_scopes").await,
        2
    );
    assert_eq!(sweep(&pool, later, 2).await.unwrap(), Swept::default());

    // Once its tokens' family has expired too, the kept code goes with it;
    // the live code goes once it has expired.
    let much_later = later + 7200;
    let swept = sweep(&pool, much_later, 2).await.unwrap();
    assert_eq!(swept.authorization_codes, 1, "{swept:?}");
    assert_eq!(swept.refresh_tokens, 1, "{swept:?}");
    assert!(codes_left(&db).await.is_empty());
}
