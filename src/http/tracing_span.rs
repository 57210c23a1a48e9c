use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    HttpMessage,
};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

use super::request::{route_of, RequestId};

/// One span per request, carrying the request id so every log line inside it can be found
/// from the `X-Request-Id` a user reports. `app_id` and `client_id` are filled in by the
/// authentication extractors.
pub struct RequestSpan;

#[derive(Clone, Copy)]
struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            %request_id,
            method = %request.method(),
            route = route_of(request),
            status = tracing::field::Empty,
            app_id = tracing::field::Empty,
            client_id = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, started) = match outcome {
            Ok(response) => (
                response.status(),
                response.request().extensions().get::<Started>().copied(),
            ),
            Err(error) => (error.as_response_error().status_code(), None),
        };
        span.record("status", status.as_u16());
        let latency_us = started.map(|s| s.0.elapsed().as_micros() as u64);
        span.in_scope(|| tracing::info!(status = status.as_u16(), latency_us, "request finished"));
    }
}
