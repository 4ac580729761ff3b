//! The login page's form: `POST /oauth/authorize`, which reads its fields
//! with [`Form::parse`] and its browser nonce from `Cookie`, checks the
//! anti-CSRF token against the authorization request, and validates the
//! request ([`authorize::validate`]).
//!
//! Input: the `Cookie` header value, a `\n`, then the form body (which may
//! itself hold more `\n`). Without a `\n`, all of it is the body.
//!
//! Properties:
//! - a nonce taken from `Cookie` is one of ours (22 base64url characters)
//!   and was sent;
//! - the body obeys the form parser's properties ([`crate::token_form`]);
//! - a request `validate` accepts has `response_type=code`,
//!   `code_challenge_method=S256`, a 43-character base64url challenge, a
//!   `state` of at most 1024 bytes and only scopes the client may have;
//! - the page round-trips: for an accepted request, the login page
//!   rendered for it, read by a browser (HTML attribute parsing) and
//!   posted back (the browser's form encoding) gives the same
//!   authorization request, the username as the page showed it, and an
//!   anti-CSRF token that verifies; a token that is not the one minted
//!   never verifies.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use scopegate::clients::store::{ClientScope, Registered};
use scopegate::oauth::authorize::csrf::{nonce_from, CsrfKey};
use scopegate::oauth::authorize::{self, page, raw_params};
use scopegate::oauth::form::Form;

/// The request time used for minting and verifying tokens.
const NOW: i64 = 1_700_000_000;
/// The nonce used when the cookie carries none.
const FALLBACK_NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAA";
pub const CLIENT_ID: &str = "sgc_fuzz";
pub const REDIRECT_URI: &str = "https://app.example/cb?x=1&y=<2>";

fn client() -> Registered {
    Registered {
        pk: 1,
        client_id: CLIENT_ID.to_owned(),
        // Characters the page must escape.
        name: "Fuzz <app> & \"co\" 'x'".to_owned(),
        secret_hash: None,
        account_id: 1,
        account_active: true,
        scopes: ["orders:read", "orders:write", "profile"]
            .iter()
            .enumerate()
            .map(|(i, s)| ClientScope {
                id: i as i32,
                value: (*s).to_owned(),
            })
            .collect(),
        redirect_uris: vec![REDIRECT_URI.to_owned()],
    }
}

/// A browser reading the page: every `<input>` in the form, as (name,
/// value) after HTML parsing. The HTML input stream turns CR LF and CR into
/// LF before tokenizing; character references in attribute values are
/// decoded; a NUL in an attribute value becomes U+FFFD (WHATWG HTML
/// §13.2.3.5 and §13.2.5.36-38); a text field's value loses its line
/// breaks (value sanitization, §4.10.5.1.2).
pub fn browser_inputs(html: &str) -> Vec<(String, String)> {
    let html = html.replace("\r\n", "\n").replace('\r', "\n");
    let form = html
        .split_once("<form")
        .and_then(|(_, rest)| rest.split_once("</form>"))
        .map(|(f, _)| f)
        .expect("the login page has a form");
    let mut inputs = Vec::new();
    for tag in form.split("<input").skip(1) {
        let name = attribute(tag, "name").expect("every input has a name");
        let mut value = attribute(tag, "value").unwrap_or_default();
        if attribute(tag, "type").as_deref() == Some("text") {
            value.retain(|c| c != '\n');
        }
        inputs.push((name, value));
    }
    inputs
}

/// The double-quoted attribute `name` at the start of `tag`'s attributes.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let tag = &tag[..tag.find('>')?];
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').expect("an escaped & starts a reference");
        out.push(match &rest[..=end] {
            "&amp;" => '&',
            "&lt;" => '<',
            "&gt;" => '>',
            "&quot;" => '"',
            "&#39;" => '\'',
            other => panic!("unexpected character reference {other:?}"),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out.replace('\0', "\u{FFFD}")
}

/// A browser posting the form: the WHATWG urlencoded serializer, after
/// the entry list's newline normalization (every CR, LF and CR LF becomes
/// CR LF in names and values).
pub fn browser_post(fields: &[(String, String)]) -> String {
    fn crlf(s: &str) -> String {
        s.replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\n', "\r\n")
    }
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(&crlf(k), &crlf(v));
    }
    s.finish()
}

