//! OAuth scope strings (RFC 6749 §3.3) and scopegate's one extension, the
//! `prefix:*` wildcard (`docs/configuration.md`, "Scopes").
//!
//! A scope-token is one or more printable ASCII characters other than space,
//! `"` and `\` (`%x21 / %x23-5B / %x5D-7E`). Matching is exact and
//! case-sensitive; the only extension is a trailing `:*`, which stands for
//! every scope with that prefix (`orders:*` covers `orders:read`).

/// True when `s` is a valid RFC 6749 scope-token.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The prefix a wildcard scope stands for, including the colon
/// (`orders:*` -> `orders:`), or `None` for a plain scope.
pub fn wildcard_prefix(s: &str) -> Option<&str> {
    s.strip_suffix('*').filter(|p| p.ends_with(':'))
}

/// Does a granted scope satisfy a required one?
///
/// - exact equality always does;
/// - a required `p:*` is satisfied by any granted scope starting with `p:`;
/// - a granted `p:*` satisfies any required scope starting with `p:`.
pub fn satisfies(granted: &str, required: &str) -> bool {
    if granted == required {
        return true;
    }
    if let Some(prefix) = wildcard_prefix(required) {
        if granted.starts_with(prefix) {
            return true;
        }
    }
    if let Some(prefix) = wildcard_prefix(granted) {
        if required.starts_with(prefix) {
            return true;
        }
    }
    false
}

/// Split a space-delimited scope parameter; `None` when any token is invalid.
pub fn parse_list(s: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(' ').filter(|p| !p.is_empty()) {
        if !is_valid(part) {
            return None;
        }
        if !out.iter().any(|x| x == part) {
            out.push(part.to_owned());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert!(is_valid("orders:read"));
        assert!(is_valid("a"));
        assert!(!is_valid(""));
        assert!(!is_valid("a b"));
        assert!(!is_valid("a\"b"));
        assert!(!is_valid("a\\b"));
        assert!(!is_valid("é"));
        assert!(!is_valid("a\tb"));
    }

    #[test]
    fn wildcards_both_ways() {
        assert!(satisfies("orders:read", "orders:read"));
        assert!(!satisfies("orders:read", "Orders:read"));
        assert!(satisfies("orders:read", "orders:*"));
        assert!(satisfies("orders:*", "orders:write"));
        assert!(!satisfies("orders:*", "ordersx:write"));
        assert!(!satisfies("ordersx", "orders:*"));
        assert!(!satisfies("admin ", "admin"));
        // a bare `*` is not a wildcard: it has no `prefix:` in front.
        assert!(!satisfies("*", "orders:read"));
    }

    #[test]
    fn list_parsing() {
        assert_eq!(
            parse_list("a  b a").unwrap(),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert!(parse_list("a \"b").is_none());
        assert_eq!(parse_list("").unwrap(), Vec::<String>::new());
    }
}
