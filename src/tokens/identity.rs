//! Who a valid access token speaks for: the account, its scopes and the
//! OAuth client, as the gateway forwards them in `X-Authenticated-*`
//! headers (`docs/http.md`); [`super::cache`] keeps one per token.

use bytes::Bytes;
use http::HeaderValue;

use super::lookup::AccessRecord;

/// The caller of a valid access token, as the gateway forwards it.
///
/// Compact, because one is cached per token (`docs/operations.md`, "Token
/// cache consistency"): the username, the account id, the granted scopes
/// and the client id are one buffer, and the `X-Authenticated-*` values are
/// slices of it, made per request (a reference count, no copy).
#[derive(Debug, Clone)]
pub struct Identity {
    pub token_id: i64,
    pub account_id: i32,
    /// username, account id, scopes (sorted, space-separated: the RFC
    /// 6749 §3.3 form), client id, back to back; every part was checked
    /// to be a valid header value when the entry was made.
    text: Bytes,
    /// Where the username, the account id and the scopes end in `text`;
    /// the client id is the rest.
    ends: [u32; 3],
    has_client: bool,
}

impl Identity {
    /// The account's username.
    pub fn username(&self) -> &str {
        self.part(Part::User)
    }

    /// The granted scopes, sorted, space-separated.
    pub fn scope(&self) -> &str {
        self.part(Part::Scope)
    }

    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope().split(' ').filter(|s| !s.is_empty())
    }

    /// The `client_id` the token was issued through.
    pub fn client_id(&self) -> Option<&str> {
        self.has_client.then(|| self.part(Part::Client))
    }

    /// `X-Authenticated-User`.
    pub fn user_header(&self) -> Option<HeaderValue> {
        self.header(Part::User)
    }

    /// `X-Authenticated-Account-Id`.
    pub fn account_id_header(&self) -> Option<HeaderValue> {
        self.header(Part::Account)
    }

    /// `X-Authenticated-Scope`.
    pub fn scope_header(&self) -> Option<HeaderValue> {
        self.header(Part::Scope)
    }

    /// `X-Authenticated-Client`: the `client_id` the token was issued
    /// through, if any.
    pub fn client_header(&self) -> Option<HeaderValue> {
        self.has_client.then(|| self.header(Part::Client)).flatten()
    }

    fn range(&self, part: Part) -> std::ops::Range<usize> {
        let at = |i: usize| self.ends.get(i).map_or(self.text.len(), |e| *e as usize);
        let i = part as usize;
        let start = if i == 0 { 0 } else { at(i - 1) };
        start..at(i).max(start)
    }

    /// UTF-8 by construction; a part that were not would read as empty,
    /// never as something else.
    fn part(&self, part: Part) -> &str {
        let bytes = self.text.get(self.range(part)).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// A valid header value by construction (checked in `from_record`):
    /// `None` cannot happen, and would leave the header out.
    fn header(&self, part: Part) -> Option<HeaderValue> {
        let range = self.range(part);
        if range.end > self.text.len() {
            return None;
        }
        HeaderValue::from_maybe_shared(self.text.slice(range)).ok()
    }

    /// The identity a valid token's record describes; `None` if a part
    /// cannot be a header value (the token is then refused).
    pub(super) fn from_record(r: &AccessRecord) -> Option<Identity> {
        let account_id = r.account_id.to_string();
        let client = r.client_id.as_deref().unwrap_or_default();
        let scope = r.scopes.join(" ");
        let parts = [r.username.as_str(), &account_id, &scope, client];
        // Exactly the text's size: the buffer becomes the `Bytes` as is.
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 3];
        for (i, part) in parts.iter().enumerate() {
            // Each part alone must be a header value (no CR, LF, NUL...).
            HeaderValue::from_str(part).ok()?;
            buf.extend_from_slice(part.as_bytes());
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(buf.len()).ok()?;
            }
        }
        Some(Identity {
            token_id: r.token_id,
            account_id: r.account_id,
            text: Bytes::from(buf),
            ends,
            has_client: r.client_id.is_some(),
        })
    }
}

/// The parts of [`Identity::text`], in order.
#[derive(Clone, Copy)]
enum Part {
    User = 0,
    Account = 1,
    Scope = 2,
    Client = 3,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(username: &str, scopes: &[&str], client_id: Option<&str>) -> AccessRecord {
        AccessRecord {
            token_id: 7,
            account_id: 42,
            username: username.to_owned(),
            account_active: true,
            token_active: true,
            expires: 2_000,
            created: 1_000,
            left_ms: 60_000,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            client_id: client_id.map(str::to_owned),
        }
    }

    #[test]
    fn identity_headers_are_slices_of_one_buffer() {
        let id = Identity::from_record(&record("alice", &["a:read", "b:write"], Some("sgc_x")))
            .expect("valid values");
        let value = |v: Option<HeaderValue>| v.expect("a header value");
        assert_eq!(value(id.user_header()), "alice");
        assert_eq!(value(id.account_id_header()), "42");
        assert_eq!(value(id.scope_header()), "a:read b:write");
        assert_eq!(value(id.client_header()), "sgc_x");
        assert_eq!(
            (id.username(), id.scope(), id.client_id()),
            ("alice", "a:read b:write", Some("sgc_x"))
        );
        assert_eq!(id.scopes().collect::<Vec<_>>(), ["a:read", "b:write"]);
        // One buffer: the values point into it.
        let base = id.text.as_ptr() as usize;
        let user = value(id.user_header());
        let client = value(id.client_header());
        assert_eq!(user.as_bytes().as_ptr() as usize, base);
        assert_eq!(
            client.as_bytes().as_ptr() as usize,
            base + id.text.len() - 5
        );

        let id = Identity::from_record(&record("bob", &[], None)).expect("valid values");
        assert_eq!(value(id.user_header()), "bob");
        assert_eq!(value(id.account_id_header()), "42");
        assert_eq!(value(id.scope_header()), "");
        assert_eq!(id.scopes().count(), 0);
        assert!(id.client_header().is_none());
        assert_eq!(id.client_id(), None);
    }

    #[test]
    fn a_username_that_cannot_be_a_header_value_is_refused() {
        assert!(Identity::from_record(&record("a\nb", &["x"], None)).is_none());
        assert!(Identity::from_record(&record("a", &["x"], Some("c\r"))).is_none());
    }
}
