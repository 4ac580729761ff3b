//! The route phase: policy as data, compiled once when the configuration is
//! loaded, matched by a plain function that does not allocate.
//!
//! Matching (on the normalized path):
//! - a route prefix `P` matches a path `X` when `X == P`, `X` starts with
//!   `P/`, or `P` is `/` — segment boundaries, so `/api` matches `/api`,
//!   `/api/` and `/api/x` but not `/apix`;
//! - a route's `host` matches the request's `Host` (or HTTP/2 authority)
//!   case-insensitively, without the port; a route without `host` matches
//!   every host;
//! - the longest matching prefix wins; on equal prefixes a route with a
//!   host beats one without; among routes of that same winning level, the
//!   first in configuration order whose `methods` allow the method wins;
//!   if none allows it, the answer is 405 with the union of their methods
//!   in `Allow`. `HEAD` is not implied by `GET`: methods are exact.

use std::borrow::Cow;

use http::{HeaderValue, Method};

use crate::config::RouteConfig;

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// `Allow` for a 405 on this route alone.
    pub allow: HeaderValue,
    /// The route's `scopes` then `any_scopes`, space-separated, for
    /// `WWW-Authenticate: ... scope="..."`; `None` when both are empty.
    pub required_scope: Option<HeaderValue>,
    /// Position in the configuration.
    pub index: usize,
}

pub enum RouteMatch<'a> {
    Found(&'a Route),
    NotFound,
    MethodNotAllowed { allow: &'a HeaderValue },
}

/// Every route, sorted for matching: longest prefix first, host-specific
/// before host-less, then configuration order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// For 405s spanning several routes of one level: (first index in
    /// `routes` of the level, union Allow value). Precomputed per level.
    level_allow: Vec<(usize, HeaderValue)>,
}

const ALL: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

fn allow_value(methods: &[&Method]) -> HeaderValue {
    let mut s = String::new();
    for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        if methods.iter().any(|x| x.as_str() == m) {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(m);
        }
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(ALL))
}

impl RouteTable {
    pub fn new(configs: Vec<RouteConfig>) -> RouteTable {
        let mut routes: Vec<Route> = configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| {
                let allow = match &config.methods {
                    Some(ms) => allow_value(&ms.iter().collect::<Vec<_>>()),
                    None => HeaderValue::from_static(ALL),
                };
                let required: Vec<&str> = config
                    .scopes
                    .iter()
                    .chain(config.any_scopes.iter())
                    .map(String::as_str)
                    .collect();
                let required_scope = if required.is_empty() {
                    None
                } else {
                    // Validated scope-tokens: always a valid header value.
                    HeaderValue::from_str(&required.join(" ")).ok()
                };
                Route {
                    config,
                    allow,
                    required_scope,
                    index,
                }
            })
            .collect();
        routes.sort_by(|a, b| {
            b.config
                .path
                .len()
                .cmp(&a.config.path.len())
                .then(b.config.host.is_some().cmp(&a.config.host.is_some()))
                .then(a.index.cmp(&b.index))
        });
        let mut level_allow = Vec::new();
        let mut i = 0;
        while i < routes.len() {
            let mut j = i;
            while j < routes.len() && same_level(&routes[i], &routes[j]) {
                j += 1;
            }
            let methods: Vec<&Method> = routes[i..j]
                .iter()
                .flat_map(|r| match &r.config.methods {
                    Some(ms) => ms.iter().collect::<Vec<_>>(),
                    None => Vec::new(),
                })
                .collect();
            level_allow.push((i, allow_value(&methods)));
            i = j;
        }
        RouteTable {
            routes,
            level_allow,
        }
    }

    /// Routes in matching order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route at configuration position `index`.
    pub fn by_index(&self, index: usize) -> Option<&Route> {
        self.routes.iter().find(|r| r.index == index)
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Find the route for a normalized path.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch<'_> {
        let host = host.map(strip_port);
        let mut i = 0;
        while i < self.routes.len() {
            let r = &self.routes[i];
            if !prefix_matches(&r.config.path, path)
                || !host_matches(r.config.host.as_deref(), host)
            {
                i += 1;
                continue;
            }
            // The winning level: r and the routes after it with the same
            // prefix and host-specificity that also match the host.
            let mut j = i;
            while j < self.routes.len() && same_level(r, &self.routes[j]) {
                let cand = &self.routes[j];
                if host_matches(cand.config.host.as_deref(), host) && method_allowed(cand, method) {
                    return RouteMatch::Found(cand);
                }
                j += 1;
            }
            let allow = self
                .level_allow
                .iter()
                .find(|(start, _)| *start <= i && same_level(&self.routes[*start], r))
                .map_or(&r.allow, |(_, a)| a);
            return RouteMatch::MethodNotAllowed { allow };
        }
        RouteMatch::NotFound
    }
}

fn same_level(a: &Route, b: &Route) -> bool {
    a.config.path == b.config.path && a.config.host.is_some() == b.config.host.is_some()
}

fn method_allowed(r: &Route, m: &Method) -> bool {
    r.config.methods.as_ref().is_none_or(|ms| ms.contains(m))
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

fn host_matches(route_host: Option<&str>, req_host: Option<&str>) -> bool {
    match route_host {
        None => true,
        Some(h) => req_host.is_some_and(|r| r.eq_ignore_ascii_case(h)),
    }
}

/// `Host` without its port: `a.b:80` -> `a.b`, `[::1]:8080` -> `[::1]`.
fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map_or(h, |i| &h[..=i]);
    }
    h.rsplit_once(':').map_or(h, |(host, _)| host)
}

