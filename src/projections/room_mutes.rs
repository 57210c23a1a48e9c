//! `room_mutes`: which rooms each user muted, when, and in which order — the read model
//! behind `GET /me`, every mute's answer and "who muted this room".
//!
//! Everything that knows its shape is in this file: the row types, the SQL each event type
//! applies on the live path ([`APPEND`]), the reads, the COPY layout and scans of
//! rebuild and verify, and the fold ([`UserMutes`]) that says what a user's rows must be.
//! A property test (`tests/api/projection.rs`) runs generated event sequences through the
//! live SQL and through the fold and expects the same rows. Adding a column starts here
//! (and a migration); so does an event type, after the domain's event and decider.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::Step;
use crate::domain::{AppId, ClientId, Event, MuteState, RoomId, RoomMute};
use crate::store::batches::Batches;
use crate::store::shadow::ShadowRow;
use crate::store::stream::append_statement;
use crate::store::{query, query_opt, GenericClient, StoreError};

/// The table, and the name under which a rebuild records how far it read the log.
pub const TABLE: &str = "room_mutes";

/// One room a user muted: a `room_mutes` row without its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub room: RoomId,
    /// When the event that muted it was recorded.
    pub muted_at: DateTime<Utc>,
    /// That event's log position: orders a user's mutes, oldest first.
    pub position: i64,
    /// When the mute ends; `None`: never.
    pub until: Option<DateTime<Utc>>,
}

/// A `room_mutes` row as stored, ids unchecked: verify reports a row it cannot read as a
/// difference rather than stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuteRow {
    pub app: String,
    pub client: String,
    pub room: String,
    pub muted_at: DateTime<Utc>,
    pub position: i64,
    pub until: Option<DateTime<Utc>>,
}

impl MuteRow {
    /// Whether the row still mutes at `now`: rows past their end are left out of every
    /// comparison (the sweep deletes them whenever it gets to them).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// One user's rows as the log says they must be: the fold of their stream, the Rust twin of
/// the live steps in [`APPEND`]. A user has few mutes, so a vector in mute order keeps
/// the fold small and the order free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMutes {
    mutes: Vec<Mute>,
}

impl UserMutes {
    /// A user's rows as the table holds them, oldest mute first: folding the stream's later
    /// events onto them gives what folding the whole stream would.
    pub fn from_mutes(mutes: Vec<Mute>) -> Self {
        UserMutes { mutes }
    }

    /// Applies one event recorded at `position` and `recorded_at`, as the live step does
    /// and as the decider's `evolve` folds it: a mute replaces any row of the room (muted
    /// since this event, until its end, last in order); an unmute removes it if it is there; pause events leave the rows alone.
    pub fn apply(&mut self, event: &Event, position: i64, recorded_at: DateTime<Utc>) {
        match event {
            Event::RoomMuted { room, until } => {
                self.mutes.retain(|m| &m.room != room);
                self.mutes.push(Mute {
                    room: room.clone(),
                    muted_at: recorded_at,
                    position,
                    until: *until,
                });
            }
            Event::RoomUnmuted { room } => self.mutes.retain(|m| &m.room != room),
            Event::NotificationsPaused { .. } | Event::NotificationsResumed => {}
        }
    }

    /// Oldest mute first.
    pub fn mutes(&self) -> &[Mute] {
        &self.mutes
    }

    pub fn get(&self, room: &str) -> Option<&Mute> {
        self.mutes.iter().find(|m| m.room.as_str() == room)
    }

    /// The rows to write for this user, in primary-key order (byte order of the room,
    /// which is the order of the C and C.UTF-8 collations): PostgreSQL's sort notices
    /// presorted input.
    pub fn records<'a>(&'a self, app: &'a str, client: &'a str) -> Vec<MuteRecord<'a>> {
        let mut records: Vec<MuteRecord<'a>> = self
            .mutes
            .iter()
            .map(|m| MuteRecord {
                app,
                client,
                room: m.room.as_str(),
                muted_at: m.muted_at,
                position: m.position,
                until: m.until,
            })
            .collect();
        records.sort_unstable_by_key(|r| r.room);
        records
    }
}

