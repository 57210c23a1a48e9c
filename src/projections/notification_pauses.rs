//! `notification_pauses`: whose notifications are all paused (do not disturb), since when
//! and until when — one row per paused user, behind `notificationEnabled` in the user object
//! and the `paused` answer of the push dispatcher's check.
//!
//! Everything that knows its shape is in this file: the row types, the SQL each pause event
//! applies on the live path, the reads, the COPY layout and scans of rebuild and verify, and
//! the fold ([`UserPause`]) that says what a user's row must be. The property test
//! (`tests/api/projection.rs`) compares the live SQL with the fold, as for `room_mutes`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::Step;
use crate::domain::{AppId, ClientId, Event, Pause};
use crate::store::batches::Batches;
use crate::store::shadow::ShadowRow;
use crate::store::stream::append_statement;
use crate::store::{query, query_one, query_opt, GenericClient, StoreError};

/// The table.
pub const TABLE: &str = "notification_pauses";

/// A user's pause as the log says it must be: the fold of their stream, the Rust twin of
/// the live steps in [`APPEND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    /// When the event that paused was recorded.
    pub paused_at: DateTime<Utc>,
    /// That event's log position.
    pub position: i64,
    /// When the pause ends; `None`: when resumed.
    pub until: Option<DateTime<Utc>>,
}

impl Paused {
    /// Whether the pause is still in force at `now`: ended ones are left out of every
    /// comparison, as expired mutes are (the sweep deletes them whenever it gets to them).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// A `notification_pauses` row as stored, ids unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRow {
    pub app: String,
    pub client: String,
    pub pause: Paused,
}

/// One user's row as the log says it must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserPause {
    pause: Option<Paused>,
}

impl UserPause {
    /// A user's row as the table holds it: folding the stream's later events onto it gives
    /// what folding the whole stream would.
    pub fn from_row(pause: Option<Paused>) -> Self {
        UserPause { pause }
    }

    /// Applies one event recorded at `position` and `recorded_at`, as the live step does
    /// and as the decider's `evolve` folds it: a pause replaces the row, a resume removes
    /// it; room events leave it alone.
    pub fn apply(&mut self, event: &Event, position: i64, recorded_at: DateTime<Utc>) {
        match event {
            Event::NotificationsPaused { until } => {
                self.pause = Some(Paused {
                    paused_at: recorded_at,
                    position,
                    until: *until,
                });
            }
            Event::NotificationsResumed => self.pause = None,
            Event::RoomMuted { .. } | Event::RoomUnmuted { .. } => {}
        }
    }

    pub fn pause(&self) -> Option<&Paused> {
        self.pause.as_ref()
    }

    /// The row to write for this user, if any.
    pub fn record<'a>(&self, app: &'a str, client: &'a str) -> Option<PauseRecord<'a>> {
        self.pause.map(|pause| PauseRecord { app, client, pause })
    }
}

/// `NotificationsPaused` adds or replaces the user's row, as [`UserPause::apply`] folds it.
/// `$11` is its end (NULL: until resumed).
const APPEND_PAUSED: &str = append_statement!(
    "INSERT INTO notification_pauses (app_id, client_id, paused_at, position, until)
     SELECT $1, $3, recorded_at, position, $11 FROM appended
     ON CONFLICT (app_id, client_id) DO UPDATE
     SET paused_at = excluded.paused_at, position = excluded.position, until = excluded.until"
);

/// `NotificationsResumed` removes the row.
const APPEND_RESUMED: &str = append_statement!(
    "DELETE FROM notification_pauses
     WHERE app_id = $1 AND client_id = $3 AND EXISTS (SELECT 1 FROM appended)"
);

/// The append statements of this model's events, indexed by [`step`]'s `statement`.
pub const APPEND: [&str; 2] = [APPEND_PAUSED, APPEND_RESUMED];

/// Which of [`APPEND`] applies `event`, and its parameters from `$11` on; `None` for the
/// events of other read models.
pub fn step(event: &Event) -> Option<Step<'_>> {
    match event {
        Event::NotificationsPaused { until } => Some(Step {
            statement: 0,
            params: vec![Box::new(*until)],
        }),
        Event::NotificationsResumed => Some(Step {
            statement: 1,
            params: Vec::new(),
        }),
        Event::RoomMuted { .. } | Event::RoomUnmuted { .. } => None,
    }
}

/// The load statement's columns for this model (`$1` app, `$3` user): the pause's start
/// and end, expired ones included (the decider tells them apart with the load's clock).
/// Scalar subqueries, so that the table is locked after `stream_versions` and
/// `room_mutes`, in the order of the statement's text and of the rebuild's swap.
macro_rules! load_columns {
    () => {
        "(SELECT paused_at FROM notification_pauses WHERE app_id = $1 AND client_id = $3),
         (SELECT until FROM notification_pauses WHERE app_id = $1 AND client_id = $3)"
    };
}
pub(crate) use load_columns;

/// Decodes the pause from the [`load_columns`] from `column` on.
pub fn state(row: &Row, column: usize) -> Option<Pause> {
    row.get::<_, Option<DateTime<Utc>>>(column)
        .map(|since| Pause {
            since,
            until: row.get(column + 1),
        })
}

