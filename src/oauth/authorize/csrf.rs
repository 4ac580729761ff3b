//! The login page's anti-CSRF token (`docs/security.md`, "Login page").
//!
//! The form carries `csrf = base64url(issued ‖ mac)`, where `issued` is
//! the UNIX time the page was rendered (8 bytes, big-endian) and
//!
//! ```text
//! mac = HMAC-SHA256(process key, "scopegate-authorize-v1" ‖ issued ‖ browser nonce ‖ the authorization request)
//! ```
//!
//! - **Bound to the request**: every parameter of the authorization request
//!   is in the MAC (length-prefixed), so a token minted for one client,
//!   redirect URI, challenge, scope or state is worthless for another.
//! - **Bound to the browser**: the browser nonce is a random value in an
//!   `HttpOnly; SameSite=Lax` cookie, reused while the browser has one (two
//!   tabs work). A cross-site form post does not carry the cookie, so an
//!   attacker who fetched a valid form for himself cannot make a victim's
//!   browser submit it (login CSRF).
//! - **Fresh**: a token older than [`CSRF_TTL_SECS`] is refused.
//! - The key is 32 random bytes per process: a form rendered by one replica
//!   must be posted to the same one (or the user simply gets a fresh page).
//!
//! Verification is constant-time.

use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a rendered login form stays valid.
pub const CSRF_TTL_SECS: i64 = 600;
/// The browser-nonce cookie.
pub const COOKIE: &str = "scopegate_authorize";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// HMAC-SHA256 (RFC 2104) over the concatenation of `parts`.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The per-process key.
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// From the thread-local CSPRNG (ChaCha, seeded by the OS).
    pub fn random() -> CsrfKey {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
        CsrfKey(k)
    }

    fn mac(&self, issued: i64, nonce: &str, request: &[&str]) -> [u8; 32] {
        let mut framed: Vec<u8> = Vec::with_capacity(256);
        for field in std::iter::once(&nonce).chain(request) {
            framed.extend_from_slice(&(field.len() as u64).to_be_bytes());
            framed.extend_from_slice(field.as_bytes());
        }
        hmac_sha256(
            &self.0,
            &[b"scopegate-authorize-v1", &issued.to_be_bytes(), &framed],
        )
    }

    /// The token for a form rendered at `issued` for the browser `nonce`
    /// and the authorization `request` (its parameters, in a fixed order).
    pub fn token(&self, issued: i64, nonce: &str, request: &[&str]) -> String {
        let mut raw = [0u8; 40];
        raw[..8].copy_from_slice(&issued.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(issued, nonce, request));
        B64.encode(raw)
    }

    /// Is `token` one we made, at most [`CSRF_TTL_SECS`] before `now`, for
    /// this nonce and request?
    pub fn verify(&self, token: &str, now: i64, nonce: &str, request: &[&str]) -> bool {
        let mut raw = [0u8; 40];
        match B64.decode_slice(token.as_bytes(), &mut raw) {
            Ok(40) if token.len() <= 60 => {}
            _ => return false,
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        let issued = i64::from_be_bytes(issued);
        let expected = self.mac(issued, nonce, request);
        let mac_ok: bool = expected.ct_eq(&raw[8..]).into();
        mac_ok && issued <= now + 5 && now - issued <= CSRF_TTL_SECS
    }
}

/// A new browser nonce (16 random bytes, base64url).
pub fn new_nonce() -> Result<String, rand::rand_core::OsError> {
    let mut n = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut n)?;
    Ok(B64.encode(n))
}

/// Could this be a nonce of ours (22 base64url characters)?
pub fn is_nonce(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The browser nonce from the request's `Cookie` headers, if one is there
/// and well-formed.
pub fn nonce_from(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| is_nonce(v))
}

/// The `Set-Cookie` value for `nonce`.
pub fn set_cookie(nonce: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={nonce}; Path=/oauth/authorize; Max-Age={CSRF_TTL_SECS}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_case_1() {
        // RFC 4231 test case 1 uses a 20-byte key; ours is 32 bytes,
        // zero-padded to the block exactly like a shorter key would be.
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            hex::encode(hmac_sha256(&key, &[b"Hi ", b"There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn tokens_bind_request_nonce_and_time() {
        let k = CsrfKey::random();
        let req = [
            "sgc_a",
            "https://a.example/cb",
            "code",
            "",
            "st",
            "ch",
            "S256",
        ];
        let t = k.token(1000, "nonce", &req);
        assert!(k.verify(&t, 1000, "nonce", &req));
        assert!(k.verify(&t, 1000 + CSRF_TTL_SECS, "nonce", &req));
        assert!(!k.verify(&t, 1001 + CSRF_TTL_SECS, "nonce", &req));
        assert!(!k.verify(&t, 900, "nonce", &req));
        assert!(!k.verify(&t, 1000, "other", &req));
        let mut other = req;
        other[4] = "st2";
        assert!(!k.verify(&t, 1000, "nonce", &other));
        // Field boundaries are framed: moving a character changes the MAC.
        let mut shifted = req;
        shifted[3] = "s";
        shifted[4] = "t";
        assert!(!k.verify(
            &k.token(1000, "nonce", &["", "st"]),
            1000,
            "nonce",
            &["s", "t"]
        ));
        assert!(!k.verify(&t, 1000, "nonce", &shifted));
        assert!(!CsrfKey::random().verify(&t, 1000, "nonce", &req));
        assert!(!k.verify("", 1000, "nonce", &req));
        assert!(!k.verify(&format!("{t}A"), 1000, "nonce", &req));
    }

    #[test]
    fn cookies() {
        let n = new_nonce().unwrap();
        assert!(is_nonce(&n));
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("a=b; {COOKIE}={n}; c=d").parse().unwrap(),
        );
        assert_eq!(nonce_from(&h), Some(n.clone()));
        h.insert(http::header::COOKIE, format!("{COOKIE}=x").parse().unwrap());
        assert_eq!(nonce_from(&h), None);
        assert!(set_cookie(&n, true).ends_with("; Secure"));
        assert!(set_cookie(&n, false).contains("HttpOnly; SameSite=Lax"));
    }
}
