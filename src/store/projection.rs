//! The read model: `room_mutes` (who muted what) and `stream_versions` (which stream
//! version it reflects). Commands update it in the same transaction as their append, so a
//! handler answers with its own write and the model never lags the log.

use super::{event_log::Recorded, execute, query, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, Event, MuteState, RoomId, STREAM_TYPE_USER_PREFERENCES};

/// Locks a user's stream for the rest of the transaction and loads its state and version.
/// Writers to one user queue on this row lock instead of failing each other, while writers
/// to different users never wait for one another.
#[tracing::instrument(skip(tx))]
pub async fn lock_stream<C: GenericClient>(
    tx: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<(i32, MuteState), StoreError> {
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [
        &app.as_str(),
        &STREAM_TYPE_USER_PREFERENCES,
        &client.as_str(),
    ];
    // Sent together: the three statements travel in one round trip and run in order.
    let (_, version, state) = futures_util::try_join!(
        execute(
            tx,
            "INSERT INTO stream_versions (app_id, stream_type, stream_id, version)
             VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
            &key,
        ),
        query(
            tx,
            "SELECT version FROM stream_versions
             WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 FOR UPDATE",
            &key,
        ),
        muted_rooms(tx, app, client),
    )?;
    let version = version
        .first()
        .map(|row| row.get(0))
        .ok_or_else(|| StoreError::Corrupt("stream version row vanished".into()))?;
    Ok((version, state))
}

/// A user's muted rooms as the read model holds them, oldest mute first.
#[tracing::instrument(skip(db))]
pub async fn muted_rooms<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<MuteState, StoreError> {
    let rows = query(
        db,
        "SELECT room_id FROM room_mutes WHERE app_id = $1 AND client_id = $2 ORDER BY position",
        &[&app.as_str(), &client.as_str()],
    )
    .await?;
    let muted = rows
        .iter()
        .map(|row| RoomId::parse(row.get::<_, String>(0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(MuteState::from_muted(muted))
}

/// Projects appended events and moves the stream's version to the last of them.
#[tracing::instrument(skip(tx, events))]
pub async fn apply<C: GenericClient>(
    tx: &C,
    app: &AppId,
    client: &ClientId,
    events: &[(Event, Recorded)],
) -> Result<(), StoreError> {
    let Some((_, last)) = events.last() else {
        return Ok(());
    };
    for (event, recorded) in events {
        match event {
            Event::RoomMuted { room } => {
                execute(
                    tx,
                    "INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (app_id, client_id, room_id)
                     DO UPDATE SET muted_at = excluded.muted_at, position = excluded.position",
                    &[
                        &app.as_str(),
                        &client.as_str(),
                        &room.as_str(),
                        &recorded.recorded_at,
                        &recorded.position,
                    ],
                )
                .await?;
            }
            Event::RoomUnmuted { room } => {
                execute(
                    tx,
                    "DELETE FROM room_mutes WHERE app_id = $1 AND client_id = $2 AND room_id = $3",
                    &[&app.as_str(), &client.as_str(), &room.as_str()],
                )
                .await?;
            }
        }
    }
    execute(
        tx,
        "UPDATE stream_versions SET version = $4
         WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3",
        &[
            &app.as_str(),
            &STREAM_TYPE_USER_PREFERENCES,
            &client.as_str(),
            &last.stream_version,
        ],
    )
    .await?;
    Ok(())
}
