//! chatprefs: IMKIT-compatible notification preferences on an append-only event log.

pub mod audit;
pub mod auth_cache;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod private_cluster;
pub mod provision;
pub mod ratelimit;
pub mod rebuild;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;
