//! Running a command for one user: load the user's stream (or take it as this process last
//! saw it) → decide → append and project in one statement → answer the projected state; on
//! a version conflict, again under the stream's row lock.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::group_commit::{GroupCommit, Queued};
use super::stream_cache::{Seen, StreamCache};
use super::turns::Turn;
use super::ServiceError;
use crate::domain::{decide, evolve, AppId, ClientId, Command, Event, EventMetadata, MuteState};
use crate::metrics;
use crate::projections::UserPreferences;
use crate::store::{stream, Pool, StoreError, Unit};

/// The first attempt is optimistic; retries take the stream's row lock, so they queue
/// instead of failing each other and a handful of attempts is plenty.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// Runs a command for one user, on `unit`'s connection or in the worker's group commit, and
/// answers their mutes and pause in force afterwards (exactly what the read model now
/// holds, since both were written in the same statement, read at the database's clock).
///
/// One database round trip when the command decides nothing (idempotent repeats), two
/// when it appends; see [`stream`]. A first attempt's single event, decided without a
/// clock, is appended in the worker's group commit, with `unit`'s connection back in the
/// pool meanwhile; retries append on their own connection, under the stream's lock. With
/// the stream remembered from an earlier request ([`StreamCache`]), one round trip either
/// way: see [`remembered`].
///
/// `memory`: what [`recall`] found remembered of the stream, and [`append_remembered`]
/// left unused.
#[tracing::instrument(
    level = "debug",
    skip(writer, unit, metadata),
    fields(attempts, cached)
)]
pub(super) async fn handle(
    writer: &Writer<'_>,
    mut unit: Unit,
    app: &AppId,
    client: &ClientId,
    command: Command,
    metadata: &EventMetadata,
    memory: Option<Seen>,
) -> Result<MuteState, ServiceError> {
    let cache = writer.cache;
    if let Some(seen) = memory {
        let answer = remembered(&unit, cache, seen, app, client, &command, metadata).await;
        tracing::Span::current().record("cached", answer.as_ref().is_ok_and(Option::is_some));
        if let Some(state) = answer? {
            return Ok(state);
        }
        metrics::stream_cache_used("stale");
        cache.forget(app, client);
    }
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
            let answer = loaded.state.clone().active_at(loaded.now);
            cache.remember(app, client, seen(loaded));
            return Ok(answer);
        }
        // A decision a clock could change is appended at once, on this connection: waiting
        // for a group could record it past the end it was decided against.
        let grouped = attempt == 1
            && events.len() == 1
            && !unit.is_open()
            && command.decided_without_a_clock(&loaded.state);
        let appended_now = if grouped {
            // The connection goes back to the pool while the append waits for its group.
            drop(unit);
            let version = loaded.version + 1;
            match writer
                .group_append(
                    app,
                    client,
                    version,
                    loaded.read_model,
                    &events[0],
                    metadata,
                )
                .await
            {
                Ok(recorded) => {
                    return Ok(appended(cache, app, client, loaded, &events, &[recorded]));
                }
                Err(refused @ (StoreError::Conflict | StoreError::NotAppended)) => {
                    unit = writer.unit().await?;
                    Err(refused)
                }
                Err(other) => return Err(other.into()),
            }
        } else {
            append(&unit, cache, app, client, loaded, &events, metadata).await
        };
        match appended_now {
            Ok(state) => return Ok(state),
            Err(StoreError::Conflict) => {
                metrics::conflict_retried();
                tracing::info!(
                    attempt,
                    "stream version conflict; retrying under the stream lock"
                );
                let jitter = rand::thread_rng().gen_range(0..1u64 << attempt);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                loaded = stream::lock::<UserPreferences>(&unit, app, client, room).await?;
            }
            // The room went, or a rebuild swapped the read model, between the load and the
            // append: the next load tells which.
            Err(StoreError::NotAppended) => {
                loaded =
                    stream::load::<UserPreferences, _>(unit.client(), app, client, room).await?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(ServiceError::Conflict)
}

/// Decides on the state remembered at `seen.version`, when no clock can change the
/// decision, and answers without a load:
/// - an append names that version and read model, so it succeeds only if the stream and
///   the read model are still there (one round trip, the append's);
/// - a decision to do nothing is answered only once a probe finds the stream at that
///   version in that read model (one round trip, smaller than a load's).
///
/// `None`: the entry could not be used (the stream moved on, the read model was rebuilt,
/// the decision depends on the clock); the caller forgets it and runs the command from a
/// load. Nothing has been written then.
async fn remembered(
    unit: &Unit,
    cache: &StreamCache,
    seen: Seen,
    app: &AppId,
    client: &ClientId,
    command: &Command,
    metadata: &EventMetadata,
) -> Result<Option<MuteState>, ServiceError> {
    if !command.decided_without_a_clock(&seen.state) {
        return Ok(None);
    }
    let Ok(events) = decide(&seen.state, command, seen.at) else {
        return Ok(None);
    };
    if events.is_empty() {
        let room = command.room();
        let probed = stream::probe(unit.client(), app, client, room).await?;
        if probed.version != seen.version || probed.read_model != seen.read_model {
            return Ok(None);
        }
        if room.is_some() && !probed.room_exists {
            return Err(ServiceError::RoomNotFound);
        }
        metrics::stream_cache_used("probed");
        let answer = seen.state.clone().active_at(probed.now);
        cache.remember(
            app,
            client,
            Seen {
                at: probed.now,
                ..seen
            },
        );
        return Ok(Some(answer));
    }
    match append(
        unit,
        cache,
        app,
        client,
        from_memory(seen),
        &events,
        metadata,
    )
    .await
    {
        Ok(state) => {
            metrics::stream_cache_used("appended");
            Ok(Some(state))
        }
        Err(StoreError::Conflict | StoreError::NotAppended) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// What this process remembers of the user's stream; a miss is counted here.
pub(super) fn recall(cache: &StreamCache, app: &AppId, client: &ClientId) -> Option<Seen> {
    let seen = cache.get(app, client);
    if seen.is_none() {
        metrics::stream_cache_used("miss");
    }
    seen
}

/// What [`append_remembered`] did.
pub(super) enum Remembered {
    /// Appended: the state in force afterwards.
    Answered(MuteState),
    /// Not answered, for [`handle`] to run the command: what is still remembered (`None`
    /// if nothing was, or it turned out stale and was forgotten).
    Unused(Option<Seen>),
}

/// What a command's writes go through in this worker.
pub(super) struct Writer<'a> {
    pub pool: &'a Pool,
    pub cache: &'a StreamCache,
    pub group: &'a Arc<GroupCommit>,
    /// The user's turn, held by a queued append until it is resolved.
    pub turn: &'a Arc<Turn>,
}

impl Writer<'_> {
    pub(super) async fn unit(&self) -> Result<Unit, StoreError> {
        Ok(Unit::new(self.pool.get().await?))
    }

    /// Appends `event` as `version` of the user's stream in the worker's next group commit.
    async fn group_append(
        &self,
        app: &AppId,
        client: &ClientId,
        version: i32,
        read_model: u32,
        event: &Event,
        metadata: &EventMetadata,
    ) -> Result<stream::Recorded, StoreError> {
        self.group
            .append(Queued {
                app,
                client,
                version,
                read_model,
                event: event.clone(),
                metadata,
                turn: Arc::clone(self.turn),
            })
            .await
    }
}

/// The one-statement path of [`remembered`], without a connection of its own: an append
/// decided on the remembered state goes to the worker's group commit. A decision to do
/// nothing (it needs a probe), several events, or a decision a clock could change are left
/// to [`handle`].
pub(super) async fn append_remembered(
    writer: &Writer<'_>,
    seen: Option<Seen>,
    app: &AppId,
    client: &ClientId,
    command: &Command,
    metadata: &EventMetadata,
) -> Result<Remembered, ServiceError> {
    let cache = writer.cache;
    let Some(seen) = seen else {
        return Ok(Remembered::Unused(None));
    };
    if !command.decided_without_a_clock(&seen.state) {
        return Ok(Remembered::Unused(Some(seen)));
    }
    let Ok(events) = decide(&seen.state, command, seen.at) else {
        return Ok(Remembered::Unused(Some(seen)));
    };
    let [event] = events.as_slice() else {
        return Ok(Remembered::Unused(Some(seen)));
    };
    let version = seen.version + 1;
    match writer
        .group_append(app, client, version, seen.read_model, event, metadata)
        .await
    {
        Ok(recorded) => {
            metrics::stream_cache_used("appended");
            let answer = appended(cache, app, client, from_memory(seen), &events, &[recorded]);
            Ok(Remembered::Answered(answer))
        }
        Err(StoreError::Conflict | StoreError::NotAppended) => {
            metrics::stream_cache_used("stale");
            cache.forget(app, client);
            Ok(Remembered::Unused(None))
        }
        Err(other) => Err(other.into()),
    }
}

/// A remembered stream as if a load had just read it, for deciding and appending on it.
fn from_memory(seen: Seen) -> stream::LoadedStream<MuteState> {
    stream::LoadedStream {
        room_exists: true,
        version: seen.version,
        now: seen.at,
        read_model: seen.read_model,
        state: seen.state,
    }
}

/// What to remember of a stream as a load read it.
fn seen(loaded: stream::LoadedStream<MuteState>) -> Seen {
    Seen {
        version: loaded.version,
        read_model: loaded.read_model,
        state: loaded.state,
        at: loaded.now,
    }
}

/// Appends `events` after `loaded.version`, in the read model `loaded` came from (a rebuild
/// swapped in since refuses it), remembers the stream as they leave it and answers the state
/// in force afterwards.
async fn append(
    unit: &Unit,
    cache: &StreamCache,
    app: &AppId,
    client: &ClientId,
    loaded: stream::LoadedStream<MuteState>,
    events: &[Event],
    metadata: &EventMetadata,
) -> Result<MuteState, StoreError> {
    let recorded = stream::append::<UserPreferences>(
        unit,
        app,
        client,
        loaded.version,
        Some(loaded.read_model),
        events,
        metadata,
    )
    .await?;
    Ok(appended(cache, app, client, loaded, events, &recorded))
}

/// Remembers the stream as `events`, appended after `loaded` as `recorded`, left it, and
/// answers the state in force afterwards.
fn appended(
    cache: &StreamCache,
    app: &AppId,
    client: &ClientId,
    loaded: stream::LoadedStream<MuteState>,
    events: &[Event],
    recorded: &[stream::Recorded],
) -> MuteState {
    events
        .iter()
        .for_each(|e| metrics::event_appended(e.event_type()));
    let now = recorded.last().map_or(loaded.now, |r| r.recorded_at);
    let state = events
        .iter()
        .zip(recorded)
        .fold(loaded.state, |state, (event, recorded)| {
            evolve(state, event, recorded.recorded_at)
        });
    let version = recorded.last().map_or(loaded.version, |r| r.stream_version);
    let answer = state.clone().active_at(now);
    cache.remember(
        app,
        client,
        Seen {
            version,
            read_model: loaded.read_model,
            state,
            at: now,
        },
    );
    answer
}
