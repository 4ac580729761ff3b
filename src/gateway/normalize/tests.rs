use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};

fn n(p: &str) -> Result<String, PathError> {
    normalize_path(p).map(Cow::into_owned)
}

#[test]
fn normal_paths_are_borrowed() {
    for p in [
        "/",
        "/api",
        "/api/orders/7",
        "/a/",
        "/a/b/",
        "/a.b/c..d/.e/e./...",
        "/%20x",
        "/a%2Cb",
        "/%252e%252e",
        "/%C3%A9",
        "/é/€",
        "/a:b@c!$&'()*+,=",
        "/a?b",
    ] {
        assert!(
            matches!(normalize_path(p), Ok(Cow::Borrowed(_))),
            "{p} should be borrowed"
        );
    }
}

#[test]
fn rewritten_paths_are_owned() {
    for p in ["//", "/a//b", "/.", "/a/..", "/%41", "/%c3%a9", "/a/./b"] {
        assert!(
            matches!(normalize_path(p), Ok(Cow::Owned(_))),
            "{p} should be rewritten"
        );
    }
}

#[test]
fn slashes_collapse() {
    assert_eq!(n("//admin").unwrap(), "/admin");
    assert_eq!(n("//").unwrap(), "/");
    assert_eq!(n("///").unwrap(), "/");
    assert_eq!(n("/a//b///c").unwrap(), "/a/b/c");
    assert_eq!(n("/a//").unwrap(), "/a/");
    assert_eq!(n("/a/").unwrap(), "/a/");
}

#[test]
fn dot_segments() {
    assert_eq!(n("/public/../admin/users").unwrap(), "/admin/users"); // climbing out of a public prefix
    assert_eq!(n("/./admin").unwrap(), "/admin"); // a `.` segment hiding the prefix
    assert_eq!(n("/admin/.").unwrap(), "/admin/"); // a trailing `.` segment
    assert_eq!(n("/a/./b").unwrap(), "/a/b");
    assert_eq!(n("/a/b/..").unwrap(), "/a/");
    assert_eq!(n("/a/b/../").unwrap(), "/a/");
    assert_eq!(n("/a/.").unwrap(), "/a/");
    assert_eq!(n("/a/./").unwrap(), "/a/");
    assert_eq!(n("/.").unwrap(), "/");
    assert_eq!(n("/a/..").unwrap(), "/");
    assert_eq!(n("/a/b/../../c").unwrap(), "/c");
    assert_eq!(n("/a/./../b/./c/.").unwrap(), "/b/c/");
    // `//` collapses before `..` is resolved.
    assert_eq!(n("/a//..").unwrap(), "/");
    // Not dot segments.
    assert_eq!(n("/.../..a/a..").unwrap(), "/.../..a/a..");
    assert_eq!(n("/.a/a.").unwrap(), "/.a/a.");
}

#[test]
fn climbing_above_the_root_is_rejected() {
    for p in [
        "/..",
        "/../",
        "/../a",
        "/a/../..",
        "/public/../../admin",
        "/%2e%2e",
        "/a/%2E%2E/%2e%2e/b",
        "//..",
    ] {
        assert_eq!(n(p).unwrap_err(), PathError::EscapesRoot, "{p}");
    }
}

#[test]
fn encoded_dots_are_resolved() {
    // Encoded dots are dot segments too (`docs/security.md`, "Path normalization").
    assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
    assert_eq!(n("/public/%2E%2E/admin").unwrap(), "/admin");
    assert_eq!(n("/public/.%2e/admin").unwrap(), "/admin");
    assert_eq!(n("/public/%2e./admin").unwrap(), "/admin");
    assert_eq!(n("/a/%2e/b").unwrap(), "/a/b");
    assert_eq!(n("/a/%2e").unwrap(), "/a/");
    assert_eq!(n("/a/%2e%2e%2e").unwrap(), "/a/...");
}

#[test]
fn escapes_are_canonical() {
    assert_eq!(n("/%7euser").unwrap(), "/~user");
    assert_eq!(n("/%41%62%2D%5f%30").unwrap(), "/Ab-_0");
    assert_eq!(n("/a%2cb").unwrap(), "/a%2Cb");
    assert_eq!(n("/a%3bb").unwrap(), "/a%3Bb");
    assert_eq!(n("/a%20b").unwrap(), "/a%20b");
    assert_eq!(n("/%c3%a9").unwrap(), "/%C3%A9");
    assert_eq!(n("/%C3%a9").unwrap(), "/%C3%A9");
    assert_eq!(n("/a%3f%23").unwrap(), "/a%3F%23");
    // Double encoding: decoded once only.
    assert_eq!(
        n("/public/%252e%252e/admin").unwrap(),
        "/public/%252e%252e/admin"
    );
    assert_eq!(n("/%252f").unwrap(), "/%252f");
    assert_eq!(n("/%25").unwrap(), "/%25");
}

