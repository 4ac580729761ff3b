//! The file's shapes, as serde reads them, and the one set of defaults.
//!
//! Each section is deserialized on its own (see [`super::validate`]) so
//! that one bad section does not hide the errors of the others. A key left
//! out of the file takes its value from the `Default` impls here, and
//! nowhere else: [`super::ServerConfig::default`] is these defaults,
//! validated. `config/scopegate.toml` documents every key with these values.

use serde::Deserialize;

/// The top-level tables a file may have.
pub(super) const SECTIONS: [&str; 7] = [
    "server", "database", "tokens", "oauth", "cache", "login", "routes",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub listen: String,
    pub admin_listen: String,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout_secs: u64,
    pub max_connections: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub trusted_proxies: Vec<String>,
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
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDatabase {
    pub url: Option<String>,
    pub pool_size: usize,
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
pub(super) struct RawTokens {
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub refresh_reuse_grace_secs: u64,
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
pub(super) struct RawOAuth {
    /// `None`: `"http://" + server.listen`, decided in validation (it
    /// depends on `SCOPEGATE_LISTEN`).
    pub issuer: Option<String>,
    pub password_grant: bool,
    pub code_ttl_secs: u64,
    pub introspections_per_caller: u32,
}

impl Default for RawOAuth {
    fn default() -> Self {
        Self {
            issuer: None,
            password_grant: true,
            code_ttl_secs: 60,
            introspections_per_caller: 50,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCache {
    pub max_entries: u64,
    pub max_staleness_secs: u64,
    pub outage_grace_secs: u64,
    pub negative_ttl_secs: u64,
    pub invalid_lookups_per_ip: u32,
    pub db_deadline_ms: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_staleness_secs: 5,
            outage_grace_secs: 60,
            negative_ttl_secs: 5,
            invalid_lookups_per_ip: 50,
            db_deadline_ms: 1000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLogin {
    pub max_failures: u32,
    pub max_failures_per_ip: u32,
    pub window_secs: u64,
    pub hash_concurrency: usize,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            max_failures: 5,
            max_failures_per_ip: 50,
            window_secs: 300,
            hash_concurrency: 0,
        }
    }
}

/// One `[[routes]]` entry. `name`, `path` and `upstream` have no default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: String,
    pub path: String,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub any_scopes: Vec<String>,
    #[serde(default)]
    pub public: bool,
    #[serde(default = "default_route_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub forward_authorization: bool,
}

fn default_route_timeout() -> u64 {
    30
}
