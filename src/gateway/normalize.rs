//! The normalize phase: one canonical form of the request path, decided
//! once; routing and forwarding both use it, so `/public/../admin` can
//! never reach `/admin` under `/public`'s rules (attack cases P1-P12).
//!
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded; every other escape is kept, with upper-case hex; double
//!   encoding is decoded once only (`%252e` stays `%252e`);
//! - `//` runs collapse, `.` and `..` segments are resolved (RFC 3986
//!   §5.2.4), including those spelled `%2e`;
//! - rejected (400): `%2F`, `%5C`, `%00`, a literal `\`, control
//!   characters, malformed escapes, bytes that are not valid UTF-8 once
//!   every escape is decoded (`%c0%ae`), a `..` climbing above `/`, a `#`,
//!   and `;` — Tomcat-style matrix parameters (`/admin;x`, `/..;/`) mean
//!   different paths to different servers, so they are refused outright.
//!
//! The common case (an already normal path) returns the input borrowed,
//! without allocating.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    EncodedSlash,
    EncodedBackslash,
    Backslash,
    Nul,
    InvalidUtf8,
    InvalidPercent,
    EscapesRoot,
    Fragment,
    Semicolon,
    ControlChar,
}

impl PathError {
    /// A short description for the 400 body; never echoes the input.
    pub fn description(&self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with '/'",
            PathError::EncodedSlash => "encoded slashes (%2F) are not allowed in paths",
            PathError::EncodedBackslash => "encoded backslashes (%5C) are not allowed in paths",
            PathError::Backslash => "backslashes are not allowed in paths",
            PathError::Nul => "NUL bytes are not allowed in paths",
            PathError::InvalidUtf8 => "the decoded path is not valid UTF-8",
            PathError::InvalidPercent => "malformed percent-encoding in the path",
            PathError::EscapesRoot => "the path climbs above the root",
            PathError::Fragment => "fragments are not allowed in request targets",
            PathError::Semicolon => "path parameters (';') are not allowed",
            PathError::ControlChar => "control characters are not allowed in paths",
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Validate every byte and escape; report whether anything would change.
/// Returns `Ok(true)` when the path needs rewriting.
fn scan(raw: &[u8]) -> Result<bool, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut needs_rewrite = false;
    // UTF-8 validation of the fully decoded bytes, without allocating:
    // decode into a small rolling buffer per multi-byte sequence.
    let mut utf8 = Utf8Check::default();
    let mut i = 0;
    let mut prev_slash = false;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    raw.get(i + 1).copied().and_then(hex_val),
                    raw.get(i + 2).copied().and_then(hex_val),
                ) else {
                    return Err(PathError::InvalidPercent);
                };
                let v = (h << 4) | l;
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0 => return Err(PathError::Nul),
                    _ => {}
                }
                if is_unreserved(v)
                    || raw[i + 1].is_ascii_lowercase()
                    || raw[i + 2].is_ascii_lowercase()
                {
                    needs_rewrite = true;
                }
                utf8.push(v)?;
                prev_slash = false;
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            b';' => return Err(PathError::Semicolon),
            0 => return Err(PathError::Nul),
            0x01..=0x1f | 0x7f => return Err(PathError::ControlChar),
            b'/' => {
                if prev_slash {
                    needs_rewrite = true;
                }
                prev_slash = true;
            }
            b'.' => {
                // A `.` or `..` segment?
                let seg_start = i == 0 || raw[i - 1] == b'/';
                if seg_start {
                    let rest = &raw[i..];
                    let end = rest.iter().position(|c| *c == b'/').unwrap_or(rest.len());
                    if end == 1 || (end == 2 && rest[1] == b'.') {
                        needs_rewrite = true;
                    }
                }
                prev_slash = false;
            }
            _ => prev_slash = false,
        }
        utf8.push(b)?;
        i += 1;
    }
    utf8.finish()?;
    Ok(needs_rewrite)
}

