//! `database.url`: the TLS parameters of a Postgres connection string.
//!
//! libpq's `sslmode` has five values and `sslrootcert` names the CA file
//! (PostgreSQL documentation, "Connection Strings" and "SSL Support");
//! tokio-postgres's parser knows only `disable`, `prefer` and `require`,
//! and no `sslrootcert`. So the loader reads both parameters itself
//! ([`tls_params`]), records them in [`super::DatabaseConfig`], and hands
//! tokio-postgres the string without them ([`pg_url`]).
//!
//! Both forms of connection string are understood: the URL
//! (`postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem`, values
//! percent-encoded) and the key/value form (`host=h sslmode=require`,
//! values optionally `'quoted'`, `\` escaping the next character), with the
//! same grammar as tokio-postgres. A later parameter overrides an earlier
//! one, as in libpq.

use std::borrow::Cow;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use super::Secret;

/// `sslmode` of the database connection string. Absent: [`TlsMode::Prefer`],
/// libpq's and tokio-postgres's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// `disable`: never TLS.
    Disable,
    /// `prefer`: TLS if the server offers it, without verifying it.
    #[default]
    Prefer,
    /// `require`: TLS or no connection; the certificate is not verified.
    Require,
    /// `verify-ca`: TLS, and the server's certificate must chain to
    /// `sslrootcert`.
    VerifyCa,
    /// `verify-full`: as `verify-ca`, and the certificate must name the
    /// host connected to.
    VerifyFull,
}

impl TlsMode {
    /// TLS or no connection at all (`require`, `verify-ca`, `verify-full`).
    pub fn is_required(self) -> bool {
        matches!(
            self,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull
        )
    }

    /// The server's certificate is checked against a CA file.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }

    fn parse(s: &str) -> Option<TlsMode> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters of one connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsParams {
    pub mode: TlsMode,
    pub ca_file: Option<PathBuf>,
}

/// Read `sslmode` and `sslrootcert` out of a connection string. Errors
/// never repeat the string (it may hold a password). A string that is not
/// well-formed gives the defaults here: tokio-postgres then reports what
/// is wrong with it.
pub(crate) fn tls_params(url: &str) -> Result<TlsParams, String> {
    let mut p = TlsParams::default();
    let Some(conn) = ConnString::split(url) else {
        return Ok(p);
    };
    for param in &conn.params {
        match &*param.key {
            "sslmode" => {
                p.mode = TlsMode::parse(&param.value).ok_or_else(|| {
                    format!(
                        "sslmode={:?} is not one of disable, prefer, require, verify-ca, verify-full",
                        param.value
                    )
                })?;
            }
            "sslrootcert" if param.value.is_empty() => {
                return Err("sslrootcert must name a file".into());
            }
            "sslrootcert" => p.ca_file = Some(PathBuf::from(&*param.value)),
            _ => {}
        }
    }
    if p.mode.verifies() && p.ca_file.is_none() {
        return Err(format!(
            "sslmode={} needs sslrootcert=PATH (the CA certificate that signs the server's)",
            p.mode.as_str()
        ));
    }
    Ok(p)
}

/// `url` as tokio-postgres can parse it: without `sslrootcert`, and with
/// `sslmode=verify-ca` / `verify-full` given as `sslmode=require`, so that
/// a connection that must use TLS still cannot fall back to plaintext. The
/// certificate checks themselves are the TLS connector's job (`db::tls`), configured
/// from [`super::DatabaseConfig::tls`] and [`super::DatabaseConfig::ca_file`].
/// A string that is not well-formed is returned as it is.
pub fn pg_url(url: &Secret) -> Secret {
    let s = url.expose();
    let Some(conn) = ConnString::split(s) else {
        return url.clone();
    };
    let mut changed = false;
    let mut kept: Vec<&str> = Vec::with_capacity(conn.params.len());
    for param in &conn.params {
        match (&*param.key, &*param.value) {
            ("sslrootcert", _) => changed = true,
            ("sslmode", "verify-ca" | "verify-full") => {
                kept.push("sslmode=require");
                changed = true;
            }
            _ => kept.push(param.raw),
        }
    }
    if !changed {
        return url.clone();
    }
    Secret::new(match conn.base {
        Some(base) if kept.is_empty() => base.to_owned(),
        Some(base) => format!("{base}?{}", kept.join("&")),
        None => kept.join(" "),
    })
}

/// A connection string cut into its parameters.
struct ConnString<'a> {
    /// URL form: everything before the `?` of the parameters. `None`: the
    /// key/value form.
    base: Option<&'a str>,
    params: Vec<Param<'a>>,
}