/// `RoomMuted` adds the row, or replaces the room's row (its time, place and end), as
/// [`UserMutes::apply`] folds it. `$11` is the room, `$12` its end (NULL: forever).
const APPEND_MUTED: &str = append_statement!(
    "INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position, until)
     SELECT $1, $3, $11, recorded_at, position, $12 FROM appended
     ON CONFLICT (app_id, client_id, room_id) DO UPDATE
     SET muted_at = excluded.muted_at, position = excluded.position, until = excluded.until"
);

/// `RoomUnmuted` removes the row. `$11` is the room.
const APPEND_UNMUTED: &str = append_statement!(
    "DELETE FROM room_mutes
     WHERE app_id = $1 AND client_id = $3 AND room_id = $11
       AND EXISTS (SELECT 1 FROM appended)"
);

/// The append statements of this model's events, indexed by [`step`]'s `statement`.
pub const APPEND: [&str; 2] = [APPEND_MUTED, APPEND_UNMUTED];

/// Which of [`APPEND`] applies `event`, and its parameters from `$11` on; `None` for the
/// events of other read models.
pub fn step(event: &Event) -> Option<Step<'_>> {
    match event {
        Event::RoomMuted { room, until } => Some(Step {
            statement: 0,
            params: vec![Box::new(room.as_str()), Box::new(*until)],
        }),
        Event::RoomUnmuted { room } => Some(Step {
            statement: 1,
            params: vec![Box::new(room.as_str())],
        }),
        Event::NotificationsPaused { .. } | Event::NotificationsResumed => None,
    }
}

/// The load statement's columns for this model (`$1` app, `$3` user): the user's mutes in
/// mute order, expired ones included (the decider tells them apart with the load's clock).
/// Each column is a scalar subquery, so `room_mutes` is locked after `stream_versions`
/// (the order of the statement's text), the order writers and the rebuild's swap take.
/// One scan with `FROM (SELECT array_agg …)` was 8% faster, but its FROM locked
/// `room_mutes` first and deadlocked with the swap's `LOCK TABLE`.
macro_rules! load_columns {
    () => {
        "ARRAY(SELECT room_id FROM room_mutes
               WHERE app_id = $1 AND client_id = $3 ORDER BY position),
         ARRAY(SELECT muted_at FROM room_mutes
               WHERE app_id = $1 AND client_id = $3 ORDER BY position),
         ARRAY(SELECT until FROM room_mutes
               WHERE app_id = $1 AND client_id = $3 ORDER BY position)"
    };
}
pub(crate) use load_columns;

/// How many columns [`load_columns`] has.
pub const LOAD_COLUMNS: usize = 3;

/// Decodes the mutes from the [`load_columns`] from `column` on.
pub fn state(row: &Row, column: usize) -> Result<MuteState, StoreError> {
    state_from_columns(row.get(column), row.get(column + 1), row.get(column + 2))
}

fn corrupt(err: impl ToString) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

