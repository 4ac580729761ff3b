//! The cleanup sweep deletes expired tokens and fully expired refresh
//! families, in batches, and nothing that still lives.

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
            refresh_tokens: 3
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
