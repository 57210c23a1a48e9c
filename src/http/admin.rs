//! Platform API: what an app's backend does on its users' behalf.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    auth::PlatformApp,
    body::{optional_object, Field, Object},
    envelope,
    envelope::{Success, User},
    errors::ApiError,
    openapi::params::UserPath,
    openapi::responses::{
        BadRequest, ClientNotFound, PayloadTooLarge, PlatformKeyNeeded, PlatformUpsertErrors,
        RateLimited, Unavailable,
    },
    path::{path_param, PathId},
    request::RequestContext,
};
use crate::domain::{Actor, ActorKind, ClientId, RoomId};
use crate::secrets;
use crate::service::{
    tokens::{TokenGrant, DEFAULT_TOKEN_DAYS},
    Service,
};
use crate::store::directory::{ClientProfile, RoomProfile, TokenIssuer};

const MAX_TOKEN_DAYS: u32 = 3650;
/// Free-text profile fields are display data; this bounds what one write can store.
const MAX_TEXT_BYTES: usize = 2048;
const MAX_ROOM_MEMBERS: usize = 10_000;

/// A free-text profile field as a change to the stored value (see [`Field`]).
fn text(field: &str, value: Field<String>) -> Result<Option<Option<String>>, ApiError> {
    let checked = value.try_map(|v| {
        if v.len() > MAX_TEXT_BYTES {
            Err(ApiError::invalid(format!(
                "{field} must be at most {MAX_TEXT_BYTES} bytes"
            )))
        } else if v.contains('\0') {
            Err(ApiError::invalid(format!(
                "{field} must not contain NUL characters"
            )))
        } else {
            Ok(v)
        }
    })?;
    Ok(checked.into_change())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientBody {
    /// User id (1–255 bytes, no control characters).
    #[serde(rename = "_id")]
    id: String,
    /// Left out: keeps the stored value; `null`: clears it. At most 2048 bytes, as are
    /// `email` and `avatarUrl`, which follow the same rule.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    nickname: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    email: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    avatar_url: Field<String>,
    /// Issue a new token (existing ones stay valid); left out or `null`: false.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    issue_access_token: Field<bool>,
    /// Token lifetime in days; left out or `null`: 7.
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    expiration_days: Field<u32>,
}

/// The user, plus the token when one was issued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IssuedClient {
    #[serde(flatten)]
    user: User,
    /// Shown only here: it is stored as SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// Milliseconds since the epoch, like every other IMKIT time.
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_date: Option<i64>,
}

/// Creates or updates a user, optionally issuing a token.
#[utoipa::path(
    post, path = "/admin/clients", tag = "platform",
    request_body = ClientBody,
    responses(
        (status = 200, description = "The user (with `token` and `expirationDate` when one was issued)", body = Success<IssuedClient>),
        PlatformUpsertErrors,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn upsert_client(
    platform: PlatformApp,
    request: RequestContext,
    body: web::Json<Object<ClientBody>>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().0;
    let client_id = ClientId::parse(body.id)?;
    tracing::Span::current().record("client_id", client_id.as_str());
    let profile = ClientProfile {
        nickname: text("nickname", body.nickname)?,
        email: text("email", body.email)?,
        avatar_url: text("avatarUrl", body.avatar_url)?,
    };
    let days = body
        .expiration_days
        .into_option()
        .unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid(format!(
            "expirationDays must be between 1 and {MAX_TOKEN_DAYS}"
        )));
    }
    let grant = body
        .issue_access_token
        .into_option()
        .unwrap_or(false)
        .then_some(TokenGrant {
            days,
            issuer: TokenIssuer::Platform,
        });
    let app = &platform.app;
    let upserted = service
        .upsert_client(app, &client_id, &profile, grant)
        .await?;
    let (token, expiration_date) = upserted
        .token
        .map(|issued| (issued.token, issued.expires_at.timestamp_millis()))
        .unzip();
    Ok(envelope::ok(IssuedClient {
        user: User::new(app, upserted.client, upserted.mutes, &request),
        token,
        expiration_date,
    }))
}

