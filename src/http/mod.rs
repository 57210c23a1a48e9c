//! The HTTP edge: routes, extractors, the envelope and error mapping. No SQL here.

mod admin;
mod audit;
mod auth;
mod body;
pub mod console;
mod cors;
mod dispatch;
mod envelope;
mod errors;
mod feed;
mod health;
mod limits;
mod me;
mod metrics;
mod mutes;
pub mod openapi;
mod path;
mod request;
pub mod routes;
mod signin;
mod tracing_span;

pub use auth::settle_auth_changes;
pub use cors::{cors, CorsOrigins};
pub use errors::ApiError;
pub use feed::FeedMaxWait;
pub use limits::{envelope_plain_errors, limit_headers, MaxHeaderBytes};
pub use metrics::observe as observe_metrics;
pub use request::{assign_request_id, TrustedProxies, X_REQUEST_ID};
pub use signin::SignInLimiter;
pub use tracing_span::RequestSpan;

use actix_web::{web, HttpResponse};

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// Registers every route, and the extractor settings that keep bad input in the envelope.
/// Bodies on this API are small profiles and id lists; `max_body_bytes` bounds them.
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .content_type_required(false)
            .error_handler(|err, _| ApiError::from(err).into()),
    )
    .app_data(web::PayloadConfig::default().limit(max_body_bytes))
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::invalid(format!("invalid query: {err}")).into()),
    )
    .configure(routes::configure_routes)
    .configure(console::configure)
    .default_service(web::to(not_found));
}
