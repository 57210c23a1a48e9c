//! Limits on what a request may make the server hold, and the envelope for the error
//! answers actix makes on its own (body overflow of a raw body).

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::{ErrorHandlerResponse, Next},
    HttpResponse, ResponseError,
};

use super::errors::{self, ApiError};

/// The most header bytes (names plus values) one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct MaxHeaderBytes(pub usize);

/// Answers 431 in the envelope when the headers add up to more than [`MaxHeaderBytes`].
/// actix itself only refuses a head past its 128 KiB read buffer, and without a body.
pub async fn limit_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = request.app_data::<MaxHeaderBytes>().map(|m| m.0);
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if limit.is_some_and(|limit| size > limit) {
        let response = ApiError::HeadersTooLarge.error_response();
        return Ok(request.into_response(response).map_into_right_body());
    }
    Ok(next.call(request).await?.map_into_left_body())
}

/// Puts an error answer that is not in the envelope yet (actix's own are plain text)
/// into it, keeping its status and headers.
pub fn envelope_plain_errors<B>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // JSON is the envelope already; HTML is the console's own error pages.
    let is_ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if is_ours {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let mut builder = HttpResponse::build(status);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    let message = status
        .canonical_reason()
        .unwrap_or("request refused")
        .to_owned();
    let enveloped = errors::envelope(builder, status, code_for(status), message);
    let (request, _) = response.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, enveloped).map_into_right_body(),
    ))
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "INVALID_PARAMETERS",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "HEADERS_TOO_LARGE",
        StatusCode::SERVICE_UNAVAILABLE => "SERVICE_UNAVAILABLE",
        s if s.is_server_error() => "INTERNAL_ERROR",
        _ => "BAD_REQUEST",
    }
}
