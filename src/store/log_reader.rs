//! Reading the whole log in global order (DESIGN §2), in batches: by
//! `(transaction_id, position)` up to a snapshot horizon, so an event whose lower position
//! commits late is read in a later batch instead of being skipped.

use chrono::{DateTime, Utc};

use super::{query, query_opt, GenericClient, StoreError};
use crate::domain::STREAM_TYPE_USER_PREFERENCES;

/// Where a global-order reader stands: the last event read. `transaction_id` is an `xid8`
/// carried as its decimal text, the one form both PostgreSQL and Rust read losslessly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub transaction_id: String,
    pub position: i64,
}

impl LogCursor {
    pub fn start() -> Self {
        LogCursor {
            transaction_id: "0".into(),
            position: 0,
        }
    }
}

/// An event as stored, for projectors: decoded with `Event::from_stored` by the caller.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub cursor: LogCursor,
    pub app_id: String,
    pub stream_id: String,
    pub stream_version: i32,
    pub event_type: String,
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// The snapshot horizon: every transaction below it has finished, so every event below it
/// that will ever be visible is visible now.
#[tracing::instrument(skip(db))]
pub async fn horizon<C: GenericClient>(db: &C) -> Result<String, StoreError> {
    query_opt(
        db,
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text",
        &[],
    )
    .await?
    .map(|row| row.get(0))
    .ok_or_else(|| StoreError::Corrupt("no snapshot horizon".into()))
}

/// The highest position in the log: an estimate of how many events there are to read.
#[tracing::instrument(skip(db))]
pub async fn last_position<C: GenericClient>(db: &C) -> Result<i64, StoreError> {
    Ok(
        query(db, "SELECT coalesce(max(position), 0) FROM events", &[])
            .await?
            .first()
            .map_or(0, |row| row.get(0)),
    )
}

/// The next `limit` preference events after `after`: below `horizon` when given, else all
/// that this transaction sees (right for a repeatable-read snapshot, or while every writer
/// is locked out).
#[tracing::instrument(skip(db))]
pub async fn read_batch<C: GenericClient>(
    db: &C,
    after: &LogCursor,
    horizon: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    // The text form is named `xid`: named `transaction_id` it would be what ORDER BY sorts
    // on (output names win), a text sort instead of a walk of `events_transaction_idx`.
    const COLUMNS: &str = "SELECT transaction_id::text AS xid, position, app_id, stream_id,
                                  stream_version, event_type, data, recorded_at
                           FROM events
                           WHERE stream_type = $1
                             AND (transaction_id, position) > ($2::text::xid8, $3)";
    let rows = match horizon {
        Some(horizon) => {
            query(
                db,
                &format!(
                    "{COLUMNS} AND transaction_id < $5::text::xid8
                     ORDER BY transaction_id, position LIMIT $4"
                ),
                &[
                    &STREAM_TYPE_USER_PREFERENCES,
                    &after.transaction_id,
                    &after.position,
                    &limit,
                    &horizon,
                ],
            )
            .await?
        }
        None => {
            query(
                db,
                &format!("{COLUMNS} ORDER BY transaction_id, position LIMIT $4"),
                &[
                    &STREAM_TYPE_USER_PREFERENCES,
                    &after.transaction_id,
                    &after.position,
                    &limit,
                ],
            )
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(|row| StoredEvent {
            cursor: LogCursor {
                transaction_id: row.get(0),
                position: row.get(1),
            },
            app_id: row.get(2),
            stream_id: row.get(3),
            stream_version: row.get(4),
            event_type: row.get(5),
            data: row.get(6),
            recorded_at: row.get(7),
        })
        .collect())
}
