//! The authorize phase: does a token's granted scope set satisfy a route's
//! [`Access`]?
//!
//! - [`Access::Public`] is always allowed (its token, if any, was still
//!   validated by the authenticate phase);
//! - [`Access::Token`]: every scope in `all` (the route's `scopes`) must be
//!   satisfied, and when `any` (`any_scopes`) is non-empty, at least one of
//!   them must be; with both empty a valid token is enough.
//!
//! A required scope is satisfied when some granted scope `g` has
//! [`crate::scope::satisfies`]`(g, required)`: exact, case-sensitive byte
//! equality (`Admin` and `admin ` are not `admin`: RFC 6749 §3.3 scope
//! tokens are case-sensitive strings), plus the `prefix:*` wildcard on
//! either side (`docs/configuration.md`, "Scope rules").
//!
//! The granted scopes may be given as a list ([`authorize`] with `&[S]`,
//! `&Vec<S>`, `&[S; N]`: one scope per element, compared as is) or as the
//! space-separated scope string of RFC 6749 §3.3 (`&str`, `&String`,
//! `&Box<str>`, e.g. [`crate::tokens::identity::Identity::scope`]: split on
//! single spaces, empty items ignored). Neither form allocates.

use crate::config::Access;
use crate::scope::satisfies;

/// The outcome of [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403 `insufficient_scope`.
    InsufficientScope,
}

/// A set of granted scopes: a list of scope-tokens, or a space-separated
/// scope string (RFC 6749 §3.3).
pub trait GrantedScopes {
    /// Does some granted scope satisfy `required`?
    fn any_satisfies(&self, required: &str) -> bool;
}

impl<S: AsRef<str>> GrantedScopes for [S] {
    fn any_satisfies(&self, required: &str) -> bool {
        self.iter().any(|g| satisfies(g.as_ref(), required))
    }
}

impl<S: AsRef<str>, const N: usize> GrantedScopes for [S; N] {
    fn any_satisfies(&self, required: &str) -> bool {
        self.as_slice().any_satisfies(required)
    }
}

impl<S: AsRef<str>> GrantedScopes for Vec<S> {
    fn any_satisfies(&self, required: &str) -> bool {
        self.as_slice().any_satisfies(required)
    }
}

/// A space-separated scope string: `"orders:read admin"`.
impl GrantedScopes for str {
    fn any_satisfies(&self, required: &str) -> bool {
        self.split(' ')
            .any(|g| !g.is_empty() && satisfies(g, required))
    }
}

impl GrantedScopes for String {
    fn any_satisfies(&self, required: &str) -> bool {
        self.as_str().any_satisfies(required)
    }
}

impl GrantedScopes for Box<str> {
    fn any_satisfies(&self, required: &str) -> bool {
        (**self).any_satisfies(required)
    }
}

