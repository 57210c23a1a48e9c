//! Read models. Each one's module holds everything that knows its shape: its row type, the
//! SQL that keeps it on the live path, the scans and COPY layout of rebuild and verify, its
//! reads, and the fold that says what its rows must be (docs/design.md §4). Adding an event
//! type or a column starts in that module.

pub mod room_mutes;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::Event;
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
    /// `$10` on.
    fn step(event: &Event) -> Step<'_>;
}

/// How a read model applies one event: an index into [`InlineProjection::APPEND`] and the
/// step's own parameters.
pub struct Step<'a> {
    pub statement: usize,
    pub params: Vec<Box<dyn ToSql + Sync + Send + 'a>>,
}