/// Seed the thread's random generator (call before fuzzing starts, so
/// that its one-time setup is not counted as coverage of every run).
pub fn init() {
    CsrfKey::random();
}

pub fn check(data: &[u8]) {
    let (cookie, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_bytes(c).ok()) {
        headers.insert(COOKIE, v);
    }
    let nonce = nonce_from(&headers);
    if let Some(n) = &nonce {
        assert!(
            n.len() == 22
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "nonce {n:?}"
        );
        let sent = cookie.map(String::from_utf8_lossy).unwrap_or_default();
        assert!(sent.contains(n.as_str()), "nonce {n:?} not in {sent:?}");
    }
    let nonce = nonce.unwrap_or_else(|| FALLBACK_NONCE.to_owned());

    let Some(form) = crate::token_form::parsed(body) else {
        return;
    };
    // Step 1 (`resolve`), which needs the database, reduced to the one
    // client: anything else gets the 400 page.
    if form.get("client_id") != Some(CLIENT_ID)
        || form.get("redirect_uri").is_some_and(|u| u != REDIRECT_URI)
    {
        return;
    }
    let client = client();
    let raw = raw_params(&form);
    let key = CsrfKey::random();
    let token = key.token(NOW, &nonce, &raw);
    if let Some(sent) = form.get("csrf").filter(|t| *t != token) {
        assert!(
            !key.verify(sent, NOW, &nonce, &raw),
            "a token we did not mint verifies: {sent:?}"
        );
    }
    let Ok(valid) = authorize::validate(&client, &form) else {
        return;
    };
    assert_eq!(form.get("response_type"), Some("code"));
    assert_eq!(form.get("code_challenge_method"), Some("S256"));
    let challenge = &valid.code_challenge;
    assert!(
        challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "challenge {challenge:?}"
    );
    assert!(form.get("state").is_none_or(|s| s.len() <= 1024));
    for s in valid.scopes.iter().flatten() {
        assert!(client.allows(s), "scope {s:?} is not the client's");
    }

    // The page, as `POST /oauth/authorize` renders it again.
    let username = form.get("username").unwrap_or("");
    let hidden = authorize::hidden_fields(&raw, &token);
    let html = page::login(&page::Login {
        client_name: &client.name,
        scopes: valid.scopes.as_deref(),
        hidden: &hidden,
        username,
        error: Some("The username or password is incorrect."),
    });
    let mut fields = browser_inputs(&html);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<&str> = hidden
        .iter()
        .map(|(k, _)| *k)
        .chain(["username", "password"])
        .collect();
    assert_eq!(names, want, "the form's fields");
    // The user types a password; the rest is posted as rendered.
    if let Some((_, pw)) = fields.last_mut() {
        *pw = form.get("password").unwrap_or("pw").to_owned();
    }
    let posted = browser_post(&fields);
    let again = match Form::parse(posted.as_bytes()) {
        Ok(f) => f,
        Err(e) => panic!("the posted login form {posted:?} is refused: {e:?}"),
    };
    assert_eq!(
        raw_params(&again),
        raw,
        "the posted form {posted:?} is another authorization request"
    );
    // The username is only a convenience (the token does not cover it):
    // it comes back as a browser shows it.
    let shown: String = username
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect();
    assert_eq!(again.get("username").unwrap_or(""), shown);
    let csrf = again.get("csrf").unwrap_or("");
    assert!(
        key.verify(csrf, NOW, &nonce, &raw_params(&again)),
        "the token on the page does not verify once posted"
    );
}