/// Rejected paths and why, one or more of every kind.
fn rejection_cases() -> Vec<(&'static str, PathError)> {
    use PathError::*;
    vec![
        ("", NotAbsolute),
        ("admin", NotAbsolute),
        ("*", NotAbsolute),
        ("http://a/b", NotAbsolute),
        ("/public%2F..%2Fadmin", EncodedSlash), // an encoded slash hiding `..`
        ("/admin%2Fusers", EncodedSlash),
        ("/a%2fb", EncodedSlash),
        ("/public/..%5Cadmin", EncodedBackslash), // an encoded backslash hiding `..`
        ("/a%5cb", EncodedBackslash),
        ("/public\\..\\admin", Backslash), // backslashes as separators
        ("/admin%00.json", Nul),           // NUL truncation
        ("/admin\0", Nul),
        ("/a\tb", ControlChar),
        ("/a\r\nb", ControlChar),
        ("/a\x7f", ControlChar),
        ("/%c0%ae%c0%ae", InvalidUtf8), // overlong UTF-8 dots
        ("/%C0%AE", InvalidUtf8),
        ("/%e0%80%ae", InvalidUtf8),    // overlong, 3 bytes
        ("/%ed%a0%80", InvalidUtf8),    // surrogate
        ("/%f4%90%80%80", InvalidUtf8), // above U+10FFFF
        ("/%ff", InvalidUtf8),
        ("/%C3", InvalidUtf8),  // truncated at the end
        ("/%C3/", InvalidUtf8), // truncated by a raw byte
        ("/%80", InvalidUtf8),  // lone continuation
        ("/%C3é", InvalidUtf8), // escape then a raw lead byte
        ("/%zz", InvalidPercent),
        ("/%4", InvalidPercent),
        ("/%", InvalidPercent),
        ("/%%41", InvalidPercent),
        ("/%4g", InvalidPercent),
        ("/%+1", InvalidPercent),
        ("/admin#x", Fragment), // a fragment in the target
        ("/#", Fragment),
        ("/admin;jsessionid=x", Semicolon), // matrix parameters
        ("/admin;/..;/secret", Semicolon),
        ("/;", Semicolon),
        ("/public/../../admin", EscapesRoot),
        ("/%2e%2e", EscapesRoot),
    ]
}

#[test]
fn rejections() {
    for (p, want) in rejection_cases() {
        assert_eq!(n(p), Err(want), "{p:?}");
    }
}

#[test]
fn decoding_to_valid_utf8_across_escapes_and_raw_bytes() {
    // A raw multi-byte character next to escapes is fine.
    assert_eq!(n("/é%41").unwrap(), "/éA");
    assert_eq!(n("/%E2%82%AC€").unwrap(), "/%E2%82%AC€");
}

/// The 400's description is a fixed text per kind of rejection: every
/// input of one kind gets the same text, so none of it comes from the
/// input; it holds neither the path nor a word of it; and two kinds never
/// share a text (the client learns which rule it broke).
#[test]
fn descriptions_never_echo_and_are_distinct() {
    let mut text_of = std::collections::HashMap::new();
    for (p, kind) in rejection_cases() {
        let e = n(p).unwrap_err();
        assert_eq!(e, kind, "{p:?}");
        for d in [e.description().to_owned(), e.to_string()] {
            let first = text_of
                .entry(format!("{kind:?}"))
                .or_insert_with(|| d.clone());
            assert_eq!(*first, d, "{kind:?} has another text for {p:?}");
            if p.len() > 1 {
                assert!(!d.contains(p), "{d:?} echoes {p:?}");
            }
            for word in p.split(|c: char| !c.is_ascii_alphanumeric()) {
                if word.len() >= 4 {
                    assert!(!d.contains(word), "{d:?} echoes {word:?} of {p:?}");
                }
            }
        }
    }
    // Every kind is in the table, and no two kinds share a text.
    assert_eq!(text_of.len(), ALL_KINDS.len(), "{text_of:?}");
    let distinct: std::collections::HashSet<_> = text_of.values().collect();
    assert_eq!(distinct.len(), text_of.len(), "{text_of:?}");
}