/// The state from stored rooms, times and ends, in the order given (mute order).
fn state_from_columns(
    rooms: Vec<String>,
    since: Vec<DateTime<Utc>>,
    until: Vec<Option<DateTime<Utc>>>,
) -> Result<MuteState, StoreError> {
    let mutes = rooms
        .into_iter()
        .zip(since)
        .zip(until)
        .map(|((room, since), until)| {
            Ok(RoomMute {
                room: RoomId::parse(room).map_err(corrupt)?,
                since,
                until,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(MuteState::from_mutes(mutes))
}

/// A mute in force by the database's clock. The same condition on every read, so the
/// reads agree on when a mute ended.
macro_rules! in_force {
    ($alias:literal) => {
        concat!("(", $alias, "until IS NULL OR ", $alias, "until > now())")
    };
}

const MUTED_ROOMS: &str = concat!(
    "SELECT room_id, muted_at, until FROM room_mutes WHERE app_id = $1 AND client_id = $2 AND ",
    in_force!(""),
    " ORDER BY position"
);

/// A user's mutes in force, oldest mute first.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn muted_rooms<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<MuteState, StoreError> {
    let rows = query(db, MUTED_ROOMS, &[&app.as_str(), &client.as_str()]).await?;
    state_from_columns(
        rows.iter().map(|row| row.get(0)).collect(),
        rows.iter().map(|row| row.get(1)).collect(),
        rows.iter().map(|row| row.get(2)).collect(),
    )
}

fn client_id(raw: String) -> Result<ClientId, StoreError> {
    ClientId::parse(raw).map_err(corrupt)
}

/// Which of `clients` muted `room` (mutes in force), sorted by id, each once; `None` when
/// the room is not in the app. One statement: the room lookup and the muters' lookup travel
/// together. Served by the index `room_mutes_room_client_idx (app_id, room_id, client_id)
/// INCLUDE (until)`, index only.
///
/// The ids are joined as a set (`unnest`) rather than tested with `client_id = ANY($3)`:
/// once PostgreSQL switches the prepared statement to its generic plan, `= ANY` of a
/// parameter is a linear search per index entry (about 0.5 s for 1,000 ids against a
/// room of 50,000 muters, against 11 ms for the join; docs/api.md).
#[tracing::instrument(skip(db, clients), fields(clients = clients.len()))]
pub async fn muted_among<C: GenericClient>(
    db: &C,
    app: &AppId,
    room: &RoomId,
    clients: &[ClientId],
) -> Result<Option<Vec<ClientId>>, StoreError> {
    let ids: Vec<&str> = clients.iter().map(ClientId::as_str).collect();
    let row = query_opt(
        db,
        concat!(
            "SELECT ARRAY(SELECT m.client_id
                          FROM unnest($3::text[]) AS wanted(client_id)
                          JOIN room_mutes m ON m.app_id = $1 AND m.room_id = $2
                                           AND m.client_id = wanted.client_id
                          WHERE ",
            in_force!("m."),
            ")
             FROM rooms r WHERE r.app_id = $1 AND r.room_id = $2"
        ),
        &[&app.as_str(), &room.as_str(), &ids],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut muted = row.get::<_, Vec<String>>(0);
    muted.sort_unstable();
    muted.dedup();
    muted
        .into_iter()
        .map(client_id)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// One who muted a room, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Muter {
    pub client_id: ClientId,
    pub muted_at: DateTime<Utc>,
}

/// Up to `limit` muters of `room` (mutes in force) with ids after `after` (keyset paging,
/// id order); `None` when the room is not in the app.
#[tracing::instrument(skip(db))]
pub async fn muters_page<C: GenericClient>(
    db: &C,
    app: &AppId,
    room: &RoomId,
    after: Option<&ClientId>,
    limit: i64,
) -> Result<Option<Vec<Muter>>, StoreError> {
    // No user id is empty, so '' starts at the first; a plain `client_id > $3` keeps the
    // range an index condition, which `$3 IS NULL OR …` would not.
    let after = after.map_or("", ClientId::as_str);
    // The room row comes first so that an unknown room (no row) differs from a room nobody
    // muted (one row of NULLs).
    let rows = query(
        db,
        concat!(
            "SELECT m.client_id, m.muted_at
             FROM rooms r
             LEFT JOIN LATERAL (
                 SELECT client_id, muted_at FROM room_mutes
                 WHERE app_id = r.app_id AND room_id = r.room_id AND client_id > $3 AND ",
            in_force!(""),
            " ORDER BY client_id LIMIT $4
             ) m ON true
             WHERE r.app_id = $1 AND r.room_id = $2
             ORDER BY m.client_id"
        ),
        &[&app.as_str(), &room.as_str(), &after, &limit],
    )
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    rows.iter()
        .filter_map(|row| {
            let id: Option<String> = row.get(0);
            id.map(|id| {
                Ok(Muter {
                    client_id: client_id(id)?,
                    muted_at: row.get(1),
                })
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The columns every scan reads, in [`mute_row`]'s order.
const COLUMNS: &str = "app_id, client_id, room_id, muted_at, position, until";

fn mute_row(row: &Row) -> Result<MuteRow, StoreError> {
    Ok(MuteRow {
        app: row.get(0),
        client: row.get(1),
        room: row.get(2),
        muted_at: row.get(3),
        position: row.get(4),
        until: row.get(5),
    })
}

/// Every row, user after user in byte order of `(app, user)`: the order of
/// [`crate::store::log_reader::in_stream_order`] with
/// [`crate::store::log_reader::UserOrder::Bytes`], for merging.
#[tracing::instrument(skip(tx))]
pub async fn scan_by_user<'t, 'a>(
    tx: &'t tokio_postgres::Transaction<'a>,
    batch: i32,
) -> Result<Batches<'t, 'a, MuteRow>, StoreError> {
    Batches::open(
        tx,
        &format!(
            "SELECT {COLUMNS} FROM room_mutes
             ORDER BY app_id COLLATE \"C\", client_id COLLATE \"C\""
        ),
        &[],
        batch,
        mute_row,
    )
    .await
}

/// These users' rows in the shadow table, grouped by `(app, user)`, each oldest mute first.
#[tracing::instrument(skip_all, fields(streams = apps.len()))]
pub async fn shadow_rows(
    tx: &Transaction<'_>,
    apps: &[&str],
    clients: &[&str],
) -> Result<HashMap<(String, String), Vec<MuteRow>>, StoreError> {
    let rows = query(
        tx,
        &format!(
            "SELECT {COLUMNS} FROM room_mutes_rebuild
             WHERE (app_id, client_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
             ORDER BY position"
        ),
        &[&apps, &clients],
    )
    .await?;
    let mut users: HashMap<(String, String), Vec<MuteRow>> = HashMap::new();
    for row in &rows {
        let row = mute_row(row)?;
        users
            .entry((row.app.clone(), row.client.clone()))
            .or_default()
            .push(row);
    }
    Ok(users)
}

/// A row to write by COPY.
pub struct MuteRecord<'a> {
    pub app: &'a str,
    pub client: &'a str,
    pub room: &'a str,
    pub muted_at: DateTime<Utc>,
    pub position: i64,
    pub until: Option<DateTime<Utc>>,
}

impl ShadowRow for MuteRecord<'_> {
    const TABLE: &'static str = TABLE;
    const COPY: &'static str =
        "COPY room_mutes_rebuild (app_id, client_id, room_id, muted_at, position, until)";
    const TYPES: &'static [Type] = &[
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::INT8,
        Type::TIMESTAMPTZ,
    ];
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.app,
            &self.client,
            &self.room,
            &self.muted_at,
            &self.position,
            &self.until,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }

    fn fold(events: &[Event]) -> Vec<(String, i64)> {
        let mut mutes = UserMutes::default();
        for (position, event) in (1..).zip(events) {
            mutes.apply(event, position, at(position * 1000));
        }
        mutes
            .mutes()
            .iter()
            .map(|m| (m.room.as_str().to_owned(), m.position))
            .collect()
    }

    #[test]
    fn a_room_has_the_row_of_its_latest_mute() {
        let muted = |id| Event::RoomMuted {
            room: room(id),
            until: None,
        };
        let unmuted = |id| Event::RoomUnmuted { room: room(id) };
        assert_eq!(
            fold(&[muted("a"), muted("b"), muted("a"), unmuted("b"), muted("b")]),
            [("a".into(), 3), ("b".into(), 5)]
        );
        assert_eq!(fold(&[unmuted("a"), muted("a")]), [("a".into(), 2)]);
        let mut mutes = UserMutes::default();
        mutes.apply(&muted("a"), 1, at(1000));
        let timed = Event::RoomMuted {
            room: room("a"),
            until: Some(at(9000)),
        };
        mutes.apply(&timed, 2, at(2000));
        assert_eq!(mutes.get("a").unwrap().until, Some(at(9000)));
        assert_eq!(mutes.get("a").unwrap().muted_at, at(2000));
    }

    #[test]
    fn records_are_in_key_order() {
        let mut mutes = UserMutes::default();
        for (position, id) in (1..).zip(["b", "c", "a"]) {
            let event = Event::RoomMuted {
                room: room(id),
                until: None,
            };
            mutes.apply(&event, position, at(0));
        }
        let rooms: Vec<&str> = mutes.records("app", "u").iter().map(|r| r.room).collect();
        assert_eq!(rooms, ["a", "b", "c"]);
    }
}
