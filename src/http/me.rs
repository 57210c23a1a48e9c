//! Client API: the signed-in user's own preferences.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{
    auth::AuthenticatedClient,
    envelope,
    envelope::User,
    errors::ApiError,
    request::{path_segment, RequestContext},
};
use crate::commands;
use crate::domain::{Actor, ActorKind, Command, RoomId};
use crate::store::{projection, Pool, StoreError};

#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_me(
    auth: AuthenticatedClient,
    request: RequestContext,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    let mutes = projection::muted_rooms(&conn, &auth.app, &auth.client.client_id).await?;
    Ok(envelope::ok(User::new(
        &auth.app,
        auth.client,
        mutes,
        &request,
    )))
}

pub async fn mute(
    auth: AuthenticatedClient,
    request: RequestContext,
    req: HttpRequest,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let room = RoomId::parse(path_segment(&req, 0)?)?;
    run(auth, request, Command::MuteRoom { room }, &pool).await
}

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
