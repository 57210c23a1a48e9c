//! Muting and unmuting a room, pausing and resuming all notifications (do not disturb):
//! one handler each for the user acting for themselves (`/me/mute/{room}`, `/me/dnd`,
//! client API) and an app's backend acting for a user (`/admin/clients/{uid}/mute/{room}`,
//! `/admin/clients/{uid}/dnd`, platform API, actor recorded as admin). A mute or a pause
//! may say how long it lasts in an optional body.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    auth::{AuthenticatedClient, PlatformApp},
    body::{optional_object, Field},
    envelope,
    envelope::{Success, User},
    errors::ApiError,
    openapi::params::RoomPath,
    openapi::responses::ClientCommandErrors,
    path::{path_param, PathId, PathParam},
    request::RequestContext,
};
use crate::audit::parse_instant;
use crate::domain::{Actor, ActorKind, AppId, ClientId, Command, Expiry, RoomId};
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

/// How long a mute lasts: `until` or `durationSeconds`, not both. No body, an empty body,
/// `{}` or `null` values: forever. Unknown fields are refused, so that a misspelt field
/// cannot silently mean forever.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MuteBody {
    /// When the mute ends: RFC 3339 (`2026-11-26T18:00:00Z`) or milliseconds since the
    /// epoch; in the future and at most a year ahead (by the database's clock), kept to the
    /// millisecond.
    #[serde(default)]
    #[schema(schema_with = instant_schema)]
    until: Field<Instant>,
    /// How long the mute lasts from now, 1 to 31536000 (a year).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 31536000)]
    duration_seconds: Field<i64>,
}

/// An instant as JSON may carry it: milliseconds since the epoch, or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Instant {
    Millis(i64),
    Text(String),
}

/// `until`'s schema: an RFC 3339 string or a number of milliseconds, or `null`.
fn instant_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .examples(["2026-11-26T18:00:00Z"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "When the mute ends: RFC 3339 or milliseconds since the epoch; in the future and at \
             most a year ahead (by the database's clock), kept to the millisecond.",
        ))
        .build()
        .into()
}

/// The mute's expiry from the body as sent (`body` may be empty).
fn expiry(body: &[u8]) -> Result<Expiry, ApiError> {
    let Some(body) = optional_object::<MuteBody>(body)? else {
        return Ok(Expiry::Forever);
    };
    match (
        body.until.into_option(),
        body.duration_seconds.into_option(),
    ) {
        (None, None) => Ok(Expiry::Forever),
        (Some(_), Some(_)) => Err(ApiError::invalid("give until or durationSeconds, not both")),
        (Some(Instant::Millis(ms)), None) => chrono::DateTime::from_timestamp_millis(ms)
            .map(Expiry::At)
            .ok_or_else(|| ApiError::invalid("until is out of range")),
        (Some(Instant::Text(text)), None) => parse_instant("until", &text)
            .map(Expiry::At)
            .map_err(ApiError::invalid),
        (None, Some(seconds)) => Ok(Expiry::For(seconds)),
    }
}

/// Mutes the room for the signed-in user, forever or until the body says (idempotent: the
/// same end again changes nothing; another end replaces the mute).
#[utoipa::path(
    post, path = "/me/mute/{room}", tag = "client",
    params(RoomPath),
    request_body(content = Option<MuteBody>, description = "Optional: how long the mute lasts; none, empty or `{}` mutes forever"),
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
    body: web::Bytes,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let expiry = expiry(&body)?;
    act(
        acting,
        Command::MuteRoom {
            room: room.0,
            expiry,
        },
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

/// Pauses all notifications for the signed-in user (do not disturb), until resumed or until
/// the body says (idempotent: the same end again changes nothing; another end replaces the
/// pause).
#[utoipa::path(
    post, path = "/me/dnd", tag = "client",
    request_body(content = Option<MuteBody>, description = "Optional: how long the pause lasts; none, empty or `{}` pauses until resumed"),
    responses(
        (status = 200, description = "The user, with `notificationEnabled` false", body = Success<User>),
        ClientCommandErrors,
    ),
    security(("clientKey" = [], "clientToken" = []))
)]
pub async fn pause(
    acting: Acting,
    request: RequestContext,
    body: web::Bytes,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let expiry = expiry(&body)?;
    act(
        acting,
        Command::PauseNotifications { expiry },
        request,
        &service,
    )
    .await
}

/// Resumes notifications for the signed-in user (idempotent).
#[utoipa::path(
    delete, path = "/me/dnd", tag = "client",
    responses(
        (status = 200, description = "The user, with `notificationEnabled` true", body = Success<User>),
        ClientCommandErrors,
    ),
    security(("clientKey" = [], "clientToken" = []))
)]
pub async fn resume(
    acting: Acting,
    request: RequestContext,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    act(acting, Command::ResumeNotifications, request, &service).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_body_an_empty_object_or_nulls_mean_forever() {
        for body in [
            "",
            "  \n",
            "{}",
            r#"{"until": null}"#,
            r#"{"durationSeconds": null}"#,
        ] {
            assert_eq!(
                expiry(body.as_bytes()).unwrap(),
                Expiry::Forever,
                "{body:?}"
            );
        }
    }

    #[test]
    fn an_end_is_an_instant_or_a_duration() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T18:00:00.250Z").unwrap();
        for body in [
            r#"{"until": "2026-11-26T18:00:00.250Z"}"#,
            r#"{"until": "2026-11-26T19:00:00.250+01:00"}"#,
            r#"{"until": 1795716000250}"#,
        ] {
            assert_eq!(
                expiry(body.as_bytes()).unwrap(),
                Expiry::At(at.into()),
                "{body}"
            );
        }
        assert_eq!(
            expiry(br#"{"durationSeconds": 3600}"#).unwrap(),
            Expiry::For(3600)
        );
    }

    #[test]
    fn other_bodies_are_refused() {
        for body in [
            r#"{"until": 1795716000250, "durationSeconds": 60}"#,
            r#"{"until": "tomorrow"}"#,
            r#"{"until": true}"#,
            r#"{"until": 1.5}"#,
            r#"{"durationSeconds": "60"}"#,
            r#"{"durationSeconds": 99999999999999999999}"#,
            r#"{"duration": 60}"#,
            r#"[]"#,
            "null",
            "{",
        ] {
            let err = expiry(body.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidParameters(_)),
                "{body}: {err:?}"
            );
        }
    }
}
