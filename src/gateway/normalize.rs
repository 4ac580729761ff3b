//! The normalize phase: one canonical form of the request path, decided
//! once. Routing decides on it and forwarding sends it, so the bytes the
//! upstream receives are the bytes the gateway authorized: `/public/../admin`
//! can never reach `/admin` under `/public`'s rules (`docs/security.md`, "Path normalization").
//!
//! [`normalize_path`] takes the path of the request-target only (hyper's
//! `uri.path()`, without the query) and, in this order:
//!
//! 1. **rejects** (400, [`PathError`]) anything ambiguous:
//!    - a path that does not start with `/` (`*`, absolute-form leftovers);
//!    - `%2F` and `%5C` (encoded `/` and `\`: servers disagree on whether
//!      they separate segments, so `/public%2F..%2Fadmin` could climb out
//!      of `/public` on the upstream), a literal `\`, `%00` and a literal
//!      NUL, other raw control characters, and malformed escapes (`%zz`, a
//!      truncated `%4`);
//!    - bytes that are not valid UTF-8 once *every* escape is decoded, so
//!      overlong forms such as `%c0%ae` (an overlong `.`) are refused;
//!    - `#` (a fragment is not part of a request-target: `/admin#x` would
//!      route one way and be resolved another);
//!    - `;`: Tomcat-style matrix parameters (`/admin;jsessionid=x`,
//!      `/admin;/..;/secret`) mean different paths to different servers
//!      (Tomcat and Spring strip them before matching, most others do not),
//!      so a path carrying one is refused outright rather than guessed at.
//!      An encoded `%3B` is an ordinary character and is kept encoded;
//! 2. **decodes** percent-escapes of unreserved characters (`A-Z a-z 0-9 -
//!    . _ ~`, RFC 3986 §2.3) into the character, and keeps every other
//!    escape as it is, with upper-case hex digits (RFC 3986 §6.2.2.1).
//!    Escapes are decoded once only: `%252e` stays `%252e`, it is never
//!    a dot;
//! 3. **collapses** runs of `/` into one, then **resolves** `.` and `..`
//!    segments (RFC 3986 §5.2.4), including those spelled `%2e`, so
//!    `/public/../admin` and `/public/%2e%2e/admin` are decided as `/admin`.
//!    A `..` that would climb above `/` is an error, not clamped. A path
//!    ending in a `.` or `..` segment keeps a trailing slash (`/a/b/..` ->
//!    `/a/`, `/a/.` -> `/a/`); any other trailing slash is preserved.
//!
//! Segments are compared case-sensitively afterwards (`/ADMIN` is not
//! `/admin`): routing is byte-exact on the normalized form.
//!
//! The common case, an already normal path, is returned borrowed: one scan
//! over the bytes and no allocation.

use std::borrow::Cow;

use crate::percent::escape_at;

/// Why a path was rejected (always a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    NotAbsolute,
    /// `%2F` / `%2f`.
    EncodedSlash,
    /// `%5C` / `%5c`.
    EncodedBackslash,
    /// A literal `\`.
    Backslash,
    /// `%00` or a literal NUL.
    Nul,
    /// Not UTF-8 once every escape is decoded (`%c0%ae`, `%ff`).
    InvalidUtf8,
    /// `%` not followed by two hex digits.
    InvalidPercent,
    /// A `..` segment climbs above the root.
    EscapesRoot,
    /// A `#`.
    Fragment,
    /// A `;` (matrix parameters).
    Semicolon,
    /// A raw control character other than NUL (`\t`, `\r`, `\n`, DEL...).
    ControlChar,
}

