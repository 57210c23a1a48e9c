//! The write path of one user's preference stream, and its bookkeeping: the stream's
//! version in `stream_versions`, the row every writer locks first.
//!
//! Optimistic first, in two round trips: [`load`] the state and its version without a
//! transaction, then [`append`]: one statement that moves the stream's version, appends
//! the event at that version and applies it to the read model, atomic on its own (no
//! BEGIN/COMMIT). The unique stream-version key rejects the append if anyone appended since
//! the load. A command that decides nothing stops after the load: no transaction, no WAL.
//!
//! After a conflict, [`lock`] takes the stream's row lock (BEGIN, room check, lock and
//! load in one round trip) so the retry cannot be overtaken by other retries.
//!
//! Which read model the statements keep, and how, comes from an [`InlineProjection`]; this
//! module holds only what every stream has: its version and its events.
//!
//! Each function prepares its statements first (free once cached on the connection) and then sends
//! everything at once: tokio-postgres pipelines requests in the order they are first
//! polled, and PostgreSQL runs them in that order. Preparing first matters: a statement
//! still being prepared would be sent late, after a COMMIT that had none to wait for.

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::{GenericClient, StoreError, Unit};
use crate::domain::{AppId, ClientId, Event, EventMetadata, RoomId, STREAM_TYPE_USER_PREFERENCES};
use crate::projections::InlineProjection;

/// A user's stream as one statement read it: its version and the read model's state at
/// that version.
#[derive(Debug)]
pub struct LoadedStream<S> {
    pub room_exists: bool,
    pub version: i32,
    /// The database's clock when the statement ran: what a decision is made at, so the
    /// application servers' clocks do not matter.
    pub now: DateTime<Utc>,
    /// The read model the state was read from (the oid of its `stream_versions`).
    pub read_model: u32,
    pub state: S,
}

/// What the log assigned to an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub event_id: Uuid,
    pub position: i64,
    pub stream_version: i32,
    pub recorded_at: DateTime<Utc>,
}

/// The columns every read of a stream starts with, in one statement, so one snapshot:
/// whether the command's room exists, the stream's version, the database's clock
/// (`statement_timestamp()`: the statement's own start, also inside a retry's transaction,
/// which began before it waited for the lock), and which read model answered: the oid of
/// `stream_versions`, which a rebuild's swap replaces with a new table.
///
/// Parameters: $1 app, $2 stream type, $3 user, $4 room (NULL for a command about no room,
/// which then does not exist).
macro_rules! stream_head_columns {
    () => {
        "EXISTS (SELECT 1 FROM rooms WHERE app_id = $1 AND room_id = $4),
         coalesce((SELECT version FROM stream_versions
                   WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3), 0),
         statement_timestamp(),
         to_regclass('stream_versions')::oid"
    };
}
pub(crate) use stream_head_columns;

/// The statement that loads a stream, around a read model's state expressions: the version
/// and the state always belong together.
macro_rules! load_statement {
    ($($state:expr),+) => {
        concat!("SELECT ", $crate::store::stream::stream_head_columns!(), ",\n", $($state),+)
    };
}
pub(crate) use load_statement;

/// Reads what a stream's state is vouched for by, without the state: see [`probe`].
const PROBE: &str = concat!("SELECT ", stream_head_columns!());

/// Makes sure the stream has a version row to lock, without waiting on anyone.
const CREATE_STREAM: &str = "INSERT INTO stream_versions (app_id, stream_type, stream_id, version)
     VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING";

/// Writers to one user queue on this row lock instead of failing each other, while
/// writers to different users never wait for one another.
const LOCK_STREAM: &str = "SELECT version FROM stream_versions
     WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 FOR UPDATE";

/// Loads the user's stream (and whether `room`, if any, exists in the app) without locking
/// it.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn load<P: InlineProjection, C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    room: Option<&RoomId>,
) -> Result<LoadedStream<P::State>, StoreError> {
    let statement = db.prepare_cached(P::LOAD).await?;
    load_prepared::<P, C>(db, &statement, app, client, room).await
}

/// The stream's version, whether `room` exists and the database's clock, without the state:
/// enough to tell whether a state remembered at some version is still the stream's.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn probe<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    room: Option<&RoomId>,
) -> Result<LoadedStream<()>, StoreError> {
    let statement = db.prepare_cached(PROBE).await?;
    read_stream(db, &statement, app, client, room, |_| Ok(())).await
}

async fn load_prepared<P: InlineProjection, C: GenericClient>(
    db: &C,
    statement: &Statement,
    app: &AppId,
    client: &ClientId,
    room: Option<&RoomId>,
) -> Result<LoadedStream<P::State>, StoreError> {
    read_stream(db, statement, app, client, room, |row| P::state(row, 4)).await
}

