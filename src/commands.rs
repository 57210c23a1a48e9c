//! Command handling: load the user's stream → decide → append and project in one
//! transaction → answer the projected state.

use std::time::Duration;

use rand::Rng;

use crate::domain::{decide, evolve, AppId, ClientId, Command, EventMetadata, MuteState, RoomId};
use crate::store::{stream, Pool, StoreError, Unit};

/// Appends are serialised per user by a row lock, so a conflict means a writer that does not
/// take the lock raced us; a handful of retries is plenty.
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
/// Two database round trips when something changes, see [`stream`]; one plus a COMMIT
/// when the command is idempotent and decides nothing.
#[tracing::instrument(skip(pool, metadata), fields(attempts))]
pub async fn handle(
    pool: &Pool,
    app: &AppId,
    client: &ClientId,
    command: Command,
    metadata: &EventMetadata,
) -> Result<MuteState, CommandError> {
    let unit = Unit::new(pool.get().await.map_err(StoreError::from)?);
    for attempt in 1..=MAX_ATTEMPTS {
        tracing::Span::current().record("attempts", attempt);
        let locked = stream::lock(&unit, app, client, room_of(&command)).await?;
        if !locked.room_exists {
            unit.rollback().await?;
            return Err(CommandError::RoomNotFound);
        }
        let events = decide(&locked.state, &command);
        if events.is_empty() {
            unit.commit().await?;
            return Ok(locked.state);
        }
        match stream::commit(&unit, app, client, locked.version, &events, metadata).await {
            Ok(_) => return Ok(events.iter().fold(locked.state, evolve)),
            Err(StoreError::Conflict) => {
                tracing::info!(attempt, "stream version conflict; retrying");
                let jitter = rand::thread_rng().gen_range(0..5u64 << attempt);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(CommandError::Conflict)
}
