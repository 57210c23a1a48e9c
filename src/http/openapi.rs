//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types, served
//! at `GET /openapi.json` and committed as `docs/openapi.json` (a test keeps the two equal;
//! `chatprefs openapi > docs/openapi.json` regenerates it).

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::{
    openapi::{
        path::{Operation, ParameterIn},
        security::{ApiKey, ApiKeyValue, SecurityScheme},
        RefOr, Schema,
    },
    Modify, OpenApi,
};

use crate::domain::{ID_PATTERN, MAX_ID_BYTES};

use super::{
    admin, audit, dispatch, errors::ErrorEnvelope, feed, health, me, metrics, mutes, signin,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatprefs",
        description = "IMKIT-compatible notification preferences (mute a room) on an append-only event log. \
                       Every JSON answer is the IMKIT envelope; every response carries `X-Request-Id`."
    ),
    paths(
        me::get_me, mutes::mute, mutes::unmute, mutes::pause, mutes::resume, signin::sign_in,
        feed::live, admin::upsert_client, admin::revoke_tokens, admin::erase_client,
        admin::upsert_room, on_behalf::mute, on_behalf::unmute, on_behalf::pause,
        on_behalf::resume,
        dispatch::check, dispatch::list,
        audit::list, audit::as_of, audit::profile, feed::events,
        health::healthz, health::readyz, metrics::scrape, serve,
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&IdConstraints, &SecuritySchemes, &RoomsWithTrailingSlash),
    tags(
        (name = "client", description = "The signed-in user's own preferences (headers `IM-CLIENT-KEY` and `IM-Authorization`)"),
        (name = "platform", description = "An app's backend (header `IM-API-KEY`)"),
        (name = "push dispatcher", description = "Who muted a room (header `IM-API-KEY`)"),
        (name = "support", description = "The audit trail, as-of answers, a user's profile and the change feed (header `IM-API-KEY`; a `support` key is enough)"),
        (name = "operations", description = "Probes, metrics and this document (no authentication)"),
    )
)]
struct ApiDoc;

/// The platform API's mute and pause routes. They are served by the client API's handlers
/// ([`mutes::mute`], [`mutes::unmute`], [`mutes::pause`], [`mutes::resume`]), which tell the acting admin from the acting user
/// by the route; utoipa describes one path per function, so these signatures carry the
/// second path's description and are never routed to.
pub mod on_behalf {
    use super::params::{RoomPath, UserPath};
    use super::responses::PlatformCommandErrors;
    use crate::http::envelope::{Success, User};
    use crate::http::mutes::MuteBody;

    /// Mutes the room on the user's behalf (actor recorded as admin), forever or until the
    /// body says, as `POST /me/mute/{room}`.
    #[utoipa::path(
        post, path = "/admin/clients/{uid}/mute/{room}", tag = "platform",
        operation_id = "mute",
        params(UserPath, RoomPath),
        request_body(content = Option<MuteBody>, description = "Optional: how long the mute lasts; none, empty or `{}` mutes forever"),
        responses(
            (status = 200, description = "The user, with the room last in `mute`", body = Success<User>),
            PlatformCommandErrors,
        ),
        security(("apiKey" = []))
    )]
    pub fn mute() {}

    /// Unmutes the room on the user's behalf (actor recorded as admin).
    #[utoipa::path(
        delete, path = "/admin/clients/{uid}/mute/{room}", tag = "platform",
        operation_id = "unmute",
        params(UserPath, RoomPath),
        responses(
            (status = 200, description = "The user, with the room no longer in `mute`", body = Success<User>),
            PlatformCommandErrors,
        ),
        security(("apiKey" = []))
    )]
    pub fn unmute() {}

    /// Pauses all notifications on the user's behalf (actor recorded as admin), until
    /// resumed or until the body says, as `POST /me/dnd`.
    #[utoipa::path(
        post, path = "/admin/clients/{uid}/dnd", tag = "platform",
        operation_id = "pause",
        params(UserPath),
        request_body(content = Option<MuteBody>, description = "Optional: how long the pause lasts; none, empty or `{}` pauses until resumed"),
        responses(
            (status = 200, description = "The user, with `notificationEnabled` false", body = Success<User>),
            PlatformCommandErrors,
        ),
        security(("apiKey" = []))
    )]
    pub fn pause() {}

    /// Resumes notifications on the user's behalf (actor recorded as admin).
    #[utoipa::path(
        delete, path = "/admin/clients/{uid}/dnd", tag = "platform",
        operation_id = "resume",
        params(UserPath),
        responses(
            (status = 200, description = "The user, with `notificationEnabled` true", body = Success<User>),
            PlatformCommandErrors,
        ),
        security(("apiKey" = []))
    )]
    pub fn resume() {}
}

/// Path parameters as documented; the handlers decode them strictly from the raw path
/// (`http::path::PathId`), so these types only describe them.
pub mod params {
    use utoipa::IntoParams;

    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct RoomPath {
        /// Room id, percent-encoded: 1–255 bytes of UTF-8, no control characters.
        pub room: String,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct UserPath {
        /// User id, percent-encoded: 1–255 bytes of UTF-8, no control characters.
        pub uid: String,
    }
}

/// The error answers, one type per case, so that each operation lists exactly the ones it
/// can give (`responses(…, BadRequest, RoomNotFound)`) and each is described once.
pub mod responses {
    use utoipa::IntoResponses;

