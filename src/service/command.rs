//! Running a command for one user: load the user's stream → decide → append and project
//! in one statement → answer the projected state; on a version conflict, again under the
//! stream's row lock.

use std::time::Duration;

use rand::Rng;

use super::ServiceError;
use crate::domain::{decide, evolve, AppId, ClientId, Command, EventMetadata, MuteState};
use crate::metrics;
use crate::projections::UserPreferences;
use crate::store::{stream, StoreError, Unit};

/// The first attempt is optimistic; retries take the stream's row lock, so they queue
/// instead of failing each other and a handful of attempts is plenty.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// Runs a command for one user on `unit`'s connection and answers their mutes and pause in
/// force afterwards (exactly what the read model now holds, since both were written in the same
/// statement, read at the database's clock).
///
/// One database round trip when the command decides nothing (idempotent repeats), two
/// when it appends; see [`stream`].
#[tracing::instrument(level = "debug", skip(unit, metadata), fields(attempts))]
pub(super) async fn handle(
    unit: &Unit,
    app: &AppId,
    client: &ClientId,
    command: Command,
    metadata: &EventMetadata,
) -> Result<MuteState, ServiceError> {
    let room = command.room();
    let mut loaded = stream::load::<UserPreferences, _>(unit.client(), app, client, room).await?;
    for attempt in 1..=MAX_ATTEMPTS {
        tracing::Span::current().record("attempts", attempt);
        if room.is_some() && !loaded.room_exists {
            if unit.is_open() {
                unit.rollback().await?;
            }
            return Err(ServiceError::RoomNotFound);
        }
        let events = match decide(&loaded.state, &command, loaded.now) {
            Ok(events) => events,
            Err(refused) => {
                if unit.is_open() {
                    unit.rollback().await?;
                }
                return Err(ServiceError::Refused(refused));
            }
        };
        if events.is_empty() {
            if unit.is_open() {
                unit.commit().await?;
            }
            return Ok(loaded.state.active_at(loaded.now));
        }
        match stream::append::<UserPreferences>(
            unit,
            app,
            client,
            loaded.version,
            &events,
            metadata,
        )
        .await
        {
            Ok(recorded) => {
                events
                    .iter()
                    .for_each(|e| metrics::event_appended(e.event_type()));
                let now = recorded.last().map_or(loaded.now, |r| r.recorded_at);
                let state = events
                    .iter()
                    .zip(&recorded)
                    .fold(loaded.state, |state, (event, recorded)| {
                        evolve(state, event, recorded.recorded_at)
                    });
                return Ok(state.active_at(now));
            }
            Err(StoreError::Conflict) => {
                metrics::conflict_retried();
                tracing::info!(
                    attempt,
                    "stream version conflict; retrying under the stream lock"
                );
                let jitter = rand::thread_rng().gen_range(0..1u64 << attempt);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                loaded = stream::lock::<UserPreferences>(unit, app, client, room).await?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(ServiceError::Conflict)
}
