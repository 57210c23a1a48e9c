//! The read model: `room_mutes` (who muted what) and `stream_versions` (which stream
//! version it reflects). Commands update it in the same transaction as their append (see
//! [`super::stream`]), so a handler answers with its own write and the model never lags
//! the log.

use tokio_postgres::Statement;

use super::{query, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, Event, MuteState, RoomId, STREAM_TYPE_USER_PREFERENCES};

/// Makes sure the stream has a version row to lock, without waiting on anyone.
pub(super) const CREATE_STREAM: &str =
    "INSERT INTO stream_versions (app_id, stream_type, stream_id, version)
     VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING";

/// Writers to one user queue on this row lock instead of failing each other, while
/// writers to different users never wait for one another.
pub(super) const LOCK_STREAM: &str = "SELECT version FROM stream_versions
     WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 FOR UPDATE";

pub(super) const MUTED_ROOMS: &str =
    "SELECT room_id FROM room_mutes WHERE app_id = $1 AND client_id = $2 ORDER BY position";

/// Reads the event back from the log by its stream version, so the projection can be
/// sent in the same round trip as the append that assigns the position.
pub(super) const PROJECT_MUTED: &str =
    "INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position)
     SELECT app_id, stream_id, data->>'room', recorded_at, position FROM events
     WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 AND stream_version = $4
     ON CONFLICT (app_id, client_id, room_id)
     DO UPDATE SET muted_at = excluded.muted_at, position = excluded.position";

pub(super) const PROJECT_UNMUTED: &str =
    "DELETE FROM room_mutes WHERE app_id = $1 AND client_id = $2 AND room_id = $3";

/// An upsert: an optimistic first append to a stream has no version row yet.
pub(super) const SET_VERSION: &str =
    "INSERT INTO stream_versions (app_id, stream_type, stream_id, version)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (app_id, stream_type, stream_id) DO UPDATE SET version = excluded.version";

pub(super) fn rooms_from_rows(rows: &[tokio_postgres::Row]) -> Result<MuteState, StoreError> {
    let muted = rows
        .iter()
        .map(|row| RoomId::parse(row.get::<_, String>(0)))
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
    rooms_from_rows(&rows)
}

/// The prepared statements of [`project`].
pub(super) struct Projector {
    pub muted: Statement,
    pub unmuted: Statement,
    pub set_version: Statement,
}

impl Projector {
    pub async fn prepare<C: GenericClient>(db: &C) -> Result<Self, StoreError> {
        let (muted, unmuted, set_version) = futures_util::try_join!(
            db.prepare_cached(PROJECT_MUTED),
            db.prepare_cached(PROJECT_UNMUTED),
            db.prepare_cached(SET_VERSION),
        )?;
        Ok(Projector {
            muted,
            unmuted,
            set_version,
        })
    }
}

/// Moves the stream's version row to `version`, taking its row lock. Sent before the
/// append so every writer of a stream takes its locks in the same order (version row, then
/// log), which keeps an optimistic writer and a locked retry from deadlocking.
pub(super) async fn set_version<C: GenericClient>(
    tx: &C,
    projector: &Projector,
    app: &AppId,
    client: &ClientId,
    version: i32,
) -> Result<(), StoreError> {
    tx.execute(
        &projector.set_version,
        &[
            &app.as_str(),
            &STREAM_TYPE_USER_PREFERENCES,
            &client.as_str(),
            &version,
        ],
    )
    .await?;
    Ok(())
}

/// Projects events appended after `expected_version` into `room_mutes`. Every statement
/// is sent at the first poll.
pub(super) async fn project<C: GenericClient>(
    tx: &C,
    projector: &Projector,
    app: &AppId,
    client: &ClientId,
    expected_version: i32,
    events: &[Event],
) -> Result<(), StoreError> {
    let applied = (expected_version + 1..)
        .zip(events)
        .map(|(version, event)| async move {
            let changed = match event {
                Event::RoomMuted { .. } => {
                    tx.execute(
                        &projector.muted,
                        &[
                            &app.as_str(),
                            &STREAM_TYPE_USER_PREFERENCES,
                            &client.as_str(),
                            &version,
                        ],
                    )
                    .await?
                }
                Event::RoomUnmuted { room } => {
                    tx.execute(
                        &projector.unmuted,
                        &[&app.as_str(), &client.as_str(), &room.as_str()],
                    )
                    .await?
                }
            };
            // The decider only emits an event that changes the state, so a projection that
            // changes nothing means the read model had drifted from the log. The COMMIT is
            // already on its way, so this is reported, not failed: `rebuild` repairs drift.
            if changed != 1 {
                tracing::warn!(
                    event_type = event.event_type(),
                    version,
                    changed,
                    "read model had drifted from the log"
                );
            }
            Ok::<_, StoreError>(())
        });
    futures_util::future::try_join_all(applied).await?;
    Ok(())
}
