//! The append-only log. Appends name the stream version they expect; the unique key on
//! `(app_id, stream_type, stream_id, stream_version)` turns a stale append into
//! [`StoreError::Conflict`](super::StoreError::Conflict). Appending happens on the write
//! path of a stream, together with its projection: see [`super::stream`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What the log assigned to an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub position: i64,
    pub stream_version: i32,
    pub recorded_at: DateTime<Utc>,
}
