//! The write path of one user's preference stream, in two round trips:
//!
//! 1. [`lock`]: BEGIN, room check, stream lock and state load;
//! 2. [`commit`]: append, projection, version and COMMIT.
//!
//! Each prepares its statements first (free once cached on the connection) and then sends
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

/// A user's stream, locked for the rest of the unit's transaction.
#[derive(Debug)]
pub struct Locked {
    pub room_exists: bool,
    pub version: i32,
    pub state: MuteState,
}

/// Begins a transaction, checks `room` exists in the app, locks the user's stream and
/// loads its state, in one round trip. The state is read after the lock is granted (its
/// own statement, so its own snapshot), so it includes every write that queued before us.
#[tracing::instrument(skip(unit))]
pub async fn lock(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    room: &RoomId,
) -> Result<Locked, StoreError> {
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
    Ok(Locked {
        room_exists: room_row?.is_some(),
        version: version?.get(0),
        state: projection::rooms_from_rows(&rooms?)?,
    })
}

/// Appends `events` after `expected_version`, projects them and commits, in one round
/// trip. If the append fails (a stale version: [`StoreError::Conflict`]), the statements
/// after it fail too and PostgreSQL turns the COMMIT into a rollback: nothing is half-done.
#[tracing::instrument(skip(unit, events, metadata), fields(events = events.len()))]
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
    let (recorded, projected, committed) = futures_util::join!(
        event_log::insert_all(db, &insert, app, client, expected_version, events, metadata),
        projection::project(db, &projector, app, client, expected_version, events),
        unit.commit(),
    );
    // The first failure is the cause; later ones only echo the aborted transaction.
    let recorded = recorded?;
    projected?;
    committed?;
    Ok(recorded)
}
