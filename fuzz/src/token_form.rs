//! The strict form parser of the token endpoint
//! ([`scopegate::oauth::form::Form::parse`]).
//!
//! Input: the request body.
//!
//! Properties, against `form_urlencoded` (the WHATWG parser) as the
//! oracle:
//! - the body is accepted exactly when every `%` starts an escape with two
//!   hex digits, every name and value decodes to UTF-8, and no name is
//!   given twice (`docs/http.md`, "Forms");
//! - an accepted form holds the pairs the WHATWG parser finds, in order;
//! - re-encoding the pairs and parsing again gives the same pairs
//!   (nothing is lost or invented by a round trip), and the names are
//!   unique;
//! - `get` agrees with the pairs (an empty value counts as absent).

use scopegate::oauth::form::Form;

/// Does every `%` in `part` start a well-formed escape?
fn escapes_well_formed(part: &[u8]) -> bool {
    part.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || (part.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && part.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Strict decoding of one name or value: `+` is a space, `None` when the
/// bytes are not UTF-8 once decoded.
fn decodes(part: &[u8]) -> bool {
    let plus: Vec<u8> = part
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus)
        .decode_utf8()
        .is_ok()
}

/// The WHATWG serialization of `pairs`.
pub fn encode<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn owned(form: &Form) -> Vec<(String, String)> {
    form.pairs()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The form's pairs, after checking them against the oracle; `None` when
/// the body is (rightly) refused.
pub fn parsed(body: &[u8]) -> Option<Form> {
    let whatwg: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let well_formed = body
        .split(|b| *b == b'&')
        .all(|part| escapes_well_formed(part) && part.split(|b| *b == b'=').all(decodes));
    let unique = whatwg
        .iter()
        .enumerate()
        .all(|(i, (k, _))| whatwg[..i].iter().all(|(p, _)| p != k));
    let form = match Form::parse(body) {
        Ok(form) => form,
        Err(e) => {
            assert!(
                !(well_formed && unique),
                "{:?} refused: {e:?}",
                String::from_utf8_lossy(body)
            );
            return None;
        }
    };
    assert!(
        well_formed && unique,
        "{:?} accepted (well formed {well_formed}, unique names {unique})",
        String::from_utf8_lossy(body)
    );
    let pairs = owned(&form);
    assert_eq!(pairs, whatwg, "pairs differ from the WHATWG parser's");
    for (k, v) in &pairs {
        assert_eq!(form.get(k), Some(v.as_str()).filter(|v| !v.is_empty()));
    }
    let encoded = encode(form.pairs());
    match Form::parse(encoded.as_bytes()) {
        Ok(again) => assert_eq!(owned(&again), pairs, "round trip through {encoded:?}"),
        Err(e) => panic!("the re-encoded form {encoded:?} is refused: {e:?}"),
    }
    Some(form)
}

pub fn check(data: &[u8]) {
    parsed(data);
}
