//! Client API: the signed-in user's own preferences (muting is in [`super::mutes`]).

use actix_web::{web, HttpResponse};

use super::{
    auth::AuthenticatedClient,
    envelope,
    envelope::{Success, User},
    errors::ApiError,
    openapi::responses::{InvalidClientKey, InvalidToken, RateLimited, Unavailable},
    request::RequestContext,
};
use crate::service::Service;

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
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let mutes = service.me(&auth.app, &auth.client.client_id).await?;
    Ok(envelope::ok(User::new(
        &auth.app,
        auth.client,
        mutes,
        &request,
    )))
}