const ALL_KINDS: [PathError; 11] = [
    PathError::NotAbsolute,
    PathError::EncodedSlash,
    PathError::EncodedBackslash,
    PathError::Backslash,
    PathError::Nul,
    PathError::InvalidUtf8,
    PathError::InvalidPercent,
    PathError::EscapesRoot,
    PathError::Fragment,
    PathError::Semicolon,
    PathError::ControlChar,
];

// ---------------------------------------------------------------------
// Property tests.

/// One piece of a path: plain characters, every kind of escape, the
/// characters that are rejected, and dot segments.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9._~-]{1,3}",
        2 => Just(".".to_owned()),
        2 => Just("..".to_owned()),
        2 => Just("/".to_owned()),
        2 => Just("//".to_owned()),
        2 => prop::sample::select(vec![
            "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%00", "%25", "%252e", "%41",
            "%7e", "%7E", "%20", "%3b", "%3B", "%23", "%c3%a9", "%C3%A9", "%c0%ae", "%ff",
            "%e2%82%ac",
        ])
        .prop_map(str::to_owned),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(b, upper)| {
            if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }
        }),
        1 => prop::sample::select(vec![
            "\\", ";", "#", "\t", "\0", "%", "%4", "%zz", "é", "€", ":", "@", "?",
        ])
        .prop_map(str::to_owned),
    ]
}

fn any_path() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..12).prop_map(|v| format!("/{}", v.concat()))
}

/// A reference resolver, written independently of the implementation:
/// split on `/`, fully percent-decode each segment, then resolve with
/// empty segments dropped (`//` collapses). Returns the segments the
/// path really names, or `None` when it climbs above the root.
fn reference(raw: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for seg in raw.split('/').skip(1) {
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(seg).collect();
        let seg = String::from_utf8(bytes).ok()?;
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            _ => out.push(seg),
        }
    }
    Some(out)
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Segments used to build prefix-escape attempts.
fn escape_segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        "%2E",
        "%2e",
        ".%2e",
        "%2E.",
        "...",
        "..a",
        "%2e%2e%2e",
        "%252e%252e",
        "a",
        "b",
        "%41",
        "",
        "%2f",
        "%5C",
    ])
}

fn prefix_case() -> impl Strategy<Value = (String, String)> {
    (
        prop::collection::vec("[a-z]{1,5}", 1..4),
        prop::collection::vec(escape_segment(), 0..8),
    )
        .prop_map(|(prefix, suffix)| {
            let p = format!("/{}", prefix.join("/"));
            let raw = if suffix.is_empty() {
                p.clone()
            } else {
                format!("{p}/{}", suffix.join("/"))
            };
            (p, raw)
        })
}

