//! What was revoked lately, so a cached answer can tell whether it is
//! still true (`docs/operations.md`, "Token cache consistency").
//!
//! Every change that can make a cached access token invalid or stale —
//! on this replica (its own `/oauth/revoke`, admin changes) or on another
//! (pushed by Postgres `NOTIFY`, [`super::listener`]) — is recorded here
//! as a [`Target`] under a new **epoch** number. A cache entry remembers
//! the epoch read *before* the database query that produced it. On use:
//!
//! - entry epoch == current epoch: nothing was revoked since the query
//!   read the database; the entry stands (the hot path: one atomic load);
//! - otherwise the entries logged after the entry's epoch are scanned: if
//!   none concerns this token (its hash, its account, or "everything"),
//!   the entry is brought up to the current epoch and stands; if one does,
//!   or the log no longer reaches back that far, the entry is re-checked
//!   against the database.
//!
//! This is what makes a revocation racing a cache fill safe: a fill whose
//! query started before the revocation carries an older epoch, so its
//! entry is re-checked on its first use after the revocation, however the
//! fill and the cache's own invalidation interleave.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::TokenHash;

/// How many revocations are remembered. An entry older than all of them is
/// re-checked on its next use (correct, just one extra query).
const LOG_LEN: usize = 4096;

/// What a revocation concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One access token (by hash).
    Token(TokenHash),
    /// Every token of an account (deactivated, deleted, password changed,
    /// scopes taken away).
    Account(i32),
    /// Every cached answer: the push channel was lost or re-established,
    /// so what happened meanwhile is unknown.
    All,
}

impl Target {
    fn concerns(&self, key: &TokenHash, account_id: i32) -> bool {
        match self {
            Target::Token(h) => h == key,
            Target::Account(a) => *a == account_id,
            Target::All => true,
        }
    }
}

/// The epoch counter and the log of recent revocations.
#[derive(Debug, Default)]
pub struct Revocations {
    epoch: AtomicU64,
    log: Mutex<VecDeque<(u64, Target)>>,
}

/// Does a cached answer still stand?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing revoked since concerns it; it is good as of this epoch.
    Stands(u64),
    /// Only "everything" since concerns it (the listener was lost or
    /// regained): re-check; while the database is unreachable it may still
    /// pass under the outage grace.
    Recheck,
    /// A revocation of its token or account since, or one that cannot be
    /// ruled out (the log no longer reaches back): re-check, and never let
    /// it pass on the grace window.
    Revoked,
}

impl Revocations {
    /// The current epoch. Read it *before* querying the database for an
    /// entry; store it with the entry.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Record a revocation; returns its epoch. Call it after the change
    /// committed and before dropping affected cache entries.
    pub fn record(&self, target: Target) -> u64 {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // Bumped under the lock so the log is ordered by epoch.
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        if log.len() == LOG_LEN {
            log.pop_front();
        }
        log.push_back((epoch, target));
        epoch
    }

    /// Does an entry for `key` (of `account_id`), good as of `since`, still
    /// stand? When nothing was revoked since (the usual case) this is one
    /// atomic load; otherwise the log is scanned under its lock.
    pub fn check(&self, since: u64, key: &TokenHash, account_id: i32) -> Verdict {
        if since == self.epoch() {
            return Verdict::Stands(since);
        }
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.epoch.load(Ordering::SeqCst);
        match log.front() {
            // The log must reach back to the first epoch after `since`.
            Some(&(oldest, _)) if oldest <= since + 1 => {}
            _ => return Verdict::Revoked,
        }
        let mut verdict = Verdict::Stands(now);
        for (_, target) in log.iter().rev().take_while(|(e, _)| *e > since) {
            if target.concerns(key, account_id) {
                if *target != Target::All {
                    return Verdict::Revoked;
                }
                verdict = Verdict::Recheck;
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TokenHash = [1; 32];
    const B: TokenHash = [2; 32];

    #[test]
    fn unrelated_revocations_leave_an_entry_standing() {
        let r = Revocations::default();
        let since = r.epoch();
        r.record(Target::Token(B));
        r.record(Target::Account(9));
        assert_eq!(r.check(since, &A, 7), Verdict::Stands(2));
    }

    #[test]
    fn its_token_its_account_or_everything_means_recheck() {
        for (t, verdict) in [
            (Target::Token(A), Verdict::Revoked),
            (Target::Account(7), Verdict::Revoked),
            (Target::All, Verdict::Recheck),
        ] {
            let r = Revocations::default();
            let since = r.epoch();
            r.record(Target::Token(B));
            r.record(t);
            assert_eq!(r.check(since, &A, 7), verdict, "{t:?}");
            // Revocations before the entry's epoch do not count.
            assert_eq!(r.check(r.epoch(), &A, 7), Verdict::Stands(2));
        }
    }

    #[test]
    fn an_entry_older_than_the_log_is_rechecked() {
        let r = Revocations::default();
        let since = r.epoch();
        for _ in 0..=LOG_LEN {
            r.record(Target::Token(B));
        }
        assert_eq!(r.check(since, &A, 7), Verdict::Revoked);
        let recent = r.epoch() - 10;
        assert_eq!(r.check(recent, &A, 7), Verdict::Stands(LOG_LEN as u64 + 1));
    }
}
