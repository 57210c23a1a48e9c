//! Log setup: human-readable lines on stderr, filtered by `RUST_LOG`.

use tracing_subscriber::{fmt, EnvFilter};

/// tracing-actix-web logs every 4xx as a warning; our own per-request line already
/// carries the status, so only its server-error reports are kept.
const DEFAULT_FILTER: &str = "info,tracing_actix_web=error";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
