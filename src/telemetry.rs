//! Log setup: one line per event on stderr, human-readable or JSON, filtered by `RUST_LOG`.

use tracing_subscriber::{fmt, EnvFilter};

/// tracing-actix-web logs every 4xx as a warning; our own per-request line already
/// carries the status, so only its server-error reports are kept.
const DEFAULT_FILTER: &str = "info,tracing_actix_web=error";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event with the span's fields in front, for people.
    Pretty,
    /// One JSON object per line; the request span's fields (request id, route, status,
    /// app, client) are under `span`.
    Json,
}

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
