//! Sealing the successor pair for the grace window: ChaCha20-Poly1305
//! under SHA-256(`"scopegate-grace-v1"` ‖ old refresh token), a random
//! nonce stored in front of the ciphertext, the old token's row id as
//! associated data. The database holds only the hash of the old token, so
//! only a client presenting that token can open the pair.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tokens::issue::IssueError;

/// What a duplicate refresh within the window receives again.
#[derive(Serialize, Deserialize)]
pub(super) struct SealedPair {
    pub access_token: String,
    pub refresh_token: String,
    /// UNIX seconds.
    pub access_expires: i64,
    pub scope: String,
}

const NONCE_LEN: usize = 12;

fn grace_cipher(old_token: &str) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"scopegate-grace-v1");
    h.update(old_token.as_bytes());
    let key: [u8; 32] = h.finalize().into();
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// `nonce ‖ ciphertext` of `pair`, bound to the old token's row id.
pub(super) fn seal(old_token: &str, old_id: i64, pair: &SealedPair) -> Result<Vec<u8>, IssueError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|e| IssueError::Random(e.to_string()))?;
    let mut plain = serde_json::to_vec(pair).map_err(|e| IssueError::Random(e.to_string()))?;
    let aad = old_id.to_be_bytes();
    let sealed = grace_cipher(old_token).encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: &plain,
            aad: &aad,
        },
    );
    zeroize::Zeroize::zeroize(&mut plain);
    let sealed = sealed.map_err(|_| IssueError::Random("sealing failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

pub(super) fn unseal(old_token: &str, old_id: i64, blob: &[u8]) -> Option<SealedPair> {
    if blob.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let aad = old_id.to_be_bytes();
    let mut plain = grace_cipher(old_token)
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .ok()?;
    let pair = serde_json::from_slice(&plain).ok();
    zeroize::Zeroize::zeroize(&mut plain);
    pair
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_pairs_open_only_with_the_old_token_and_row() {
        let pair = SealedPair {
            access_token: "sga_x".into(),
            refresh_token: "sgr_y".into(),
            access_expires: 42,
            scope: "a b".into(),
        };
        let blob = seal("sgr_old", 7, &pair).unwrap();
        let back = unseal("sgr_old", 7, &blob).unwrap();
        assert_eq!(back.refresh_token, "sgr_y");
        assert_eq!(back.access_expires, 42);
        assert!(unseal("sgr_other", 7, &blob).is_none());
        assert!(unseal("sgr_old", 8, &blob).is_none());
        assert!(unseal("sgr_old", 7, &blob[..5]).is_none());
        // The ciphertext does not contain the tokens.
        let text = String::from_utf8_lossy(&blob);
        assert!(!text.contains("sgr_y") && !text.contains("sga_x"));
    }
}
