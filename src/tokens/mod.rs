//! Opaque bearer tokens: generation, hashing, the issuer and the
//! validation path (database lookup behind a moka cache).
//!
//! A token is 32 bytes from the OS CSPRNG, base64url without padding, with a
//! readable type prefix (`sga_` access, `sgr_` refresh) so one kind can
//! never be used as the other. Only the SHA-256 of the whole token string
//! (hex in the database, raw bytes as the cache key) is ever stored.
//!
//! By role:
//! - [`issue`]: a new access + refresh pair, in one statement;
//! - [`rotate`]: the refresh grant: rotation, reuse detection and the grace
//!   window (RFC 9700 §4.14.2);
//! - [`revoke`]: revoking one access token, a refresh token's family, or
//!   every token of an account;
//! - [`lookup`]: what the database says about a token (the cache's fill,
//!   introspection);
//! - [`cache`]: access-token validation behind a bounded cache, and
//!   [`bearer`]: the credentials a request presents;
//! - [`revocations`], [`listener`]: what was revoked lately, and the
//!   `LISTEN` connection that hears revocations made anywhere;
//!   [`budget`]: the per-address budget of lookups that find nothing;
//! - [`sweep`]: deleting what has expired.
//!
//! This module knows nothing of accounts beyond their rows: the scopes a
//! token may carry are decided by the caller (`accounts::scopes`)
//! and handed in ([`issue::Grant`]). Imports go one way: accounts → tokens
//! → db.
//!
//! ## Locks
//! Revocation must never miss a pair that a concurrent login or refresh
//! inserts, so the writers serialize on row locks, always taken in this
//! order (so they cannot deadlock):
//! 1. the **account row**: `FOR SHARE` by anything that issues a pair (a
//!    login, a refresh) or revokes one family; `FOR UPDATE` by account-wide
//!    revocation and password changes, which therefore wait for every
//!    in-flight issue and make every later one see their outcome;
//! 2. the **family root** (the first refresh token of a login): `FOR
//!    UPDATE` by a refresh and by family revocation, so one family rotates
//!    or dies one step at a time;
//! 3. the presented refresh token's own row (`FOR UPDATE`, by a refresh).
//!
//! The account lock is taken by the statement that finds the token, the
//! others by statements of their own, and every statement after a lock
//! runs in READ COMMITTED with a fresh snapshot, so it sees everything
//! committed before the lock was granted. The cleanup ([`sweep`]) deletes
//! whole families only, never a root alone: the root is the family's lock.

pub mod bearer;
pub mod budget;
pub mod cache;
pub mod identity;
pub mod issue;
pub mod listener;
pub mod lookup;
pub mod revocations;
pub mod revoke;
pub mod rotate;
pub mod sweep;

use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

pub const ACCESS_PREFIX: &str = "sga_";
pub const REFRESH_PREFIX: &str = "sgr_";

/// SHA-256 of a token: the only form in which tokens are stored or cached.
pub type TokenHash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Access => ACCESS_PREFIX,
            Kind::Refresh => REFRESH_PREFIX,
        }
    }

    /// The kind a presented token claims by its prefix.
    pub fn of(token: &str) -> Option<Kind> {
        if token.starts_with(ACCESS_PREFIX) {
            Some(Kind::Access)
        } else if token.starts_with(REFRESH_PREFIX) {
            Some(Kind::Refresh)
        } else {
            None
        }
    }
}

/// A new random token of `kind`. Fails only if the OS RNG does.
pub fn generate(kind: Kind) -> Result<String, rand::rand_core::OsError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut raw)?;
    let mut s = String::with_capacity(4 + 43);
    s.push_str(kind.prefix());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(raw, &mut s);
    Ok(s)
}

/// Could `token` be one of ours of this kind: the prefix and 43 base64url
/// characters? A cheap filter before any hashing or database lookup.
pub fn is_well_formed(token: &str, kind: Kind) -> bool {
    let prefix = kind.prefix();
    token.len() == prefix.len() + 43
        && token.starts_with(prefix)
        && token.as_bytes()[prefix.len()..]
            .iter()
            .all(|b| BASE64URL[usize::from(*b)])
}

/// The unpadded base64url alphabet (RFC 4648 §5).
const BASE64URL: [bool; 256] = alphanumeric_and(b"-_");

/// A byte table of an alphabet: ASCII letters and digits, and `extra`.
/// Checking a token byte by byte on every request is one load per byte
/// this way, instead of a chain of comparisons.
pub(crate) const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        table[extra[j] as usize] = true;
        j += 1;
    }
    table
}

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The database form of a hash (64 lowercase hex digits).
pub fn hash_hex(h: &TokenHash) -> String {
    hex::encode(h)
}

/// Parse the database form of a token hash.
pub fn parse_hash_hex(s: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

/// Whole seconds of a configured duration, as the database counts them.
fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausibility_filter() {
        let t = generate(Kind::Access).unwrap();
        assert!(is_well_formed(&t, Kind::Access));
        assert!(!is_well_formed(&t[..t.len() - 1], Kind::Access));
        assert!(!is_well_formed(&t.replace("sga_", "sgr_"), Kind::Access));
        assert!(!is_well_formed(
            &format!("{}=", &t[..t.len() - 1]),
            Kind::Access
        ));
        assert!(!is_well_formed("", Kind::Access));
    }

    #[test]
    fn the_token_alphabet_is_exactly_base64url() {
        let t = generate(Kind::Access).unwrap();
        for b in 0..=255u8 {
            let mut bytes = t.clone().into_bytes();
            let last = bytes.len() - 1;
            bytes[last] = b;
            let Ok(candidate) = String::from_utf8(bytes) else {
                continue; // not a &str: never reaches the check
            };
            let allowed = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(
                is_well_formed(&candidate, Kind::Access),
                allowed,
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn plausibility_by_kind() {
        let a = generate(Kind::Access).unwrap();
        let r = generate(Kind::Refresh).unwrap();
        assert!(is_well_formed(&a, Kind::Access));
        assert!(!is_well_formed(&a, Kind::Refresh));
        assert!(is_well_formed(&r, Kind::Refresh));
        assert!(!is_well_formed(&r[..r.len() - 1], Kind::Refresh));
        assert!(!is_well_formed("sgr_' OR 1=1--", Kind::Refresh));
    }

    #[test]
    fn tokens_are_prefixed_random_and_long() {
        let a = generate(Kind::Access).unwrap();
        let b = generate(Kind::Access).unwrap();
        assert!(a.starts_with("sga_"));
        assert_eq!(a.len(), 4 + 43);
        assert_ne!(a, b);
        assert!(generate(Kind::Refresh).unwrap().starts_with("sgr_"));
        assert_eq!(Kind::of(&a), Some(Kind::Access));
        assert_eq!(Kind::of("xyz"), None);
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = hash("sga_abc");
        assert_eq!(parse_hash_hex(&hash_hex(&h)), Some(h));
        assert_eq!(parse_hash_hex("zz"), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_hex(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