/// The path the upstream receives: the route prefix removed when
/// `strip_prefix` is set (always leaving a leading `/`), then the
/// upstream's base path prepended. Borrowed when both are no-ops.
pub fn forwarded_path<'p>(route: &Route, path: &'p str) -> Cow<'p, str> {
    let c = &route.config;
    let rest: &str = if c.strip_prefix && c.path != "/" {
        match path.get(c.path.len()..) {
            Some("") | None => "/",
            Some(r) => r,
        }
    } else {
        path
    };
    let base = c.upstream.base_path.as_str();
    if base.is_empty() {
        if rest.len() == path.len() {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(rest.to_owned())
        }
    } else {
        let mut s = String::with_capacity(base.len() + rest.len());
        s.push_str(base);
        s.push_str(rest);
        Cow::Owned(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EnvOverrides};

    fn table(toml: &str) -> RouteTable {
        let c = Config::parse(toml, "t", &EnvOverrides::default()).unwrap();
        RouteTable::new(c.routes)
    }

    fn route(name: &str, path: &str, extra: &str) -> String {
        format!("[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://127.0.0.1:1\"\npublic = true\n{extra}\n")
    }

    fn name<'a>(m: RouteMatch<'a>) -> &'a str {
        match m {
            RouteMatch::Found(r) => &r.config.name,
            RouteMatch::NotFound => "404",
            RouteMatch::MethodNotAllowed { .. } => "405",
        }
    }

    #[test]
    fn segment_boundaries_and_longest_prefix() {
        let t = table(&format!(
            "{}{}{}",
            route("api", "/api", ""),
            route("orders", "/api/orders", ""),
            route("root", "/", "")
        ));
        let g = &Method::GET;
        assert_eq!(name(t.find(None, g, "/api")), "api");
        assert_eq!(name(t.find(None, g, "/api/")), "api");
        assert_eq!(name(t.find(None, g, "/api/x")), "api");
        assert_eq!(name(t.find(None, g, "/apix")), "root");
        assert_eq!(name(t.find(None, g, "/api/orders")), "orders");
        assert_eq!(name(t.find(None, g, "/api/orders/7")), "orders");
        assert_eq!(name(t.find(None, g, "/api/ordersx")), "api");
        assert_eq!(name(t.find(None, g, "/")), "root");
    }

    #[test]
    fn order_in_the_file_does_not_matter() {
        let a = table(&format!(
            "{}{}",
            route("api", "/api", ""),
            route("orders", "/api/orders", "")
        ));
        let b = table(&format!(
            "{}{}",
            route("orders", "/api/orders", ""),
            route("api", "/api", "")
        ));
        for t in [a, b] {
            assert_eq!(name(t.find(None, &Method::GET, "/api/orders/1")), "orders");
            assert_eq!(name(t.find(None, &Method::GET, "/api/x")), "api");
            assert_eq!(name(t.find(None, &Method::GET, "/other")), "404");
        }
    }

    #[test]
    fn hosts() {
        let t = table(&format!(
            "{}{}",
            route("any", "/api", ""),
            route("tenant", "/api", "host = \"Tenant.Example\"")
        ));
        let g = &Method::GET;
        assert_eq!(name(t.find(Some("tenant.example"), g, "/api")), "tenant");
        assert_eq!(
            name(t.find(Some("TENANT.example:8080"), g, "/api/x")),
            "tenant"
        );
        assert_eq!(name(t.find(Some("other"), g, "/api")), "any");
        assert_eq!(name(t.find(None, g, "/api")), "any");
        let only = table(&route("v6", "/", "host = \"example.com\""));
        assert_eq!(name(only.find(Some("[::1]:8080"), g, "/")), "404");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("a.b"), "a.b");
    }

    #[test]
    fn methods_and_405() {
        let t = table(&format!(
            "{}{}",
            route("read", "/o", "methods = [\"GET\"]"),
            route("write", "/o", "methods = [\"POST\", \"PUT\"]")
        ));
        assert_eq!(name(t.find(None, &Method::GET, "/o/1")), "read");
        assert_eq!(name(t.find(None, &Method::PUT, "/o/1")), "write");
        match t.find(None, &Method::DELETE, "/o/1") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, POST, PUT"),
            _ => panic!("expected 405"),
        }
        // HEAD is not implied by GET.
        assert_eq!(name(t.find(None, &Method::HEAD, "/o")), "405");
    }

    #[test]
    fn required_scope_header() {
        let t = table(
            "[[routes]]\nname = \"x\"\npath = \"/x\"\nupstream = \"http://127.0.0.1:1\"\nscopes = [\"a\", \"b:c\"]\nany_scopes = [\"d\"]\n",
        );
        assert_eq!(t.routes()[0].required_scope.as_ref().unwrap(), "a b:c d");
    }

    #[test]
    fn forwarded_paths() {
        let t = table(&format!(
            "{}{}",
            route("s", "/api", "strip_prefix = true"),
            "[[routes]]\nname = \"b\"\npath = \"/b\"\nupstream = \"http://127.0.0.1:1/base\"\npublic = true\n"
        ));
        let s = t.routes().iter().find(|r| r.config.name == "s").unwrap();
        assert_eq!(forwarded_path(s, "/api"), "/");
        assert_eq!(forwarded_path(s, "/api/x/y"), "/x/y");
        let b = t.routes().iter().find(|r| r.config.name == "b").unwrap();
        assert_eq!(forwarded_path(b, "/b/z"), "/base/b/z");
        let plain = table(&route("p", "/p", ""));
        assert!(matches!(
            forwarded_path(&plain.routes()[0], "/p/q"),
            Cow::Borrowed(_)
        ));
    }
}