/// The property "no normalized path escapes its matched prefix", for
/// any normalizer `f`: a path built as `P/<suffix>` that `f` accepts is
/// under `P` after normalization exactly when the path it really names
/// (by [`reference`]) is under `P`, and both name the same segments.
/// Errors must be deserved.
fn check_prefix_decision(
    f: impl Fn(&str) -> Result<String, PathError>,
    prefix: &str,
    raw: &str,
) -> Result<(), TestCaseError> {
    let real = reference(raw);
    match f(raw) {
        Err(e) => {
            let lower = raw.to_ascii_lowercase();
            let deserved = match e {
                PathError::EscapesRoot => real.is_none(),
                PathError::EncodedSlash => lower.contains("%2f"),
                PathError::EncodedBackslash => lower.contains("%5c"),
                _ => false,
            };
            prop_assert!(deserved, "{} rejected with {:?}", raw, e);
        }
        Ok(out) => {
            let lower = raw.to_ascii_lowercase();
            prop_assert!(
                !lower.contains("%2f") && !lower.contains("%5c"),
                "{} accepted as {}",
                raw,
                out
            );
            let Some(real) = real else {
                return Err(TestCaseError::fail(format!(
                    "{raw} climbs above the root but was accepted as {out}"
                )));
            };
            let real_path = format!("/{}", real.join("/"));
            // The decision made on the normalized form...
            let decided_under = under(&out, prefix);
            // ...is the decision the real path deserves.
            prop_assert_eq!(
                decided_under,
                under(&real_path, prefix),
                "{} -> {} but really names {}",
                raw,
                out,
                real_path
            );
            // Stronger: the forwarded path names the same resource for
            // an upstream that decodes it once.
            prop_assert_eq!(
                reference(&out),
                Some(real),
                "{} -> {} names another resource",
                raw,
                out
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(PropConfig::with_cases(1024))]

    /// Normalizing twice changes nothing, and a normalized path is
    /// recognised as normal by the fast path (returned borrowed).
    #[test]
    fn idempotent(p in any_path()) {
        if let Ok(once) = normalize_path(&p) {
            let twice = normalize_path(&once);
            prop_assert!(matches!(twice, Ok(Cow::Borrowed(_))), "{} -> {:?}", once, twice);
            prop_assert_eq!(twice.as_deref().ok(), Some(once.as_ref()));
        }
    }

    /// The fast path agrees with the slow path.
    #[test]
    fn fast_path_agrees(p in any_path()) {
        if let Ok(out) = normalize_path(&p) {
            let slow = rewrite(&p);
            prop_assert_eq!(slow.as_deref().ok(), Some(out.as_ref()));
        }
    }

    /// Normal form: rooted, no `//`, no `.`/`..` segment, no encoded
    /// slash, no backslash, no rejected character, escapes upper-case
    /// and never of an unreserved character.
    #[test]
    fn normalized_paths_are_clean(p in any_path()) {
        if let Ok(out) = normalize_path(&p) {
            prop_assert!(out.starts_with('/'));
            prop_assert!(!out.contains("//"), "{}", out);
            prop_assert!(!out.contains(['\\', ';', '#', '\0', '\t']), "{}", out);
            let lower = out.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c"), "{}", out);
            for seg in out.split('/') {
                prop_assert!(seg != "." && seg != "..", "{}", out);
            }
            let b = out.as_bytes();
            for (i, _) in out.match_indices('%') {
                let (h, l) = (b[i + 1], b[i + 2]);
                prop_assert!(h.is_ascii_digit() || (b'A'..=b'F').contains(&h), "{}", out);
                prop_assert!(l.is_ascii_digit() || (b'A'..=b'F').contains(&l), "{}", out);
                prop_assert!(!is_unreserved(escape_at(b, i).unwrap_or(0)), "{}", out);
            }
        }
    }

    /// Agreement with the independent reference resolver on arbitrary
    /// input: accepted paths name what the reference says; paths the
    /// reference cannot decode or that climb are rejected.
    #[test]
    fn agrees_with_reference(p in any_path()) {
        match normalize_path(&p) {
            Ok(out) => prop_assert_eq!(reference(&out), reference(&p), "{} -> {}", p, out),
            Err(PathError::EscapesRoot) => {
                // Only ever reported for well-formed input that climbs.
                prop_assert!(reference(&p).is_none(), "{}", p);
            }
            Err(_) => {}
        }
    }

    /// No normalized path escapes its matched prefix.
    #[test]
    fn no_normalized_path_escapes_its_prefix((prefix, raw) in prefix_case()) {
        check_prefix_decision(|r| normalize_path(r).map(Cow::into_owned), &prefix, &raw)?;
    }
}

/// The prefix property is able to fail: a normalizer that resolves
/// literal dot segments but forgets that `%2e` is a dot (the Envoy
/// GHSA-xcx5-93pw-jw2w class of bug) is caught, and so is one that
/// does nothing at all.
#[test]
fn prefix_property_catches_broken_normalizers() {
    fn literal_dots_only(raw: &str) -> Result<String, PathError> {
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2f") {
            return Err(PathError::EncodedSlash);
        }
        if lower.contains("%5c") {
            return Err(PathError::EncodedBackslash);
        }
        let mut segs: Vec<&str> = Vec::new();
        for s in raw.split('/').skip(1) {
            match s {
                "" | "." => {}
                ".." => {
                    segs.pop().ok_or(PathError::EscapesRoot)?;
                }
                s => segs.push(s),
            }
        }
        Ok(format!("/{}", segs.join("/")))
    }
    fn identity(raw: &str) -> Result<String, PathError> {
        Ok(raw.to_owned())
    }
    type Normalizer = fn(&str) -> Result<String, PathError>;
    let broken: [(&str, Normalizer); 2] = [
        ("literal_dots_only", literal_dots_only),
        ("identity", identity),
    ];
    for (name, f) in broken {
        let mut runner = TestRunner::new(PropConfig::with_cases(2048));
        let result = runner.run(&prefix_case(), |(prefix, raw)| {
            check_prefix_decision(f, &prefix, &raw)
        });
        assert!(result.is_err(), "the property did not catch {name}");
    }
}
