//! The write path of one user's preference stream.
//!
//! Optimistic first, in two round trips: [`read`] the state and its version without a
//! transaction, then [`commit`]: BEGIN, append at the next version, projection, version
//! and COMMIT. The unique stream-version key rejects the append if anyone appended since
//! the read. A command that decides nothing stops after the read: no transaction, no WAL.
//!
//! After a conflict, [`lock`] takes the stream's row lock (BEGIN, room check, lock and
//! state load in one round trip) so the retry cannot be overtaken by other retries.
//!
//! Each function prepares its statements first (free once cached on the connection) and then sends
//! everything at once: tokio-postgres pipelines requests in the order they are first
//! polled, and PostgreSQL runs them in that order. Preparing first matters: a statement
//! still being prepared would be sent late, after a COMMIT that had none to wait for.

use super::{
    directory, event_log, event_log::Recorded, projection, projection::Projector, GenericClient,
    StoreError, Unit,
};
use crate::domain::{
    AppId, ClientId, Event, EventMetadata, MuteState, RoomId, STREAM_TYPE_USER_PREFERENCES,
};

/// A user's stream as of one snapshot: its version and the state at that version.
#[derive(Debug)]
pub struct Snapshot {
    pub room_exists: bool,
    pub version: i32,
    pub state: MuteState,
}

/// One statement, so one snapshot: the version and the state always belong together.
const READ_STREAM: &str = "SELECT
    EXISTS (SELECT 1 FROM rooms WHERE app_id = $1 AND room_id = $4),
    coalesce((SELECT version FROM stream_versions
              WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3), 0),
    ARRAY(SELECT room_id FROM room_mutes
          WHERE app_id = $1 AND client_id = $3 ORDER BY position)";

/// Reads the user's stream (and whether `room` exists in the app) without locking it.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn read<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    room: &RoomId,
) -> Result<Snapshot, StoreError> {
    let statement = db.prepare_cached(READ_STREAM).await?;
    let row = db
        .query_one(
            &statement,
            &[
                &app.as_str(),
                &STREAM_TYPE_USER_PREFERENCES,
                &client.as_str(),
                &room.as_str(),
            ],
        )
        .await?;
    let muted = row
        .get::<_, Vec<String>>(2)
        .into_iter()
        .map(RoomId::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Snapshot {
        room_exists: row.get(0),
        version: row.get(1),
        state: MuteState::from_muted(muted),
    })
}

/// Begins a transaction, checks `room` exists in the app, locks the user's stream and
/// loads its state, in one round trip. The state is read after the lock is granted (its
/// own statement, so its own snapshot), so it includes every write that queued before us.
#[tracing::instrument(level = "debug", skip(unit))]
pub async fn lock(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    room: &RoomId,
) -> Result<Snapshot, StoreError> {
    let db = unit.client();
    let (room_exists, create, lock, load) = futures_util::try_join!(
        db.prepare_cached(directory::ROOM_EXISTS),
        db.prepare_cached(projection::CREATE_STREAM),
        db.prepare_cached(projection::LOCK_STREAM),
        db.prepare_cached(projection::MUTED_ROOMS),
    )?;
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [
        &app.as_str(),
        &STREAM_TYPE_USER_PREFERENCES,
        &client.as_str(),
    ];
    let room_key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&app.as_str(), &room.as_str()];
    let user_key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&app.as_str(), &client.as_str()];
    let (begun, room_row, created, version, rooms) = futures_util::join!(
        unit.begin(),
        db.query_opt(&room_exists, &room_key),
        db.execute(&create, &key),
        db.query_one(&lock, &key),
        db.query(&load, &user_key),
    );
    begun?;
    created?;
    Ok(Snapshot {
        room_exists: room_row?.is_some(),
        version: version?.get(0),
        state: projection::rooms_from_rows(&rooms?)?,
    })
}

/// Appends `events` after `expected_version`, projects them and commits, in one round
/// trip (beginning the transaction too, unless [`lock`] began it). If the append fails (a stale version: [`StoreError::Conflict`]), the statements
/// after it fail too and PostgreSQL turns the COMMIT into a rollback: nothing is half-done.
#[tracing::instrument(level = "debug", skip(unit, events, metadata), fields(events = events.len()))]
pub async fn commit(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    expected_version: i32,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<Recorded>, StoreError> {
    let db = unit.client();
    let (insert, projector) = futures_util::try_join!(
        async { Ok::<_, StoreError>(db.prepare_cached(event_log::INSERT_EVENT).await?) },
        Projector::prepare(db),
    )?;
    let begin = async {
        match unit.is_open() {
            true => Ok(()),
            false => unit.begin().await,
        }
    };
    let last_version = expected_version + events.len() as i32;
    let (begun, versioned, recorded, projected, committed) = futures_util::join!(
        begin,
        projection::set_version(db, &projector, app, client, last_version),
        event_log::insert_all(db, &insert, app, client, expected_version, events, metadata),
        projection::project(db, &projector, app, client, expected_version, events),
        unit.commit(),
    );
    // The first failure is the cause; later ones only echo the aborted transaction.
    begun?;
    versioned?;
    let recorded = recorded?;
    projected?;
    committed?;
    Ok(recorded)
}