/// A pause in force by the database's clock, the same condition as `room_mutes`' reads.
const IN_FORCE: &str = "(until IS NULL OR until > now())";

/// The user's pause in force, if any.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn pause_in_force<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<Option<Pause>, StoreError> {
    let row = query_opt(
        db,
        &format!(
            "SELECT paused_at, until FROM notification_pauses
             WHERE app_id = $1 AND client_id = $2 AND {IN_FORCE}"
        ),
        &[&app.as_str(), &client.as_str()],
    )
    .await?;
    Ok(row.map(|row| Pause {
        since: row.get(0),
        until: row.get(1),
    }))
}

/// Which of `clients` paused all notifications (pauses in force), sorted by id, each once.
/// The ids are joined as a set on the primary key, as `room_mutes::muted_among` does and
/// for the same reason (a generic plan's `= ANY` is a linear search).
#[tracing::instrument(skip(db, clients), fields(clients = clients.len()))]
pub async fn paused_among<C: GenericClient>(
    db: &C,
    app: &AppId,
    clients: &[ClientId],
) -> Result<Vec<ClientId>, StoreError> {
    let ids: Vec<&str> = clients.iter().map(ClientId::as_str).collect();
    let row = query_one(
        db,
        &format!(
            "SELECT ARRAY(SELECT client_id
                          FROM unnest($2::text[]) AS wanted(client_id)
                          JOIN notification_pauses USING (client_id)
                          WHERE app_id = $1 AND {IN_FORCE})"
        ),
        &[&app.as_str(), &ids],
    )
    .await?;
    let mut paused = row.get::<_, Vec<String>>(0);
    paused.sort_unstable();
    paused.dedup();
    paused
        .into_iter()
        .map(|id| ClientId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

/// The columns every scan reads, in [`pause_row`]'s order.
const COLUMNS: &str = "app_id, client_id, paused_at, position, until";

fn pause_row(row: &Row) -> Result<PauseRow, StoreError> {
    Ok(PauseRow {
        app: row.get(0),
        client: row.get(1),
        pause: Paused {
            paused_at: row.get(2),
            position: row.get(3),
            until: row.get(4),
        },
    })
}

/// Every row, in byte order of `(app, user)`, as `room_mutes::scan_by_user` reads its rows.
#[tracing::instrument(skip(tx))]
pub async fn scan_by_user<'t, 'a>(
    tx: &'t tokio_postgres::Transaction<'a>,
    batch: i32,
) -> Result<Batches<'t, 'a, PauseRow>, StoreError> {
    Batches::open(
        tx,
        &format!(
            "SELECT {COLUMNS} FROM notification_pauses
             ORDER BY app_id COLLATE \"C\", client_id COLLATE \"C\""
        ),
        &[],
        batch,
        pause_row,
    )
    .await
}

/// These users' rows in the shadow table, by `(app, user)`.
#[tracing::instrument(skip_all, fields(streams = apps.len()))]
pub async fn shadow_rows(
    tx: &Transaction<'_>,
    apps: &[&str],
    clients: &[&str],
) -> Result<HashMap<(String, String), Paused>, StoreError> {
    let rows = query(
        tx,
        &format!(
            "SELECT {COLUMNS} FROM notification_pauses_rebuild
             WHERE (app_id, client_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        ),
        &[&apps, &clients],
    )
    .await?;
    rows.iter()
        .map(|row| pause_row(row).map(|row| ((row.app, row.client), row.pause)))
        .collect()
}

/// A row to write by COPY.
pub struct PauseRecord<'a> {
    pub app: &'a str,
    pub client: &'a str,
    pub pause: Paused,
}

impl ShadowRow for PauseRecord<'_> {
    const TABLE: &'static str = TABLE;
    const COPY: &'static str =
        "COPY notification_pauses_rebuild (app_id, client_id, paused_at, position, until)";
    const TYPES: &'static [Type] = &[
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
            &self.pause.paused_at,
            &self.pause.position,
            &self.pause.until,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomId;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn the_row_is_the_latest_pause_until_resumed() {
        let mut pause = UserPause::default();
        pause.apply(&Event::NotificationsPaused { until: None }, 1, at(1000));
        pause.apply(
            &Event::RoomMuted {
                room: RoomId::parse("r").unwrap(),
                until: None,
            },
            2,
            at(2000),
        );
        pause.apply(
            &Event::NotificationsPaused {
                until: Some(at(9000)),
            },
            3,
            at(3000),
        );
        assert_eq!(
            pause.pause(),
            Some(&Paused {
                paused_at: at(3000),
                position: 3,
                until: Some(at(9000))
            })
        );
        assert!(pause.record("app", "u").is_some());
        pause.apply(&Event::NotificationsResumed, 4, at(4000));
        assert_eq!(pause.pause(), None);
        assert!(pause.record("app", "u").is_none());
    }

    #[test]
    fn only_pause_events_have_a_step_here() {
        assert_eq!(
            step(&Event::NotificationsPaused { until: None }).map(|s| s.statement),
            Some(0)
        );
        assert_eq!(
            step(&Event::NotificationsResumed).map(|s| s.statement),
            Some(1)
        );
        let unmuted = Event::RoomUnmuted {
            room: RoomId::parse("r").unwrap(),
        };
        assert!(step(&unmuted).is_none());
    }
}
