//! The JSON shapes of support answers, shared by the HTTP API and the CLI's JSON output:
//! serde names (`appID`, `recordedAtMS`), OpenAPI schemas and query parameters live here,
//! so that the store and the audit module deal in plain records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit;
use crate::domain::RoomMute;
use crate::store::audit::{self as log, format_instant};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditActor {
    pub kind: Option<String>,
    pub id: Option<String>,
}

/// One event as support staff see it: what happened, to whom, caused by whom, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub position: i64,
    #[schema(value_type = String, format = "uuid")]
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(rename = "appID")]
    pub app_id: String,
    pub client: String,
    /// The room; `null` for events about every room (`NotificationsPaused`,
    /// `NotificationsResumed`).
    pub room: Option<String>,
    pub actor: AuditActor,
    pub request_id: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub user_agent: Option<String>,
    /// `"erased"` (the user was erased) or `"expired"` (older than the retention window)
    /// when `address`, `port` and `userAgent` were removed; `null` otherwise.
    pub personal_data: Option<String>,
    /// RFC 3339, UTC, microseconds.
    #[serde(serialize_with = "rfc3339_utc")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: DateTime<Utc>,
    #[serde(rename = "recordedAtMS")]
    pub recorded_at_ms: i64,
    /// A timed mute's or pause's end, RFC 3339, UTC; `null` for a mute forever, a pause
    /// until resumed, and other events.
    #[serde(serialize_with = "rfc3339_utc_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
    /// The same end in milliseconds since the epoch.
    #[serde(rename = "untilMS")]
    pub until_ms: Option<i64>,
}

fn rfc3339_utc<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_instant(at))
}

fn rfc3339_utc_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339_utc(at, serializer),
        None => serializer.serialize_none(),
    }
}

impl From<log::AuditEntry> for AuditEntry {
    fn from(entry: log::AuditEntry) -> Self {
        AuditEntry {
            position: entry.position,
            event_id: entry.event_id,
            event_type: entry.event_type,
            app_id: entry.app_id,
            client: entry.client,
            room: entry.room,
            actor: AuditActor {
                kind: entry.actor.kind,
                id: entry.actor.id,
            },
            request_id: entry.request_id,
            address: entry.address,
            port: entry.port,
            user_agent: entry.user_agent,
            personal_data: entry.personal_data,
            recorded_at_ms: entry.recorded_at.timestamp_millis(),
            recorded_at: entry.recorded_at,
            until_ms: entry.until.map(|until| until.timestamp_millis()),
            until: entry.until,
        }
    }
}

/// One page of the audit trail. Continue with `after = next` while `has_more`; when it is
/// false the page reached the end of what was committed when it was read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<i64>,
    pub has_more: bool,
}

impl From<audit::AuditPage> for AuditPage {
    fn from(page: audit::AuditPage) -> Self {
        AuditPage {
            entries: page.entries.into_iter().map(AuditEntry::from).collect(),
            next: page.next,
            has_more: page.has_more,
        }
    }
}

/// A user's muted rooms at an instant, as both the HTTP API and the CLI answer it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AsOf {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "appID")]
    pub app_id: String,
    pub as_of: String,
    #[serde(rename = "asOfMS")]
    pub as_of_ms: i64,
    /// Oldest mute first, as in the user object.
    pub mute: Vec<String>,
    /// The same mutes in the same order, with since when and until when.
    pub mute_details: Vec<MuteDetail>,
    /// `false` while all notifications were paused at that instant (do not disturb).
    pub notification_enabled: bool,
    /// When the pause in force then ends, milliseconds since the epoch; `null` when not
    /// paused or paused until resumed.
    pub notifications_paused_until: Option<i64>,
}

impl From<audit::AsOf> for AsOf {
    fn from(as_of: audit::AsOf) -> Self {
        AsOf {
            id: as_of.client.into_inner(),
            app_id: as_of.app.into_inner(),
            as_of: format_instant(&as_of.at),
            as_of_ms: as_of.at.timestamp_millis(),
            mute: as_of
                .mutes
                .iter()
                .map(|m| m.room.as_str().to_owned())
                .collect(),
            mute_details: as_of.mutes.into_iter().map(MuteDetail::from).collect(),
            notification_enabled: as_of.pause.is_none(),
            notifications_paused_until: as_of
                .pause
                .and_then(|p| p.until)
                .map(|u| u.timestamp_millis()),
        }
    }
}

/// One mute in force: the user object's `muteDetails` entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct MuteDetail {
    pub room: String,
    /// When it was muted (this mute, with this end), milliseconds since the epoch.
    pub since: i64,
    /// When it ends, milliseconds since the epoch; `null`: never.
    pub until: Option<i64>,
}

impl From<RoomMute> for MuteDetail {
    fn from(mute: RoomMute) -> Self {
        MuteDetail {
            since: mute.since.timestamp_millis(),
            until: mute.until.map(|u| u.timestamp_millis()),
            room: mute.room.into_inner(),
        }
    }
}

/// The audit filters of `GET /admin/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this user's events.
    pub client: Option<String>,
    /// Only events about this room.
    pub room: Option<String>,
    /// Recorded at or after this instant (RFC 3339 or epoch milliseconds).
    pub since: Option<String>,
    /// Recorded before this instant (RFC 3339 or epoch milliseconds).
    pub until: Option<String>,
    /// Most entries in one page (1 to 1000, default 100).
    pub limit: Option<String>,
    /// Continue after this position: the `next` of the previous page.
    pub after: Option<String>,
}

impl From<AuditQuery> for audit::AuditParams {
    fn from(query: AuditQuery) -> Self {
        audit::AuditParams {
            client: query.client,
            room: query.room,
            since: query.since,
            until: query.until,
            limit: query.limit,
            after: query.after,
        }
    }
}
