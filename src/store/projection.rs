//! The read model: `room_mutes` (who muted what) and `stream_versions` (which stream
//! version it reflects). Commands update it in the same statement as their append (see
//! [`super::stream`]), so a handler answers with its own write and the model never lags
//! the log.

use super::{query, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, MuteState, RoomId};

/// Makes sure the stream has a version row to lock, without waiting on anyone.
pub(super) const CREATE_STREAM: &str =
    "INSERT INTO stream_versions (app_id, stream_type, stream_id, version)
     VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING";

/// Writers to one user queue on this row lock instead of failing each other, while
/// writers to different users never wait for one another.
pub(super) const LOCK_STREAM: &str = "SELECT version FROM stream_versions
     WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 FOR UPDATE";

const MUTED_ROOMS: &str =
    "SELECT room_id FROM room_mutes WHERE app_id = $1 AND client_id = $2 ORDER BY position";

/// The state from stored room ids, in the order given (mute order).
pub(super) fn state_from_ids(ids: Vec<String>) -> Result<MuteState, StoreError> {
    let muted = ids
        .into_iter()
        .map(RoomId::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(MuteState::from_muted(muted))
}

/// A user's muted rooms as the read model holds them, oldest mute first.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn muted_rooms<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<MuteState, StoreError> {
    let rows = query(db, MUTED_ROOMS, &[&app.as_str(), &client.as_str()]).await?;
    state_from_ids(rows.iter().map(|row| row.get(0)).collect())
}
