//! Checking a username and password for the login page, with the same
//! rules as the password grant (`docs/security.md`, "Brute force and login floods"): the
//! throttle per normalized username and per client address first (429
//! before any database or hashing work), over-long passwords and
//! impossible usernames fail at once, one query for the account, argon2
//! on the shared hashing pool — against a dummy hash for unknown users,
//! inactive accounts and service accounts alike, so every failure costs
//! the same.

use std::net::IpAddr;

use super::{OAuth, OAuthStats};
use crate::accounts::store::{find_login, LoginRecord};
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
    let record = async {
        let conn = oauth.db.get().await.map_err(DbError::from)?;
        find_login(&conn, &username).await
    }
    .await;
    // An early return drops `attempt` undecided: it does not count.
    let record = record.map_err(Rejection::from)?;
    let verified = match &record {
        Some(r) => oauth.hasher.verify(raw_password, &r.password_hash).await,
        None => oauth.hasher.verify_dummy(raw_password).await,
    };
    match (verified, record) {
        (Err(e), _) => Err(Rejection::from(e).into()),
        (Ok(true), Some(r)) if r.is_active => {
            oauth.throttle.succeeded(attempt);
            Ok(r)
        }
        _ => Err(wrong(attempt)),
    }
}
