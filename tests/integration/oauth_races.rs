//! Races between the issuer's writers, each tried many times per run over
//! real HTTP and a real Postgres: logins and refreshes against password
//! changes and revocations. Every trial ends by asking the database what is
//! still live; nothing here waits on a clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use tokio::sync::watch;

use crate::oauth::{encode, hash_hex, login_from, new_account, post_form_from, CONFIG, FORM};
use crate::support::{http_from, send, spawn_app, Resp, TestApp};

/// A client address of its own for trial `n` of test `test`, so the
/// failed logins a race produces never add up against one address.
fn addr(test: u8, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        test,
        u8::try_from(n / 250).unwrap(),
        u8::try_from(n % 250 + 1).unwrap(),
    ))
}

async fn refresh(client: &reqwest::Client, app: &TestApp, token: &str) -> Resp {
    post_form_from(
        client,
        app,
        "/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

async fn change_password(
    client: &reqwest::Client,
    app: &TestApp,
    access: &str,
    current: &str,
    new: &str,
) -> Resp {
    send(
        client
            .post(app.url("/oauth/password"))
            .bearer_auth(access)
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[
                ("current_password", current),
                ("new_password", new),
            ])),
    )
    .await
}

/// A new pair for the account, issued as a login would (without the
/// password check: setup for races that are not about logins).
async fn issue_pair(app: &TestApp, account_id: i32) -> (String, String) {
    let conn = app.state.db.get().await.unwrap();
    let (pair, _) = scopegate::tokens::issue::issue(
        &conn,
        account_id,
        &scopegate::tokens::issue::Grant::default(),
        &app.state.config.tokens,
        None,
        None,
    )
    .await
    .unwrap();
    (pair.access_token, pair.refresh_token)
}