    use crate::http::errors::ErrorEnvelope;

    macro_rules! error_response {
        ($($name:ident = $status:literal, $description:literal;)+) => {$(
            #[derive(IntoResponses)]
            #[response(status = $status, description = $description)]
            pub struct $name(pub ErrorEnvelope<'static>);
        )+};
    }

    error_response! {
        BadRequest = 400, "Malformed id, body or query (`INVALID_PARAMETERS`)";
        InvalidToken = 401, "Missing, unknown, expired or revoked token, or one of another app (`INVALID_TOKEN`)";
        InvalidClientKey = 403, "Missing or unknown client key (`INVALID_CLIENT_KEY`)";
        InvalidApiKey = 403, "Missing or unknown API key (`INVALID_API_KEY`)";
        PlatformKeyNeeded = 403, "Missing or unknown API key (`INVALID_API_KEY`), or a `support` key, which may only read (`INSUFFICIENT_ROLE`)";
        RoomNotFound = 404, "The room is not in the app (`ROOM_NOT_FOUND`)";
        ClientNotFound = 404, "The user is not in the app (`CLIENT_NOT_FOUND`)";
        ClientOrRoomNotFound = 404, "The user or the room is not in the app (`CLIENT_NOT_FOUND`, `ROOM_NOT_FOUND`)";
        Conflict = 409, "Concurrent writes kept conflicting (`CONFLICT`)";
        PayloadTooLarge = 413, "Body over the configured limit, 64 KiB by default (`PAYLOAD_TOO_LARGE`)";
        RateLimited = 429, "Too many failed authentications from this address or with this key (`RATE_LIMITED`, with `Retry-After`)";
        SignInForbidden = 403, "Missing or unknown client key (`INVALID_CLIENT_KEY`), or client sign-in is off for the app (`CLIENT_SIGN_IN_DISABLED`)";
        SignInRateLimited = 429, "Too many sign-ins, or failed authentications, from this address or with this key (`RATE_LIMITED`, with `Retry-After`)";
        Unavailable = 503, "Database unreachable or no connection in time (`SERVICE_UNAVAILABLE`, with `Retry-After`)";
    }

    macro_rules! error_responses {
        ($($(#[$doc:meta])* $name:ident = $($case:ident),+;)+) => {$(
            $(#[$doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> std::collections::BTreeMap<
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
                > {
                    let mut all = std::collections::BTreeMap::new();
                    $(all.extend($case::responses());)+
                    all
                }
            }
        )+};
    }

    error_responses! {
        /// What a mute or unmute through the client API can fail with (a mute's optional
        /// body can be too large).
        ClientCommandErrors = BadRequest, InvalidToken, InvalidClientKey, RoomNotFound, Conflict, RateLimited, PayloadTooLarge, Unavailable;
        /// What a mute or unmute on a user's behalf can fail with.
        PlatformCommandErrors = BadRequest, PlatformKeyNeeded, ClientOrRoomNotFound, Conflict, RateLimited, PayloadTooLarge, Unavailable;
        /// What creating or updating a user or a room through the platform API can fail with.
        PlatformUpsertErrors = BadRequest, PlatformKeyNeeded, RateLimited, PayloadTooLarge, Unavailable;
        /// What a client sign-in can fail with.
        SignInErrors = BadRequest, SignInForbidden, SignInRateLimited, PayloadTooLarge, Unavailable;
    }
}

/// Body fields that carry a user or room id, as (schema, property).
const ID_PROPERTIES: [(&str, &str); 3] = [
    ("ClientBody", "_id"),
    ("RoomBody", "_id"),
    ("SignInBody", "id"),
];

/// Query parameters that carry a user or room id, as (path, parameter); every `{room}`
/// and `{uid}` path parameter is one too.
const ID_QUERY_PARAMETERS: [(&str, &str); 1] = [("/admin/rooms/{room}/mutes", "after")];

/// Gives every id in the document the rule `domain::ids` enforces, stated there once
/// (utoipa's attributes take literals only, so they cannot name the constants).
struct IdConstraints;

fn constrain(schema: Option<&mut RefOr<Schema>>) {
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object.min_length = Some(1);
        object.max_length = Some(MAX_ID_BYTES);
        object.pattern = Some(ID_PATTERN.to_owned());
    }
}

impl Modify for IdConstraints {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for (schema, property) in ID_PROPERTIES {
                if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) {
                    constrain(object.properties.get_mut(property));
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                constrain_parameters(path, operation);
            }
        }
    }
}

fn constrain_parameters(path: &str, operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let is_id = match parameter.parameter_in {
            ParameterIn::Path => ["room", "uid"].contains(&parameter.name.as_str()),
            ParameterIn::Query => ID_QUERY_PARAMETERS.contains(&(path, parameter.name.as_str())),
            _ => false,
        };
        if is_id {
            constrain(parameter.schema.as_mut());
        }
    }
}

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
                "The app's client key (public: it ships inside apps); `CLIENT_KEY` is accepted too",
            ),
        );
        components.add_security_scheme(
            "clientToken",
            header(
                "IM-Authorization",
                "The user's token (older SDKs: `Authorization`, bare or `Bearer …` in any case)",
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
