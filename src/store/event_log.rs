//! The append-only log. Appends name the stream version they expect; the unique key on
//! `(app_id, stream_type, stream_id, stream_version)` turns a stale append into
//! [`StoreError::Conflict`].

use chrono::{DateTime, Utc};
use tokio_postgres::types::Json;
use uuid::Uuid;

use tokio_postgres::Statement;

use super::{GenericClient, StoreError};
use crate::domain::{AppId, ClientId, Event, EventMetadata, STREAM_TYPE_USER_PREFERENCES};

/// What the log assigned to an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub position: i64,
    pub stream_version: i32,
    pub recorded_at: DateTime<Utc>,
}

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                         event_type, schema_version, data, metadata)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     RETURNING position, recorded_at";

/// Appends `events` to a user's preference stream right after `expected_version`.
/// Must run inside the caller's transaction so the projection commits with it.
#[tracing::instrument(level = "debug", skip(tx, events, metadata), fields(events = events.len()))]
pub async fn append<C: GenericClient>(
    tx: &C,
    app: &AppId,
    stream: &ClientId,
    expected_version: i32,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<Recorded>, StoreError> {
    let insert = tx.prepare_cached(INSERT_EVENT).await?;
    insert_all(tx, &insert, app, stream, expected_version, events, metadata).await
}

/// Sends every insert at the first poll (the statement is prepared already), so callers
/// can pipeline what must follow the append in the same round trip.
pub(super) async fn insert_all<C: GenericClient>(
    tx: &C,
    insert: &Statement,
    app: &AppId,
    stream: &ClientId,
    expected_version: i32,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<Recorded>, StoreError> {
    let metadata = Json(metadata);
    let rows: Vec<(Uuid, i32, &Event)> = (1..)
        .zip(events)
        .map(|(offset, event)| (Uuid::new_v4(), expected_version + offset, event))
        .collect();
    let inserts = rows.iter().map(|(event_id, stream_version, event)| async {
        let data = Json(event.data());
        let row = tx
            .query_one(
                insert,
                &[
                    event_id,
                    &app.as_str(),
                    &STREAM_TYPE_USER_PREFERENCES,
                    &stream.as_str(),
                    stream_version,
                    &event.event_type(),
                    &Event::SCHEMA_VERSION,
                    &data,
                    &metadata,
                ],
            )
            .await?;
        Ok::<_, StoreError>(Recorded {
            event_id: *event_id,
            position: row.get(0),
            stream_version: *stream_version,
            recorded_at: row.get(1),
        })
    });
    futures_util::future::try_join_all(inserts).await
}
