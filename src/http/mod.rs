//! The HTTP edge: routes, extractors, the envelope and error mapping. No SQL here.

mod admin;
mod audit;
mod auth;
mod envelope;
mod errors;
mod me;
mod request;
mod tracing_span;

pub use errors::ApiError;
pub use request::{assign_request_id, TrustedProxies, X_REQUEST_ID};
pub use tracing_span::RequestSpan;

use actix_web::{web, HttpResponse, Resource};

/// JSON bodies on this API are small profiles; anything bigger is a mistake or an attack.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

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

/// Registers every route, and the extractor settings that keep bad input in the envelope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BYTES)
            .content_type_required(false)
            .error_handler(|err, _| ApiError::from(err).into()),
    )
    .app_data(web::PayloadConfig::default().limit(MAX_JSON_BYTES))
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::invalid(format!("invalid query: {err}")).into()),
    )
    .service(resource("/me").route(web::get().to(me::get_me)))
    .service(
        resource(&format!("/me/mute/{ROOM_SEGMENT}"))
            .route(web::post().to(me::mute))
            .route(web::delete().to(me::unmute)),
    )
    .service(resource("/admin/clients").route(web::post().to(admin::upsert_client)))
    .service(resource("/admin/clients/{uid}/token").route(web::delete().to(admin::revoke_tokens)))
    .service(
        resource(&format!("/admin/clients/{{uid}}/mute/{ROOM_SEGMENT}"))
            .route(web::post().to(admin::mute))
            .route(web::delete().to(admin::unmute)),
    )
    .service(resource("/admin/clients/{uid}/mute").route(web::get().to(audit::as_of)))
    .service(resource("/admin/audit").route(web::get().to(audit::list)))
    .service(resource("/rooms").route(web::post().to(admin::upsert_room)))
    .service(resource("/rooms/").route(web::post().to(admin::upsert_room)))
    .default_service(web::to(not_found));
}
