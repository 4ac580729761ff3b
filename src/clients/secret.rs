//! Client ids, client secrets and authorization codes: random strings
//! from the OS CSPRNG, base64url without padding, with a readable prefix.
//!
//! | what | form | stored as |
//! |---|---|---|
//! | client id | `sgc_` + 16 bytes (22 characters) | as is (it is not a secret) |
//! | client secret | `sgs_` + 32 bytes (43 characters) | SHA-256 hex |
//! | authorization code | `sgo_` + 32 bytes (43 characters) | SHA-256 hex |
//!
//! A secret or a code is 256 random bits, so a fast hash is the right
//! one: there is nothing to brute-force (argon2 is for low-entropy
//! passwords). A presented secret is hashed and compared with the stored
//! hash in constant time (`subtle`).

use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const CLIENT_ID_PREFIX: &str = "sgc_";
pub const SECRET_PREFIX: &str = "sgs_";
pub const CODE_PREFIX: &str = "sgo_";

/// A client secret or an authorization code in clear. `Debug` never shows
/// it, and the memory is overwritten when it is dropped.
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The OS random number generator failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the OS random number generator failed: {0}")]
pub struct RandomError(pub String);

fn random(prefix: &str, len: usize) -> Result<String, RandomError> {
    let mut raw = [0u8; 32];
    let raw = &mut raw[..len];
    rand::rngs::OsRng
        .try_fill_bytes(raw)
        .map_err(|e| RandomError(e.to_string()))?;
    let mut s = String::with_capacity(prefix.len() + len.div_ceil(3) * 4);
    s.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&*raw, &mut s);
    zeroize::Zeroize::zeroize(raw);
    Ok(s)
}

pub fn new_client_id() -> Result<String, RandomError> {
    random(CLIENT_ID_PREFIX, 16)
}

pub fn new_secret() -> Result<Secret, RandomError> {
    random(SECRET_PREFIX, 32).map(Secret)
}

pub fn new_code() -> Result<Secret, RandomError> {
    random(CODE_PREFIX, 32).map(Secret)
}

/// Could `s` be one of our `prefix` strings of `len` random bytes?
fn is_shaped(s: &str, prefix: &str, len: usize) -> bool {
    s.len() == prefix.len() + (len * 4).div_ceil(3)
        && s.starts_with(prefix)
        && s.as_bytes()[prefix.len()..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// A cheap filter before any database lookup.
pub fn is_client_id(s: &str) -> bool {
    is_shaped(s, CLIENT_ID_PREFIX, 16)
}

pub fn is_code(s: &str) -> bool {
    is_shaped(s, CODE_PREFIX, 32)
}

/// The stored form of a secret or a code: SHA-256, 64 lowercase hex digits.
pub fn hash_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Does `presented` hash to `stored_hex`? Constant time in the contents
/// of both; a malformed stored hash never matches (but costs the same).
pub fn verify(presented: &str, stored_hex: &str) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut stored = [0u8; 32];
    let parsed = hex::decode_to_slice(stored_hex.trim(), &mut stored).is_ok();
    let equal: bool = presented.ct_eq(&stored).into();
    equal && parsed
}

/// The same work as [`verify`] against nothing: for unknown client ids,
/// so a wrong id and a wrong secret cost the same.
pub fn verify_dummy(presented: &str) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let _ = presented.ct_eq(&[0u8; 32]);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_lengths() {
        let id = new_client_id().unwrap();
        assert!(id.starts_with("sgc_") && id.len() == 4 + 22, "{id}");
        assert!(is_client_id(&id));
        assert!(!is_client_id(&id[..id.len() - 1]));
        assert!(!is_client_id("sgc_' OR 1=1 --xxxxxxxxx"));
        let s = new_secret().unwrap();
        assert!(s.expose().starts_with("sgs_") && s.expose().len() == 4 + 43);
        assert_ne!(s.expose(), new_secret().unwrap().expose());
        let c = new_code().unwrap();
        assert!(is_code(c.expose()));
        assert!(!is_code(s.expose()));
        assert_eq!(format!("{s:?}"), "[redacted]");
    }

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let s = new_secret().unwrap();
        let h = hash_hex(s.expose());
        assert_eq!(h.len(), 64);
        assert!(verify(s.expose(), &h));
        assert!(!verify(new_secret().unwrap().expose(), &h));
        assert!(!verify(s.expose(), "zz"));
        assert!(!verify(s.expose(), ""));
        assert!(!verify_dummy(s.expose()));
        assert_eq!(
            hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
