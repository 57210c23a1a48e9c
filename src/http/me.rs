//! Client API: the signed-in user's own preferences.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{
    auth::AuthenticatedClient,
    envelope,
    envelope::{Success, User},
    errors::ApiError,
    openapi::params::RoomPath,
    openapi::responses::{
        ClientCommandErrors, InvalidClientKey, InvalidToken, RateLimited, Unavailable,
    },
    request::{path_segment, RequestContext},
};
use crate::commands;
use crate::domain::{Actor, ActorKind, Command, RoomId};
use crate::projections::room_mutes;
use crate::store::{Pool, StoreError};

/// The signed-in user.
#[utoipa::path(
    get, path = "/me", tag = "client",
    responses(
        (status = 200, description = "The user", body = Success<User>),
        InvalidToken,
        InvalidClientKey,
        RateLimited,
        Unavailable,
    ),
    security(("clientKey" = [], "clientToken" = []))
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_me(
    auth: AuthenticatedClient,
    request: RequestContext,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    let mutes = room_mutes::muted_rooms(&conn, &auth.app, &auth.client.client_id).await?;
    Ok(envelope::ok(User::new(
        &auth.app,
        auth.client,
        mutes,
        &request,
    )))
}

/// Mutes the room for the signed-in user (idempotent).
#[utoipa::path(
    post, path = "/me/mute/{room}", tag = "client",
    params(RoomPath),
    responses(
        (status = 200, description = "The user, with the room last in `mute`", body = Success<User>),
        ClientCommandErrors,
    ),
    security(("clientKey" = [], "clientToken" = []))
)]
pub async fn mute(
    auth: AuthenticatedClient,
    request: RequestContext,
    req: HttpRequest,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let room = RoomId::parse(path_segment(&req, 0)?)?;
    run(auth, request, Command::MuteRoom { room }, &pool).await
}

/// Unmutes the room for the signed-in user (idempotent).
#[utoipa::path(
    delete, path = "/me/mute/{room}", tag = "client",
    params(RoomPath),
    responses(
        (status = 200, description = "The user, with the room no longer in `mute`", body = Success<User>),
        ClientCommandErrors,
    ),
    security(("clientKey" = [], "clientToken" = []))
)]
pub async fn unmute(
    auth: AuthenticatedClient,
    request: RequestContext,
    req: HttpRequest,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let room = RoomId::parse(path_segment(&req, 0)?)?;
    run(auth, request, Command::UnmuteRoom { room }, &pool).await
}

async fn run(
    auth: AuthenticatedClient,
    request: RequestContext,
    command: Command,
    pool: &Pool,
) -> Result<HttpResponse, ApiError> {
    let actor = Actor {
        kind: ActorKind::Client,
        id: auth.client.client_id.as_str().to_owned(),
    };
    let metadata = request.metadata(actor);
    let mutes =
        commands::handle(pool, &auth.app, &auth.client.client_id, command, &metadata).await?;
    Ok(envelope::ok(User::new(
        &auth.app,
        auth.client,
        mutes,
        &request,
    )))
}
