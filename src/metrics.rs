//! Per-request counters, recorded on the request path and exported by the
//! admin listener's `GET /metrics` (`docs/operations.md`, "Metrics").
//!
//! Every route of the table, every `/oauth/*` endpoint and the "no route"
//! case owns one [`RouteStats`], built with the route table (or the
//! endpoint) before any request arrives: recording is a handful of relaxed
//! atomic increments on memory that already exists — no label is looked
//! up, formatted or allocated per request, and no lock is taken (a
//! `prometheus-client` `Histogram` takes a write lock per observation,
//! hence the plain atomics here). The exporter reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in microseconds (the
/// last bucket, `+Inf`, is implicit): 100 µs to 10 s.
pub const LATENCY_BUCKETS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Status classes counted: `1xx` to `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why forwarding to an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection could not be made (refused, unreachable, DNS).
    Connect,
    /// The upstream did not answer within the route's timeout.
    Timeout,
    /// The connection failed after it was made (reset, closed early,
    /// malformed answer).
    Request,
    /// The upstream answered with something a proxy cannot pass on (an
    /// unrequested `101`).
    Protocol,
}

impl UpstreamError {
    pub const ALL: [UpstreamError; 4] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Request,
        UpstreamError::Protocol,
    ];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Request => "request",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// A latency histogram of fixed buckets ([`LATENCY_BUCKETS_MICROS`]).
/// Bucket counts are per bucket (not cumulative); the exporter sums them.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// `(sum in seconds, count, per-bucket counts)`; the last bucket is
    /// `+Inf`.
    pub fn snapshot(&self) -> (f64, u64, [u64; LATENCY_BUCKETS_MICROS.len() + 1]) {
        let counts = std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        let count = counts.iter().sum();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, counts)
    }
}

/// What happened to the requests one route (or endpoint) served.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Answers by status class, `1xx` to `5xx`.
    classes: [AtomicU64; STATUS_CLASSES.len()],
    /// Time to the response head.
    pub latency: Latency,
    /// Failed forwards, by [`UpstreamError`].
    upstream_errors: [AtomicU64; UpstreamError::ALL.len()],
}

impl RouteStats {
    /// Count one answer (the log phase calls this for every request).
    pub fn record(&self, status: http::StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100)
            .saturating_sub(1)
            .min(STATUS_CLASSES.len() - 1);
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(elapsed);
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers so far in each class of [`STATUS_CLASSES`].
    pub fn classes(&self) -> [u64; STATUS_CLASSES.len()] {
        std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed))
    }

    /// Failed forwards so far, per [`UpstreamError::ALL`].
    pub fn upstream_errors(&self) -> [u64; UpstreamError::ALL.len()] {
        std::array::from_fn(|i| self.upstream_errors[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn classes_and_buckets() {
        let s = RouteStats::default();
        s.record(StatusCode::OK, Duration::from_micros(100));
        s.record(StatusCode::NOT_FOUND, Duration::from_micros(101));
        s.record(StatusCode::BAD_GATEWAY, Duration::from_secs(60));
        s.record(StatusCode::SWITCHING_PROTOCOLS, Duration::ZERO);
        assert_eq!(s.classes(), [1, 1, 0, 1, 1]);
        let (sum, count, buckets) = s.latency.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 60.000201).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], 2, "<= 100 µs");
        assert_eq!(buckets[1], 1, "<= 250 µs");
        assert_eq!(buckets[LATENCY_BUCKETS_MICROS.len()], 1, "+Inf");
        s.upstream_error(UpstreamError::Timeout);
        assert_eq!(s.upstream_errors(), [0, 1, 0, 0]);
    }
}