/// Runs a statement that starts with [`stream_head_columns`] and reads what follows them
/// with `state`.
async fn read_stream<C: GenericClient, S>(
    db: &C,
    statement: &Statement,
    app: &AppId,
    client: &ClientId,
    room: Option<&RoomId>,
    state: impl FnOnce(&Row) -> Result<S, StoreError>,
) -> Result<LoadedStream<S>, StoreError> {
    let row = db
        .query_one(
            statement,
            &[
                &app.as_str(),
                &STREAM_TYPE_USER_PREFERENCES,
                &client.as_str(),
                &room.map(RoomId::as_str),
            ],
        )
        .await?;
    Ok(LoadedStream {
        room_exists: row.get(0),
        version: row.get(1),
        now: row.get(2),
        read_model: row.get(3),
        state: state(&row)?,
    })
}

/// Begins a transaction, locks the user's stream and then [`load`]s it, in one round
/// trip. The load is its own statement, sent after the lock, so its snapshot is taken once
/// the lock is granted and includes every write that queued before us.
#[tracing::instrument(level = "debug", skip(unit))]
pub async fn lock<P: InlineProjection>(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    room: Option<&RoomId>,
) -> Result<LoadedStream<P::State>, StoreError> {
    let db = unit.client();
    let (create, lock, load) = futures_util::try_join!(
        db.prepare_cached(CREATE_STREAM),
        db.prepare_cached(LOCK_STREAM),
        db.prepare_cached(P::LOAD),
    )?;
    let key: [&(dyn ToSql + Sync); 3] = [
        &app.as_str(),
        &STREAM_TYPE_USER_PREFERENCES,
        &client.as_str(),
    ];
    let (begun, created, locked, loaded) = futures_util::join!(
        unit.begin(),
        db.execute(&create, &key),
        db.execute(&lock, &key),
        load_prepared::<P, _>(db, &load, app, client, room),
    );
    begun?;
    created?;
    locked?;
    loaded
}

/// One event's append and the read model's step for it, as a single statement. Its parts
/// run in a fixed order because each reads the one before: `head` moves the stream's
/// version row (taking its row lock), `appended` inserts the event at that version (the
/// unique key rejects a stale one, failing the whole statement), and the read model's step
/// applies the appended event.
///
/// `head` also checks what a command decided on a state remembered from an earlier request
/// (`service::stream_cache`) took on trust: that the event's room (`$8->'room'`) exists, that
/// the stream holds the event before the new version (a version remembered past what the
/// database holds, after a failover lost commits, must not leave a gap), and that the read
/// model is still the one the state was read from (`$10`, the oid of `stream_versions`; a
/// rebuild swaps in a new table; NULL: not checked). If any fails it moves the version to
/// NULL, which the column refuses: the statement fails, and with it the transaction of any
/// other events appended with it ([`StoreError::NotAppended`]). Every writer of a stream thus locks the version row before
/// anything else, so optimistic writers and locked retries cannot deadlock.
///
/// The metadata's personal fields (address, port, user agent) go to `event_personal_data`
/// in `set_aside`, never into the immutable row (docs/privacy.md): still one statement,
/// and the V9 trigger that does the same for the previous release's appends is not run.
///
/// `recorded_at` is read from the clock once the version row is locked, not taken from the
/// transaction's start (`now()`): a retry begins its transaction before it waits for the
/// lock, so its start can precede an event that commits ahead of it. Holding the lock, the
/// clock is past every earlier event of the stream; `greatest` with the previous event
/// keeps the order even if the server's clock steps back.
///
/// The step sees the CTE `appended(position, recorded_at)` and the parameters: $1 app, $2
/// stream type, $3 user, $4 new version, $5 event id, $6 event type, $7 schema version, $8
/// data, $9 metadata, $10 the read model decided on, and its own from $11 on.
macro_rules! append_statement {
    ($step:literal) => {
        concat!(
            "WITH head AS (
                INSERT INTO stream_versions AS s (app_id, stream_type, stream_id, version)
                VALUES ($1, $2, $3,
                        CASE WHEN (NOT $8::jsonb ? 'room'
                                   OR EXISTS (SELECT 1 FROM rooms
                                              WHERE app_id = $1 AND room_id = $8::jsonb->>'room'))
                              AND ($4::integer = 1
                                   OR EXISTS (SELECT 1 FROM events e
                                              WHERE e.app_id = $1 AND e.stream_type = $2
                                                AND e.stream_id = $3
                                                AND e.stream_version = $4::integer - 1))
                              AND ($10::oid IS NULL
                                   OR $10::oid = to_regclass('stream_versions')::oid)
                             THEN $4::integer END)
                ON CONFLICT (app_id, stream_type, stream_id)
                DO UPDATE SET version = excluded.version
                RETURNING s.version),
            appended AS (
                INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                                    event_type, schema_version, data, metadata, recorded_at)
                SELECT $5, $1, $2, $3, head.version, $6, $7, $8,
                       $9::jsonb - ARRAY['address', 'port', 'userAgent'],
                       greatest(clock_timestamp(),
                                (SELECT e.recorded_at FROM events e
                                 WHERE e.app_id = $1 AND e.stream_type = $2 AND e.stream_id = $3
                                   AND e.stream_version = head.version - 1))
                FROM head
                RETURNING position, recorded_at),
            set_aside AS (
                INSERT INTO event_personal_data (position, recorded_at, address, port, user_agent)
                SELECT position, recorded_at, $9::jsonb->>'address',
                       ($9::jsonb->>'port')::integer, $9::jsonb->>'userAgent'
                FROM appended
                WHERE coalesce($9::jsonb->>'address', $9::jsonb->>'port',
                               $9::jsonb->>'userAgent') IS NOT NULL),
            projected AS (",
            $step,
            ")
            SELECT position, recorded_at FROM appended"
        )
    };
}
pub(crate) use append_statement;

