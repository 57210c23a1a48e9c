//! Client sign-in: IMKIT SDKs that log in without a token (imkit-flutter-sdk, the JS SDK's
//! `auth.sign`) ask `POST /auths/sign/v2 {"id": uid}` for one, with the public client key
//! alone. That hands a token for any user id to anyone holding the app, so it is off
//! unless the app's operator turns it on, limited per client address, and every token it
//! issues is recorded as such (`tokens.issued_by`, and a log line).

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    auth::SigningApp,
    envelope::{self, Success, User},
    errors::ApiError,
    openapi::responses::SignInErrors,
    request::RequestContext,
};
use crate::domain::ClientId;
use crate::ratelimit::FailureLimiter;
use crate::service::{
    tokens::{TokenGrant, DEFAULT_TOKEN_DAYS},
    Service,
};
use crate::store::directory::{ClientProfile, TokenIssuer};

/// Sign-ins per client address, with the failed-authentication limit's numbers but a table
/// of its own: a busy sign-in page must not lock its users out of the rest of the API.
pub struct SignInLimiter(pub FailureLimiter);

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignInBody {
    /// User id (1–255 bytes, no control characters); the user is created if new.
    id: String,
}

/// The user and a new token. `id` repeats `_id` because the SDKs read it under that name.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignedIn {
    id: String,
    #[serde(flatten)]
    user: User,
    /// Shown only here: it is stored as SHA-256.
    token: String,
    /// Milliseconds since the epoch.
    expiration_date: i64,
}

/// Issues a token for the user `id` of the app named by the client key, when the app allows
/// client sign-in (`chatprefs app create --allow-client-sign-in`, or
/// `chatprefs app client-sign-in <app> on`). Otherwise 403 `CLIENT_SIGN_IN_DISABLED`: tokens
/// then come from the platform API (`POST /admin/clients` with `issueAccessToken`).
#[utoipa::path(
    post, path = "/auths/sign/v2", tag = "client",
    request_body = SignInBody,
    responses(
        (status = 200, description = "The user, with `id`, `token` and `expirationDate`", body = Success<SignedIn>),
        SignInErrors,
    ),
    security(("clientKey" = []))
)]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn sign_in(
    signing: SigningApp,
    request: RequestContext,
    body: web::Json<SignInBody>,
    service: web::Data<Service>,
    limiter: Option<web::Data<SignInLimiter>>,
) -> Result<HttpResponse, ApiError> {
    if !signing.client_sign_in {
        return Err(ApiError::ClientSignInDisabled);
    }
    if let Some(limiter) = &limiter {
        let now = Instant::now();
        limiter
            .0
            .check(request.address, &[], now)
            .map_err(ApiError::TooManySignIns)?;
        limiter.0.record_failure(request.address, &[], now);
    }
    let client_id = ClientId::parse(body.into_inner().id)?;
    tracing::Span::current().record("client_id", client_id.as_str());
    let app = &signing.app;
    // A signed-in token lives as long as a platform-issued one does by default.
    let grant = TokenGrant {
        days: DEFAULT_TOKEN_DAYS,
        issuer: TokenIssuer::ClientSignIn,
    };
    let upserted = service
        .upsert_client(app, &client_id, &ClientProfile::default(), Some(grant))
        .await?;
    let issued = upserted
        .token
        .ok_or_else(|| ApiError::Internal("a granted token was not issued".into()))?;
    tracing::info!(
        app_id = app.as_str(),
        request_id = request.request_id.as_str(),
        address = request.address.map(|a| a.to_string()),
        "client sign-in issued a token"
    );
    Ok(envelope::ok(SignedIn {
        id: client_id.as_str().to_owned(),
        user: User::new(app, upserted.client, upserted.mutes, &request),
        token: issued.token,
        expiration_date: issued.expires_at.timestamp_millis(),
    }))
}
