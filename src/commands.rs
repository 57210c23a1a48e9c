//! Command handling: load the user's stream → decide → append and project in one
//! transaction → answer the projected state.

use std::time::Duration;

use rand::Rng;

use crate::domain::{decide, evolve, AppId, ClientId, Command, EventMetadata, MuteState, RoomId};
use crate::metrics;
use crate::projections::room_mutes::RoomMutes;
use crate::store::{stream, Pool, StoreError, Unit};

/// The first attempt is optimistic; retries take the stream's row lock, so they queue
/// instead of failing each other and a handful of attempts is plenty.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("room not found")]
    RoomNotFound,
    #[error("concurrency conflict persisted after {MAX_ATTEMPTS} attempts")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn room_of(command: &Command) -> &RoomId {
    match command {
        Command::MuteRoom { room } | Command::UnmuteRoom { room } => room,
    }
}

/// Runs a command for one user and answers their state afterwards (which is exactly what
/// the read model now holds, since both were written in the same transaction).
///
/// One database round trip when the command decides nothing (idempotent repeats), two
/// when it appends; see [`stream`].
#[tracing::instrument(level = "debug", skip(pool, metadata), fields(attempts))]
pub async fn handle(
    pool: &Pool,
    app: &AppId,
    client: &ClientId,
    command: Command,
    metadata: &EventMetadata,
) -> Result<MuteState, CommandError> {
    let room = room_of(&command);
    let unit = Unit::new(pool.get().await.map_err(StoreError::from)?);
    let mut snapshot = stream::load::<RoomMutes, _>(unit.client(), app, client, room).await?;
    for attempt in 1..=MAX_ATTEMPTS {
        tracing::Span::current().record("attempts", attempt);
        if !snapshot.room_exists {
            if unit.is_open() {
                unit.rollback().await?;
            }
            return Err(CommandError::RoomNotFound);
        }
        let events = decide(&snapshot.state, &command);
        if events.is_empty() {
            if unit.is_open() {
                unit.commit().await?;
            }
            return Ok(snapshot.state);
        }
        match stream::append::<RoomMutes>(&unit, app, client, snapshot.version, &events, metadata)
            .await
        {
            Ok(_) => {
                events
                    .iter()
                    .for_each(|e| metrics::event_appended(e.event_type()));
                return Ok(events.iter().fold(snapshot.state, evolve));
            }
            Err(StoreError::Conflict) => {
                metrics::conflict_retried();
                tracing::info!(
                    attempt,
                    "stream version conflict; retrying under the stream lock"
                );
                let jitter = rand::thread_rng().gen_range(0..1u64 << attempt);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                snapshot = stream::lock::<RoomMutes>(&unit, app, client, room).await?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(CommandError::Conflict)
}
