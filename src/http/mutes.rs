//! Muting and unmuting a room: one handler each for the user acting for themselves
//! (`/me/mute/{room}`, client API) and an app's backend acting for a user
//! (`/admin/clients/{uid}/mute/{room}`, platform API, actor recorded as admin).

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};

use super::{
    auth::{AuthenticatedClient, PlatformApp},
    envelope,
    envelope::{Success, User},
    errors::ApiError,
    openapi::params::RoomPath,
    openapi::responses::ClientCommandErrors,
    path::{path_param, PathId, PathParam},
    request::RequestContext,
};
use crate::domain::{Actor, ActorKind, AppId, ClientId, Command, RoomId};
use crate::service::{Service, Subject};

/// Who acts on which user: the signed-in user on themselves, or, on a route that names a
/// `{uid}`, the app (by its API key) on that user.
#[derive(Debug)]
pub struct Acting {
    pub app: AppId,
    pub actor: Actor,
    pub subject: Subject,
}

impl FromRequest for Acting {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if req.match_info().get(ClientId::NAME).is_some() {
                let PlatformApp { app } = PlatformApp::extract(&req).await?;
                let PathId(uid) = path_param::<ClientId>(&req)?;
                // One API key per app: the app itself is the admin who acted.
                let actor = Actor {
                    kind: ActorKind::Admin,
                    id: app.as_str().to_owned(),
                };
                Ok(Acting {
                    app,
                    actor,
                    subject: Subject::Named(uid),
                })
            } else {
                let AuthenticatedClient { app, client } =
                    AuthenticatedClient::extract(&req).await?;
                let actor = Actor {
                    kind: ActorKind::Client,
                    id: client.client_id.as_str().to_owned(),
                };
                Ok(Acting {
                    app,
                    actor,
                    subject: Subject::Known(client),
                })
            }
        })
    }
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
    acting: Acting,
    room: PathId<RoomId>,
    request: RequestContext,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    act(
        acting,
        Command::MuteRoom { room: room.0 },
        request,
        &service,
    )
    .await
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
    acting: Acting,
    room: PathId<RoomId>,
    request: RequestContext,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    act(
        acting,
        Command::UnmuteRoom { room: room.0 },
        request,
        &service,
    )
    .await
}

/// Runs the command as `acting` says and answers the user afterwards.
async fn act(
    acting: Acting,
    command: Command,
    request: RequestContext,
    service: &Service,
) -> Result<HttpResponse, ApiError> {
    let metadata = request.metadata(acting.actor);
    let (client, mutes) = service
        .run(&acting.app, acting.subject, command, &metadata)
        .await?;
    Ok(envelope::ok(User::new(
        &acting.app,
        client,
        mutes,
        &request,
    )))
}
