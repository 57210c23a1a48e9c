//! The push dispatcher's questions: which of these users muted this room, and who muted it.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::PlatformApp,
    body::Object,
    envelope::{self, Success},
    errors::ApiError,
    openapi::params::RoomPath,
    openapi::responses::{
        BadRequest, InvalidApiKey, PayloadTooLarge, PlatformKeyNeeded, RateLimited, RoomNotFound,
        Unavailable,
    },
    path::{path_param, PathId},
};
use crate::domain::{ClientId, RoomId};
use crate::service::Service;

/// One push fan-out asks about at most this many recipients at once.
pub const MAX_CHECK_CLIENTS: usize = 1000;
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckBody {
    /// User ids to check (1 to 1000; duplicates are allowed and answered once).
    #[schema(min_items = 1, max_items = 1000)]
    clients: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MutedAmong {
    /// The room asked about.
    room: String,
    /// Those of the given users not to notify about the room, sorted by id: who muted the
    /// room, and who paused all notifications (do not disturb).
    muted: Vec<String>,
    /// Those of `muted` who paused all notifications, sorted by id; the others in `muted`
    /// muted the room.
    paused: Vec<String>,
}

/// Which of the given users muted the room or paused all notifications (for the push
/// dispatcher: skip these), and which of them paused.
#[utoipa::path(
    post,
    path = "/admin/rooms/{room}/mutes/check",
    tag = "push dispatcher",
    params(RoomPath),
    request_body = CheckBody,
    responses(
        (status = 200, description = "The users among those given who muted the room or paused all notifications", body = Success<MutedAmong>),
        BadRequest,
        PlatformKeyNeeded,
        RateLimited,
        RoomNotFound,
        PayloadTooLarge,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all, fields(clients))]
pub async fn check(
    platform: PlatformApp,
    req: HttpRequest,
    body: web::Json<Object<CheckBody>>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let PathId(room) = path_param::<RoomId>(&req)?;
    let clients = body.into_inner().0.clients;
    tracing::Span::current().record("clients", clients.len());
    if !(1..=MAX_CHECK_CLIENTS).contains(&clients.len()) {
        return Err(ApiError::invalid(format!(
            "clients must list 1 to {MAX_CHECK_CLIENTS} user ids"
        )));
    }
    let clients = clients
        .into_iter()
        .map(ClientId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let silenced = service.muted_among(&platform.app, &room, &clients).await?;
    Ok(envelope::ok(MutedAmong {
        room: room.into_inner(),
        muted: silenced
            .muted
            .into_iter()
            .map(ClientId::into_inner)
            .collect(),
        paused: silenced
            .paused
            .into_iter()
            .map(ClientId::into_inner)
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Answer users with ids after this one: the `next` of the previous page.
    after: Option<String>,
    /// Most users in one page (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MuterEntry {
    #[serde(rename = "_id")]
    id: String,
    /// When the user muted the room, in milliseconds since the epoch.
    muted_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MutersPage {
    room: String,
    /// Users who muted the room, sorted by id.
    clients: Vec<MuterEntry>,
    /// Pass as `after` for the next page; `null` on the last page.
    next: Option<String>,
}

/// Everyone who muted the room, a page at a time.
#[utoipa::path(
    get,
    path = "/admin/rooms/{room}/mutes",
    tag = "push dispatcher",
    params(RoomPath, PageQuery),
    responses(
        (status = 200, description = "A page of the room's muters", body = Success<MutersPage>),
        BadRequest,
        InvalidApiKey,
        RateLimited,
        RoomNotFound,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    platform: PlatformApp,
    PathId(room): PathId<RoomId>,
    req: HttpRequest,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<PageQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::invalid(format!("invalid query: {e}")))?
        .into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = query.after.map(ClientId::parse).transpose()?;
    // One more than asked tells whether another page follows without a count.
    let mut page = service
        .muters(&platform.app, &room, after.as_ref(), limit + 1)
        .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next = more
        .then(|| page.last().map(|m| m.client_id.as_str().to_owned()))
        .flatten();
    Ok(envelope::ok(MutersPage {
        room: room.into_inner(),
        clients: page
            .into_iter()
            .map(|m| MuterEntry {
                id: m.client_id.into_inner(),
                muted_at: m.muted_at.timestamp_millis(),
            })
            .collect(),
        next,
    }))
}
