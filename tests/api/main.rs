//! Integration tests: the real HTTP server against a real PostgreSQL, one fresh database
//! per test (named `chatprefs_test_*` and dropped when the test ends, even on failure).

mod acting;
mod admin;
mod audit;
mod auth_cache;
mod bench;
mod browser;
mod cli;
mod cluster;
mod concurrency;
mod console;
mod dispatch;
mod dnd;
mod ecosystem;
mod errors;
mod event_log;
mod failover;
mod faults;
mod feed;
mod first_run;
mod group_commit;
mod helpers;
mod hostile;
mod keys;
mod ledger;
mod me;
mod privacy;
mod process;
mod projection;
mod rebuild;
mod replicas;
mod review;
mod sdk_compat;
mod security;
mod stream_cache;
mod timed_mutes;
