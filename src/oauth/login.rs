//! Checking a username and password for the login page, with the same
//! rules as the password grant (`docs/security.md`, "Brute force and login floods"): the
//! throttle per normalized username and per client address first (429
//! before any database or hashing work), over-long passwords and
//! impossible usernames fail at once, one query for the account, argon2
//! on the shared hashing pool — against a dummy hash for unknown users,
//! inactive accounts and service accounts alike, so every failure costs
//! the same. A hash made with other argon2 parameters is replaced after a
//! successful login ([`rehash`]), on either path.

use std::net::IpAddr;

use super::{OAuth, OAuthStats};
use crate::accounts::store::{find_login, upgrade_password_hash, LoginRecord};
use crate::accounts::{normalize_username, Password, MAX_PASSWORD_BYTES};
use crate::db::DbError;
use crate::error::Rejection;

/// Why a login did not succeed.
pub enum LoginFailure {
    /// Wrong username or password, or an inactive account: counted against
    /// the throttle.
    Wrong,
    /// Throttled, database unreachable, hashing pool saturated: the
    /// rejection to answer.
    Refused(Rejection),
}

impl From<Rejection> for LoginFailure {
    fn from(r: Rejection) -> Self {
        LoginFailure::Refused(r)
    }
}

/// Verify `raw_username` / `raw_password` from `addr`.
pub async fn check(
    oauth: &OAuth,
    raw_username: &str,
    raw_password: Password,
    addr: IpAddr,
) -> Result<LoginRecord, LoginFailure> {
    let username = normalize_username(raw_username).ok();
    let attempt = oauth.begin_attempt(username.as_deref(), addr).await?;
    let wrong = |attempt| {
        oauth.throttle.failed(attempt);
        OAuthStats::bump(&oauth.stats.login_failures);
        LoginFailure::Wrong
    };
    let Some(username) = username.filter(|_| raw_password.len() <= MAX_PASSWORD_BYTES) else {
        return Err(wrong(attempt));
    };
    // A full hashing queue answers 503 before any database work.
    oauth.hasher.admit().map_err(Rejection::from)?;
    let record = async {
        let conn = oauth.db.get().await.map_err(DbError::from)?;
        find_login(&conn, &username).await
    }
    .await;
    // An early return drops `attempt` undecided: it does not count.
    let record = record.map_err(Rejection::from)?;
    let verified = match &record {
        Some(r) => {
            oauth
                .hasher
                .verify(Password::new(raw_password.expose()), &r.password_hash)
                .await
        }
        None => {
            oauth
                .hasher
                .verify_dummy(Password::new(raw_password.expose()))
                .await
        }
    };
    match (verified, record) {
        (Err(e), _) => Err(Rejection::from(e).into()),
        (Ok(true), Some(r)) if r.is_active => {
            oauth.throttle.succeeded(attempt);
            if !rehash(oauth, &r, raw_password.expose()).await {
                return Ok(r);
            }
            // The hash changed: what a code is bound to is the new one.
            let fresh = async {
                let conn = oauth.db.get().await.map_err(DbError::from)?;
                find_login(&conn, &username).await
            }
            .await
            .map_err(Rejection::from)?;
            match fresh {
                Some(fresh) if fresh.account_id == r.account_id => Ok(fresh),
                _ => Err(wrong_after_success()),
            }
        }
        _ => Err(wrong(attempt)),
    }
}

/// The account vanished between a successful check and reading it again:
/// as if the login had failed (nothing issued).
fn wrong_after_success() -> LoginFailure {
    LoginFailure::Wrong
}

/// A hash made with other argon2 parameters than the current ones is
/// replaced after a successful login (once per account, on the hashing
/// pool). Failing that (the pool is busy, the database is gone) changes
/// nothing for this login; the next one tries again. True when the
/// stored hash was replaced.
pub async fn rehash(oauth: &OAuth, record: &LoginRecord, password: &str) -> bool {
    let upgraded = upgrade_password_hash(
        &oauth.db,
        &oauth.hasher,
        record.account_id,
        &record.password_hash,
        Password::new(password),
    )
    .await;
    match upgraded {
        Ok(true) => {
            tracing::info!(
                account_id = record.account_id,
                "password rehashed with the current parameters"
            );
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(
                account_id = record.account_id,
                error = %e,
                "could not rehash the password with the current parameters"
            );
            false
        }
    }
}