/// Appends `events` after `expected_version` and applies them to `P`. A single event
/// outside a transaction is one statement in one round trip, atomic by itself; several
/// events, or a unit whose transaction [`lock`] began, are pipelined with BEGIN (when
/// needed) and COMMIT. If an append fails (a stale version: [`StoreError::Conflict`]), the
/// statements after it fail too and PostgreSQL turns the COMMIT into a rollback: nothing is
/// half-done.
///
/// The events are appended as given: deciding whether they should be is the caller's.
/// `read_model`: the read model the caller decided on, when it decided on a state it did not
/// read in this unit (see [`append_statement`]); a mismatch, a missing room or a missing
/// predecessor fails with [`StoreError::NotAppended`].
#[tracing::instrument(level = "debug", skip(unit, events, metadata), fields(events = events.len()))]
pub async fn append<P: InlineProjection>(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    expected_version: i32,
    read_model: Option<u32>,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<Vec<Recorded>, StoreError> {
    let appends: Vec<_> = (expected_version + 1..)
        .zip(events)
        .map(|(version, event)| Append {
            app,
            client,
            version,
            read_model,
            event,
            metadata,
        })
        .collect();
    append_each::<P>(unit, &appends)
        .await
        .map_err(|refused| refused.error)
}

/// One event to append to a user's stream at `version`, decided on `read_model` (see
/// [`append`]).
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub app: &'a AppId,
    pub client: &'a ClientId,
    pub version: i32,
    pub read_model: Option<u32>,
    pub event: &'a Event,
    pub metadata: &'a EventMetadata,
}

/// Why [`append_each`] appended nothing.
#[derive(Debug)]
pub struct Refused {
    /// The append that failed first (the others only echo its aborted transaction); `None`:
    /// no append failed, the transaction around them did (BEGIN, COMMIT, preparing).
    pub append: Option<usize>,
    pub error: StoreError,
    /// It waited on a lock past `lock_timeout` (55P03): someone else holds that user's
    /// stream, or a whole table.
    pub lock_timed_out: bool,
}

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        Refused {
            append: None,
            error,
            lock_timed_out: false,
        }
    }
}

/// Appends every one of `appends` and applies them to `P`, all or none, in one round trip,
/// telling which append failed: [`append`] for events that may belong to different users'
/// streams (a group commit). Rows are locked in the order given: callers appending several
/// users' events put them in one order (by app and user), so that two such transactions
/// cannot deadlock.
#[tracing::instrument(level = "debug", skip_all, fields(events = appends.len()))]
pub async fn append_each<P: InlineProjection>(
    unit: &Unit,
    appends: &[Append<'_>],
) -> Result<Vec<Recorded>, Refused> {
    let db = unit.client();
    let statements =
        futures_util::future::try_join_all(P::APPEND.iter().map(|sql| db.prepare_cached(sql)))
            .await
            .map_err(StoreError::from)?;
    let appends = appends.iter().enumerate().map(|(index, append)| {
        let step = P::step(append.event);
        let statement = &statements[step.statement];
        async move {
            let event_id = super::new_event_id();
            let (app, client) = (append.app.as_str(), append.client.as_str());
            let (event_type, data) = (append.event.event_type(), Json(append.event.data()));
            let schema_version = append.event.schema_version();
            let metadata = Json(append.metadata);
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![
                &app,
                &STREAM_TYPE_USER_PREFERENCES,
                &client,
                &append.version,
                &event_id,
                &event_type,
                &schema_version,
                &data,
                &metadata,
                &append.read_model,
            ];
            params.extend(step.params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
            let row = db
                .query_one(statement, &params)
                .await
                .map_err(|err| Refused {
                    append: Some(index),
                    lock_timed_out: err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE),
                    error: err.into(),
                })?;
            Ok::<_, Refused>(Recorded {
                event_id,
                position: row.get(0),
                stream_version: append.version,
                recorded_at: row.get(1),
            })
        }
    });
    let single = appends.len() == 1;
    // Pipelined, the failing append's answer arrives before those of the appends after it,
    // which only echo the aborted transaction: the first error seen is the cause.
    let appends = futures_util::future::try_join_all(appends);
    if single && !unit.is_open() {
        return appends.await;
    }
    let begin = async {
        match unit.is_open() {
            true => Ok(()),
            false => unit.begin().await,
        }
    };
    let (begun, recorded, committed) = futures_util::join!(begin, appends, unit.commit());
    begun?;
    let recorded = recorded?;
    committed?;
    Ok(recorded)
}
