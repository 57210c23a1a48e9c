//! The one error type of the HTTP edge, rendered as the IMKIT envelope.

use std::time::Duration;

use actix_web::{
    error::{JsonPayloadError, PayloadError},
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::audit::{AuditError, InvalidQuery};
use crate::domain::IdError;
use crate::feed::{live::TooManyStreams, FeedError};
use crate::service::ServiceError;
use crate::store::{Retryable, StoreError};

/// Seconds a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown IM-CLIENT-KEY")]
    InvalidClientKey,
    #[error("missing or unknown IM-API-KEY")]
    InvalidApiKey,
    #[error("this API key's role ({0}) may only read; this needs a platform key")]
    InsufficientRole(&'static str),
    #[error("missing, unknown, expired or revoked token")]
    InvalidToken,
    #[error("client sign-in is off for this app: tokens come from the platform API (POST /admin/clients with issueAccessToken)")]
    ClientSignInDisabled,
    #[error("room not found")]
    RoomNotFound,
    #[error("client not found")]
    ClientNotFound,
    #[error("{0}")]
    InvalidParameters(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("request headers are too large")]
    HeadersTooLarge,
    #[error("too many failed authentications; retry later")]
    RateLimited(Duration),
    #[error("{0}")]
    TooManyStreams(String),
    #[error("too many sign-ins from this address; retry later")]
    TooManySignIns(Duration),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("the request conflicted with concurrent changes; retry it")]
    Conflict,
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidClientKey => "INVALID_CLIENT_KEY",
            ApiError::InvalidApiKey => "INVALID_API_KEY",
            ApiError::InsufficientRole(_) => "INSUFFICIENT_ROLE",
            ApiError::InvalidToken => "INVALID_TOKEN",
            ApiError::ClientSignInDisabled => "CLIENT_SIGN_IN_DISABLED",
            ApiError::RoomNotFound => "ROOM_NOT_FOUND",
            ApiError::ClientNotFound => "CLIENT_NOT_FOUND",
            ApiError::InvalidParameters(_) => "INVALID_PARAMETERS",
            ApiError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiError::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ApiError::RateLimited(_)
            | ApiError::TooManyStreams(_)
            | ApiError::TooManySignIns(_) => "RATE_LIMITED",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::Conflict => "CONFLICT",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn invalid(detail: impl std::fmt::Display) -> Self {
        ApiError::InvalidParameters(detail.to_string())
    }
}

impl Retryable for ApiError {
    fn is_unavailable(&self) -> bool {
        matches!(self, ApiError::Unavailable(_))
    }
}

/// The IMKIT error envelope: `RC` equals the HTTP status.
#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct ErrorEnvelope<'a> {
    #[schema(minimum = 400, maximum = 599)]
    RC: u16,
    RM: &'a str,
    error: ErrorBody<'a>,
}

#[derive(Serialize, ToSchema)]
struct ErrorBody<'a> {
    /// Machine-readable, e.g. `ROOM_NOT_FOUND`.
    code: &'a str,
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidClientKey
            | ApiError::InvalidApiKey
            | ApiError::ClientSignInDisabled
            | ApiError::InsufficientRole(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::RoomNotFound | ApiError::ClientNotFound | ApiError::NotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::InvalidParameters(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RateLimited(_)
            | ApiError::TooManyStreams(_)
            | ApiError::TooManySignIns(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            // Details go to the log (inside the request's span, so with its request id),
            // never to the caller.
            ApiError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable")
            }
            _ => {}
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
            }
            ApiError::RateLimited(wait) | ApiError::TooManySignIns(wait) => {
                // Whole seconds, rounded up: retrying earlier would only be refused again.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response.insert_header((header::RETRY_AFTER, seconds.max(1)));
            }
            _ => {}
        }
        envelope(response, status, self.code(), self.to_string())
    }
}

/// Any error answer in the IMKIT envelope; also used to wrap answers actix makes itself.
pub fn envelope(
    mut response: actix_web::HttpResponseBuilder,
    status: StatusCode,
    code: &str,
    message: String,
) -> HttpResponse {
    response.json(ErrorEnvelope {
        RC: status.as_u16(),
        RM: status.canonical_reason().unwrap_or("Error"),
        error: ErrorBody { code, message },
    })
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            StoreError::Conflict => ApiError::Conflict,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::RoomNotFound => ApiError::RoomNotFound,
            ServiceError::ClientNotFound => ApiError::ClientNotFound,
            ServiceError::Conflict => ApiError::Conflict,
            ServiceError::Refused(refused) => ApiError::invalid(refused),
            ServiceError::Store(store) => store.into(),
        }
    }
}

impl From<InvalidQuery> for ApiError {
    fn from(err: InvalidQuery) -> Self {
        ApiError::invalid(err)
    }
}

impl From<AuditError> for ApiError {
    fn from(err: AuditError) -> Self {
        match err {
            AuditError::Invalid(invalid) => invalid.into(),
            AuditError::ClientNotFound => ApiError::ClientNotFound,
            AuditError::Store(store) => store.into(),
        }
    }
}

impl From<FeedError> for ApiError {
    fn from(err: FeedError) -> Self {
        match err {
            FeedError::Invalid(invalid) => ApiError::invalid(format!("after: {invalid}")),
            err @ FeedError::FromTheFuture => ApiError::invalid(format!("after: {err}")),
            FeedError::Store(store) => store.into(),
        }
    }
}

impl From<TooManyStreams> for ApiError {
    fn from(err: TooManyStreams) -> Self {
        ApiError::TooManyStreams(err.to_string())
    }
}

impl From<IdError> for ApiError {
    fn from(err: IdError) -> Self {
        ApiError::invalid(err)
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::Overflow { .. }
            | JsonPayloadError::OverflowKnownLength { .. }
            | JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge,
            JsonPayloadError::Deserialize(e) => {
                ApiError::invalid(format!("invalid JSON body: {e}"))
            }
            JsonPayloadError::ContentType => {
                ApiError::invalid("the body must be JSON (Content-Type: application/json)")
            }
            other => ApiError::invalid(format!("unreadable body: {other}")),
        }
    }
}
