//! The route phase: policy as data, compiled once when the configuration is
//! loaded ([`RouteTable::new`]), matched per request by [`RouteTable::find`],
//! which does not allocate.
//!
//! # Matching
//!
//! `find` takes an already **normalized** path ([`super::normalize`]), so
//! dot segments, `//` and encoded unreserved characters cannot change which
//! route matches (`docs/security.md`, "Path normalization and route
//! bypass").
//!
//! - **Prefix**: a route prefix `P` matches a path `X` when `X == P`, when
//!   `X` starts with `P` followed by `/`, or when `P` is `/`. Matching is on
//!   segment boundaries, so `/api` matches `/api`, `/api/` and `/api/x` but
//!   not `/apix`. It is byte-exact and therefore case-sensitive
//!   (`/ADMIN` is not `/admin`).
//! - **Host**: the request's `Host` (or HTTP/2 `:authority`) is compared
//!   ASCII-case-insensitively with the route's `host`, after removing the
//!   port (`api.example.com:8443`, `[::1]:8080`) and one trailing dot
//!   (`api.example.com.`, as nginx does). A route without `host` matches
//!   every request, including one without a `Host`.
//! - **Selection**: among the routes whose prefix and host match, the
//!   longest prefix wins; on equal prefixes a route with a `host` beats one
//!   without. The routes sharing that winning prefix and host form the
//!   *winning level*: the first of them in configuration order whose
//!   `methods` allow the request's method wins (no `methods` = every
//!   method). When none does, the answer is 405 with `Allow` listing the
//!   union of the methods of that level, in the order of
//!   [`PROXIED_METHODS`] (`GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS`).
//!   The method never makes a less specific route win: a 405 on
//!   `/api/orders` does not fall back to `/api`, and a 405 on a
//!   host-specific route does not fall back to a host-less one.
//! - `HEAD` is **not** implied by `GET`: methods are exactly the configured
//!   ones.
//!
//! The result does not depend on the order of the routes in the
//! configuration, except for the first-wins tie between routes of one level
//! that allow the same method.
//!
//! # Forwarding
//!
//! [`forwarded_path`] gives the path the upstream receives: the normalized
//! path, with the route prefix removed when `strip_prefix` is set (the
//! result always starts with `/`; the prefix itself becomes `/`), then the
//! upstream's base path prepended (`http://up/base` + `/x` -> `/base/x`,
//! `http://up/base` + `/` -> `/base/`).

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::config::{Access, RouteConfig, ALLOW_ALL_METHODS, PROXIED_METHODS};
use crate::metrics::RouteStats;

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub config: RouteConfig,
    /// `Allow` for this route alone (every method when `methods` is unset).
    pub allow: HeaderValue,
    /// The route's `scopes` then `any_scopes` (each once), space-separated,
    /// for `WWW-Authenticate: Bearer ..., scope="..."` (RFC 6750 §3); `None`
    /// for a public route and when both are empty.
    pub required_scope: Option<HeaderValue>,
    /// Position in the configuration; also this route's position in
    /// [`RouteTable::routes`].
    pub index: usize,
    /// This route's request counters (`/metrics`), built with the table so
    /// recording never looks a label up.
    pub stats: Arc<RouteStats>,
}

/// The outcome of [`RouteTable::find`].
#[derive(Debug, Clone, Copy)]
pub enum RouteMatch<'a> {
    Found(&'a Route),
    /// 404.
    NotFound,
    /// 405, with the `Allow` value of the winning level.
    MethodNotAllowed {
        allow: &'a HeaderValue,
    },
}

/// Routes sharing one prefix and one host (or no host): `order[start..end]`.
#[derive(Debug, Clone)]
struct Level {
    start: usize,
    end: usize,
    /// Union of the methods of the level's routes.
    allow: HeaderValue,
}

/// Every route, compiled for matching.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// In configuration order.
    routes: Vec<Route>,
    /// Indices into `routes`, in matching order: longest prefix first, then
    /// host-specific before host-less, grouped by (prefix, host), then
    /// configuration order.
    order: Vec<usize>,
    /// The groups of `order`, in matching order.
    levels: Vec<Level>,
}

/// `Allow` for a set of method lists; `None` in the set means every method.
fn allow_value<'a>(lists: impl Iterator<Item = Option<&'a [Method]>> + Clone) -> HeaderValue {
    let mut all = false;
    let mut s = String::new();
    let mut push = |m: &str| {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(m);
    };
    let has = |m: &Method| lists.clone().flatten().any(|ms| ms.contains(m));
    for list in lists.clone() {
        all |= list.is_none();
    }
    if all {
        return HeaderValue::from_static(ALLOW_ALL_METHODS);
    }
    for m in &PROXIED_METHODS {
        if has(m) {
            push(m.as_str());
        }
    }
    // Extension methods (not configurable today), after the standard ones,
    // in first-seen order.
    let mut extra: Vec<&Method> = Vec::new();
    for m in lists.flatten().flatten() {
        if !PROXIED_METHODS.contains(m) && !extra.contains(&m) {
            extra.push(m);
        }
    }
    for m in extra {
        push(m.as_str());
    }
    // Method names are tokens: always a valid header value.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(ALLOW_ALL_METHODS))
}

