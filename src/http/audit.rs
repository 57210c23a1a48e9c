//! Support endpoints of the platform API: the audit trail, as-of answers and a user's
//! profile. A `support` key may call each of them.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use utoipa::IntoParams;

use super::{
    auth::PlatformApp,
    envelope,
    envelope::{Success, User},
    errors::ApiError,
    openapi::params::UserPath,
    openapi::responses::{BadRequest, ClientNotFound, InvalidApiKey, RateLimited, Unavailable},
    path::PathId,
    request::RequestContext,
};
use crate::api_types::{AsOf, AuditPage, AuditQuery};
use crate::audit::{self, AuditParams};
use crate::domain::ClientId;
use crate::service::Service;

/// The app's events with provenance, oldest first, one page at a time.
#[utoipa::path(
    get, path = "/admin/audit", tag = "support",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit trail; continue with `after = next` while `hasMore`", body = Success<AuditPage>),
        BadRequest,
        InvalidApiKey,
        RateLimited,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    platform: PlatformApp,
    params: web::Query<AuditQuery>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let filter = AuditParams::from(params.into_inner()).into_filter(platform.app)?;
    let page = service.audit(&filter).await?;
    Ok(envelope::ok(AuditPage::from(page)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AsOfParams {
    /// The instant (RFC 3339 or epoch milliseconds); now when left out.
    #[param(rename = "asOf")]
    as_of: Option<String>,
}

/// The user's muted rooms at an instant, folded from the log.
#[utoipa::path(
    get, path = "/admin/clients/{uid}/mute", tag = "support",
    params(UserPath, AsOfParams),
    responses(
        (status = 200, description = "The user's muted rooms at that instant, oldest mute first", body = Success<AsOf>),
        BadRequest,
        InvalidApiKey,
        ClientNotFound,
        RateLimited,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn as_of(
    platform: PlatformApp,
    params: web::Query<AsOfParams>,
    PathId(client): PathId<ClientId>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let at = params
        .into_inner()
        .as_of
        .map(|raw| audit::parse_instant("asOf", &raw))
        .transpose()?;
    let answer = service.muted_as_of(&platform.app, &client, at).await?;
    Ok(envelope::ok(AsOf::from(answer)))
}

/// A user's profile and mutes in force, as `GET /me` answers the user; `address` and
/// `userAgent` are the caller's, as on every user object.
#[utoipa::path(
    get, path = "/admin/clients/{uid}", tag = "support",
    params(UserPath),
    responses(
        (status = 200, description = "The user", body = Success<User>),
        BadRequest,
        InvalidApiKey,
        ClientNotFound,
        RateLimited,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn profile(
    platform: PlatformApp,
    request: RequestContext,
    PathId(client): PathId<ClientId>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let (client, mutes) = service.client_profile(&platform.app, &client).await?;
    Ok(envelope::ok(User::new(
        &platform.app,
        client,
        mutes,
        &request,
    )))
}