/// Does `granted` satisfy `access`? See the module documentation.
pub fn authorize<G: GrantedScopes + ?Sized>(granted: &G, access: &Access) -> Decision {
    let (all, any) = match access {
        Access::Public => return Decision::Allow,
        Access::Token { all, any } => (all, any),
    };
    let all_met = all.iter().all(|s| granted.any_satisfies(s));
    let any_met = any.is_empty() || any.iter().any(|s| granted.any_satisfies(s));
    if all_met && any_met {
        Decision::Allow
    } else {
        Decision::InsufficientScope
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    /// A protected route's policy with the scope lists under test (which
    /// may be ones the loader would refuse, to test this phase on its own).
    fn route(scopes: &[&str], any: &[&str]) -> Access {
        Access::Token {
            all: scopes.iter().map(|s| s.to_string()).collect(),
            any: any.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Check a grant in both forms: as a list, and as the space-separated
    /// string of the same list.
    fn both(granted: &[&str], r: &Access) -> Decision {
        let list = authorize(granted, r);
        let string = authorize(&granted.join(" "), r);
        assert_eq!(
            list, string,
            "list and string forms disagree on {granted:?}"
        );
        list
    }

    const NONE: [&str; 0] = [];

    #[test]
    fn all_of() {
        let r = route(&["a", "b"], &[]);
        assert_eq!(both(&["a", "b"], &r), Allow);
        assert_eq!(both(&["b", "c", "a"], &r), Allow);
        assert_eq!(both(&["a"], &r), InsufficientScope);
        assert_eq!(both(&["b"], &r), InsufficientScope);
        assert_eq!(both(&NONE, &r), InsufficientScope);
    }

    #[test]
    fn any_of() {
        let r = route(&[], &["x", "y"]);
        assert_eq!(both(&["y"], &r), Allow);
        assert_eq!(both(&["x", "y"], &r), Allow);
        assert_eq!(both(&["z", "x"], &r), Allow);
        assert_eq!(both(&["z"], &r), InsufficientScope);
        assert_eq!(both(&NONE, &r), InsufficientScope);
    }

    #[test]
    fn both_lists() {
        let r = route(&["a", "b"], &["x", "y"]);
        assert_eq!(both(&["a", "b", "x"], &r), Allow);
        assert_eq!(both(&["y", "b", "a"], &r), Allow);
        assert_eq!(both(&["a", "b"], &r), InsufficientScope);
        assert_eq!(both(&["a", "x", "y"], &r), InsufficientScope);
        assert_eq!(both(&["x", "y"], &r), InsufficientScope);
    }

    #[test]
    fn wildcard_in_route() {
        let r = route(&["orders:*"], &[]);
        assert_eq!(both(&["orders:write"], &r), Allow);
        assert_eq!(both(&["orders:read"], &r), Allow);
        assert_eq!(both(&["orders:*"], &r), Allow);
        assert_eq!(both(&["ordersx:read"], &r), InsufficientScope);
        assert_eq!(both(&["orders"], &r), InsufficientScope);
        assert_eq!(both(&["Orders:read"], &r), InsufficientScope);
        let any = route(&[], &["billing:*", "orders:*"]);
        assert_eq!(both(&["orders:read"], &any), Allow);
        assert_eq!(both(&["users:read"], &any), InsufficientScope);
    }

    #[test]
    fn wildcard_in_grant() {
        let r = route(&["orders:read", "orders:write"], &[]);
        assert_eq!(both(&["orders:*"], &r), Allow);
        assert_eq!(both(&["billing:*"], &r), InsufficientScope);
        assert_eq!(both(&["ORDERS:*"], &r), InsufficientScope);
        // A bare `*` is not a wildcard.
        assert_eq!(both(&["*"], &r), InsufficientScope);
        let mixed = route(&["orders:read", "admin"], &[]);
        assert_eq!(both(&["orders:*"], &mixed), InsufficientScope);
        assert_eq!(both(&["orders:*", "admin"], &mixed), Allow);
    }

    #[test]
    fn exact_and_case_sensitive() {
        let r = route(&["admin"], &[]);
        assert_eq!(both(&["admin"], &r), Allow);
        assert_eq!(both(&["Admin"], &r), InsufficientScope);
        assert_eq!(both(&["ADMIN"], &r), InsufficientScope);
        assert_eq!(both(&["admin2", "xadmin", "admi"], &r), InsufficientScope);
        assert_eq!(both(&["read", "admin"], &r), Allow);
    }

    #[test]
    fn trailing_space_is_not_the_scope() {
        // As list elements, `"admin "` and `" admin"` are other
        // (invalid) scope-tokens and satisfy nothing.
        let r = route(&["admin"], &[]);
        assert_eq!(authorize(&["admin "], &r), InsufficientScope);
        assert_eq!(authorize(&[" admin"], &r), InsufficientScope);
        assert_eq!(authorize(&["read admin"], &r), InsufficientScope);
        // A required `"admin "` (refused by the loader) is not met by `admin`.
        let odd = route(&["admin "], &[]);
        assert_eq!(authorize(&["admin"], &odd), InsufficientScope);
        // In the string form a space is the separator (RFC 6749 §3.3), so
        // `"read admin"` is the two scopes `read` and `admin`, and empty
        // items from extra spaces match nothing.
        assert_eq!(authorize("read admin", &r), Allow);
        assert_eq!(authorize("  admin  ", &r), Allow);
        assert_eq!(authorize("   ", &r), InsufficientScope);
        assert_eq!(authorize("admin\t", &r), InsufficientScope);
        assert_eq!(authorize("admin,read", &r), InsufficientScope);
    }

    #[test]
    fn empty_requirement() {
        let r = route(&[], &[]);
        assert_eq!(both(&NONE, &r), Allow);
        assert_eq!(both(&["anything"], &r), Allow);
        assert_eq!(authorize("", &r), Allow);
    }

    #[test]
    fn public_routes_allow_regardless() {
        let p = Access::Public;
        assert_eq!(both(&NONE, &p), Allow);
        // A public route has no scopes to check (the type has nowhere to
        // put them), whatever the token carries.
        assert_eq!(both(&["never", "nor-this"], &p), Allow);
    }

    #[test]
    fn every_granted_form_is_accepted() {
        let r = route(&["a"], &[]);
        let v: Vec<String> = vec!["a".into()];
        let boxed: Box<str> = "b a".into();
        let s = String::from("a");
        assert_eq!(authorize(&v, &r), Allow);
        assert_eq!(authorize(v.as_slice(), &r), Allow);
        assert_eq!(authorize(&["a"], &r), Allow);
        assert_eq!(authorize(&boxed, &r), Allow);
        assert_eq!(authorize(&s, &r), Allow);
        assert_eq!(authorize("a", &r), Allow);
        assert_eq!(authorize(&Vec::<&str>::new(), &r), InsufficientScope);
    }
}
