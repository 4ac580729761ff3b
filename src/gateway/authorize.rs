//! The authorize phase: does a token's granted scope set satisfy a route?
//!
//! All of `scopes` must be satisfied and, when `any_scopes` is non-empty,
//! at least one of them. "Satisfied" is [`crate::scope::satisfies`]: exact
//! and case-sensitive (attack case K13), plus the `prefix:*` wildcard on
//! either side. Public routes need nothing.

use crate::config::RouteConfig;
use crate::scope::satisfies;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    InsufficientScope,
}

/// `granted` is the space-separated scope string of a token (RFC 6749 §3.3).
pub fn authorize(granted: &str, route: &RouteConfig) -> Decision {
    if route.public {
        return Decision::Allow;
    }
    let has = |required: &str| {
        granted
            .split(' ')
            .any(|g| !g.is_empty() && satisfies(g, required))
    };
    let all = route.scopes.iter().all(|s| has(s));
    let any = route.any_scopes.is_empty() || route.any_scopes.iter().any(|s| has(s));
    if all && any {
        Decision::Allow
    } else {
        Decision::InsufficientScope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EnvOverrides};

    fn route(scopes: &[&str], any: &[&str]) -> RouteConfig {
        let q = |v: &[&str]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let toml = format!(
            "[[routes]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:1\"\nscopes = [{}]\nany_scopes = [{}]\n",
            q(scopes),
            q(any)
        );
        Config::parse(&toml, "t", &EnvOverrides::default())
            .unwrap()
            .routes
            .remove(0)
    }

    use Decision::*;

    #[test]
    fn all_of() {
        let r = route(&["a", "b"], &[]);
        assert_eq!(authorize("a b", &r), Allow);
        assert_eq!(authorize("b c a", &r), Allow);
        assert_eq!(authorize("a", &r), InsufficientScope);
        assert_eq!(authorize("", &r), InsufficientScope);
    }

    #[test]
    fn any_of_and_both() {
        let r = route(&[], &["x", "y"]);
        assert_eq!(authorize("y", &r), Allow);
        assert_eq!(authorize("z", &r), InsufficientScope);
        let both = route(&["a"], &["x", "y"]);
        assert_eq!(authorize("a x", &both), Allow);
        assert_eq!(authorize("a", &both), InsufficientScope);
        assert_eq!(authorize("x", &both), InsufficientScope);
    }

    #[test]
    fn wildcards_on_either_side() {
        assert_eq!(authorize("orders:write", &route(&["orders:*"], &[])), Allow);
        assert_eq!(authorize("orders:*", &route(&["orders:read"], &[])), Allow);
        assert_eq!(
            authorize("billing:*", &route(&["orders:read"], &[])),
            InsufficientScope
        );
        assert_eq!(
            authorize("ordersx:read", &route(&["orders:*"], &[])),
            InsufficientScope
        );
    }

    #[test]
    fn exact_and_case_sensitive() {
        let r = route(&["admin"], &[]);
        assert_eq!(authorize("Admin", &r), InsufficientScope);
        assert_eq!(authorize("admin2 xadmin", &r), InsufficientScope);
        assert_eq!(authorize("read admin", &r), Allow);
        // Empty tokens from double spaces never match anything.
        assert_eq!(authorize("  ", &route(&[""][..0], &[])), Allow);
    }

    #[test]
    fn no_requirement_and_public() {
        assert_eq!(authorize("", &route(&[], &[])), Allow);
        let mut p = route(&[], &[]);
        p.public = true;
        p.scopes = vec!["never".into()];
        assert_eq!(authorize("", &p), Allow);
    }
}
