//! The HTTP edge: routes, extractors, the envelope and error mapping. No SQL here.

mod admin;
mod audit;
mod auth;
mod body;
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

use actix_web::{web, HttpResponse, Resource};

/// A room id is one path segment that may be empty, so that `/me/mute/` is answered as a
/// bad room id (400) rather than as an unknown endpoint.
const ROOM_SEGMENT: &str = "{room:[^/]*}";

fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The push dispatcher's queries, probes, metrics and the OpenAPI document.
fn configure_ecosystem(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource(&format!("/admin/rooms/{ROOM_SEGMENT}/mutes/check"))
            .route(web::post().to(dispatch::check)),
    )
    .service(
        resource(&format!("/admin/rooms/{ROOM_SEGMENT}/mutes"))
            .route(web::get().to(dispatch::list)),
    )
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(metrics::scrape)))
    .service(resource("/openapi.json").route(web::get().to(openapi::serve)));
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
    .service(resource("/me").route(web::get().to(me::get_me)))
    .service(resource("/me/events").route(web::get().to(feed::live)))
    .service(
        resource(&format!("/me/mute/{ROOM_SEGMENT}"))
            .route(web::post().to(mutes::mute))
            .route(web::delete().to(mutes::unmute)),
    )
    .service(
        resource("/me/dnd")
            .route(web::post().to(mutes::pause))
            .route(web::delete().to(mutes::resume)),
    )
    .service(resource("/auths/sign/v2").route(web::post().to(signin::sign_in)))
    .service(resource("/admin/clients").route(web::post().to(admin::upsert_client)))
    .service(resource("/admin/clients/{uid}/token").route(web::delete().to(admin::revoke_tokens)))
    .service(resource("/admin/clients/{uid}/erase").route(web::post().to(admin::erase_client)))
    .service(
        resource(&format!("/admin/clients/{{uid}}/mute/{ROOM_SEGMENT}"))
            .route(web::post().to(mutes::mute))
            .route(web::delete().to(mutes::unmute)),
    )
    .service(
        resource("/admin/clients/{uid}/dnd")
            .route(web::post().to(mutes::pause))
            .route(web::delete().to(mutes::resume)),
    )
    .service(resource("/admin/clients/{uid}/mute").route(web::get().to(audit::as_of)))
    .service(resource("/admin/audit").route(web::get().to(audit::list)))
    .service(resource("/admin/events").route(web::get().to(feed::events)))
    .service(resource("/rooms").route(web::post().to(admin::upsert_room)))
    .service(resource("/rooms/").route(web::post().to(admin::upsert_room)))
    .configure(configure_ecosystem)
    .default_service(web::to(not_found));
}
