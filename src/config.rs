//! Settings a running service needs, gathered from the CLI (flags with env fallbacks).

use std::net::IpAddr;

use crate::store::PoolSettings;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/chatprefs";

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub database_url: String,
    pub bind: String,
    pub pool: PoolSettings,
    /// HTTP worker threads; `None` lets actix use one per core.
    pub workers: Option<usize>,
    pub trusted_proxies: Vec<IpAddr>,
    pub shutdown_timeout_secs: u64,
    /// Browser origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<String>,
}
