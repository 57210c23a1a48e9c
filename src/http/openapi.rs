//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types, served
//! at `GET /openapi.json` and committed as `docs/openapi.json` (a test keeps the two equal;
//! `chatprefs openapi > docs/openapi.json` regenerates it).

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
    Modify, OpenApi,
};

use super::{admin, dispatch, health, me, metrics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatprefs",
        description = "IMKIT-compatible notification preferences (mute a room) on an append-only event log. \
                       Every JSON answer is the IMKIT envelope; every response carries `X-Request-Id`."
    ),
    paths(
        me::get_me, me::mute, me::unmute,
        admin::upsert_client, admin::revoke_tokens, admin::upsert_room, admin::mute, admin::unmute,
        dispatch::check, dispatch::list,
        health::healthz, health::readyz, metrics::scrape, serve,
    ),
    modifiers(&SecuritySchemes, &RoomsWithTrailingSlash),
    tags(
        (name = "client", description = "The signed-in user's own preferences (headers `IM-CLIENT-KEY` and `IM-Authorization`)"),
        (name = "platform", description = "An app's backend (header `IM-API-KEY`)"),
        (name = "push dispatcher", description = "Who muted a room (header `IM-API-KEY`)"),
        (name = "operations", description = "Probes, metrics and this document (no authentication)"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header = |name: &str, description: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                name,
                description,
            )))
        };
        components.add_security_scheme(
            "clientKey",
            header(
                "IM-CLIENT-KEY",
                "The app's client key (public: it ships inside apps)",
            ),
        );
        components.add_security_scheme(
            "clientToken",
            header(
                "IM-Authorization",
                "The user's token (older SDKs: `Authorization`, optionally `Bearer …`)",
            ),
        );
        components.add_security_scheme(
            "apiKey",
            header("IM-API-KEY", "The app's API key (secret; server to server)"),
        );
    }
}

/// IMKIT clients post to `/rooms/` as well as `/rooms`; both are one handler, which a path
/// annotation cannot say, so the second path is a copy with an operation id of its own.
struct RoomsWithTrailingSlash;

impl Modify for RoomsWithTrailingSlash {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(mut item) = openapi.paths.paths.get("/rooms").cloned() else {
            return;
        };
        if let Some(post) = item.post.as_mut() {
            post.operation_id = Some("upsert_room_trailing_slash".into());
        }
        openapi.paths.paths.insert("/rooms/".into(), item);
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises");
    json.push('\n');
    json
});

/// The document as served and as committed in `docs/openapi.json`.
pub fn json() -> &'static str {
    &DOCUMENT
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json())
}
