//! TOML configuration (CONTRACT §2) -> validated [`Config`].
//!
//! Loading never stops at the first problem: every section and every route is
//! checked on its own, and each error carries its location (file, key, route
//! index and name) so `scopegate check-config` can print them all at once.
//! Environment overrides (`SCOPEGATE_DATABASE_URL`, `SCOPEGATE_LISTEN`) are
//! applied after parsing and validated like the file's own values.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Method, Uri};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::scope;

/// A secret string whose `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub tokens: TokenConfig,
    pub cache: CacheConfig,
    pub login: LoginConfig,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `None`: `dev` runs an embedded cluster; `serve` refuses to start.
    pub url: Option<Secret>,
    pub pool_size: usize,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub refresh_reuse_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub max_staleness: Duration,
    pub outage_grace: Duration,
    pub negative_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub max_failures: u32,
    pub window: Duration,
    /// Resolved: never 0 (0 in the file means "number of cores").
    pub hash_concurrency: usize,
}

/// Where a route's traffic goes: `http://host:port[/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix prepended to forwarded paths; empty or `/x/y` (no trailing `/`).
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Normalized prefix: starts with `/`, no trailing `/` except the root itself.
    pub path: String,
    /// Lower-cased host without port.
    pub host: Option<String>,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    pub upstream: Upstream,
    pub strip_prefix: bool,
    pub scopes: Vec<String>,
    pub any_scopes: Vec<String>,
    pub public: bool,
    pub timeout: Duration,
    pub forward_authorization: bool,
}

/// One problem in a configuration, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<env>` for an override.
    pub file: String,
    /// `server.listen`, `routes[2] "orders".upstream`, ...
    pub location: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.location, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Raw (file) shapes. Each section is deserialized on its own so that one bad
// section does not hide the errors of the others.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    admin_listen: String,
    max_header_bytes: usize,
    max_body_bytes: u64,
    header_read_timeout_secs: u64,
    max_connections: usize,
    request_timeout_secs: u64,
    shutdown_grace_secs: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            max_header_bytes: 16384,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 10000,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: Option<String>,
    pool_size: usize,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokens {
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
    refresh_reuse_grace_secs: u64,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            access_ttl_secs: 3600,
            refresh_ttl_secs: 604800,
            refresh_reuse_grace_secs: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    max_entries: u64,
    max_staleness_secs: u64,
    outage_grace_secs: u64,
    negative_ttl_secs: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_staleness_secs: 5,
            outage_grace_secs: 60,
            negative_ttl_secs: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLogin {
    max_failures: u32,
    window_secs: u64,
    hash_concurrency: usize,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_secs: 300,
            hash_concurrency: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    path: String,
    host: Option<String>,
    methods: Option<Vec<String>>,
    upstream: String,
    #[serde(default)]
    strip_prefix: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    any_scopes: Vec<String>,
    #[serde(default)]
    public: bool,
    #[serde(default = "default_route_timeout")]
    timeout_secs: u64,
    #[serde(default)]
    forward_authorization: bool,
}

fn default_route_timeout() -> u64 {
    30
}

const SECTIONS: [&str; 6] = ["server", "database", "tokens", "cache", "login", "routes"];

/// Environment overrides, taken from the process environment by [`Config::load`].
#[derive(Debug, Default, Clone)]
pub struct EnvOverrides {
    pub database_url: Option<String>,
    pub listen: Option<String>,
}

impl EnvOverrides {
    pub fn from_env() -> Self {
        Self {
            database_url: std::env::var("SCOPEGATE_DATABASE_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            listen: std::env::var("SCOPEGATE_LISTEN")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

impl Config {
    /// Read `path`, apply the process's environment overrides and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                location: String::new(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Self::parse(&text, &file, &EnvOverrides::from_env())
    }

    /// Parse and validate TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, env: &EnvOverrides) -> Result<Config, ConfigErrors> {
        let mut errs = Errors {
            file: file.to_owned(),
            list: Vec::new(),
        };
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                errs.push("", format!("invalid TOML: {}", e.to_string().trim()));
                return Err(ConfigErrors(errs.list));
            }
        };
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                errs.push(
                    key,
                    format!("unknown section (expected one of {})", SECTIONS.join(", ")),
                );
            }
        }

        let server: RawServer = errs.section(&table, "server").unwrap_or_default();
        let database: RawDatabase = errs.section(&table, "database").unwrap_or_default();
        let tokens: RawTokens = errs.section(&table, "tokens").unwrap_or_default();
        let cache: RawCache = errs.section(&table, "cache").unwrap_or_default();
        let login: RawLogin = errs.section(&table, "login").unwrap_or_default();

        let listen_src = env.listen.clone().unwrap_or(server.listen);
        let listen_loc = if env.listen.is_some() {
            "SCOPEGATE_LISTEN"
        } else {
            "server.listen"
        };
        let listen = errs.socket_addr(listen_loc, &listen_src);
        let admin_listen = errs.socket_addr("server.admin_listen", &server.admin_listen);
        if let (Some(a), Some(b)) = (listen, admin_listen) {
            if a == b && a.port() != 0 {
                errs.push(
                    "server.admin_listen",
                    "must differ from server.listen".into(),
                );
            }
        }
        errs.positive("server.max_header_bytes", server.max_header_bytes as u64);
        errs.positive("server.max_connections", server.max_connections as u64);
        errs.positive(
            "server.header_read_timeout_secs",
            server.header_read_timeout_secs,
        );
        errs.positive("server.request_timeout_secs", server.request_timeout_secs);
        errs.positive("database.pool_size", database.pool_size as u64);
        errs.positive("tokens.access_ttl_secs", tokens.access_ttl_secs);
        errs.positive("tokens.refresh_ttl_secs", tokens.refresh_ttl_secs);
        errs.positive("cache.max_entries", cache.max_entries);
        errs.positive("cache.negative_ttl_secs", cache.negative_ttl_secs);
        errs.positive("login.max_failures", u64::from(login.max_failures));
        errs.positive("login.window_secs", login.window_secs);

        let db_url = env.database_url.clone().or(database.url);
        if let Some(url) = &db_url {
            if let Err(e) = url.parse::<tokio_postgres::Config>() {
                let loc = if env.database_url.is_some() {
                    "SCOPEGATE_DATABASE_URL"
                } else {
                    "database.url"
                };
                // The URL may hold a password: name the problem, not the value.
                errs.push(loc, format!("not a valid Postgres connection string: {e}"));
            }
        }

        let routes = errs.routes(&table);

        if !errs.list.is_empty() {
            return Err(ConfigErrors(errs.list));
        }
        let hash_concurrency = if login.hash_concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            login.hash_concurrency
        };
        Ok(Config {
            server: ServerConfig {
                // Checked above: both are Some when no error was recorded.
                listen: listen.unwrap_or_else(unreachable_addr),
                admin_listen: admin_listen.unwrap_or_else(unreachable_addr),
                max_header_bytes: server.max_header_bytes,
                max_body_bytes: server.max_body_bytes,
                header_read_timeout: secs(server.header_read_timeout_secs),
                max_connections: server.max_connections,
                request_timeout: secs(server.request_timeout_secs),
                shutdown_grace: secs(server.shutdown_grace_secs),
            },
            database: DatabaseConfig {
                url: db_url.map(Secret::new),
                pool_size: database.pool_size,
            },
            tokens: TokenConfig {
                access_ttl: secs(tokens.access_ttl_secs),
                refresh_ttl: secs(tokens.refresh_ttl_secs),
                refresh_reuse_grace: secs(tokens.refresh_reuse_grace_secs),
            },
            cache: CacheConfig {
                max_entries: cache.max_entries,
                max_staleness: secs(cache.max_staleness_secs),
                outage_grace: secs(cache.outage_grace_secs),
                negative_ttl: secs(cache.negative_ttl_secs),
            },
            login: LoginConfig {
                max_failures: login.max_failures,
                window: secs(login.window_secs),
                hash_concurrency,
            },
            routes,
        })
    }
}

