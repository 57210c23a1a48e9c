//! Read models. Each one's module holds everything that knows its shape: its row type, the
//! SQL that keeps it on the live path, the scans and COPY layout of rebuild and verify, its
//! reads, and the fold that says what its rows must be (docs/design.md §4). Adding an event
//! type or a column starts in that module.

pub mod notification_pauses;
pub mod room_mutes;
pub mod user_rows;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::{Event, MuteState};
use crate::store::stream::load_statement;
use crate::store::StoreError;

/// A read model kept by the append itself: the store's append statement
/// ([`crate::store::stream::append`]) ends with this model's step for the event, so the log
/// and the model change in one statement (one round trip, atomic on its own) and a command's
/// answer reads its own write. The state a command decides on is read from the model too,
/// in the statement that reads the stream's version, so both come from one snapshot.
///
/// Like an event handler run in the append's transaction, but as SQL that becomes part of
/// the append statement rather than statements of its own: the write path stays one
/// statement per event.
pub trait InlineProjection {
    /// What a command decides on, as this model holds it.
    type State;

    /// The statement that loads a stream: [`crate::store::stream::load_statement`] around
    /// SQL expressions for this model's state of the stream (`$1` app, `$3` stream id).
    const LOAD: &'static str;

    /// Decodes the state from the columns from `column` on of a [`Self::LOAD`] row.
    fn state(row: &Row, column: usize) -> Result<Self::State, StoreError>;

    /// One append statement per kind of step: [`crate::store::stream::append_statement`]
    /// around the SQL that applies an event to this model.
    const APPEND: &'static [&'static str];

    /// Which of [`Self::APPEND`] appends `event`, and the parameters of its step, bound from
    /// `$11` on.
    fn step(event: &Event) -> Step<'_>;
}

/// How a read model applies one event: an index into [`InlineProjection::APPEND`] and the
/// step's own parameters.
pub struct Step<'a> {
    pub statement: usize,
    pub params: Vec<Box<dyn ToSql + Sync + Send + 'a>>,
}

/// A user's preference stream as the append keeps it: `room_mutes` and
/// `notification_pauses`, each event applied by the one model it concerns, and both
/// models' state read by one load statement, in the table order of the rebuild's swap
/// (`stream_versions`, `room_mutes`, `notification_pauses`).
pub struct UserPreferences;

impl InlineProjection for UserPreferences {
    type State = MuteState;

    const LOAD: &'static str = load_statement!(
        room_mutes::load_columns!(),
        ",\n",
        notification_pauses::load_columns!()
    );

    fn state(row: &Row, column: usize) -> Result<MuteState, StoreError> {
        let mutes = room_mutes::state(row, column)?;
        Ok(mutes.with_pause(notification_pauses::state(
            row,
            column + room_mutes::LOAD_COLUMNS,
        )))
    }

    /// `room_mutes`' statements, then `notification_pauses`'.
    const APPEND: &'static [&'static str] = &[
        room_mutes::APPEND[0],
        room_mutes::APPEND[1],
        notification_pauses::APPEND[0],
        notification_pauses::APPEND[1],
    ];

    fn step(event: &Event) -> Step<'_> {
        match room_mutes::step(event) {
            Some(step) => step,
            None => {
                let step = notification_pauses::step(event)
                    .expect("every event belongs to room_mutes or notification_pauses");
                Step {
                    statement: room_mutes::APPEND.len() + step.statement,
                    params: step.params,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomId;

    #[test]
    fn each_event_appends_with_its_own_models_statement() {
        let room = RoomId::parse("r").unwrap();
        let cases = [
            (
                Event::RoomMuted {
                    room: room.clone(),
                    until: None,
                },
                "INSERT INTO room_mutes",
            ),
            (Event::RoomUnmuted { room }, "DELETE FROM room_mutes"),
            (
                Event::NotificationsPaused { until: None },
                "INSERT INTO notification_pauses",
            ),
            (
                Event::NotificationsResumed,
                "DELETE FROM notification_pauses",
            ),
        ];
        for (event, step) in cases {
            let statement = UserPreferences::APPEND[UserPreferences::step(&event).statement];
            assert!(statement.contains(step), "{event:?}");
        }
    }

    #[test]
    fn the_load_reads_the_version_before_either_model() {
        let load = UserPreferences::LOAD;
        let at = |table: &str| load.find(table).unwrap();
        assert!(at("stream_versions") < at("room_mutes"));
        assert!(at("room_mutes") < at("notification_pauses"));
    }
}
