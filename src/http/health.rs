//! Probes for load balancers and orchestrators. Unauthenticated: they reveal nothing but
//! whether this instance can serve.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    envelope::{self, Success},
    errors::{ApiError, ErrorEnvelope},
};
use crate::service::Service;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `alive`.
    status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready`.
    status: &'static str,
    /// The database's latest applied migration; during a rolling deploy it may be newer
    /// than `binarySchemaVersion` (migrations are additive, so older instances still serve).
    schema_version: u32,
    /// The latest migration this binary knows.
    binary_schema_version: u32,
}

/// The process is up and answering (liveness): no database involved, so a database outage
/// does not get healthy instances restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Success<Health>))
)]
pub async fn healthz() -> HttpResponse {
    envelope::ok(Health { status: "alive" })
}

/// The instance can serve (readiness): the database answers and its schema is at least the
/// one this binary migrates to.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Success<Readiness>),
        (status = 503, description = "Database unreachable or migrations behind (`SERVICE_UNAVAILABLE`)", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn readyz(service: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let schema = service.schema_status().await?;
    match schema.applied {
        Some(version) if schema.is_current() => Ok(envelope::ok(Readiness {
            status: "ready",
            schema_version: version,
            binary_schema_version: schema.expected,
        })),
        applied => Err(ApiError::Unavailable(format!(
            "database schema is at version {}, this binary needs {}",
            applied.map_or_else(|| "none".to_owned(), |v| v.to_string()),
            schema.expected
        ))),
    }
}
