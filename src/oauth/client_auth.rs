//! Client authentication on `/oauth/token`, `/oauth/revoke` and
//! `/oauth/introspect` (RFC 6749 §2.3, `docs/http.md`, "Client
//! authentication").
//!
//! - `client_secret_basic` (RFC 6749 §2.3.1): `Authorization: Basic
//!   base64(urlencode(client_id) ":" urlencode(client_secret))`. The id
//!   and secret are form-urlencoded inside the Basic credentials, as the
//!   RFC requires (so a `:` or `%` in either round-trips).
//! - `client_secret_post`: `client_id` and `client_secret` in the form.
//! - A public client names itself with `client_id` alone (method `none`).
//!
//! Decisions:
//! - Basic and a form `client_secret` together are two methods at once:
//!   `400 invalid_request` (RFC 6749 §2.3: "MUST NOT use more than one").
//!   A form `client_id` next to Basic is allowed only if it is the same id.
//! - Unknown client, wrong secret, a confidential client without its
//!   secret, a public client sending a secret, a client whose service
//!   account is disabled, or malformed Basic credentials: `401
//!   invalid_client`, with `WWW-Authenticate: Basic realm="scopegate"` when
//!   Basic was used (RFC 6749 §5.2). All of them cost the same: an unknown
//!   id is checked against a dummy hash.
//! - Secrets are compared as SHA-256 digests, in constant time.
//! - No client at all is [`Caller::Anonymous`]: the password and
//!   refresh_token grants work for it as they always have.
//! - Any other `Authorization` scheme (e.g. a Bearer token on
//!   `/oauth/introspect`) is not client authentication and is left to the
//!   endpoint.

use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};

use super::form::{decode, Form};
use crate::clients::secret;
use crate::clients::store::{self, Registered};
use crate::db::DbPool;
use crate::error::Rejection;

/// Who is calling, as far as client authentication goes.
#[derive(Debug)]
pub enum Caller {
    /// No client credentials and no `client_id`.
    Anonymous,
    /// A public client, identified by its `client_id` (not authenticated:
    /// it has no secret).
    Public(Registered),
    /// A confidential client that proved its secret.
    Confidential(Registered),
}

impl Caller {
    pub fn client(&self) -> Option<&Registered> {
        match self {
            Caller::Anonymous => None,
            Caller::Public(c) | Caller::Confidential(c) => Some(c),
        }
    }

    /// The client's integer id, if any.
    pub fn pk(&self) -> Option<i32> {
        self.client().map(|c| c.pk)
    }
}

fn invalid_request(description: &'static str) -> Rejection {
    Rejection::oauth(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// Client credentials in an `Authorization: Basic` header: `Ok(None)` when
/// there is no such header (or another scheme), the id and secret when
/// there is one, `invalid_client` when it is malformed.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid_request("more than one Authorization header"));
    }
    let bytes = value.as_bytes();
    let scheme_end = bytes.iter().position(|b| *b == b' ').unwrap_or(bytes.len());
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    let malformed = Rejection::InvalidClient { basic: true };
    let encoded = bytes
        .get(scheme_end + 1..)
        .map(|b| b.trim_ascii())
        .unwrap_or_default();
    if encoded.is_empty() || encoded.len() > 1024 {
        return Err(malformed);
    }
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let Ok(mut decoded) = engine.decode(encoded) else {
        return Err(malformed);
    };
    let parsed = decoded
        .iter()
        .position(|b| *b == b':')
        .and_then(|i| Some((decode(&decoded[..i]).ok()?, decode(&decoded[i + 1..]).ok()?)));
    zeroize::Zeroize::zeroize(&mut decoded);
    match parsed {
        Some((id, secret)) if !id.is_empty() => Ok(Some((id, secret))),
        _ => Err(malformed),
    }
}

/// Did the request try HTTP Basic (so a 401 carries the Basic challenge)?
pub fn basic_used(headers: &HeaderMap) -> bool {
    headers.get(AUTHORIZATION).is_some_and(|v| {
        v.as_bytes()
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"basic "))
    })
}

/// Authenticate the client of a request whose form is `form` (see the
/// module documentation for the rules).
pub async fn authenticate(
    db: &DbPool,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Caller, Rejection> {
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    match basic_credentials(headers)? {
        Some((id, mut secret)) => {
            if form_secret.is_some() {
                zeroize::Zeroize::zeroize(&mut secret);
                return Err(invalid_request(
                    "use one client authentication method: HTTP Basic or client_secret in the form, not both",
                ));
            }
            if form_id.is_some_and(|f| f != id) {
                zeroize::Zeroize::zeroize(&mut secret);
                return Err(invalid_request(
                    "client_id in the form differs from the one in the Authorization header",
                ));
            }
            let caller = check(
                db,
                &id,
                Some(secret.as_str()).filter(|s| !s.is_empty()),
                true,
            )
            .await;
            zeroize::Zeroize::zeroize(&mut secret);
            caller
        }
        None => match (form_id, form_secret) {
            (None, None) => Ok(Caller::Anonymous),
            (None, Some(_)) => Err(invalid_request("client_secret without client_id")),
            (Some(id), secret) => check(db, id, secret, false).await,
        },
    }
}

async fn check(
    db: &DbPool,
    client_id: &str,
    secret: Option<&str>,
    basic: bool,
) -> Result<Caller, Rejection> {
    let fail = Rejection::InvalidClient { basic };
    let Some(client) = store::lookup(db, client_id).await? else {
        if let Some(s) = secret {
            secret::verify_dummy(s);
        }
        return Err(fail);
    };
    if !client.account_active {
        return Err(fail);
    }
    match (&client.secret_hash, secret) {
        (Some(hash), Some(s)) if secret::verify(s, hash) => Ok(Caller::Confidential(client)),
        (None, None) => Ok(Caller::Public(client)),
        _ => Err(fail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn basic(value: &str) -> Result<Option<(String, String)>, Rejection> {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        basic_credentials(&h)
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_is_form_urlencoded_inside() {
        assert_eq!(
            basic(&format!("Basic {}", b64("sgc_x:s%3Ac+d"))).unwrap(),
            Some(("sgc_x".into(), "s:c d".into()))
        );
        assert_eq!(
            basic(&format!("basic {}", b64("id:"))).unwrap(),
            Some(("id".into(), "".into()))
        );
        // Padding may be left off.
        let unpadded = b64("ab:c").trim_end_matches('=').to_owned();
        assert_eq!(
            basic(&format!("Basic {unpadded}")).unwrap(),
            Some(("ab".into(), "c".into()))
        );
    }

    #[test]
    fn malformed_basic_is_invalid_client_with_a_challenge() {
        for bad in [
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", b64("no-colon")),
            format!("Basic {}", b64(":secret")),
            format!("Basic {}", b64("id:%zz")),
        ] {
            assert_eq!(
                basic(&bad),
                Err(Rejection::InvalidClient { basic: true }),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_schemes_are_not_client_authentication() {
        assert_eq!(basic("Bearer sga_x").unwrap(), None);
        assert_eq!(basic_credentials(&HeaderMap::new()).unwrap(), None);
        let mut h = HeaderMap::new();
        assert!(!basic_used(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bAsIc eDo="));
        assert!(basic_used(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!basic_used(&h));
    }
}
