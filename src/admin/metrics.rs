//! `GET /metrics`: the Prometheus exposition (OpenMetrics text, which
//! Prometheus scrapes natively), encoded by `prometheus-client`.
//!
//! Nothing is counted here: every value is read at scrape time from the
//! part of the process that owns it (the per-route [`RouteStats`], the
//! OAuth counters, the validation cache, the hashing pool, the database
//! pool, the admin API's own counters), through one [`Collector`]. The
//! request path therefore pays only for its own atomic increments. The
//! metric names are listed in `docs/operations.md`, "Metrics".

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::AdminStats;
use crate::db::DbPool;
use crate::gateway::Gateway;
use crate::metrics::{RouteStats, UpstreamError, LATENCY_BUCKETS_MICROS, STATUS_CLASSES};
use crate::oauth::{Endpoint, OAuth};
use crate::tokens::cache::Validator;
use crate::tokens::sweep::SweepStats;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the exported values live.
pub struct Sources {
    pub gateway: Arc<Gateway>,
    pub oauth: Arc<OAuth>,
    pub tokens: Arc<Validator>,
    pub db: DbPool,
    pub sweep: Arc<SweepStats>,
    pub admin: Arc<AdminStats>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metrics sources")
    }
}

/// The registry behind `/metrics`.
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    pub fn new(sources: Sources) -> Exporter {
        let mut registry = Registry::with_prefix("scopegate");
        registry.register_collector(Box::new(sources));
        Exporter { registry }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// A label value as the text format needs it (`\`, `"` and newlines
/// escaped); route names come from the configuration.
fn label(s: &str) -> Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)
}

impl Sources {
    /// Every (route label, stats) pair: the current routes, the OAuth
    /// endpoints, and `-` (no route).
    fn for_each_route(&self, mut f: impl FnMut(&str, &RouteStats) -> fmt::Result) -> fmt::Result {
        let policy = self.gateway.policy();
        for r in policy.routes.routes() {
            f(&r.config.name, &r.stats)?;
        }
        for e in Endpoint::ALL {
            f(e.label(), self.oauth.endpoint_stats(e))?;
        }
        f("-", &self.gateway.unrouted)
    }

