//! Raw shapes ([`super::raw`]) -> validated types, collecting every problem
//! with its location instead of stopping at the first.

use std::net::SocketAddr;
use std::time::Duration;

use http::uri::Scheme;
use http::{Method, Uri};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::database_url::{pg_url, tls_params, TlsParams};
use super::raw::{RawCache, RawDatabase, RawLogin, RawOAuth, RawRoute, RawServer, RawTokens};
use super::{
    reserved_prefix, Access, CacheConfig, Cidr, ConfigError, DatabaseConfig, EnvOverrides,
    LoginConfig, OAuthConfig, RouteConfig, Secret, ServerConfig, TokenConfig, Upstream,
    ALLOW_ALL_METHODS, PROXIED_METHODS,
};
use crate::scope;

/// The problems found so far in one file.
pub(super) struct Errors {
    file: String,
    pub list: Vec<ConfigError>,
}

impl Errors {
    pub fn new(file: &str) -> Self {
        Errors {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, location: &str, message: String) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            location: location.to_owned(),
            message,
        });
    }

    /// Deserialize the table `name` (absent: `None`, and the caller takes
    /// the defaults).
    pub fn section<T: DeserializeOwned>(&mut self, table: &toml::Table, name: &str) -> Option<T> {
        let value = table.get(name)?;
        if !value.is_table() {
            self.push(name, "must be a table".into());
            return None;
        }
        match T::deserialize(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(name, e.message().to_owned());
                None
            }
        }
    }

    fn socket_addr(&mut self, loc: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(
                    loc,
                    format!("{s:?} is not an IP:port address (e.g. \"127.0.0.1:8080\")"),
                );
                None
            }
        }
    }

    fn positive(&mut self, loc: &str, n: u64) {
        if n == 0 {
            self.push(loc, "must be greater than 0".into());
        }
    }

    /// `[server]`, with `SCOPEGATE_LISTEN` applied.
    pub fn server(&mut self, raw: RawServer, env: &EnvOverrides) -> Option<ServerConfig> {
        let (listen_src, listen_loc) = match &env.listen {
            Some(l) => (l.as_str(), "SCOPEGATE_LISTEN"),
            None => (raw.listen.as_str(), "server.listen"),
        };
        let listen = self.socket_addr(listen_loc, listen_src);
        let admin_listen = self.socket_addr("server.admin_listen", &raw.admin_listen);
        if let (Some(a), Some(b)) = (listen, admin_listen) {
            if a == b && a.port() != 0 {
                self.push(
                    "server.admin_listen",
                    "must differ from server.listen".into(),
                );
            }
        }
        self.positive("server.max_header_bytes", raw.max_header_bytes as u64);
        self.positive("server.max_connections", raw.max_connections as u64);
        self.positive(
            "server.header_read_timeout_secs",
            raw.header_read_timeout_secs,
        );
        self.positive("server.request_timeout_secs", raw.request_timeout_secs);
        let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
        for (i, s) in raw.trusted_proxies.iter().enumerate() {
            match s.parse::<Cidr>() {
                Ok(c) => trusted_proxies.push(c),
                Err(msg) => self.push(&format!("server.trusted_proxies[{i}]"), msg),
            }
        }
        Some(ServerConfig {
            listen: listen?,
            admin_listen: admin_listen?,
            max_header_bytes: raw.max_header_bytes,
            max_body_bytes: raw.max_body_bytes,
            header_read_timeout: secs(raw.header_read_timeout_secs),
            max_connections: raw.max_connections,
            request_timeout: secs(raw.request_timeout_secs),
            shutdown_grace: secs(raw.shutdown_grace_secs),
            trusted_proxies,
        })
    }

    /// `[database]`, with `SCOPEGATE_DATABASE_URL` applied.
    pub fn database(&mut self, raw: RawDatabase, env: &EnvOverrides) -> DatabaseConfig {
        self.positive("database.pool_size", raw.pool_size as u64);
        let (url, loc) = match &env.database_url {
            Some(u) => (Some(u.clone()), "SCOPEGATE_DATABASE_URL"),
            None => (raw.url, "database.url"),
        };
        let url = url.map(Secret::new);
        let mut tls = TlsParams::default();
        // The URL may hold a password: errors name the problem, not the value.
        if let Some(url) = &url {
            match tls_params(url.expose()) {
                Ok(p) => {
                    tls = p;
                    if let Err(e) = pg_url(url).expose().parse::<tokio_postgres::Config>() {
                        self.push(loc, format!("not a valid Postgres connection string: {e}"));
                    }
                }
                Err(msg) => self.push(loc, msg),
            }
        }
        DatabaseConfig {
            url,
            pool_size: raw.pool_size,
            tls: tls.mode,
            ca_file: tls.ca_file,
        }
    }

    pub fn tokens(&mut self, raw: RawTokens) -> TokenConfig {
        self.positive("tokens.access_ttl_secs", raw.access_ttl_secs);
        self.positive("tokens.refresh_ttl_secs", raw.refresh_ttl_secs);
        TokenConfig {
            access_ttl: secs(raw.access_ttl_secs),
            refresh_ttl: secs(raw.refresh_ttl_secs),
            refresh_reuse_grace: secs(raw.refresh_reuse_grace_secs),
        }
    }

    /// `[oauth]`; `listen` is the proxy listener's address, for the
    /// default issuer (`None`: it is invalid, and that is already an error).
    pub fn oauth(&mut self, raw: RawOAuth, listen: Option<SocketAddr>) -> Option<OAuthConfig> {
        self.positive("oauth.code_ttl_secs", raw.code_ttl_secs);
        self.positive(
            "oauth.introspections_per_caller",
            u64::from(raw.introspections_per_caller),
        );
        if raw.introspections_per_caller > MAX_INTROSPECTIONS_PER_CALLER {
            self.push(
                "oauth.introspections_per_caller",
                format!("must be at most {MAX_INTROSPECTIONS_PER_CALLER}"),
            );
        }
        let issuer = match raw.issuer {
            Some(s) => match parse_issuer(&s) {
                Ok(i) => Some(i),
                Err(msg) => {
                    self.push("oauth.issuer", msg);
                    None
                }
            },
            None => listen.map(|a| format!("http://{a}")),
        };
        Some(OAuthConfig {
            issuer: issuer?,
            password_grant: raw.password_grant,
            code_ttl: secs(raw.code_ttl_secs),
            introspections_per_caller: raw.introspections_per_caller,
        })
    }

    pub fn cache(&mut self, raw: RawCache) -> CacheConfig {
        self.positive("cache.max_entries", raw.max_entries);
        self.positive("cache.negative_ttl_secs", raw.negative_ttl_secs);
        self.positive(
            "cache.invalid_lookups_per_ip",
            u64::from(raw.invalid_lookups_per_ip),
        );
        self.positive("cache.db_deadline_ms", raw.db_deadline_ms);
        CacheConfig {
            max_entries: raw.max_entries,
            max_staleness: secs(raw.max_staleness_secs),
            outage_grace: secs(raw.outage_grace_secs),
            negative_ttl: secs(raw.negative_ttl_secs),
            invalid_lookups_per_ip: raw.invalid_lookups_per_ip,
            db_deadline: Duration::from_millis(raw.db_deadline_ms),
        }
    }

    pub fn login(&mut self, raw: RawLogin) -> LoginConfig {
        self.positive("login.max_failures", u64::from(raw.max_failures));
        self.positive(
            "login.max_failures_per_ip",
            u64::from(raw.max_failures_per_ip),
        );
        self.positive("login.window_secs", raw.window_secs);
        // One core is left to the proxy: two SCHED_IDLE threads hashing on
        // two cores still stretch proxy p99 2-3x where one stretches it
        // 1.4x (`docs/security.md`, "Password storage").
        let hash_concurrency = if raw.hash_concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        } else {
            raw.hash_concurrency
        };
        LoginConfig {
            max_failures: raw.max_failures,
            max_failures_per_ip: raw.max_failures_per_ip,
            window: secs(raw.window_secs),
            hash_concurrency,
        }
    }

    /// `[[routes]]`: every route checked on its own; names must be unique.
    pub fn routes(&mut self, table: &toml::Table) -> Vec<RouteConfig> {
        let Some(value) = table.get("routes") else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.push(
                "routes",
                "must be an array of tables ([[routes]] ...)".into(),
            );
            return Vec::new();
        };
        let mut out: Vec<RouteConfig> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let name_hint = item
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" {n:?}"))
                .unwrap_or_default();
            let loc = format!("routes[{i}]{name_hint}");
            let raw = match RawRoute::deserialize(item.clone()) {
                Ok(r) => r,
                Err(e) => {
                    self.push(&loc, e.message().to_owned());
                    continue;
                }
            };
            if let Some(route) = self.route(&loc, raw) {
                if let Some(prev) = out.iter().position(|r| r.name == route.name) {
                    self.push(
                        &format!("{loc}.name"),
                        format!("duplicate route name (also routes[{prev}])"),
                    );
                    continue;
                }
                if let Some(prev) = out.iter().position(|r| shadows(r, &route)) {
                    // As nginx refuses a duplicate `location`: a route that
                    // can never match is a mistake, not a policy.
                    self.push(
                        &format!("{loc}.path"),
                        format!(
                            "never matches: routes[{prev}] has the same path and host and allows every method this one does"
                        ),
                    );
                    continue;
                }
                out.push(route);
            }
        }
        out
    }

    fn route(&mut self, loc: &str, raw: RawRoute) -> Option<RouteConfig> {
        let before = self.list.len();
        if raw.name.is_empty()
            || !raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            self.push(
                &format!("{loc}.name"),
                "must be non-empty ASCII letters, digits, '-', '_', '.' or ':'".into(),
            );
        }
        let path = match normalize_route_path(&raw.path) {
            Ok(p) => p,
            Err(msg) => {
                self.push(&format!("{loc}.path"), msg);
                String::new()
            }
        };
        let host = raw.host.as_ref().and_then(|h| {
            let h = h.to_ascii_lowercase();
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if ok {
                Some(h)
            } else {
                self.push(
                    &format!("{loc}.host"),
                    format!("{h:?} is not a host name (letters, digits, '-', '.'; no port)"),
                );
                None
            }
        });
        let methods = raw.methods.as_ref().map(|ms| {
            let mut out = Vec::new();
            for m in ms {
                match parse_method(m) {
                    Some(method) => {
                        if !out.contains(&method) {
                            out.push(method)
                        }
                    }
                    None => self.push(
                        &format!("{loc}.methods"),
                        format!("unknown method {m:?} ({ALLOW_ALL_METHODS})"),
                    ),
                }
            }
            if ms.is_empty() {
                self.push(
                    &format!("{loc}.methods"),
                    "must not be empty (leave it out to allow every method)".into(),
                );
            }
            out
        });
        let upstream = match parse_upstream(&raw.upstream) {
            Ok(u) => Some(u),
            Err(msg) => {
                self.push(&format!("{loc}.upstream"), msg);
                None
            }
        };
        for (key, list) in [("scopes", &raw.scopes), ("any_scopes", &raw.any_scopes)] {
            for s in list {
                if !scope::is_valid(s) {
                    self.push(
                        &format!("{loc}.{key}"),
                        format!(
                            "{s:?} is not a valid scope (printable ASCII without space, '\"' or '\\')"
                        ),
                    );
                }
            }
        }
        let access = if raw.public {
            if !(raw.scopes.is_empty() && raw.any_scopes.is_empty()) {
                self.push(
                    &format!("{loc}.public"),
                    "a public route cannot require scopes (remove scopes/any_scopes or public)"
                        .into(),
                );
            }
            Access::Public
        } else {
            Access::Token {
                all: raw.scopes,
                any: raw.any_scopes,
            }
        };
        if raw.timeout_secs == 0 {
            self.push(
                &format!("{loc}.timeout_secs"),
                "must be greater than 0".into(),
            );
        }
        if self.list.len() != before {
            return None;
        }
        Some(RouteConfig {
            name: raw.name,
            path,
            host,
            methods,
            upstream: upstream?,
            strip_prefix: raw.strip_prefix,
            access,
            timeout: secs(raw.timeout_secs),
            forward_authorization: raw.forward_authorization,
        })
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A method a route may list: one of [`PROXIED_METHODS`], in any case.
fn parse_method(m: &str) -> Option<Method> {
    PROXIED_METHODS
        .iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(m))
        .cloned()
}