/// Live (usable now) access and refresh tokens of an account.
async fn live_of_account(app: &TestApp, account_id: i32) -> (i64, i64) {
    let conn = app.db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT
               (SELECT count(*) FROM access_tokens t JOIN account_tokens x ON x.token_id = t.token_id
                 WHERE x.account_id = $1 AND t.active AND t.expires > $2),
               (SELECT count(*) FROM refresh_tokens r
                  JOIN account_refresh_tokens x ON x.refresh_token_id = r.refresh_token_id
                 WHERE x.account_id = $1 AND r.active AND r.rotated_at IS NULL AND r.expires > $2)",
            &[&account_id, &scopegate::db::unix_now()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Live access and refresh tokens of the family whose first refresh token
/// is `root`.
async fn live_of_family(app: &TestApp, root: &str) -> (i64, i64) {
    let conn = app.db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "WITH fam AS (
                SELECT m.* FROM refresh_tokens m, refresh_tokens root
                 WHERE root.refresh_token = $1
                   AND (m.family_id = root.refresh_token_id OR m.refresh_token_id = root.refresh_token_id))
             SELECT
               (SELECT count(*) FROM access_tokens t
                  JOIN refresh_token_tokens rtt ON rtt.access_token_id = t.token_id
                 WHERE rtt.refresh_token_id IN (SELECT refresh_token_id FROM fam)
                   AND t.active AND t.expires > $2),
               (SELECT count(*) FROM fam WHERE active AND rotated_at IS NULL AND expires > $2)",
            &[&hash_hex(root), &scopegate::db::unix_now()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

// ---------------------------------------------------------------------------
// A login racing a password change

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_password_change_never_outlives_it() {
    const TRIALS: usize = 20;
    let app = Arc::new(spawn_app(CONFIG).await);
    let id = new_account(&app, "rosa", "pw-0", &["orders:read"], &[]).await;
    for trial in 0..TRIALS {
        let client = http_from(addr(2, trial));
        let old = format!("pw-{trial}");
        let new = format!("pw-{}", trial + 1);
        let (access, _) = login_from(&client, &app, "rosa", &old).await.pair();
        // Two streams of logins with the old password, until the change
        // has answered: some are verifying while it commits.
        let changed = Arc::new(AtomicBool::new(false));
        let (started, mut started_rx) = watch::channel(0u32);
        let started = Arc::new(started);
        let mut streams = Vec::new();
        for _ in 0..2 {
            let (app, client, old) = (app.clone(), client.clone(), old.clone());
            let (changed, started) = (changed.clone(), started.clone());
            streams.push(tokio::spawn(async move {
                while !changed.load(Ordering::SeqCst) {
                    started.send_modify(|n| *n += 1);
                    let r = login_from(&client, &app, "rosa", &old).await;
                    match r.status {
                        200 => {}
                        400 => r.assert_error(400, "invalid_grant"),
                        other => panic!("{other}: {}", String::from_utf8_lossy(&r.body)),
                    }
                }
            }));
        }
        started_rx.wait_for(|n| *n >= 2).await.unwrap();
        let r = change_password(&client, &app, &access, &old, &new).await;
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        changed.store(true, Ordering::SeqCst);
        for s in streams {
            s.await.unwrap();
        }
        assert_eq!(
            live_of_account(&app, id).await,
            (0, 0),
            "trial {trial}: a login that raced the change kept a live pair"
        );
    }
}

// ---------------------------------------------------------------------------
// Two password changes with one token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_password_changes_with_one_token_exactly_one_wins() {
    const TRIALS: usize = 15;
    let app = Arc::new(spawn_app(CONFIG).await);
    new_account(&app, "pia", "pw-0", &[], &[]).await;
    let mut current = "pw-0".to_owned();
    for trial in 0..TRIALS {
        let client = http_from(addr(3, trial));
        let (access, _) = login_from(&client, &app, "pia", &current).await.pair();
        let candidates = [format!("a-{trial}"), format!("b-{trial}")];
        let changes: Vec<_> = candidates
            .iter()
            .map(|new| {
                let (app, client, access, current, new) = (
                    app.clone(),
                    client.clone(),
                    access.clone(),
                    current.clone(),
                    new.clone(),
                );
                tokio::spawn(async move {
                    change_password(&client, &app, &access, &current, &new).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for c in changes {
            answers.push(c.await.unwrap());
        }
        let won: Vec<usize> = (0..2).filter(|&i| answers[i].status == 204).collect();
        assert_eq!(
            won.len(),
            1,
            "trial {trial}: exactly one change succeeds, got {} and {}",
            answers[0].status,
            answers[1].status
        );
        let (winner, loser) = (won[0], 1 - won[0]);
        match answers[loser].status {
            400 => answers[loser].assert_error(400, "invalid_grant"),
            401 => {}
            other => panic!("trial {trial}: the losing change answered {other}"),
        }
        // Only the winner's password works now.
        login_from(&client, &app, "pia", &candidates[winner])
            .await
            .pair();
        login_from(&client, &app, "pia", &candidates[loser])
            .await
            .assert_error(400, "invalid_grant");
        login_from(&client, &app, "pia", &current)
            .await
            .assert_error(400, "invalid_grant");
        current = candidates[winner].clone();
    }
}

// ---------------------------------------------------------------------------
// Revocation racing refreshes

/// A family refreshed in a loop by [`refresh_loop`].
struct Looping {
    task: tokio::task::JoinHandle<()>,
    /// Refreshes answered so far.
    progress: watch::Receiver<u32>,
}

impl Looping {
    /// Until the loop has rotated at least `n` times.
    async fn rotated(&mut self, n: u32) {
        self.progress.wait_for(|done| *done >= n).await.unwrap();
    }
}

/// Refresh `token` in a loop, each time with the newest refresh token,
/// until a refresh is refused (the revocation reached this family), or
/// until three more succeed after `revoked` is set (it never will: a pair
/// that survived).
fn refresh_loop(
    app: Arc<TestApp>,
    client: reqwest::Client,
    mut token: String,
    revoked: Arc<AtomicBool>,
) -> Looping {
    let (progress, rx) = watch::channel(0u32);
    let task = tokio::spawn(async move {
        let mut after = 0;
        loop {
            let seen_revoked = revoked.load(Ordering::SeqCst);
            let r = refresh(&client, &app, &token).await;
            progress.send_modify(|n| *n += 1);
            match r.status {
                200 => token = r.pair().1,
                400 => {
                    r.assert_error(400, "invalid_grant");
                    return;
                }
                other => panic!("{other}: {}", String::from_utf8_lossy(&r.body)),
            }
            if seen_revoked {
                after += 1;
                if after == 3 {
                    return;
                }
            }
        }
    });
    Looping { task, progress: rx }
}

/// How an account-wide revocation is triggered in [`revocation_trials`].
#[derive(Clone, Copy)]
enum Revoker {
    /// `scopegate account revoke-tokens` (the store function it calls).
    RevokeTokens,
    /// `POST /oauth/password`.
    PasswordChange,
}

/// `trials` times: three families of one account refreshing in loops
/// while the account's tokens are revoked; afterwards nothing of the
/// account may be live.
async fn revocation_trials(test: u8, revoker: Revoker, trials: usize) {
    let app = Arc::new(spawn_app(CONFIG).await);
    let id = new_account(&app, "quentin", "pw-0", &[], &[]).await;
    let mut password = "pw-0".to_owned();
    for trial in 0..trials {
        let client = http_from(addr(test, trial));
        // Three families to refresh, and an access token for the change.
        let mut pairs = Vec::new();
        for _ in 0..4 {
            pairs.push(issue_pair(&app, id).await);
        }
        let (access, _) = pairs.pop().unwrap();
        let revoked = Arc::new(AtomicBool::new(false));
        let mut loops: Vec<Looping> = pairs
            .into_iter()
            .map(|(_, refresh_token)| {
                refresh_loop(app.clone(), client.clone(), refresh_token, revoked.clone())
            })
            .collect();
        // Revoke while the loops are under way.
        for l in &mut loops {
            l.rotated(2).await;
        }
        match revoker {
            Revoker::RevokeTokens => {
                scopegate::accounts::store::revoke_tokens(&app.state.db, id)
                    .await
                    .unwrap();
            }
            Revoker::PasswordChange => {
                let next = format!("pw-{}", trial + 1);
                let r = change_password(&client, &app, &access, &password, &next).await;
                assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
                password = next;
            }
        }
        revoked.store(true, Ordering::SeqCst);
        for l in loops {
            l.task.await.unwrap();
        }
        assert_eq!(
            live_of_account(&app, id).await,
            (0, 0),
            "trial {trial}: a pair a concurrent refresh inserted survived the revocation"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_tokens_never_misses_a_pair_a_concurrent_refresh_inserts() {
    revocation_trials(4, Revoker::RevokeTokens, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_never_misses_a_pair_a_concurrent_refresh_inserts() {
    // Fewer trials: each change hashes twice while the loops compete for
    // the cores; the lock it takes is revoke-tokens' own.
    revocation_trials(5, Revoker::PasswordChange, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_revocation_never_misses_a_pair_a_concurrent_refresh_inserts() {
    // Four families at a time, each refreshed in a loop while its first
    // refresh token is replayed: 120 races per run.
    const TRIALS: usize = 30;
    const FAMILIES: usize = 4;
    let app = Arc::new(spawn_app(CONFIG).await);
    let id = new_account(&app, "rhea", "pw", &[], &[]).await;
    for trial in 0..TRIALS {
        let client = http_from(addr(6, trial));
        let mut roots = Vec::new();
        for _ in 0..FAMILIES {
            roots.push(issue_pair(&app, id).await.1);
        }
        let revoked = Arc::new(AtomicBool::new(false));
        let mut loops: Vec<Looping> = roots
            .iter()
            .map(|root| refresh_loop(app.clone(), client.clone(), root.clone(), revoked.clone()))
            .collect();
        // Every root has been rotated: presenting it again is reuse.
        for l in &mut loops {
            l.rotated(2).await;
        }
        let replays: Vec<_> = roots
            .iter()
            .map(|root| {
                let (app, client, root) = (app.clone(), client.clone(), root.clone());
                tokio::spawn(async move { refresh(&client, &app, &root).await })
            })
            .collect();
        for r in replays {
            r.await.unwrap().assert_error(400, "invalid_grant");
        }
        revoked.store(true, Ordering::SeqCst);
        for l in loops {
            l.task.await.unwrap();
        }
        for (i, root) in roots.iter().enumerate() {
            assert_eq!(
                live_of_family(&app, root).await,
                (0, 0),
                "trial {trial}, family {i}: a pair a concurrent refresh inserted survived the family's revocation"
            );
        }
    }
}
