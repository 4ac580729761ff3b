//! `Authorization` parsing ([`scopegate::tokens::bearer::credentials`]).
//!
//! Input: lines separated by `\n`. A line starting with `?` is the query
//! string (the last one wins); every other line is one `Authorization`
//! header, an empty line an empty one (lines that are not valid header
//! values are skipped, as hyper would never deliver them). An empty input
//! has no header.
//!
//! Properties, against an oracle written from RFC 6750 and `docs/http.md`
//! ("Bearer credentials"):
//! - an accepted token is a b64token (RFC 6750 §2.1: `1*( ALPHA / DIGIT /
//!   "-" / "." / "_" / "~" / "+" / "/" ) *"="`) of at most 4096 bytes, and
//!   it is exactly what follows `Bearer ` in the one header: nothing
//!   trimmed, nothing added;
//! - `access_token` in the query, or two `Authorization` headers, is
//!   always an error; the `Bearer` scheme (any case) with anything but one
//!   space and a b64token is an error; any other scheme is no credentials.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use scopegate::tokens::bearer::{credentials, Credentials};

/// RFC 6750 §2.1 `b64token`.
pub fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// What the parse must give: `Err(())` for a 400, `Ok(None)` for no
/// credentials, `Ok(Some(token))`.
fn expected<'a>(values: &[&'a [u8]], query: Option<&str>) -> Result<Option<&'a str>, ()> {
    if let Some(q) = query {
        if form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token") {
            return Err(());
        }
    }
    let value = match values {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(()),
    };
    // auth-scheme is a token, ended by whitespace (RFC 9110 §11.4).
    let scheme_len = value
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(value.len());
    if !value[..scheme_len].eq_ignore_ascii_case(b"Bearer") {
        return Ok(None);
    }
    let token = value
        .strip_prefix(&value[..scheme_len])
        .and_then(|rest| rest.strip_prefix(b" "))
        .and_then(|t| std::str::from_utf8(t).ok())
        .filter(|t| t.len() <= 4096 && is_b64token(t));
    token.map(Some).ok_or(())
}

pub fn check(data: &[u8]) {
    let mut headers = HeaderMap::new();
    let mut values: Vec<&[u8]> = Vec::new();
    let mut query: Option<&str> = None;
    for line in data.split(|b| *b == b'\n').filter(|_| !data.is_empty()) {
        if let Some(q) = line.strip_prefix(b"?") {
            match std::str::from_utf8(q) {
                Ok(q) => query = Some(q),
                Err(_) => return,
            }
        } else if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(AUTHORIZATION, v);
            values.push(line);
        }
    }
    let got = credentials(&headers, query);
    let want = expected(&values, query);
    match (&got, want) {
        (Ok(Credentials::Bearer(t)), Ok(Some(w))) => {
            assert!(is_b64token(t) && t.len() <= 4096, "accepted {t:?}");
            assert_eq!(*t, w, "the token is not what was sent");
        }
        (Ok(Credentials::None), Ok(None)) | (Err(_), Err(())) => {}
        _ => panic!("{values:?} query {query:?}: got {got:?}, expected {want:?}"),
    }
}
