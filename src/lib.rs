//! chatprefs: IMKIT-compatible notification preferences on an append-only event log.

pub mod api_types;
pub mod audit;
pub mod auth_cache;
pub mod cli;
pub mod config;
pub mod domain;
pub mod feed;
pub mod http;
pub mod key_usage;
pub mod metrics;
pub mod periodic;
pub mod private_cluster;
pub mod projections;
pub mod provision;
pub mod ratelimit;
pub mod rebuild;
pub mod run;
pub mod secrets;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
