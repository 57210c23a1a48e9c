//! Support endpoints of the platform API: the audit trail and as-of answers.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use super::{auth::PlatformApp, envelope, errors::ApiError, request::path_segment};
use crate::audit::{self, AuditParams};
use crate::domain::ClientId;
use crate::store::Pool;

/// `GET /admin/audit`: the app's events with provenance, oldest first, one page at a time.
#[tracing::instrument(skip_all)]
pub async fn list(
    platform: PlatformApp,
    params: web::Query<AuditParams>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.into_inner().into_filter(platform.app)?;
    Ok(envelope::ok(audit::page(&pool, &filter).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AsOfParams {
    as_of: Option<String>,
}

/// `GET /admin/clients/{uid}/mute?asOf=…`: the user's muted rooms at that instant (now
/// when left out), folded from the log.
#[tracing::instrument(skip_all)]
pub async fn as_of(
    platform: PlatformApp,
    req: HttpRequest,
    params: web::Query<AsOfParams>,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, ApiError> {
    let client = ClientId::parse(path_segment(&req, 1)?)?;
    let at = match params.into_inner().as_of {
        Some(raw) => audit::parse_instant("asOf", &raw)?,
        None => Utc::now(),
    };
    let answer = audit::muted_as_of(&pool, &platform.app, &client, at).await?;
    Ok(envelope::ok(answer))
}
