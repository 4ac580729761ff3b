//! Which credentials, if any, a request carries (RFC 6750 §2.1): the
//! parsing half of authentication, shared by the gateway's authenticate
//! phase and the Bearer-protected `/oauth/*` endpoints. Validation against
//! the token store is [`crate::tokens::cache::Validator`].
//!
//! Decisions (`docs/http.md`, "Bearer credentials"):
//! - more than one `Authorization` header -> 400 `invalid_request`;
//! - the scheme `Bearer` is case-insensitive and is followed by exactly one
//!   space and a b64token; anything else after `Bearer` (empty, two spaces,
//!   trailing space, a tab, a comma, a quote...) -> 400 `invalid_request`,
//!   without touching the database;
//! - another scheme (`Basic ...`) counts as no credentials -> 401 with the
//!   plain challenge;
//! - `access_token` in the query string -> 400 `invalid_request` (RFC 6750
//!   §2.3 is not supported). Tokens in a form body are not looked for: the
//!   body is streamed, never buffered, and such a request is simply
//!   unauthenticated.

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// Malformed Bearer credentials: a 400 `invalid_request` (RFC 6750 §3.1).
/// The description is fixed text; nothing the client sent is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedCredentials(pub &'static str);

/// The credentials a request presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    None,
    Bearer(&'a str),
}

/// Longest token we look at; ours are 47 bytes.
const MAX_TOKEN_LEN: usize = 4096;

pub fn credentials<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
) -> Result<Credentials<'a>, MalformedCredentials> {
    if let Some(q) = query {
        if query_has_access_token(q) {
            return Err(MalformedCredentials(
                "access tokens are not accepted in the query string; use the Authorization header",
            ));
        }
    }
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credentials::None);
    };
    if values.next().is_some() {
        return Err(MalformedCredentials("more than one Authorization header"));
    }
    let bytes = value.as_bytes();
    let scheme_end = bytes
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(bytes.len());
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Ok(Credentials::None);
    }
    // Exactly one SP separates the scheme from the token.
    let token = match bytes.get(scheme_end) {
        Some(b' ') => &bytes[scheme_end + 1..],
        _ => &[][..],
    };
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !is_b64token(token) {
        return Err(MalformedCredentials("malformed Bearer credentials"));
    }
    // b64token is ASCII, so this cannot fail.
    match std::str::from_utf8(token) {
        Ok(t) => Ok(Credentials::Bearer(t)),
        Err(_) => Err(MalformedCredentials("malformed Bearer credentials")),
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(t: &[u8]) -> bool {
    let body_len = t.len() - t.iter().rev().take_while(|b| **b == b'=').count();
    body_len > 0 && t[..body_len].iter().all(|b| B64TOKEN[usize::from(*b)])
}

/// The bytes of a b64token's body.
const B64TOKEN: [bool; 256] = super::alphanumeric_and(b"-._~+/");

fn query_has_access_token(q: &str) -> bool {
    // Fast path: most queries do not mention it at all.
    if !q.contains("access_token") && !q.contains('%') {
        return false;
    }
    form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn creds(
        values: &[&[u8]],
        query: Option<&str>,
    ) -> Result<Option<String>, MalformedCredentials> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        credentials(&h, query).map(|c| match c {
            Credentials::None => None,
            Credentials::Bearer(t) => Some(t.to_owned()),
        })
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            &b"Bearer abc"[..],
            b"bearer abc",
            b"BEARER abc",
            b"bEaReR abc",
        ] {
            assert_eq!(creds(&[v], None).unwrap().as_deref(), Some("abc"));
        }
    }

    #[test]
    fn b64token_syntax() {
        assert_eq!(
            creds(&[b"Bearer a-._~+/9=="], None).unwrap().as_deref(),
            Some("a-._~+/9==")
        );
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer  abc",
            b"Bearer abc ",
            b"Bearer\tabc",
            b"Bearer a,b",
            b"Bearer a\"b",
            b"Bearer ==",
            b"Bearer a=b",
            b"Bearer \xc3\xa9",
        ] {
            let r = creds(&[bad], None);
            assert!(
                matches!(r, Err(MalformedCredentials(_))),
                "{:?} -> {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(creds(&[long.as_bytes()], None).is_err());
    }

    #[test]
    fn the_b64token_alphabet_is_exactly_rfc_6750s() {
        for b in 0..=255u8 {
            let allowed = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(
                is_b64token(&[b'a', b]),
                allowed || b == b'=',
                "byte {b:#04x}"
            );
            assert_eq!(is_b64token(&[b, b'a']), allowed, "byte {b:#04x}");
        }
    }

    #[test]
    fn other_schemes_are_no_credentials() {
        assert_eq!(creds(&[b"Basic dXNlcjpwdw=="], None).unwrap(), None);
        assert_eq!(creds(&[b"Bearerx abc"], None).unwrap(), None);
        assert_eq!(creds(&[], None).unwrap(), None);
    }

    #[test]
    fn two_headers_are_invalid() {
        assert!(matches!(
            creds(&[b"Bearer a", b"Bearer b"], None),
            Err(MalformedCredentials(_))
        ));
    }

    // Short versions of the `bearer` fuzz target (`fuzz/`).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// RFC 6750 §2.1, spelled out again.
        fn b64token(t: &str) -> bool {
            let body = t.trim_end_matches('=');
            !body.is_empty()
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        }

        proptest! {
            #![proptest_config(proptest::test_runner::Config::with_cases(512))]

            /// Every b64token is accepted, as sent, whatever the case of
            /// the scheme.
            #[test]
            fn b64tokens_are_accepted(
                scheme in "[bB][eE][aA][rR][eE][rR]",
                token in "[A-Za-z0-9._~+/-]{1,60}={0,3}",
            ) {
                let value = format!("{scheme} {token}");
                prop_assert_eq!(creds(&[value.as_bytes()], None), Ok(Some(token)));
            }

            /// Whatever header is accepted carries exactly `Bearer `
            /// and a b64token; a Bearer header that is not that is an
            /// error.
            #[test]
            fn only_b64tokens_are_accepted(value in "([bB]earer|Basic|)[ \t]{0,2}[A-Za-z0-9=+/ ,\t\x22~é-]{0,12}") {
                let r = creds(&[value.as_bytes()], None);
                let scheme_end = value.find([' ', '\t']).unwrap_or(value.len());
                let bearer = value[..scheme_end].eq_ignore_ascii_case("bearer");
                match r {
                    Ok(Some(t)) => {
                        prop_assert!(b64token(&t), "{:?}", t);
                        prop_assert_eq!(&value[..scheme_end + 1].to_ascii_lowercase(), "bearer ");
                        prop_assert_eq!(&value[scheme_end + 1..], t.as_str());
                    }
                    Ok(None) => prop_assert!(!bearer, "{:?}", value),
                    Err(_) => prop_assert!(bearer, "{:?}", value),
                }
            }
        }
    }

    #[test]
    fn query_tokens_are_refused() {
        for q in ["access_token=x", "a=1&access_token=", "access%5Ftoken=x"] {
            assert!(
                matches!(creds(&[], Some(q)), Err(MalformedCredentials(_))),
                "{q}"
            );
        }
        assert_eq!(creds(&[], Some("x=access_token")).unwrap(), None);
        assert_eq!(creds(&[], Some("a=1")).unwrap(), None);
    }
}
