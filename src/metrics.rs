//! Prometheus metrics: one process-wide registry, updated by the HTTP edge, the command
//! handler and the feed, and rendered at `GET /metrics`.
//!
//! Process-wide rather than per server because the events and conflicts are counted deep
//! in `commands`, which must not depend on the HTTP layer to reach a registry.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds; from a cache-hot read (~1 ms) to the pool timeout's neighbourhood (5 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    pool_waiting: IntGauge,
    events_appended: IntCounterVec,
    conflicts_retried: IntCounter,
    stream_cache: IntCounterVec,
    group_commits: IntCounter,
    group_commit_appends: IntCounter,
    group_commit_splits: IntCounter,
    replica_up: IntGauge,
    replica_lag: Gauge,
    replica_fallbacks: IntCounter,
    feed_open_streams: IntGauge,
    feed_waiting: IntGauge,
    feed_lag: Histogram,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    Metrics {
        http_requests: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "chatprefs_http_requests_total",
                    "HTTP requests answered, by route pattern, method and status.",
                ),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
        ),
        http_duration: register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "chatprefs_http_request_duration_seconds",
                    "Time to answer an HTTP request, by route pattern and method.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method"],
            )
            .expect("valid metric"),
        ),
        pool_connections: register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "chatprefs_db_pool_connections",
                    "Database connections held by the pool, by state (idle or in_use).",
                ),
                &["state"],
            )
            .expect("valid metric"),
        ),
        pool_max: register(
            &r,
            IntGauge::new(
                "chatprefs_db_pool_max_connections",
                "Most database connections the pool may open (--pool-size).",
            )
            .expect("valid metric"),
        ),
        pool_waiting: register(
            &r,
            IntGauge::new(
                "chatprefs_db_pool_waiting",
                "Requests waiting for a database connection.",
            )
            .expect("valid metric"),
        ),
        events_appended: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "chatprefs_events_appended_total",
                    "Events appended to the log, by event type.",
                ),
                &["event_type"],
            )
            .expect("valid metric"),
        ),
        conflicts_retried: register(
            &r,
            IntCounter::new(
                "chatprefs_command_conflicts_retried_total",
                "Appends retried after losing a race with a concurrent append to the same stream.",
            )
            .expect("valid metric"),
        ),
        stream_cache: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "chatprefs_stream_cache_total",
                    "Commands by what the remembered stream state did for them: appended or \
                     probed (answered without a load), stale (loaded after all), miss (none).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        ),
        group_commits: register(
            &r,
            IntCounter::new(
                "chatprefs_group_commits_total",
                "Group commits that succeeded (a lone append included).",
            )
            .expect("valid metric"),
        ),
        group_commit_appends: register(
            &r,
            IntCounter::new(
                "chatprefs_group_commit_appends_total",
                "Appends committed in group commits (divided by chatprefs_group_commits_total: \
                 the mean group).",
            )
            .expect("valid metric"),
        ),
        group_commit_splits: register(
            &r,
            IntCounter::new(
                "chatprefs_group_commit_splits_total",
                "Appends that failed their group (refused, or waiting on a lock past the lock \
                 timeout): answered apart, and the rest of the group sent again.",
            )
            .expect("valid metric"),
        ),
        replica_up: register(
            &r,
            IntGauge::new(
                "chatprefs_read_replica_up",
                "1 when the read replica (--read-database-url) answered at the last scrape; 0 \
                 when it did not (its reads then go to the primary) or none is configured.",
            )
            .expect("valid metric"),
        ),
        replica_lag: register(
            &r,
            Gauge::new(
                "chatprefs_read_replica_lag_seconds",
                "How far the read replica's replayed state trails what it has received from \
                 the primary, at the last scrape (0 when caught up).",
            )
            .expect("valid metric"),
        ),
        replica_fallbacks: register(
            &r,
            IntCounter::new(
                "chatprefs_read_replica_fallbacks_total",
                "Reads meant for the replica that the primary answered because the replica \
                 could not.",
            )
            .expect("valid metric"),
        ),
        feed_open_streams: register(
            &r,
            IntGauge::new(
                "chatprefs_feed_open_streams",
                "Live preference streams (GET /me/events) open in this process.",
            )
            .expect("valid metric"),
        ),
        feed_waiting: register(
            &r,
            IntGauge::new(
                "chatprefs_feed_waiting_requests",
                "Change-feed requests (GET /admin/events with wait) waiting for an event.",
            )
            .expect("valid metric"),
        ),
        feed_lag: register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "chatprefs_feed_lag_seconds",
                    "From an event's commit to its delivery to a waiting feed request or live \
                     stream.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        ),
        registry: r,
    }
});

/// Counts itself in a gauge while it lives.
pub struct GaugeGuard(&'static IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn hold(gauge: &'static IntGauge) -> GaugeGuard {
    gauge.inc();
    GaugeGuard(gauge)
}

pub fn feed_stream_opened() -> GaugeGuard {
    hold(&METRICS.feed_open_streams)
}

pub fn feed_request_waiting() -> GaugeGuard {
    hold(&METRICS.feed_waiting)
}

/// An event recorded at `recorded_at` reached a live reader now.
pub fn feed_delivered(recorded_at: chrono::DateTime<chrono::Utc>) {
    let lag = (chrono::Utc::now() - recorded_at)
        .to_std()
        .unwrap_or_default();
    METRICS.feed_lag.observe(lag.as_secs_f64());
}

/// Counts one answered request. `route` must be the route pattern (bounded), never the raw
/// path, which would give every room id a time series of its own.
pub fn observe_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let m = &*METRICS;
    m.http_requests
        .with_label_values(&[route, method, &status.to_string()])
        .inc();
    m.http_duration
        .with_label_values(&[route, method])
        .observe(elapsed.as_secs_f64());
}

pub fn event_appended(event_type: &str) {
    METRICS
        .events_appended
        .with_label_values(&[event_type])
        .inc();
}

pub fn conflict_retried() {
    METRICS.conflicts_retried.inc();
}

/// `outcome`: `appended`, `probed`, `stale` or `miss` (see `service::stream_cache`).
pub fn stream_cache_used(outcome: &str) {
    METRICS.stream_cache.with_label_values(&[outcome]).inc();
}

pub fn group_committed(appends: usize) {
    METRICS.group_commits.inc();
    METRICS.group_commit_appends.inc_by(appends as u64);
}

pub fn group_split() {
    METRICS.group_commit_splits.inc();
}

/// The connection pool as last sampled (at every scrape).
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub idle: usize,
    pub waiting: usize,
}

pub fn set_pool_status(status: PoolStatus) {
    let m = &*METRICS;
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    m.pool_max.set(gauge(status.max_size));
    m.pool_connections
        .with_label_values(&["idle"])
        .set(gauge(status.idle));
    m.pool_connections
        .with_label_values(&["in_use"])
        .set(gauge(status.size.saturating_sub(status.idle)));
    m.pool_waiting.set(gauge(status.waiting));
}

/// The read replica as sampled at a scrape: its replay lag, or `None` when it did not answer.
pub fn set_replica_lag(lag: Option<Duration>) {
    let m = &*METRICS;
    m.replica_up.set(i64::from(lag.is_some()));
    if let Some(lag) = lag {
        m.replica_lag.set(lag.as_secs_f64());
    }
}

pub fn replica_fallback() {
    METRICS.replica_fallbacks.inc();
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("encoding to memory does not fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}
