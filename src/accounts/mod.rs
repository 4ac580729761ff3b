//! Accounts, scopes and roles: who may log in, and what they may be granted.
//!
//! - [`password`]: argon2id hashing and verification on a bounded pool of
//!   dedicated low-priority threads, so logins never steal the async
//!   workers (or, much, the cores) that proxy traffic.
//! - [`store`]: the accounts in Postgres; [`catalog`]: scopes and roles;
//!   [`scopes`]: the effective scopes of an account (its own ∪ its
//!   roles') and which of them a token may carry.
//! - [`admin_store`]: accounts, scopes and roles by id and paginated, for
//!   the admin API, with the token hashes each change affects.
//! - [`bootstrap`]: the first `admin` account.
//!
//! ## Usernames
//! Usernames are compared in one canonical form, computed on creation and on
//! every login ([`normalize_username`]), after RFC 8265's
//! `UsernameCaseMapped` profile: Unicode NFKC (which also maps full-width
//! and half-width forms, so `ａｄｍｉｎ` is `admin`), then lower case, then
//! NFKC again. The result must be 1 to 255 characters; control, format
//! (zero-width space, bidi overrides...), separator (any whitespace),
//! private-use, surrogate and unassigned code points are refused. Visually
//! confusable scripts (Cyrillic `а` for Latin `a`) are *not* folded: they
//! make a different username.
//!
//! ## Passwords
//! A password is 1 to [`MAX_PASSWORD_BYTES`] bytes of UTF-8. Longer ones are
//! refused before any hashing: at login they are simply wrong
//! (`invalid_grant`, like any other wrong password), when set they are an
//! invalid request.

pub mod admin_store;
pub mod bootstrap;
pub mod catalog;
pub mod credentials;
pub mod password;
pub mod scopes;
pub mod store;

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Passwords longer than this are refused before hashing, so an over-long
/// password cannot buy argon2 time (it is simply a wrong password).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest username, in characters (the column is `VARCHAR(255)`).
pub const MAX_USERNAME_CHARS: usize = 255;

/// A plaintext password. `Debug` and `Display` never show it, and the
/// memory is overwritten when it is dropped.
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Password {
        Password(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a username or password cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCredential {
    #[error("the username is empty")]
    EmptyUsername,
    #[error("the username is longer than {MAX_USERNAME_CHARS} characters")]
    UsernameTooLong,
    #[error("the username contains whitespace, control, invisible or unassigned characters")]
    UsernameCharacters,
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong,
}

/// The canonical form of a username (see the module documentation).
pub fn normalize_username(raw: &str) -> Result<String, InvalidCredential> {
    // Bound the work before normalizing: NFKC can expand a character into
    // at most 18 (U+FDFA), and nothing legitimate comes near this.
    if raw.len() > MAX_USERNAME_CHARS * 4 {
        return Err(InvalidCredential::UsernameTooLong);
    }
    let folded: String = raw
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    if folded.is_empty() {
        return Err(InvalidCredential::EmptyUsername);
    }
    if folded.chars().count() > MAX_USERNAME_CHARS {
        return Err(InvalidCredential::UsernameTooLong);
    }
    if folded.chars().any(refused_in_username) {
        return Err(InvalidCredential::UsernameCharacters);
    }
    Ok(folded)
}

fn refused_in_username(c: char) -> bool {
    use GeneralCategory::*;
    c.is_whitespace()
        || matches!(
            c.general_category(),
            Control
                | Format
                | Surrogate
                | PrivateUse
                | Unassigned
                | SpaceSeparator
                | LineSeparator
                | ParagraphSeparator
        )
}

/// A password that may be stored: non-empty, at most [`MAX_PASSWORD_BYTES`].
pub fn check_new_password(p: &Password) -> Result<(), InvalidCredential> {
    if p.is_empty() {
        Err(InvalidCredential::EmptyPassword)
    } else if p.len() > MAX_PASSWORD_BYTES {
        Err(InvalidCredential::PasswordTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_and_width_folded() {
        assert_eq!(normalize_username("Admin").unwrap(), "admin");
        assert_eq!(normalize_username("ＡＤＭＩＮ").unwrap(), "admin");
        assert_eq!(normalize_username("ａｄｍｉｎ").unwrap(), "admin");
        assert_eq!(normalize_username("Jürgen").unwrap(), "jürgen");
        // decomposed ü composes
        assert_eq!(normalize_username("ju\u{308}rgen").unwrap(), "jürgen");
        assert_eq!(normalize_username("ﬁle").unwrap(), "file");
        assert_eq!(
            normalize_username("user@example.com").unwrap(),
            "user@example.com"
        );
        // Cyrillic а is another username, not an error
        assert_ne!(normalize_username("аdmin").unwrap(), "admin");
    }

    #[test]
    fn usernames_refuse_invisible_and_space() {
        for bad in [
            "",
            " ",
            "a b",
            "a\tb",
            "a\nb",
            "admin\u{200b}",
            "\u{202e}nimda",
            "a\u{0}b",
            "a\u{3000}b",
            "' OR 1=1--",
            "\u{e000}",
        ] {
            assert!(normalize_username(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_username(&"a".repeat(255)).is_ok());
        assert_eq!(
            normalize_username(&"a".repeat(256)),
            Err(InvalidCredential::UsernameTooLong)
        );
        assert!(normalize_username(&"a".repeat(100_000)).is_err());
    }

    #[test]
    fn normalization_is_idempotent() {
        for s in ["ＡＤＭＩＮ", "Straße", "ǅemal", "ΣΑΣ", "İstanbul", "ﬃ"] {
            let once = normalize_username(s).unwrap();
            assert_eq!(normalize_username(&once).unwrap(), once, "{s}");
        }
    }

    #[test]
    fn passwords_are_redacted_and_bounded() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?} {p}"), "[redacted] [redacted]");
        assert!(check_new_password(&p).is_ok());
        assert!(check_new_password(&Password::new("")).is_err());
        assert!(check_new_password(&Password::new("x".repeat(1024))).is_ok());
        assert!(check_new_password(&Password::new("x".repeat(1025))).is_err());
    }
}
