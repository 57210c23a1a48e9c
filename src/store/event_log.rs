//! The append-only log. Appends name the stream version they expect; the unique key on
//! `(app_id, stream_type, stream_id, stream_version)` turns a stale append into
//! [`StoreError::Conflict`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{query_opt, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, Event, EventMetadata, STREAM_TYPE_USER_PREFERENCES};

/// What the log assigned to an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub position: i64,
    pub stream_version: i32,
    pub recorded_at: DateTime<Utc>,
}

/// Appends `events` to a user's preference stream right after `expected_version`.
/// Must run inside the caller's transaction so the projection commits with it.
#[tracing::instrument(skip(tx, events, metadata), fields(events = events.len()))]
pub async fn append<C: GenericClient>(
    tx: &C,
    app: &AppId,
    stream: &ClientId,
    expected_version: i32,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<Recorded>, StoreError> {
    let metadata =
        serde_json::to_value(metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut recorded = Vec::with_capacity(events.len());
    for (offset, event) in (1..).zip(events) {
        let event_id = Uuid::new_v4();
        let stream_version = expected_version + offset;
        let row = query_opt(
            tx,
            "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                                 event_type, schema_version, data, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING position, recorded_at",
            &[
                &event_id,
                &app.as_str(),
                &STREAM_TYPE_USER_PREFERENCES,
                &stream.as_str(),
                &stream_version,
                &event.event_type(),
                &Event::SCHEMA_VERSION,
                &event.data(),
                &metadata,
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("insert returned no row".into()))?;
        recorded.push(Recorded {
            event_id,
            position: row.get(0),
            stream_version,
            recorded_at: row.get(1),
        });
    }
    Ok(recorded)
}