struct Param<'a> {
    /// Decoded.
    key: Cow<'a, str>,
    /// Decoded.
    value: Cow<'a, str>,
    /// As written (`key=value`, `key = 'v a l'`).
    raw: &'a str,
}

impl<'a> ConnString<'a> {
    /// `None` when the string is not well-formed.
    fn split(s: &'a str) -> Option<ConnString<'a>> {
        let url = ["postgres://", "postgresql://"]
            .iter()
            .find_map(|p| s.strip_prefix(p));
        match url {
            Some(rest) => Self::split_url(s, rest),
            None => Self::split_key_value(s),
        }
    }

    /// As tokio-postgres reads a URL: the user info runs to the first `@`,
    /// and the parameters start at the first `?` after it.
    fn split_url(s: &'a str, rest: &'a str) -> Option<ConnString<'a>> {
        let after_user = rest.find('@').map_or(0, |i| i + 1);
        let offset = s.len() - rest.len() + after_user;
        let Some(q) = s[offset..].find('?').map(|i| offset + i) else {
            return Some(ConnString {
                base: Some(s),
                params: Vec::new(),
            });
        };
        let mut params = Vec::new();
        let query = &s[q + 1..];
        if !query.is_empty() {
            for raw in query.split('&') {
                let (key, value) = raw.split_once('=')?;
                params.push(Param {
                    key: percent_decode_str(key).decode_utf8().ok()?,
                    value: percent_decode_str(value).decode_utf8().ok()?,
                    raw,
                });
            }
        }
        Some(ConnString {
            base: Some(&s[..q]),
            params,
        })
    }

    /// `key = value` pairs separated by whitespace; a value is `'quoted'`
    /// or runs to the next whitespace, and `\` escapes the next character.
    fn split_key_value(s: &'a str) -> Option<ConnString<'a>> {
        let mut params = Vec::new();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while let Some(c) = s[*i..].chars().next().filter(|c| c.is_whitespace()) {
                *i += c.len_utf8();
            }
        };
        loop {
            skip_ws(&mut i);
            if i == s.len() {
                break;
            }
            let start = i;
            let key_len = s[i..]
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(s.len() - i);
            if key_len == 0 {
                return None;
            }
            let key = &s[i..i + key_len];
            i += key_len;
            skip_ws(&mut i);
            i += s[i..].strip_prefix('=').map(|_| 1)?;
            skip_ws(&mut i);
            let quoted = s[i..].starts_with('\'');
            if quoted {
                i += 1;
            }
            let mut value = String::new();
            let mut chars = s[i..].char_indices();
            let mut end = None;
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '\'' if quoted => {
                        end = Some(i + at + 1);
                        break;
                    }
                    c if !quoted && c.is_whitespace() => {
                        end = Some(i + at);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = match end {
                Some(end) => end,
                None if quoted => return None,
                None => s.len(),
            };
            if !quoted && value.is_empty() {
                return None;
            }
            i = end;
            params.push(Param {
                key: Cow::Borrowed(key),
                value: Cow::Owned(value),
                raw: &s[start..end],
            });
        }
        Some(ConnString { base: None, params })
    }
}
