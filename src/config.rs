//! Settings a running service needs, gathered from the CLI (flags with env fallbacks).

use std::net::IpAddr;
use std::time::Duration;

use crate::feed::live::LiveLimits;
use crate::store::PoolSettings;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chatprefs";

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub database_url: String,
    /// A replica for the reads that may lag (audit, as-of, a room's muters); `None`: the
    /// primary serves them.
    pub read_database_url: Option<String>,
    pub bind: String,
    pub pool: PoolSettings,
    /// HTTP worker threads; `None` lets actix use one per core.
    pub workers: Option<usize>,
    pub trusted_proxies: Vec<IpAddr>,
    pub shutdown_timeout_secs: u64,
    /// Browser origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<String>,
    pub limits: HttpLimits,
    pub auth_failures: AuthFailureLimit,
    /// Live preference streams (`GET /me/events`) open at once.
    pub live_streams: LiveLimits,
    /// How often waiting feed requests and live streams look for new events.
    pub feed_poll_interval: Duration,
    /// Longest a change-feed request waits (its `wait` is cut to this).
    pub feed_max_wait: Duration,
    pub auth_cache: AuthCacheSettings,
    /// Users whose preference stream (version and state) this process remembers between
    /// requests, so that a command usually skips its load; 0: none.
    pub stream_cache_capacity: usize,
    /// Longest a request waits for a database connection before it is answered 503 (the
    /// pool's timeout when shorter); `None`: the pool's timeout alone.
    pub request_deadline: Option<Duration>,
    /// Longest a request waits for a lock another session holds (and, in this process,
    /// for an earlier request of the same user) before it is answered 503; `None`: no bound.
    pub lock_timeout: Option<Duration>,
    /// Days personal data is kept before the periodic retention removes it; 0: forever.
    pub personal_data_retention_days: u32,
}

/// What one client may make the server hold: bytes, time and connections.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Largest sum of header names and values; larger heads are answered 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head (slowloris); zero: no limit.
    pub client_request_timeout: Duration,
    /// How long an idle keep-alive connection is kept; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// Connections each worker holds at once; further ones wait in the listen backlog.
    pub max_connections_per_worker: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            client_request_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(5),
            max_connections_per_worker: 25_000,
        }
    }
}

/// Failed authentications allowed per client address and per presented key: `burst` at
/// once, then one more every `window / burst`. Zero `burst` turns the limit off.
#[derive(Debug, Clone)]
pub struct AuthFailureLimit {
    pub burst: u32,
    pub window: Duration,
}

impl Default for AuthFailureLimit {
    fn default() -> Self {
        AuthFailureLimit {
            burst: 20,
            window: Duration::from_secs(60),
        }
    }
}

/// Successful authentications remembered per process (see `auth_cache`).
#[derive(Debug, Clone)]
pub struct AuthCacheSettings {
    /// Longest an entry is served without a fresh lookup; zero turns the cache off.
    pub ttl: Duration,
    /// Most credentials remembered (per kind: client tokens, API keys).
    pub capacity: usize,
}

impl Default for AuthCacheSettings {
    fn default() -> Self {
        AuthCacheSettings {
            ttl: Duration::from_secs(60),
            capacity: 100_000,
        }
    }
}