/// `scopes` then `any_scopes`, each once, space-separated; `None` for a
/// public route or one that needs no scope.
fn required_scope(access: &Access) -> Option<HeaderValue> {
    let Access::Token { all, any } = access else {
        return None;
    };
    let mut s = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for scope in all.iter().chain(any) {
        if seen.contains(&scope.as_str()) {
            continue;
        }
        seen.push(scope);
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(scope);
    }
    if s.is_empty() {
        return None;
    }
    // Scope-tokens are validated printable ASCII at load.
    HeaderValue::from_str(&s).ok()
}

impl RouteTable {
    /// Compile the configured routes (in configuration order).
    pub fn new(configs: Vec<RouteConfig>) -> RouteTable {
        let routes: Vec<Route> = configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| Route {
                allow: allow_value(std::iter::once(config.methods.as_deref())),
                required_scope: required_scope(&config.access),
                config,
                index,
                stats: Arc::default(),
            })
            .collect();
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&routes[a].config, &routes[b].config);
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| a.path.cmp(&b.path))
                .then_with(|| b.host.is_some().cmp(&a.host.is_some()))
                .then_with(|| a.host.cmp(&b.host))
        });
        // `sort_by` is stable: configuration order within a level.
        let mut levels = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let first = &routes[order[start]].config;
            let end = order[start..]
                .iter()
                .position(|&i| {
                    let c = &routes[i].config;
                    c.path != first.path || c.host != first.host
                })
                .map_or(order.len(), |n| start + n);
            let allow = allow_value(
                order[start..end]
                    .iter()
                    .map(|&i| routes[i].config.methods.as_deref()),
            );
            levels.push(Level { start, end, allow });
            start = end;
        }
        RouteTable {
            routes,
            order,
            levels,
        }
    }

    /// Keep counting where `old` left off: every route named like one of
    /// `old`'s takes over its counters (for a reload).
    pub fn carry_stats_from(&mut self, old: &RouteTable) {
        for route in &mut self.routes {
            if let Some(prev) = old
                .routes
                .iter()
                .find(|r| r.config.name == route.config.name)
            {
                route.stats = prev.stats.clone();
            }
        }
    }

    /// Every route, in configuration order: `routes()[r.index]` is `r`.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route at configuration position `index` (its [`Route::index`]).
    pub fn by_index(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// No route at all (every request is a 404).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for a request. `host` is the raw `Host` value (port and
    /// case allowed), `path` the normalized path. See the module
    /// documentation for the rules.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch<'_> {
        let host = host.map(host_name);
        for level in &self.levels {
            let level_routes = &self.order[level.start..level.end];
            let Some(&first) = level_routes.first() else {
                continue;
            };
            let c = &self.routes[first].config;
            if !prefix_matches(&c.path, path) || !host_matches(c.host.as_deref(), host) {
                continue;
            }
            for &i in level_routes {
                let r = &self.routes[i];
                if method_allowed(&r.config, method) {
                    return RouteMatch::Found(r);
                }
            }
            return RouteMatch::MethodNotAllowed {
                allow: &level.allow,
            };
        }
        RouteMatch::NotFound
    }
}

fn method_allowed(c: &RouteConfig, m: &Method) -> bool {
    c.methods.as_ref().is_none_or(|ms| ms.contains(m))
}

/// Segment-boundary prefix match.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn host_matches(route_host: Option<&str>, req_host: Option<&str>) -> bool {
    match route_host {
        None => true,
        Some(h) => req_host.is_some_and(|r| r.eq_ignore_ascii_case(h)),
    }
}

/// The host name of a `Host` value: without its port and without one
/// trailing dot. `a.b:80` -> `a.b`, `a.b.` -> `a.b`, `[::1]:8080` ->
/// `[::1]`.
fn host_name(h: &str) -> &str {
    let h = if h.starts_with('[') {
        h.find(']').map_or(h, |i| &h[..=i])
    } else {
        h.rsplit_once(':').map_or(h, |(host, _port)| host)
    };
    h.strip_suffix('.').unwrap_or(h)
}

/// The path the upstream receives for a normalized `path` matched by
/// `route`: the route prefix removed when `strip_prefix` is set (always
/// leaving a leading `/`), then the upstream's base path prepended.
/// Borrowed (no allocation) unless there is a base path.
pub fn forwarded_path<'p>(route: &Route, path: &'p str) -> Cow<'p, str> {
    let c = &route.config;
    let rest = if c.strip_prefix {
        strip_route_prefix(&c.path, path)
    } else {
        path
    };
    let base = c.upstream.base_path.as_str();
    if base.is_empty() {
        Cow::Borrowed(rest)
    } else {
        let mut s = String::with_capacity(base.len() + rest.len());
        s.push_str(base);
        s.push_str(rest);
        Cow::Owned(s)
    }
}

/// `path` without `prefix`, starting with `/`. A path the prefix does not
/// match (never the case for a route `find` returned) is left as it is.
fn strip_route_prefix<'p>(prefix: &str, path: &'p str) -> &'p str {
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests;
