//! Request metrics middleware and the Prometheus scrape endpoint.

use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web, HttpResponse,
};

use super::request::route_of;
use crate::metrics::{self, PoolStatus};
use crate::store::{ReadPool, WorkerPools};

/// Methods outside this API's are counted together: a label per invented method would let
/// any caller create time series at will.
fn method_label(method: &Method) -> &str {
    match *method {
        Method::GET | Method::POST | Method::DELETE | Method::OPTIONS | Method::HEAD => {
            method.as_str()
        }
        _ => "other",
    }
}

/// Counts and times every request by route pattern (`unmatched` for unknown paths).
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = route_of(&request);
    let method = method_label(request.method()).to_owned();
    let response = next.call(request).await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    metrics::observe_request(&route, &method, status.as_u16(), started.elapsed());
    response
}

/// Prometheus text format (unauthenticated, like the probes: expose it to the monitoring
/// network only).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn scrape(pools: web::Data<WorkerPools>, reads: web::Data<ReadPool>) -> HttpResponse {
    let status = pools.status();
    metrics::set_pool_status(PoolStatus {
        max_size: status.max_size,
        size: status.size,
        idle: status.available,
        waiting: status.waiting,
    });
    metrics::set_replica_lag(reads.replica_lag().await);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics::render())
}
