//! The change feed for services (`GET /admin/events`) and users' live preference streams
//! for their other devices (`GET /me/events`, Server-Sent Events).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::{AuthenticatedClient, PlatformApp},
    envelope,
    envelope::Success,
    errors::ApiError,
    openapi::responses::{
        BadRequest, InvalidApiKey, InvalidClientKey, InvalidToken, RateLimited, Unavailable,
    },
};
use crate::api_types::AuditEntry;
use crate::audit::whole_number_in;
use crate::feed::live::{self, LiveContext, LiveItem, LiveStreams};
use crate::feed::{self, FeedCursor};
use crate::service::Service;
use crate::store::audit::format_instant;

/// The longest a feed request may wait, whatever it asks for (`--feed-max-wait-secs`).
#[derive(Debug, Clone, Copy)]
pub struct FeedMaxWait(pub Duration);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// Continue after this cursor: the `next` of the previous answer. Left out: from the
    /// beginning of the log.
    after: Option<String>,
    /// Most entries in one answer (1 to 1000, default 100).
    limit: Option<String>,
    /// Seconds to wait for the next event when there is none yet (0 to 30, default 0; the
    /// server may cut it shorter).
    wait: Option<String>,
}

/// A page of the change feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedAnswer {
    /// Events in feed order, each delivered exactly once across a sequence of answers.
    entries: Vec<AuditEntry>,
    /// Opaque cursor: pass it as `after` to get what follows. Always present, also when
    /// `entries` is empty.
    next: String,
}

/// The app's events in commit order, each exactly once, resumable from `next`; with
/// `wait`, a long poll that answers within about a second of the next commit.
#[utoipa::path(
    get, path = "/admin/events", tag = "support",
    params(FeedParams),
    responses(
        (status = 200, description = "The next events and the cursor to continue from", body = Success<FeedAnswer>),
        BadRequest,
        InvalidApiKey,
        RateLimited,
        Unavailable,
    ),
    security(("apiKey" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn events(
    platform: PlatformApp,
    params: web::Query<FeedParams>,
    service: web::Data<Service>,
    max_wait: web::Data<FeedMaxWait>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let limit = whole_number_in(
        "limit",
        params.limit.as_deref(),
        1..=feed::MAX_LIMIT,
        feed::DEFAULT_LIMIT,
    )?;
    let longest = feed::MAX_WAIT.as_secs() as i64;
    let wait = whole_number_in("wait", params.wait.as_deref(), 0..=longest, 0)?;
    let after = match params.after.as_deref() {
        None => FeedCursor::start(),
        Some(text) => FeedCursor::decode(&platform.app, text).map_err(feed::FeedError::from)?,
    };
    let wait = Duration::from_secs(wait as u64).min(max_wait.0);
    let page = service.feed(&platform.app, &after, limit, wait).await?;
    Ok(envelope::ok(FeedAnswer {
        next: page.next.encode(&platform.app),
        entries: page.entries.into_iter().map(AuditEntry::from).collect(),
    }))
}

/// One change as a user's devices see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveEvent {
    /// `RoomMuted`, `RoomUnmuted`, `NotificationsPaused` or `NotificationsResumed`.
    #[serde(rename = "type")]
    event_type: String,
    /// The room; `null` for the pause events, which are about every room.
    room: Option<String>,
    /// Who made the change: `client` (one of the user's devices) or `admin` (the app's
    /// backend).
    actor_kind: Option<String>,
    /// The stream version, also the SSE `id`.
    version: i32,
    recorded_at: String,
    #[serde(rename = "recordedAtMS")]
    recorded_at_ms: i64,
    /// A timed mute's or pause's end, milliseconds since the epoch; `null` for a mute
    /// forever, a pause until resumed, an unmute and a resume.
    #[serde(rename = "untilMS")]
    until_ms: Option<i64>,
}

/// Server-Sent Events frame for one item; the stream version is the event id, so a client
/// that reconnects with `Last-Event-ID` resumes after it.
fn frame(item: LiveItem) -> Bytes {
    match item {
        LiveItem::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
        LiveItem::Event { version, entry } => {
            let event = LiveEvent {
                event_type: entry.event_type.clone(),
                room: entry.room,
                actor_kind: entry.actor.kind,
                version,
                recorded_at: format_instant(&entry.recorded_at),
                recorded_at_ms: entry.recorded_at.timestamp_millis(),
                until_ms: entry.until.map(|until| until.timestamp_millis()),
            };
            let data = serde_json::to_string(&event).expect("a live event serialises");
            Bytes::from(format!(
                "id: {version}\nevent: {}\ndata: {data}\n\n",
                entry.event_type
            ))
        }
    }
}

/// Where a reconnecting client left off: the `Last-Event-ID` it sends.
fn last_event_id(req: &HttpRequest) -> Result<Option<i32>, ApiError> {
    let Some(value) = req.headers().get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|version| *version >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("Last-Event-ID must be a stream version this stream sent"))
}

/// Every change to the signed-in user's preferences as it happens, for their other
/// devices: one SSE event per change (`id` = stream version), resumable with
/// `Last-Event-ID`, a `: keep-alive` comment every 15 s while quiet.
#[utoipa::path(
    get, path = "/me/events", tag = "client",
    params(
        ("Last-Event-ID" = Option<i32>, Header, description = "Resume after this stream version (the `id` of the last event received)"),
    ),
    responses(
        (status = 200, description = "A stream of `RoomMuted` / `RoomUnmuted` / `NotificationsPaused` / `NotificationsResumed` events; each `data` is a JSON `LiveEvent`", content_type = "text/event-stream", body = LiveEvent),
        BadRequest,
        InvalidToken,
        InvalidClientKey,
        (status = 429, description = "Too many live streams open for this user or on this server (`RATE_LIMITED`), or too many failed authentications"),
        Unavailable,
    ),
    security(("clientKey" = [], "clientToken" = []))
)]
#[tracing::instrument(skip_all)]
pub async fn live(
    auth: AuthenticatedClient,
    req: HttpRequest,
    context: web::Data<LiveContext>,
    streams: web::Data<Arc<LiveStreams>>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ApiError> {
    let resume = last_event_id(&req)?;
    let client = auth.client.client_id;
    let slot = streams.open(&auth.app, &client)?;
    let after = match resume {
        Some(version) => version,
        None => service.stream_version(&auth.app, &client).await?,
    };
    let items = live::follow(context.get_ref().clone(), auth.app, client, after, slot);
    let body = futures_util::stream::unfold(items, |mut items| async move {
        let item = items.recv().await?;
        Some((Ok::<_, Infallible>(frame(item)), items))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx would otherwise buffer the stream and deliver events late, in bursts.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