/// A route prefix must already be in normal form: it is compared with
/// normalized request paths, so anything that normalization would change
/// (dot segments, `//`, percent-encoding) could never match and is an error.
/// It may not be at or under a [`super::RESERVED_PREFIXES`] path, which
/// scopegate answers itself.
fn normalize_route_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    // Only unreserved characters: a reserved one (`:`, `@`, `;`, ...) could
    // also arrive percent-encoded, stay encoded after normalization, miss
    // this prefix and fall through to a less protected route while the
    // upstream decodes it and serves the protected path.
    if !p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
    {
        return Err(format!(
            "{p:?} may only contain letters, digits, '/', '-', '.', '_' and '~'"
        ));
    }
    let trimmed = if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    };
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    if trimmed.len() > 1
        && trimmed[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!("{p:?} contains '//', '.' or '..' segments"));
    }
    if let Some(reserved) = reserved_prefix(trimmed) {
        return Err(format!(
            "{p:?} is under {reserved}, which scopegate serves itself (no route may be configured there)"
        ));
    }
    Ok(trimmed.to_owned())
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("{s:?} needs a scheme: http://host:port"))?;
    if scheme != Scheme::HTTP {
        return Err(format!(
            "{s:?}: only http:// upstreams are supported (terminate TLS to the upstream in a sidecar)"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} needs a host: http://host:port"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{s:?}: user info in upstream URLs is not supported"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("{s:?} needs a host"));
    }
    if uri.query().is_some() {
        return Err(format!("{s:?}: an upstream URL cannot have a query"));
    }
    let base = uri.path().trim_end_matches('/');
    if base.contains("//") || base.contains('%') || base.split('/').any(|x| x == "." || x == "..") {
        return Err(format!("{s:?}: the upstream path must be plain"));
    }
    let host = match authority.port_u16() {
        Some(port) if port != 80 => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    let host = http::HeaderValue::from_str(&host)
        .map_err(|_| format!("{s:?}: the host cannot be a Host header"))?;
    Ok(Upstream {
        scheme,
        authority,
        base_path: base.to_owned(),
        host,
    })
}

/// The highest `oauth.introspections_per_caller`: past a million per
/// second a limit limits nothing.
const MAX_INTROSPECTIONS_PER_CALLER: u32 = 1_000_000;

/// `oauth.issuer`: an `http` or `https` URL without user info, query or
/// fragment (RFC 8414 §2), returned with its scheme and host lower-cased
/// and without a trailing `/`.
fn parse_issuer(s: &str) -> Result<String, String> {
    // `http::Uri` drops a fragment without a word: look for one first.
    if s.contains('?') || s.contains('#') {
        return Err(format!(
            "{s:?}: the issuer cannot have a query or fragment (RFC 8414 §2)"
        ));
    }
    let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(format!("{s:?} is not a URL: the issuer needs https://host"));
    };
    if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
        return Err(format!(
            "{s:?}: the issuer must be an http:// or https:// URL"
        ));
    }
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: user info in the issuer is not allowed"));
    }
    if authority.host().is_empty() {
        return Err(format!("{s:?} needs a host"));
    }
    Ok(format!(
        "{}://{}{}",
        scheme.as_str().to_ascii_lowercase(),
        authority.as_str().to_ascii_lowercase(),
        uri.path().trim_end_matches('/')
    ))
}

/// Does `earlier` take every request `later` could match? The same prefix
/// and host, and every method `later` allows (first in file order wins
/// among routes of one prefix and host, `docs/configuration.md`).
fn shadows(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    earlier.path == later.path
        && earlier.host == later.host
        && match (&earlier.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
        }
}
