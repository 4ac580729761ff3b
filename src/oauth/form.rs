//! `application/x-www-form-urlencoded` request bodies, strictly
//! (RFC 6749 §3.1; `docs/http.md`, "Forms"):
//!
//! - the media type must be `application/x-www-form-urlencoded` (any
//!   parameters, e.g. `charset=UTF-8`, are allowed); anything else is
//!   `invalid_request`;
//! - the body is at most [`MAX_FORM_BYTES`] (413 beyond), read within a
//!   deadline;
//! - `+` is a space, `%XX` a byte; a `%` not followed by two hex digits, or
//!   bytes that do not decode to UTF-8, are `invalid_request` (no lossy
//!   decoding, so what we check is what was sent);
//! - a parameter given twice is `invalid_request`;
//! - a parameter sent without a value is treated as omitted.
//!
//! Values may hold passwords: [`Form`]'s `Debug` prints only the names, and
//! the values are zeroed when it is dropped.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::Rejection;
use crate::percent::escape_at;

/// Largest form body accepted on `/oauth/*`.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

fn invalid(description: &'static str) -> Rejection {
    Rejection::oauth(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// The parameters of a form body; each name at most once.
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        for (_, v) in &mut self.pairs {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

impl Form {
    /// Check the content type, then read and parse the body.
    pub async fn read<B>(
        headers: &HeaderMap,
        body: B,
        deadline: Duration,
    ) -> Result<Form, Rejection>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        check_content_type(headers)?;
        if let Some(len) = headers.get(CONTENT_LENGTH) {
            let len = len
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| invalid("invalid Content-Length"))?;
            if len > MAX_FORM_BYTES as u64 {
                return Err(Rejection::PayloadTooLarge);
            }
        }
        let collected =
            tokio::time::timeout(deadline, Limited::new(body, MAX_FORM_BYTES).collect())
                .await
                .map_err(|_| invalid("the request body was not received in time"))?;
        let bytes = match collected {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Rejection::PayloadTooLarge)
            }
            Err(_) => return Err(invalid("the request body could not be read")),
        };
        Form::parse(&bytes)
    }

    /// Parse a form body.
    pub fn parse(body: &[u8]) -> Result<Form, Rejection> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in body.split(|b| *b == b'&') {
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.iter().position(|b| *b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            let name = decode(name)?;
            let value = decode(value)?;
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(invalid("a parameter is repeated"));
            }
            pairs.push((name, value));
        }
        Ok(Form { pairs })
    }

    /// Every parameter as decoded, in the order sent, including those sent
    /// without a value (as `""`): what a re-encoding of the form must
    /// reproduce (the fuzz targets and the property tests check that it
    /// does).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of `name`; a parameter without a value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &'static str) -> Result<&str, Rejection> {
        self.get(name).ok_or_else(|| {
            Rejection::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Cow::Owned(format!("the {name} parameter is missing")),
            )
        })
    }
}

/// `application/x-www-form-urlencoded`, case-insensitive, parameters allowed.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ));
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ))
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one name or value.
pub(super) fn decode(s: &[u8]) -> Result<String, Rejection> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = escape_at(s, i)
                    .ok_or_else(|| invalid("invalid percent-encoding in the body"))?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        invalid("the body does not decode to UTF-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(s: &str) -> Result<Form, Rejection> {
        Form::parse(s.as_bytes())
    }

    #[test]
    fn decodes_plus_and_percent() {
        let f = parse("grant_type=password&username=a%2Bb&password=a+b%20c%00&x").unwrap();
        assert_eq!(f.get("grant_type"), Some("password"));
        assert_eq!(f.get("username"), Some("a+b"));
        assert_eq!(f.get("password"), Some("a b c\0"));
        assert_eq!(f.get("x"), None);
        assert_eq!(parse("a=%C3%A9").unwrap().get("a"), Some("é"));
        assert_eq!(parse("&&a=1&").unwrap().get("a"), Some("1"));
    }

    #[test]
    fn rejects_bad_encoding_and_repeats() {
        for bad in [
            "a=%zz", "a=%4", "a=%", "a=%C3", "a=1&a=2", "a=1&a=", "%zz=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_values_are_absent() {
        let f = parse("scope=&a=1").unwrap();
        assert_eq!(f.get("scope"), None);
        assert!(f.require("scope").is_err());
        assert_eq!(f.require("a").unwrap(), "1");
    }

    #[test]
    fn debug_shows_names_only() {
        let f = parse("password=hunter2").unwrap();
        assert_eq!(format!("{f:?}"), "[\"password\"]");
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h).is_err());
        for ok in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=utf-8",
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&h).is_ok(), "{ok}");
        }
        for bad in [
            "application/json",
            "multipart/form-data; boundary=x",
            "text/plain",
            "",
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(bad));
            assert!(check_content_type(&h).is_err(), "{bad}");
        }
    }

    // Short versions of the `token_form` fuzz target (`fuzz/`).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn pairs(form: &Form) -> Vec<(String, String)> {
            form.pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        }

        fn encode(pairs: &[(String, String)]) -> String {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                s.append_pair(k, v);
            }
            s.finish()
        }

        /// Bodies made of the characters that matter to the parser.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    4 => prop::sample::select(b"ab=&+%".to_vec()),
                    2 => prop::sample::select(b"0123456789abcdefABCDEFgz".to_vec()),
                    1 => any::<u8>(),
                ],
                0..40,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any set of distinct names with any values survives
            /// encoding and parsing unchanged.
            #[test]
            fn encoded_pairs_round_trip(
                map in prop::collection::btree_map(".{0,8}", ".{0,8}", 0..6),
            ) {
                let sent: Vec<(String, String)> = map.into_iter().collect();
                let form = Form::parse(encode(&sent).as_bytes());
                prop_assert!(form.is_ok(), "{:?}", sent);
                prop_assert_eq!(pairs(&form.unwrap()), sent);
            }

            /// A name given twice is refused, whatever the values.
            #[test]
            fn repeated_names_are_refused(
                name in ".{0,6}", a in ".{0,6}", b in ".{0,6}", other in "[a-z]{1,4}",
            ) {
                let body = encode(&[
                    (name.clone(), a),
                    (format!("{name}{other}"), String::new()),
                    (name, b),
                ]);
                prop_assert!(Form::parse(body.as_bytes()).is_err(), "{}", body);
            }

            /// Whatever is accepted re-encodes to the same pairs, with
            /// unique names, and agrees with the WHATWG parser.
            #[test]
            fn accepted_forms_round_trip(body in body()) {
                if let Ok(form) = Form::parse(&body) {
                    let got = pairs(&form);
                    let whatwg: Vec<(String, String)> = form_urlencoded::parse(&body)
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    prop_assert_eq!(&got, &whatwg);
                    for (i, (k, _)) in got.iter().enumerate() {
                        prop_assert!(got[..i].iter().all(|(p, _)| p != k));
                    }
                    let again = Form::parse(encode(&got).as_bytes());
                    prop_assert!(again.is_ok());
                    prop_assert_eq!(pairs(&again.unwrap()), got);
                }
            }
        }
    }

    #[tokio::test]
    async fn body_limits() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let big = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_FORM_BYTES + 1]));
        let r = Form::read(&h, big, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(r, Rejection::PayloadTooLarge);
        h.insert(CONTENT_LENGTH, HeaderValue::from(MAX_FORM_BYTES as u64 + 1));
        let small = http_body_util::Full::new(Bytes::from_static(b"a=1"));
        assert_eq!(
            Form::read(&h, small, Duration::from_secs(1))
                .await
                .unwrap_err(),
            Rejection::PayloadTooLarge
        );
    }
}