fn unreachable_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Errors {
    file: String,
    list: Vec<ConfigError>,
}

impl Errors {
    fn push(&mut self, location: &str, message: String) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            location: location.to_owned(),
            message,
        });
    }

    fn section<T: DeserializeOwned>(&mut self, table: &toml::Table, name: &str) -> Option<T> {
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

    fn routes(&mut self, table: &toml::Table) -> Vec<RouteConfig> {
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
                        format!(
                            "unknown method {m:?} (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"
                        ),
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
        if raw.public && !(raw.scopes.is_empty() && raw.any_scopes.is_empty()) {
            self.push(
                &format!("{loc}.public"),
                "a public route cannot require scopes (remove scopes/any_scopes or public)".into(),
            );
        }
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
            scopes: raw.scopes,
            any_scopes: raw.any_scopes,
            public: raw.public,
            timeout: secs(raw.timeout_secs),
            forward_authorization: raw.forward_authorization,
        })
    }
}

/// Methods a route may list. CONNECT and TRACE are never proxied (attack
/// cases H9, H10), so they cannot be configured either.
fn parse_method(m: &str) -> Option<Method> {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Some(Method::GET),
        "HEAD" => Some(Method::HEAD),
        "POST" => Some(Method::POST),
        "PUT" => Some(Method::PUT),
        "PATCH" => Some(Method::PATCH),
        "DELETE" => Some(Method::DELETE),
        "OPTIONS" => Some(Method::OPTIONS),
        _ => None,
    }
}

/// A route prefix must already be in normal form: it is compared with
/// normalized request paths, so anything that normalization would change
/// (dot segments, `//`, percent-encoding) could never match and is an error.
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
    Ok(Upstream {
        scheme,
        authority,
        base_path: base.to_owned(),
    })
}

/// Default config path, overridden by `--config` / `SCOPEGATE_CONFIG`.
pub fn default_path() -> PathBuf {
    PathBuf::from("config/scopegate.toml")
}

#[cfg(test)]
mod tests;