    fn requests(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let mut m = e.encode_descriptor(
            "requests",
            "Answers on the proxy listener, by route (or OAuth endpoint, or - for none) and status class.",
            None,
            MetricType::Counter,
        )?;
        self.for_each_route(|name, stats| {
            let name = label(name);
            for (class, n) in STATUS_CLASSES.iter().zip(stats.classes()) {
                let labels = [("route", name.as_ref()), ("class", class)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
            Ok(())
        })?;

        let mut m = e.encode_descriptor(
            "request_duration_seconds",
            "Time from a request's arrival to its response head, by route.",
            None,
            MetricType::Histogram,
        )?;
        self.for_each_route(|name, stats| {
            let name = label(name);
            let (sum, count, counts) = stats.latency.snapshot();
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MICROS
                .iter()
                .map(|&b| b as f64 / 1e6)
                .chain(std::iter::once(f64::MAX))
                .zip(counts)
                .collect();
            let labels = [("route", name.as_ref())];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        })?;

        let mut m = e.encode_descriptor(
            "upstream_errors",
            "Failed forwards by route and kind (connect, timeout, request, protocol).",
            None,
            MetricType::Counter,
        )?;
        let policy = self.gateway.policy();
        for r in policy.routes.routes() {
            let name = label(&r.config.name);
            for (kind, n) in UpstreamError::ALL.iter().zip(r.stats.upstream_errors()) {
                let labels = [("route", name.as_ref()), ("kind", kind.label())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn cache(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let c = self.tokens.counts();
        counter(
            e,
            "cache_hits",
            "Token validations answered from a valid cache entry.",
            c.hits,
        )?;
        counter(
            e,
            "cache_misses",
            "Token validations with no cache entry (the database was asked).",
            c.misses,
        )?;
        counter(
            e,
            "cache_negative_hits",
            "Token validations answered from an entry remembered as invalid.",
            c.negative_hits,
        )?;
        counter(
            e,
            "cache_rechecks",
            "Cache entries older than max_staleness_secs re-checked against the database.",
            c.rechecks,
        )?;
        counter(
            e,
            "cache_db_lookups",
            "Token lookups sent to the database.",
            self.tokens.db_lookups(),
        )?;
        gauge(
            e,
            "cache_entries",
            "Entries in the validation cache, valid and invalid (approximate).",
            self.tokens.entry_count(),
        )?;
        counter(
            e,
            "cache_throttled",
            "Uncached tokens refused with 429: the address spent its budget of invalid lookups.",
            c.throttled,
        )?;
        counter(
            e,
            "cache_revocations",
            "Revocations applied to the validation cache (made here or pushed by the database).",
            c.revocations,
        )?;
        let l = self.tokens.listener_stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        gauge(
            e,
            "listener_up",
            "1 while the revocation listener (LISTEN) is connected and answering.",
            u64::from(self.tokens.listener_live()),
        )?;
        counter(
            e,
            "listener_connects",
            "Revocation listener connections established (the first and every reconnection).",
            load(&l.connects),
        )?;
        counter(
            e,
            "listener_disconnects",
            "Revocation listener connections lost or unanswered.",
            load(&l.disconnects),
        )?;
        counter(
            e,
            "listener_notifications",
            "Revocation notifications received from the database.",
            load(&l.notifications),
        )
    }

    fn database(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let s = self.db.status();
        gauge(
            e,
            "db_pool_max",
            "Largest size of the database pool.",
            s.max_size as u64,
        )?;
        gauge(
            e,
            "db_pool_size",
            "Open database connections in the pool.",
            s.size as u64,
        )?;
        gauge(
            e,
            "db_pool_available",
            "Idle database connections in the pool.",
            s.available as u64,
        )?;
        gauge(
            e,
            "db_pool_waiters",
            "Requests waiting for a database connection.",
            s.waiting as u64,
        )
    }

    fn tokens_and_logins(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let o = &self.oauth.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        // One child per grant type, their labels fixed here: counting an
        // issuance on the request path is one relaxed increment of the
        // grant's own counter in `OAuthStats`.
        let mut m = e.encode_descriptor(
            "tokens_issued",
            "Tokens issued by /oauth/token, by grant type (password, refresh_token, authorization_code: an access and a refresh token; client_credentials: an access token).",
            None,
            MetricType::Counter,
        )?;
        for (grant, n) in [
            ("password", &o.logins),
            ("refresh_token", &o.refreshes),
            ("authorization_code", &o.code_exchanges),
            ("client_credentials", &o.client_credentials),
        ] {
            ConstCounter::new(load(n)).encode(m.encode_family(&[("grant", grant)])?)?;
        }
        counter(
            e,
            "authorization_codes_issued",
            "Authorization codes issued by the login page (POST /oauth/authorize).",
            load(&o.codes),
        )?;
        counter(
            e,
            "tokens_revoked",
            "Access tokens revoked through this process (OAuth endpoints and admin API).",
            load(&o.revoked) + self.admin.revoked.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "refresh_reuse",
            "Rotated refresh tokens presented again (their families revoked).",
            load(&o.refresh_reuse),
        )?;
        counter(
            e,
            "login_failures",
            "Failed password checks (wrong or unknown username, wrong password, inactive account).",
            load(&o.login_failures),
        )?;
        counter(
            e,
            "login_throttled",
            "Password checks refused with 429 by the login throttle.",
            load(&o.throttled),
        )?;
        counter(
            e,
            "admin_changes",
            "Changes made through the admin API.",
            self.admin.changes.load(Ordering::Relaxed),
        )
    }

    fn hashing(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let h = &self.oauth.hasher;
        gauge(
            e,
            "hash_queue_depth",
            "Password hashing jobs waiting for a thread.",
            h.queue_depth(),
        )?;
        gauge(
            e,
            "hash_threads",
            "Password hashing threads.",
            h.threads() as u64,
        )?;
        counter(
            e,
            "hash_computed",
            "argon2 computations performed.",
            h.computed(),
        )?;
        counter(
            e,
            "hash_refused",
            "Password hashing jobs refused because the queue was full (503).",
            h.refused(),
        )
    }

    fn maintenance(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let r = &self.gateway.reloads;
        counter(
            e,
            "reloads",
            "Configuration reloads applied (SIGHUP).",
            load(&r.applied),
        )?;
        counter(
            e,
            "reload_failures",
            "Configuration reloads refused (the new file was invalid; the old one keeps serving).",
            load(&r.failed),
        )?;
        gauge(
            e,
            "reload_last_failed",
            "1 while the latest reload was refused (the file on disk is not what serves).",
            u64::from(r.last_failed.load(Ordering::Relaxed)),
        )?;
        let s = &self.sweep;
        counter(e, "sweeps", "Cleanup sweeps run.", load(&s.sweeps))?;
        counter(
            e,
            "sweep_failures",
            "Cleanup sweeps that failed.",
            load(&s.failures),
        )?;
        counter(
            e,
            "swept_access_tokens",
            "Expired access tokens deleted by the cleanup sweep.",
            load(&s.access_tokens),
        )?;
        counter(
            e,
            "swept_refresh_tokens",
            "Refresh tokens of wholly expired families deleted by the cleanup sweep.",
            load(&s.refresh_tokens),
        )?;
        counter(
            e,
            "swept_authorization_codes",
            "Expired authorization codes deleted by the cleanup sweep.",
            load(&s.authorization_codes),
        )
    }
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.requests(&mut e)?;
        self.cache(&mut e)?;
        self.database(&mut e)?;
        self.tokens_and_logins(&mut e)?;
        self.hashing(&mut e)?;
        self.maintenance(&mut e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("orders"), "orders");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
