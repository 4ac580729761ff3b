//! A short version of the `login_form` fuzz target (`fuzz/`): the login
//! page's form, rendered for an accepted authorization request, read by a
//! browser and posted back, is the same request with a token that
//! verifies.

use super::*;
use crate::clients::store::ClientScope;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;
const NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAA";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn client() -> Registered {
    Registered {
        pk: 1,
        client_id: "sgc_t".into(),
        name: "T <&> \"q\"".into(),
        secret_hash: None,
        account_id: 1,
        account_active: true,
        scopes: vec![
            ClientScope {
                id: 1,
                value: "a:read".into(),
            },
            ClientScope {
                id: 2,
                value: "b".into(),
            },
        ],
        redirect_uris: vec!["https://c.example/cb?x=1&y=2".into()],
    }
}

/// A browser reading the page's form fields (WHATWG HTML): line breaks
/// normalized to LF by the input stream, references decoded, NUL turned
/// into U+FFFD, line breaks dropped from a text field's value.
fn browser_fields(html: &str) -> Vec<(String, String)> {
    let html = html.replace("\r\n", "\n").replace('\r', "\n");
    let attr = |tag: &str, name: &str| -> Option<String> {
        let tag = &tag[..tag.find('>')?];
        let needle = format!(" {name}=\"");
        let start = tag.find(&needle)? + needle.len();
        let v = &tag[start..start + tag[start..].find('"')?];
        Some(
            v.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
                .replace('\0', "\u{FFFD}"),
        )
    };
    html.split("<input")
        .skip(1)
        .map(|tag| {
            let mut value = attr(tag, "value").unwrap_or_default();
            if attr(tag, "type").as_deref() == Some("text") {
                value.retain(|c| c != '\n');
            }
            (attr(tag, "name").unwrap_or_default(), value)
        })
        .collect()
}

/// A browser posting them: line breaks become CR LF, then the
/// urlencoded serializer.
fn browser_post(fields: &[(String, String)]) -> String {
    let crlf = |s: &str| {
        s.replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\n', "\r\n")
    };
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(&crlf(k), &crlf(v));
    }
    s.finish()
}

fn request(state: &str) -> Form {
    let c = client();
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.extend_pairs([
        ("client_id", c.client_id.as_str()),
        ("response_type", "code"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", state),
    ]);
    Form::parse(body.finish().as_bytes()).expect("an encoded form")
}

/// Found by the `login_form` fuzz target: a `state` holding a line break
/// or a NUL was accepted, and then the login form could never be
/// submitted (the browser posts it back changed, so the anti-CSRF token
/// no longer matches). `state` is `1*VSCHAR` (RFC 6749 Appendix A.5).
#[test]
fn state_must_be_printable_ascii() {
    for bad in ["a\nb", "a\r\nb", "a\rb", "a\0b", "\t", "a\x7fb", "é"] {
        let r = validate(&client(), &request(bad));
        assert!(
            matches!(r, Err(("invalid_request", _))),
            "{bad:?} -> {:?}",
            r.map(|_| ())
        );
    }
    for good in [" ", "st<b>&\"x'~", "\"><script>alert(1)</script>"] {
        assert!(validate(&client(), &request(good)).is_ok(), "{good:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_login_form_round_trips(
        state in proptest::option::of("[ -~é\\n\\r\\t\\x00\\x01]{1,12}"),
        scope in proptest::option::of(prop::sample::select(vec!["a:read", "b", "a:read b", "", "c"])),
        username in "[ -~é]{0,8}",
    ) {
        let c = client();
        let mut sent = vec![
            ("client_id", c.client_id.as_str()),
            ("response_type", "code"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("username", &username),
        ];
        if let Some(s) = &state { sent.push(("state", s)); }
        if let Some(s) = scope { sent.push(("scope", s)); }
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(&sent);
        let form = Form::parse(body.finish().as_bytes()).expect("an encoded form");
        let Ok(valid) = validate(&c, &form) else { return Ok(()) };
        let key = CsrfKey::random();
        let raw = raw_params(&form);
        let token = key.token(NOW, NONCE, &raw);
        let hidden = hidden_fields(&raw, &token);
        let html = page::login(&page::Login {
            client_name: &c.name,
            scopes: valid.scopes.as_deref(),
            hidden: &hidden,
            username: &username,
            error: None,
        });
        let mut fields = browser_fields(&html);
        if let Some((_, pw)) = fields.last_mut() { *pw = "pw".into(); }
        let again = Form::parse(browser_post(&fields).as_bytes()).expect("a posted form");
        prop_assert_eq!(raw_params(&again), raw);
        prop_assert_eq!(again.get("username").unwrap_or(""), username.as_str());
        prop_assert!(key.verify(again.get("csrf").unwrap_or(""), NOW, NONCE, &raw_params(&again)));
    }
}
