//! The write path of one user's preference stream.
//!
//! Optimistic first, in two round trips: [`read`] the state and its version without a
//! transaction, then [`commit`]: one statement that moves the stream's version, appends
//! the event at that version and projects it, atomic on its own (no BEGIN/COMMIT). The
//! unique stream-version key rejects the append if anyone appended since the read. A
//! command that decides nothing stops after the read: no transaction, no WAL.
//!
//! After a conflict, [`lock`] takes the stream's row lock (BEGIN, room check, lock and
//! state load in one round trip) so the retry cannot be overtaken by other retries.
//!
//! Each function prepares its statements first (free once cached on the connection) and then sends
//! everything at once: tokio-postgres pipelines requests in the order they are first
//! polled, and PostgreSQL runs them in that order. Preparing first matters: a statement
//! still being prepared would be sent late, after a COMMIT that had none to wait for.

use tokio_postgres::types::Json;
use uuid::Uuid;

use tokio_postgres::Statement;

use super::{event_log::Recorded, projection, GenericClient, StoreError, Unit};
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
    read_prepared(db, &statement, app, client, room).await
}

async fn read_prepared<C: GenericClient>(
    db: &C,
    statement: &Statement,
    app: &AppId,
    client: &ClientId,
    room: &RoomId,
) -> Result<Snapshot, StoreError> {
    let row = db
        .query_one(
            statement,
            &[
                &app.as_str(),
                &STREAM_TYPE_USER_PREFERENCES,
                &client.as_str(),
                &room.as_str(),
            ],
        )
        .await?;
    Ok(Snapshot {
        room_exists: row.get(0),
        version: row.get(1),
        state: projection::state_from_ids(row.get::<_, Vec<String>>(2))?,
    })
}

/// Begins a transaction, locks the user's stream and then [`read`]s it, in one round
/// trip. The read is its own statement, sent after the lock, so its snapshot is taken once
/// the lock is granted and includes every write that queued before us.
#[tracing::instrument(level = "debug", skip(unit))]
pub async fn lock(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    room: &RoomId,
) -> Result<Snapshot, StoreError> {
    let db = unit.client();
    let (create, lock, read) = futures_util::try_join!(
        db.prepare_cached(projection::CREATE_STREAM),
        db.prepare_cached(projection::LOCK_STREAM),
        db.prepare_cached(READ_STREAM),
    )?;
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [
        &app.as_str(),
        &STREAM_TYPE_USER_PREFERENCES,
        &client.as_str(),
    ];
    let (begun, created, locked, snapshot) = futures_util::join!(
        unit.begin(),
        db.execute(&create, &key),
        db.execute(&lock, &key),
        read_prepared(db, &read, app, client, room),
    );
    begun?;
    created?;
    locked?;
    snapshot
}

/// One event's append and projection as a single statement. Its parts run in a fixed
/// order because each reads the one before: `head` moves the stream's version row (taking
/// its row lock), `appended` inserts the event at that version (the unique key rejects a
/// stale one, failing the whole statement), and the projection applies the appended event
/// to `room_mutes`. Every writer of a stream thus locks the version row before anything
/// else, so optimistic writers and locked retries cannot deadlock.
///
/// `recorded_at` is read from the clock once the version row is locked, not taken from the
/// transaction's start (`now()`): a retry begins its transaction before it waits for the
/// lock, so its start can precede an event that commits ahead of it. Holding the lock, the
/// clock is past every earlier event of the stream; `greatest` with the previous event
/// keeps the order even if the server's clock steps back.
///
/// Parameters: $1 app, $2 stream type, $3 user, $4 new version, $5 event id, $6 event
/// type, $7 schema version, $8 data, $9 metadata, $10 room.
macro_rules! append_and_project {
    ($projection:literal) => {
        concat!(
            "WITH head AS (
                INSERT INTO stream_versions AS s (app_id, stream_type, stream_id, version)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (app_id, stream_type, stream_id)
                DO UPDATE SET version = excluded.version
                RETURNING s.version),
            appended AS (
                INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                                    event_type, schema_version, data, metadata, recorded_at)
                SELECT $5, $1, $2, $3, head.version, $6, $7, $8, $9,
                       greatest(clock_timestamp(),
                                (SELECT e.recorded_at FROM events e
                                 WHERE e.app_id = $1 AND e.stream_type = $2 AND e.stream_id = $3
                                   AND e.stream_version = head.version - 1))
                FROM head
                RETURNING position, recorded_at),
            projected AS (",
            $projection,
            ")
            SELECT position, recorded_at FROM appended"
        )
    };
}

/// `RoomMuted` projects to a `room_mutes` row. A room muted already keeps its row and its
/// place, as `evolve` folds it (the decider never appends such an event, but the
/// projection and the fold must agree on any log).
const APPEND_MUTED: &str = append_and_project!(
    "INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position)
     SELECT $1, $3, $10, recorded_at, position FROM appended
     ON CONFLICT (app_id, client_id, room_id) DO NOTHING"
);

/// `RoomUnmuted` projects to removing the row.
const APPEND_UNMUTED: &str = append_and_project!(
    "DELETE FROM room_mutes
     WHERE app_id = $1 AND client_id = $3 AND room_id = $10
       AND EXISTS (SELECT 1 FROM appended)"
);

/// Appends `events` after `expected_version` and projects them. A single event outside a
/// transaction is one statement in one round trip, atomic by itself; several events, or a
/// unit whose transaction [`lock`] began, are pipelined with BEGIN (when needed) and
/// COMMIT. If an append fails (a stale version: [`StoreError::Conflict`]), the statements
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
    let (muted, unmuted) = futures_util::try_join!(
        db.prepare_cached(APPEND_MUTED),
        db.prepare_cached(APPEND_UNMUTED),
    )?;
    let metadata = Json(metadata);
    let appends = (expected_version + 1..)
        .zip(events)
        .map(|(version, event)| {
            let statement = match event {
                Event::RoomMuted { .. } => &muted,
                Event::RoomUnmuted { .. } => &unmuted,
            };
            let metadata = &metadata;
            async move {
                let event_id = Uuid::new_v4();
                let row = db
                    .query_one(
                        statement,
                        &[
                            &app.as_str(),
                            &STREAM_TYPE_USER_PREFERENCES,
                            &client.as_str(),
                            &version,
                            &event_id,
                            &event.event_type(),
                            &Event::SCHEMA_VERSION,
                            &Json(event.data()),
                            metadata,
                            &event.room().as_str(),
                        ],
                    )
                    .await?;
                Ok::<_, StoreError>(Recorded {
                    event_id,
                    position: row.get(0),
                    stream_version: version,
                    recorded_at: row.get(1),
                })
            }
        });
    let appends = futures_util::future::try_join_all(appends);
    if events.len() == 1 && !unit.is_open() {
        return appends.await;
    }
    let begin = async {
        match unit.is_open() {
            true => Ok(()),
            false => unit.begin().await,
        }
    };
    let (begun, recorded, committed) = futures_util::join!(begin, appends, unit.commit());
    // The first failure is the cause; later ones only echo the aborted transaction.
    begun?;
    let recorded = recorded?;
    committed?;
    Ok(recorded)
}
