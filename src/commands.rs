//! Command handling: load the user's stream → decide → append and project in one
//! transaction → answer the projected state.

use std::time::Duration;

use rand::Rng;

use crate::domain::{decide, evolve, AppId, ClientId, Command, EventMetadata, MuteState, RoomId};
use crate::metrics;
use crate::store::{directory, event_log, projection, Pool, StoreError};

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
#[tracing::instrument(skip(pool, metadata), fields(attempts))]
pub async fn handle(
    pool: &Pool,
    app: &AppId,
    client: &ClientId,
    command: Command,
    metadata: &EventMetadata,
) -> Result<MuteState, CommandError> {
    let mut conn = pool.get().await.map_err(StoreError::from)?;
    if !directory::room_exists(&conn, app, room_of(&command)).await? {
        return Err(CommandError::RoomNotFound);
    }
    for attempt in 1..=MAX_ATTEMPTS {
        tracing::Span::current().record("attempts", attempt);
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        let (version, state) = projection::lock_stream(&tx, app, client).await?;
        let events = decide(&state, &command);
        if events.is_empty() {
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(state);
        }
        match event_log::append(&tx, app, client, version, &events, metadata).await {
            Ok(recorded) => {
                let appended: Vec<_> = events.into_iter().zip(recorded).collect();
                projection::apply(&tx, app, client, &appended).await?;
                tx.commit().await.map_err(StoreError::from)?;
                appended
                    .iter()
                    .for_each(|(e, _)| metrics::event_appended(e.event_type()));
                return Ok(appended
                    .iter()
                    .fold(state, |state, (event, _)| evolve(state, event)));
            }
            Err(StoreError::Conflict) => {
                drop(tx);
                metrics::conflict_retried();
                tracing::info!(attempt, "stream version conflict; retrying");
                let jitter = rand::thread_rng().gen_range(0..5u64 << attempt);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(CommandError::Conflict)
}