/// Revokes only this token; without a body every live token of the user is revoked.
#[derive(Debug, Deserialize, ToSchema)]
struct RevokeBody {
    token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Revoked {
    #[serde(rename = "_id")]
    id: String,
    revoked_tokens: u64,
}

/// Revokes all of a user's tokens, or only the one named in an optional `{"token": …}` body.
#[utoipa::path(
    delete, path = "/admin/clients/{uid}/token", tag = "platform",
    params(UserPath),
    request_body(content = Option<RevokeBody>, description = "Optional: revoke only this token"),
    responses(
        (status = 200, description = "How many tokens were revoked", body = Success<Revoked>),
        BadRequest,
        PlatformKeyNeeded,
        RateLimited,
        ClientNotFound,
        PayloadTooLarge,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn revoke_tokens(
    platform: PlatformApp,
    req: HttpRequest,
    body: web::Bytes,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    // An unreadable body must not widen "revoke this token" into "revoke all tokens".
    let only = optional_object::<RevokeBody>(&body)?.map(|parsed| secrets::sha256(&parsed.token));
    let PathId(client) = path_param::<ClientId>(&req)?;
    let revoked = service
        .revoke_tokens(&platform.app, &client, only.as_ref().map(|h| h.as_slice()))
        .await?;
    Ok(envelope::ok(Revoked {
        id: client.into_inner(),
        revoked_tokens: revoked,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ErasedClient {
    #[serde(rename = "_id")]
    id: String,
    /// Events whose address, port and user agent were erased by this call.
    events_erased: u64,
    /// Whether a nickname, email or avatar was cleared.
    profile_cleared: bool,
    tokens_revoked: u64,
    /// The `PersonalDataErased` event appended; `null` when nothing was left to erase (a
    /// repeated call).
    #[schema(value_type = Option<String>, format = "uuid")]
    event_id: Option<uuid::Uuid>,
}

/// Erases a user's personal data: the address, port and user agent of their events, their
/// nickname, email and avatar, and every token; the facts of their events stay. Records a
/// `PersonalDataErased` event. Idempotent: a repeated call finds nothing and appends
/// nothing. Any body is ignored.
#[utoipa::path(
    post, path = "/admin/clients/{uid}/erase", tag = "platform",
    params(UserPath),
    responses(
        (status = 200, description = "What was erased", body = Success<ErasedClient>),
        BadRequest,
        PlatformKeyNeeded,
        RateLimited,
        ClientNotFound,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn erase_client(
    platform: PlatformApp,
    req: HttpRequest,
    request: RequestContext,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let PathId(client) = path_param::<ClientId>(&req)?;
    // One API key per app: the app itself is the admin who erased.
    let metadata = request.metadata(Actor {
        kind: ActorKind::Admin,
        id: platform.app.as_str().to_owned(),
    });
    let erased = service
        .erase_client(&platform.app, &client, &metadata)
        .await?;
    Ok(envelope::ok(ErasedClient {
        id: client.into_inner(),
        events_erased: erased.events_erased,
        profile_cleared: erased.profile_cleared,
        tokens_revoked: erased.tokens_revoked,
        event_id: erased.event_id,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomBody {
    /// Room id; left out or `null`, a random one (32 hex characters) is chosen.
    #[serde(rename = "_id", default)]
    #[schema(value_type = Option<String>)]
    id: Field<String>,
    /// Left out: keeps the stored value; `null`: clears it (as for `roomType`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    room_type: Field<String>,
    /// User ids (at most 10,000); left out, the stored members are kept; `null`: none.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 10000)]
    members: Field<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Room {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "appID")]
    app_id: String,
    name: Option<String>,
    room_type: Option<String>,
    members: Vec<String>,
}

/// Creates or updates a room (also at `POST /rooms/`, as IMKIT clients send it).
#[utoipa::path(
    post, path = "/rooms", tag = "platform",
    request_body = RoomBody,
    responses(
        (status = 200, description = "The room", body = Success<Room>),
        PlatformUpsertErrors,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all, fields(room_id))]
pub async fn upsert_room(
    platform: PlatformApp,
    body: web::Json<Object<RoomBody>>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner().0;
    let room_id = RoomId::parse(
        body.id
            .into_option()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
    )?;
    tracing::Span::current().record("room_id", room_id.as_str());
    let members = body.members.try_map(|m| {
        if m.len() > MAX_ROOM_MEMBERS {
            return Err(ApiError::invalid(format!(
                "members may list at most {MAX_ROOM_MEMBERS} users"
            )));
        }
        m.into_iter()
            .map(|id| {
                ClientId::parse(id)
                    .map(ClientId::into_inner)
                    .map_err(ApiError::from)
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let profile = RoomProfile {
        name: text("name", body.name)?,
        room_type: text("roomType", body.room_type)?,
        members: members.into_change(),
    };
    let room = service
        .upsert_room(&platform.app, &room_id, &profile)
        .await?;
    Ok(envelope::ok(Room {
        id: room.room_id.into_inner(),
        app_id: platform.app.into_inner(),
        name: room.name,
        room_type: room.room_type,
        members: room.members,
    }))
}
