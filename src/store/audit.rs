//! Support reads of the log: events with their provenance, and one user's stream up to an
//! instant. Every query here is served by an index (see `migrations/V2__audit_indexes.sql`).

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{query, query_opt, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, Event, RoomId, STREAM_TYPE_USER_PREFERENCES};

/// What to list. `after` is the position of the last entry of the previous page.
#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub app: AppId,
    pub client: Option<ClientId>,
    pub room: Option<RoomId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// Who caused an event, as its metadata says (either part may be missing in old events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditActor {
    pub kind: Option<String>,
    pub id: Option<String>,
}

/// One event as support staff see it: what happened, to whom, caused by whom, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub app_id: String,
    pub client: String,
    pub room: Option<String>,
    pub actor: AuditActor,
    pub request_id: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub user_agent: Option<String>,
    /// `erased` or `expired` when the event's personal data was removed; `None` while it
    /// is kept, or when none was recorded.
    pub personal_data: Option<String>,
    pub recorded_at: DateTime<Utc>,
    /// A mute's end; `None` for a mute forever and for other events.
    pub until: Option<DateTime<Utc>>,
}

/// RFC 3339 in UTC with microseconds: exactly what is stored, so a time copied from an
/// entry into `since`/`until` selects that entry.
pub fn format_instant(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn text(value: &serde_json::Value, key: &str) -> Option<String> {
    value.get(key)?.as_str().map(str::to_owned)
}

/// The columns [`entry_from_row`] reads, in its order, from `events` (unaliased). The
/// event's personal data is joined back from its side table (`migrations/V9__*.sql`) as the
/// fields the metadata once held, with `personalData` saying whether they were removed.
pub(super) const ENTRY_COLUMNS: &str =
    "position, event_id, event_type, app_id, stream_id, data->>'room' AS room,
     metadata || coalesce((SELECT jsonb_build_object('address', p.address, 'port', p.port,
                                                     'userAgent', p.user_agent,
                                                     'personalData', p.removed)
                           FROM event_personal_data p WHERE p.position = events.position),
                          '{}') AS metadata,
     recorded_at, data->>'until' AS until";

/// An entry from the [`ENTRY_COLUMNS`] of `row`, starting at column `first`.
pub(super) fn entry_from_row(row: &tokio_postgres::Row, first: usize) -> AuditEntry {
    // Provenance is read leniently: an old or hand-written event with a field missing is
    // still shown, with that field null.
    let metadata: serde_json::Value = row.get(first + 6);
    let actor = metadata.get("actor").cloned().unwrap_or_default();
    AuditEntry {
        position: row.get(first),
        event_id: row.get(first + 1),
        event_type: row.get(first + 2),
        app_id: row.get(first + 3),
        client: row.get(first + 4),
        room: row.get(first + 5),
        actor: AuditActor {
            kind: text(&actor, "kind"),
            id: text(&actor, "id"),
        },
        request_id: text(&metadata, "requestId"),
        address: text(&metadata, "address"),
        port: metadata.get("port").and_then(serde_json::Value::as_i64),
        user_agent: text(&metadata, "userAgent"),
        personal_data: text(&metadata, "personalData"),
        recorded_at: row.get(first + 7),
        until: row
            .get::<_, Option<&str>>(first + 8)
            .and_then(|until| DateTime::parse_from_rfc3339(until).ok())
            .map(|until| until.with_timezone(&Utc)),
    }
}

/// Whether `position` names an event of `app`: a cursor the caller may continue from.
#[tracing::instrument(skip(db))]
pub async fn is_cursor_of<C: GenericClient>(
    db: &C,
    app: &AppId,
    position: i64,
) -> Result<bool, StoreError> {
    Ok(query_opt(
        db,
        "SELECT 1 FROM events WHERE position = $1 AND app_id = $2",
        &[&position, &app.as_str()],
    )
    .await?
    .is_some())
}

/// One page of the app's committed events in reading order, `(transaction_id, position)`:
/// everything committed when the page is read, whatever else is still running on the
/// server. Support history, not a feed: an event that commits later with a key before the
/// page's end shows up in a new query, not in the pages after this one (the change feed is
/// the exactly-once reader).
#[tracing::instrument(skip(db))]
pub async fn page<C: GenericClient>(
    db: &C,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM events WHERE app_id = $1");
    let app = filter.app.as_str();
    let client = filter.client.as_ref().map(ClientId::as_str);
    let room = filter.room.as_ref().map(RoomId::as_str);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&app];
    // Only the filters given become conditions, so each combination gets a plan that uses
    // its index (a generic `$n IS NULL OR …` plan would scan the log).
    let mut clauses = Vec::new();
    if let Some(client) = &client {
        params.push(client);
        clauses.push(format!("stream_id = ${}", params.len()));
    }
    if let Some(room) = &room {
        params.push(room);
        clauses.push(format!("data->>'room' = ${}", params.len()));
    }
    if let Some(since) = &filter.since {
        params.push(since);
        clauses.push(format!("recorded_at >= ${}", params.len()));
    }
    if let Some(until) = &filter.until {
        params.push(until);
        clauses.push(format!("recorded_at < ${}", params.len()));
    }
    if let Some(after) = &filter.after {
        params.push(after);
        clauses.push(format!(
            "(transaction_id, position) > \
             (SELECT transaction_id, position FROM events WHERE position = ${})",
            params.len()
        ));
    }
    for clause in clauses {
        sql.push_str(" AND ");
        sql.push_str(&clause);
    }
    params.push(&filter.limit);
    sql.push_str(&format!(
        " ORDER BY transaction_id, position LIMIT ${}",
        params.len()
    ));
    let rows = query(db, &sql, &params).await?;
    Ok(rows.iter().map(|row| entry_from_row(row, 0)).collect())
}

/// The user's events recorded at or before `at`, with when each was recorded, in stream
/// order, for an as-of fold.
#[tracing::instrument(skip(db))]
pub async fn stream_until<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    at: DateTime<Utc>,
) -> Result<Vec<(Event, DateTime<Utc>)>, StoreError> {
    let rows = query(
        db,
        "SELECT position, event_type, schema_version, data, recorded_at FROM events
         WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 AND recorded_at <= $4
         ORDER BY stream_version",
        &[
            &app.as_str(),
            &STREAM_TYPE_USER_PREFERENCES,
            &client.as_str(),
            &at,
        ],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Event::from_stored(row.get(1), row.get(2), &row.get(3))
                .map(|event| (event, row.get(4)))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "event at position {} is not a known preference event",
                        row.get::<_, i64>(0)
                    ))
                })
        })
        .collect()
}