/// Incremental UTF-8 validation over decoded bytes.
#[derive(Default)]
struct Utf8Check {
    buf: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8Check {
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.need == 0 {
            if b < 0x80 {
                return Ok(());
            }
            self.need = match b {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
            self.buf[0] = b;
            self.len = 1;
            return Ok(());
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == self.need {
            std::str::from_utf8(&self.buf[..self.len]).map_err(|_| PathError::InvalidUtf8)?;
            self.len = 0;
            self.need = 0;
        } else if b & 0xc0 != 0x80 {
            return Err(PathError::InvalidUtf8);
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

/// Normalize a request path (no query). See the module documentation.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !scan(raw.as_bytes())? {
        return Ok(Cow::Borrowed(raw));
    }
    // Pass 1: decode unreserved escapes, upper-case the others.
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // `scan` validated the escape.
            let v = (hex_val(bytes[i + 1]).unwrap_or(0) << 4) | hex_val(bytes[i + 2]).unwrap_or(0);
            if is_unreserved(v) {
                decoded.push(v as char);
            } else {
                decoded.push('%');
                decoded.push(bytes[i + 1].to_ascii_uppercase() as char);
                decoded.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            // Non-escape bytes are ASCII or part of valid UTF-8 in `raw`.
            let start = i;
            while i < bytes.len() && bytes[i] != b'%' {
                i += 1;
            }
            decoded.push_str(&raw[start..i]);
        }
    }
    // Pass 2: collapse `//`, resolve dot segments.
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut trailing_slash = false;
    for (idx, seg) in parts.iter().enumerate() {
        match *seg {
            "" => {
                if idx == last {
                    trailing_slash = true;
                }
            }
            "." => {
                if idx == last {
                    trailing_slash = true;
                }
            }
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
                if idx == last {
                    trailing_slash = true;
                }
            }
            s => {
                segments.push(s);
                if idx == last {
                    trailing_slash = false;
                }
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(|c| c.into_owned())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/api",
            "/api/orders/7",
            "/a/",
            "/a.b/c..d/.e",
            "/%20x",
            "/é",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/a/").unwrap(), "/a/");
        assert_eq!(n("/.").unwrap(), "/");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/..").unwrap_err(), PathError::EscapesRoot);
        assert_eq!(n("/a/../..").unwrap_err(), PathError::EscapesRoot);
        assert_eq!(
            n("/public/../../admin").unwrap_err(),
            PathError::EscapesRoot
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(n("/public/.%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/%7euser").unwrap(), "/~user");
        assert_eq!(n("/%41%62").unwrap(), "/Ab");
        assert_eq!(n("/a%2cb").unwrap(), "/a%2Cb");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(
            n("/public/%252e%252e/admin").unwrap(),
            "/public/%252e%252e/admin"
        );
        assert_eq!(n("/%C3%A9").unwrap(), "/%C3%A9");
    }

    #[test]
    fn rejections() {
        assert_eq!(n("admin").unwrap_err(), PathError::NotAbsolute);
        assert_eq!(n("*").unwrap_err(), PathError::NotAbsolute);
        assert_eq!(n("/a%2Fb").unwrap_err(), PathError::EncodedSlash);
        assert_eq!(n("/a%2fb").unwrap_err(), PathError::EncodedSlash);
        assert_eq!(n("/a%5Cb").unwrap_err(), PathError::EncodedBackslash);
        assert_eq!(n("/a\\b").unwrap_err(), PathError::Backslash);
        assert_eq!(n("/a%00").unwrap_err(), PathError::Nul);
        assert_eq!(n("/a\0").unwrap_err(), PathError::Nul);
        assert_eq!(n("/a\tb").unwrap_err(), PathError::ControlChar);
        assert_eq!(n("/%c0%ae%c0%ae").unwrap_err(), PathError::InvalidUtf8);
        assert_eq!(n("/%ff").unwrap_err(), PathError::InvalidUtf8);
        assert_eq!(n("/%C3").unwrap_err(), PathError::InvalidUtf8);
        assert_eq!(n("/%zz").unwrap_err(), PathError::InvalidPercent);
        assert_eq!(n("/%4").unwrap_err(), PathError::InvalidPercent);
        assert_eq!(n("/admin#x").unwrap_err(), PathError::Fragment);
        assert_eq!(n("/admin;jsessionid=x").unwrap_err(), PathError::Semicolon);
        assert_eq!(n("/admin;/..;/x").unwrap_err(), PathError::Semicolon);
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2E".to_owned()),
            Just(".%2e".to_owned()),
            Just(String::new()),
            "[a-z]{1,4}",
            Just("%41".to_owned()),
            Just("%2f".to_owned()),
        ]
    }

    /// Reference resolution on fully decoded segments: the set of
    /// segments the path really names (None if it climbs above root).
    fn reference(segs: &[String]) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for s in segs {
            let d = s
                .replace("%2e", ".")
                .replace("%2E", ".")
                .replace("%41", "A");
            match d.as_str() {
                "" | "." => {}
                ".." => {
                    out.pop()?;
                }
                other => out.push(other.to_owned()),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn idempotent(p in "/[a-zA-Z0-9%./~_-]{0,40}") {
            if let Ok(once) = normalize_path(&p) {
                let twice = normalize_path(&once).expect("a normalized path normalizes");
                prop_assert_eq!(once.as_ref(), twice.as_ref());
            }
        }

        #[test]
        fn normalized_paths_are_clean(p in "/[a-zA-Z0-9%./\\\\~_-]{0,40}") {
            if let Ok(out) = normalize_path(&p) {
                prop_assert!(out.starts_with('/'));
                prop_assert!(!out.contains("//"));
                prop_assert!(!out.contains('\\'));
                prop_assert!(!out.to_ascii_lowercase().contains("%2f"));
                prop_assert!(!out.to_ascii_lowercase().contains("%2e"));
                for seg in out.split('/') {
                    prop_assert!(seg != "." && seg != "..");
                }
            }
        }

        /// No normalized path escapes its matched prefix: whenever the
        /// normalized form lies under prefix P, the path the input really
        /// names (decoded and resolved independently) lies under P too,
        /// and vice versa.
        #[test]
        fn prefix_decisions_match_the_real_path(
            prefix in prop::collection::vec("[a-z]{1,3}", 1..3),
            suffix in prop::collection::vec(segment(), 0..6),
        ) {
            let mut all: Vec<String> = prefix.clone();
            all.extend(suffix.iter().cloned());
            let raw = format!("/{}", all.join("/"));
            let p = format!("/{}", prefix.join("/"));
            match normalize_path(&raw) {
                Err(e) => {
                    // Only rejections the input really deserves.
                    let climbs = reference(&all).is_none();
                    let slash = raw.to_ascii_lowercase().contains("%2f");
                    prop_assert!(climbs || slash, "{raw} rejected with {e:?}");
                }
                Ok(out) => {
                    let real = reference(&all).expect("accepted paths do not climb");
                    let real_path = format!("/{}", real.join("/"));
                    let under = |x: &str| x == p || x.starts_with(&format!("{p}/"));
                    prop_assert_eq!(under(out.trim_end_matches('/')) || under(&out), under(&real_path),
                        "raw {} -> {} but really {}", raw, out, real_path);
                }
            }
        }
    }
}
