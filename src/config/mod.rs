//! TOML configuration -> validated [`Config`] (every key is described in
//! `docs/configuration.md` and, with its default, in `config/scopegate.toml`).
//!
//! Loading never stops at the first problem: every section and every route is
//! checked on its own, and each error carries its location (file, key, route
//! index and name) so `scopegate check-config` can print them all at once.
//! Environment overrides (`SCOPEGATE_DATABASE_URL`, `SCOPEGATE_LISTEN`) are
//! applied after parsing and validated like the file's own values.
//!
//! - this module: the validated types, [`Config::load`] / [`Config::parse`];
//! - `raw`: the file's shapes as serde reads them, with the one set of
//!   defaults;
//! - `validate`: raw -> validated, collecting located errors;
//! - `cidr`: [`Cidr`], for `server.trusted_proxies`;
//! - `database_url`: [`TlsMode`] and the other TLS parameters of
//!   `database.url`, and [`pg_url`].
//!
//! This is a leaf module: it uses nothing from the gateway or the stores.

mod cidr;
mod database_url;
mod raw;
mod validate;

pub use cidr::Cidr;
pub(crate) use database_url::tls_params;
pub use database_url::{pg_url, TlsMode};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Method;

use raw::{RawCache, RawDatabase, RawLogin, RawOAuth, RawServer, RawTokens, SECTIONS};
use validate::Errors;

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
    pub oauth: OAuthConfig,
    pub cache: CacheConfig,
    pub login: LoginConfig,
    pub routes: Vec<RouteConfig>,
}

/// `[server]`. `Default` gives the values of an empty file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The load balancers in front of scopegate. From a peer in one of
    /// these networks the client address (for throttling, budgets and the
    /// forwarded headers) is the right-most `X-Forwarded-For` entry that is
    /// not itself in one; from any other peer it is the peer
    /// (`docs/configuration.md`). Empty, the default: `X-Forwarded-For` is
    /// never believed.
    pub trusted_proxies: Vec<Cidr>,
}

impl ServerConfig {
    /// Is `peer` one of [`ServerConfig::trusted_proxies`]?
    pub fn is_trusted_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `None`: `dev` runs an embedded cluster; `serve` refuses to start.
    /// As written: may hold `sslmode` values and `sslrootcert`, which
    /// tokio-postgres does not parse; give it [`DatabaseConfig::pg_url`].
    pub url: Option<Secret>,
    pub pool_size: usize,
    /// The `sslmode` of `url`; [`TlsMode::Prefer`] when it has none.
    pub tls: TlsMode,
    /// The `sslrootcert` of `url`: the CA certificate file the server's
    /// certificate must chain to. Always set for
    /// [`TlsMode::VerifyCa`] and [`TlsMode::VerifyFull`].
    pub ca_file: Option<PathBuf>,
}

impl DatabaseConfig {
    /// `url` as tokio-postgres parses it (see [`pg_url`]).
    pub fn pg_url(&self) -> Option<Secret> {
        self.url.as_ref().map(pg_url)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub refresh_reuse_grace: Duration,
}

/// `[oauth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier (RFC 8414 §2), also
    /// sent as `iss` (RFC 9207): an `http` or `https` URL without query or
    /// fragment, stored without a trailing `/`. Default: `"http://"` +
    /// `server.listen` (after `SCOPEGATE_LISTEN`).
    pub issuer: String,
    /// `false`: `grant_type=password` is answered `unsupported_grant_type`
    /// (RFC 9700 §2.4 advises against the grant).
    pub password_grant: bool,
    /// How long an authorization code may be redeemed (RFC 6749 §4.1.2
    /// recommends at most 10 minutes).
    pub code_ttl: Duration,
    /// `POST /oauth/introspect` requests per second per authenticated
    /// caller (an account behind a Bearer token, or a client), burst twice
    /// that; beyond it the caller gets 429 (never zero).
    pub introspections_per_caller: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub max_staleness: Duration,
    pub outage_grace: Duration,
    pub negative_ttl: Duration,
    /// Uncached tokens per client address per second that may turn out
    /// invalid (burst twice that); beyond it the address gets 429 without a
    /// database query.
    pub invalid_lookups_per_ip: u32,
    /// A validation query not answered within this long counts as
    /// "database unreachable" (`db_deadline_ms`; never zero).
    pub db_deadline: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// Failed password logins per username within `window`.
    pub max_failures: u32,
    /// Failed password logins per client address within `window` (higher
    /// than `max_failures`: one NAT or load balancer is many users).
    pub max_failures_per_ip: u32,
    pub window: Duration,
    /// Resolved: never 0 (0 in the file means "number of cores").
    pub hash_concurrency: usize,
}