impl PathError {
    /// A short description for the 400 body; never echoes the input.
    pub fn description(&self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with '/'",
            PathError::EncodedSlash => "encoded slashes (%2F) are not allowed in the path",
            PathError::EncodedBackslash => "encoded backslashes (%5C) are not allowed in the path",
            PathError::Backslash => "backslashes are not allowed in the path",
            PathError::Nul => "NUL bytes are not allowed in the path",
            PathError::InvalidUtf8 => "the decoded path is not valid UTF-8",
            PathError::InvalidPercent => "malformed percent-encoding in the path",
            PathError::EscapesRoot => "the path climbs above the root",
            PathError::Fragment => "fragments ('#') are not allowed in the request target",
            PathError::Semicolon => "path parameters (';') are not allowed",
            PathError::ControlChar => "control characters are not allowed in the path",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for PathError {}

/// Normalize a request path (no query). See the module documentation.
///
/// Returns the input borrowed when it is already in normal form.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if scan(raw.as_bytes())? {
        rewrite(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// RFC 3986 §2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Validate every byte and escape, and tell whether the path needs
/// rewriting (`Ok(true)`) or is already normal (`Ok(false)`).
fn scan(raw: &[u8]) -> Result<bool, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut rewrite = false;
    let mut utf8 = Utf8Check::default();
    // Start of the current segment (just after its `/`).
    let mut seg_start = 1;
    let mut i = 1;
    while i <= raw.len() {
        let Some(&b) = raw.get(i) else {
            // End of input: the last segment may be `.` or `..`.
            rewrite |= is_dot_segment(&raw[seg_start..]);
            break;
        };
        match b {
            b'/' => {
                let seg = &raw[seg_start..i];
                // `//` (an empty segment that is not the last), `.`, `..`.
                rewrite |= seg.is_empty() || is_dot_segment(seg);
                seg_start = i + 1;
            }
            b'%' => {
                let v = escape_at(raw, i).ok_or(PathError::InvalidPercent)?;
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0 => return Err(PathError::Nul),
                    _ => {}
                }
                rewrite |= is_unreserved(v)
                    || raw[i + 1].is_ascii_lowercase()
                    || raw[i + 2].is_ascii_lowercase();
                utf8.push(v)?;
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            b';' => return Err(PathError::Semicolon),
            0 => return Err(PathError::Nul),
            0x01..=0x1f | 0x7f => return Err(PathError::ControlChar),
            _ => {}
        }
        utf8.push(b)?;
        i += 1;
    }
    utf8.finish()?;
    Ok(rewrite)
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

/// Incremental UTF-8 validation of the decoded byte stream, without
/// allocating: each multi-byte sequence is collected in a 4-byte buffer
/// and checked by the standard library when complete (which rejects
/// overlong forms, surrogates and code points above U+10FFFF).
#[derive(Default)]
struct Utf8Check {
    buf: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8Check {
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.need == 0 {
            self.need = match b {
                0x00..=0x7f => return Ok(()),
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
            self.buf[0] = b;
            self.len = 1;
            return Ok(());
        }
        if b & 0xc0 != 0x80 {
            return Err(PathError::InvalidUtf8);
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == self.need {
            std::str::from_utf8(&self.buf[..self.len]).map_err(|_| PathError::InvalidUtf8)?;
            self.len = 0;
            self.need = 0;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), PathError> {
        if self.need == 0 {
            Ok(())
        } else {
            Err(PathError::InvalidUtf8)
        }
    }
}

/// The slow path, for a path [`scan`] accepted: decode, collapse, resolve,
/// in one pass into one buffer.
fn rewrite(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    // Does the result end with a slash that must be kept?
    let mut trailing = false;
    for seg in raw[1..].split('/') {
        let start = out.len();
        out.push('/');
        push_segment(&mut out, seg);
        match &out[start + 1..] {
            // `//` collapses; `/.` disappears.
            "" | "." => {
                out.truncate(start);
                trailing = true;
            }
            ".." => {
                out.truncate(start);
                let parent = out.rfind('/').ok_or(PathError::EscapesRoot)?;
                out.truncate(parent);
                trailing = true;
            }
            _ => trailing = false,
        }
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Append one segment: unreserved escapes decoded, other escapes with
/// upper-case hex, everything else as is (validated by [`scan`]).
fn push_segment(out: &mut String, seg: &str) {
    let bytes = seg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match escape_at(bytes, i) {
                Some(v) if is_unreserved(v) => out.push(char::from(v)),
                _ => {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
            }
            i += 3;
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b'%' {
                i += 1;
            }
            out.push_str(&seg[start..i]);
        }
    }
}

#[cfg(test)]
mod tests;