/// Every method the gateway proxies, which is every method a route may
/// list, in the order an `Allow` header lists them. CONNECT (RFC 9110
/// §9.3.6) and TRACE (RFC 9110 §9.3.8) are never proxied, so they cannot be
/// configured either.
pub const PROXIED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// The `Allow` value for "every method": [`PROXIED_METHODS`], in order,
/// comma-separated (RFC 9110 §10.2.1).
pub const ALLOW_ALL_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Path prefixes scopegate answers itself on the proxy listener: the OAuth
/// endpoints, and well-known URIs (RFC 8615) such as the authorization
/// server metadata (RFC 8414 §3) (`docs/http.md`, "Local paths"). No route
/// may be configured at or under them; the root route `/` is allowed
/// (these paths never reach it).
pub const RESERVED_PREFIXES: [&str; 2] = ["/oauth", "/.well-known"];

/// The reserved prefix that `path` (normalized) is at or under, on segment
/// boundaries: `/oauth` and `/oauth/token` are under `/oauth`, `/oauthx`
/// is not.
pub fn reserved_prefix(path: &str) -> Option<&'static str> {
    RESERVED_PREFIXES.into_iter().find(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Where a route's traffic goes: `http://host:port[/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix prepended to forwarded paths; empty or `/x/y` (no trailing `/`).
    pub base_path: String,
    /// The `Host` the upstream is sent: its host, and its port unless it
    /// is the scheme's default (what an HTTP client derives from the URL),
    /// made once here instead of on every request.
    pub host: http::HeaderValue,
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
    /// Who may use the route: the file's `public`, `scopes` and
    /// `any_scopes`.
    pub access: Access,
    pub timeout: Duration,
    pub forward_authorization: bool,
}

/// A route's access policy, decided at load. A public route has nowhere to
/// put scopes, so "public, but requires `admin`" cannot be expressed (the
/// loader refuses `public = true` together with `scopes` or `any_scopes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `public = true`: no token needed. A token that is sent is still
    /// validated (an invalid one is a 401).
    Public,
    /// A valid token is needed, whose scopes satisfy every scope in `all`
    /// and, when `any` is non-empty, at least one in `any`. Both empty: any
    /// valid token.
    Token {
        /// `scopes`.
        all: Vec<String>,
        /// `any_scopes`.
        any: Vec<String>,
    },
}

impl Access {
    pub fn is_public(&self) -> bool {
        matches!(self, Access::Public)
    }
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
        let mut errs = Errors::new(file);
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
        let oauth: RawOAuth = errs.section(&table, "oauth").unwrap_or_default();

        let server = errs.server(server, env);
        let database = errs.database(database, env);
        let tokens = errs.tokens(tokens);
        let oauth = errs.oauth(oauth, server.as_ref().map(|s| s.listen));
        let cache = errs.cache(cache);
        let login = errs.login(login);
        let routes = errs.routes(&table);

        match (server, oauth) {
            (Some(server), Some(oauth)) if errs.list.is_empty() => Ok(Config {
                server,
                database,
                tokens,
                oauth,
                cache,
                login,
                routes,
            }),
            _ => Err(ConfigErrors(errs.list)),
        }
    }
}

impl Default for ServerConfig {
    /// The defaults of `[server]` (those of an empty file).
    fn default() -> Self {
        Errors::new("<defaults>")
            .server(RawServer::default(), &EnvOverrides::default())
            .expect("the built-in [server] defaults are valid")
    }
}

/// Default config path, overridden by `--config` / `SCOPEGATE_CONFIG`.
pub fn default_path() -> PathBuf {
    PathBuf::from("config/scopegate.toml")
}

#[cfg(test)]
mod tests;
