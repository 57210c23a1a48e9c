//! Rebuilding and verifying the read model from the log.
//!
//! Rebuild: read everything committed in one snapshot of the log in stream order (user
//! after user), fold each user's stream and COPY its rows into shadow tables before the
//! next user's, so memory holds one batch and one user whatever the size of the log;
//! index the shadows, catch up with each window of events committed meanwhile (re-folding
//! only the streams that moved), and finally, with the live tables locked, catch up with
//! the last window and swap by rename. Windows come from the exact snapshot cursor
//! ([`log_reader`]), so a transaction left open anywhere on the server holds back nothing
//! but its own events.
//! Verify: in one repeatable-read transaction, read the log and the three tables user by user
//! in the same order and compare each user's fold with their rows; it never runs across a
//! swap (see [`shadow::lock_swap_shared`]).

pub mod fold;
pub mod output;
mod progress;

use std::time::{Duration, Instant};

use deadpool_postgres::{Client, Transaction};

use crate::projections::notification_pauses::{self, PauseRecord};
use crate::projections::room_mutes::{self, MuteRecord};
use crate::projections::user_rows;
use crate::store::log_reader::{self, LogCursor, UserOrder, Window};
use crate::store::shadow::{self, ShadowCopy, VersionRecord};
use crate::store::{self, Pool, StoreError};
use fold::{
    stream_differences, Difference, FoldedStream, Found, StreamFold, StreamFolder, UnreadableEvent,
    UnreadableRow,
};
use progress::Progress;

/// Rows per read: large enough that round trips do not dominate, small enough that a
/// batch is a few megabytes.
pub const BATCH_SIZE: i32 = 20_000;
/// Users caught up together: bounds what one catch-up holds in memory.
const MOVED_STREAMS_PER_READ: usize = 1_000;
/// Catch-up rounds stop once a round reads fewer events than this; the rest is read while
/// the live tables are locked, which then lasts milliseconds.
const CATCH_UP_ENOUGH: u64 = 500;
const MAX_CATCH_UP_ROUNDS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("another rebuild is running against this database")]
    Busy,
    #[error(transparent)]
    Unreadable(#[from] UnreadableEvent),
    #[error(transparent)]
    UnreadableRow(#[from] UnreadableRow),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for RebuildError {
    fn from(err: tokio_postgres::Error) -> Self {
        RebuildError::Store(err.into())
    }
}

impl From<deadpool_postgres::PoolError> for RebuildError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        RebuildError::Store(err.into())
    }
}

#[derive(Debug)]
pub struct RebuildReport {
    pub events: u64,
    pub streams: usize,
    pub muted_rooms: usize,
    /// Rows of `notification_pauses` (expired ones not yet swept included).
    pub paused_users: usize,
    pub catch_up_rounds: usize,
    /// How long writers were held off while the last window was folded and tables swapped.
    pub locked: Duration,
    pub elapsed: Duration,
    /// The log cursor the new read model reflects (recorded in `projection_checkpoints`).
    pub checkpoint: LogCursor,
}

#[derive(Debug)]
pub struct VerifyReport {
    pub events: u64,
    pub differences: Vec<Difference>,
}

fn mute_records(stream: &FoldedStream) -> Vec<MuteRecord<'_>> {
    stream.fold.mutes().records(&stream.key.0, &stream.key.1)
}

fn pause_record(stream: &FoldedStream) -> Option<PauseRecord<'_>> {
    stream.fold.pause().record(&stream.key.0, &stream.key.1)
}

fn version_record(stream: &FoldedStream) -> VersionRecord<'_> {
    VersionRecord {
        app: &stream.key.0,
        client: &stream.key.1,
        version: stream.fold.version(),
    }
}

/// What has been written to the shadow tables so far.
#[derive(Debug, Default)]
struct Written {
    events: u64,
    streams: usize,
    muted_rooms: usize,
}

/// The shadow tables' COPYs of the first pass, one connection each.
struct Copies {
    mutes: ShadowCopy,
    pauses: ShadowCopy,
    versions: ShadowCopy,
}

/// The first pass: every event committed in the reader's snapshot, user after user, folded
/// and copied into freshly created shadow tables as each user's stream ends. Answers the
/// cursor read up to.
async fn load_shadow(
    reader: &mut Client,
    mutes_to: &mut Client,
    [pauses_to, versions_to]: [&mut Client; 2],
    progress: &mut Progress,
    written: &mut Written,
) -> Result<LogCursor, RebuildError> {
    let reading = store::begin_repeatable_read(reader).await?;
    let seen = log_reader::cursor_now(&reading).await?;
    let mut events = log_reader::in_stream_order(&reading, UserOrder::Indexed, BATCH_SIZE).await?;
    let mutes_tx = mutes_to.transaction().await?;
    let pauses_tx = pauses_to.transaction().await?;
    let versions_tx = versions_to.transaction().await?;
    shadow::create_shadow::<MuteRecord>(&mutes_tx).await?;
    shadow::create_shadow::<PauseRecord>(&pauses_tx).await?;
    shadow::create_shadow::<VersionRecord>(&versions_tx).await?;
    let mut copies = Copies {
        mutes: ShadowCopy::start::<MuteRecord>(&mutes_tx, true).await?,
        pauses: ShadowCopy::start::<PauseRecord>(&pauses_tx, true).await?,
        versions: ShadowCopy::start::<VersionRecord>(&versions_tx, true).await?,
    };
    let mut folder = StreamFolder::default();
    while let Some(event) = events.next().await? {
        if let Some(done) = folder.push(&event)? {
            write_stream(&mut copies, written, &done).await?;
        }
        written.events += 1;
        progress.update(written.events);
    }
    if let Some(done) = folder.finish() {
        write_stream(&mut copies, written, &done).await?;
    }
    copies.mutes.finish().await?;
    copies.pauses.finish().await?;
    copies.versions.finish().await?;
    mutes_tx.commit().await?;
    pauses_tx.commit().await?;
    versions_tx.commit().await?;
    drop(events);
    reading.rollback().await?;
    Ok(seen)
}

async fn write_stream(
    copies: &mut Copies,
    written: &mut Written,
    stream: &FoldedStream,
) -> Result<(), RebuildError> {
    for record in mute_records(stream) {
        copies.mutes.write(&record).await?;
    }
    if let Some(record) = pause_record(stream) {
        copies.pauses.write(&record).await?;
    }
    copies.versions.write(&version_record(stream)).await?;
    written.streams += 1;
    written.muted_rooms += stream.fold.muted_rooms();
    Ok(())
}

/// Brings the shadow tables from `window.from` to `window.to`: each user that got events
/// in the window resumes from their shadow rows, folds just those events, and is
/// rewritten, a bounded number of users at a time. Answers how many events the window
/// held.
async fn catch_up(
    reader: &Client,
    tx: &Transaction<'_>,
    window: &Window,
) -> Result<u64, RebuildError> {
    let moved = log_reader::moved_in(reader, window).await?;
    let events = moved.iter().map(|(_, n)| *n as u64).sum();
    for chunk in moved.chunks(MOVED_STREAMS_PER_READ) {
        let (apps, clients): (Vec<&str>, Vec<&str>) = chunk
            .iter()
            .map(|((app, client), _)| (app.as_str(), client.as_str()))
            .unzip();
        let versions = shadow::shadow_versions(tx, &apps, &clients).await?;
        let mut rows = room_mutes::shadow_rows(tx, &apps, &clients).await?;
        let mut pauses = notification_pauses::shadow_rows(tx, &apps, &clients).await?;
        let stored = {
            let (apps, clients, versions): (Vec<&str>, Vec<&str>, Vec<i32>) = versions
                .iter()
                .map(|v| (v.app.as_str(), v.client.as_str(), v.version))
                .collect();
            log_reader::streams_after(reader, &apps, &clients, &versions, &window.to).await?
        };
        let mut events_of = stored.iter().peekable();
        let mut streams = Vec::with_capacity(versions.len());
        for shadow in versions {
            let key = (shadow.app, shadow.client);
            let mut fold = StreamFold::resume(
                shadow.version,
                rows.remove(&key).unwrap_or_default(),
                pauses.remove(&key),
            )?;
            while let Some(event) = events_of.next_if(|e| e.app_id == key.0 && e.stream_id == key.1)
            {
                fold.apply(event)?;
            }
            streams.push(FoldedStream { key, fold });
        }
        for table in [room_mutes::TABLE, notification_pauses::TABLE] {
            user_rows::clear_shadow(tx, table, &apps, &clients).await?;
        }
        shadow::clear_shadow_versions(tx, &apps, &clients).await?;
        shadow::copy_rows(tx, false, streams.iter().flat_map(mute_records)).await?;
        shadow::copy_rows(tx, false, streams.iter().filter_map(pause_record)).await?;
        shadow::copy_rows(tx, false, streams.iter().map(version_record)).await?;
    }
    Ok(events)
}

/// Replays the whole log into shadow tables and swaps them in. Safe while `serve` runs:
/// writers are held off only for the final catch-up and the swap, and wait rather than fail.
/// Uses four connections of `pool`.
#[tracing::instrument(skip(pool))]
pub async fn rebuild(pool: &Pool) -> Result<RebuildReport, RebuildError> {
    let mut writer = pool.get().await?;
    if !shadow::try_lock_rebuild(&writer).await? {
        return Err(RebuildError::Busy);
    }
    let rebuilt = async {
        shadow::drop_retired(&writer).await?;
        let reader = pool.get().await?;
        let pauses_to = pool.get().await?;
        let versions_to = pool.get().await?;
        rebuild_locked(reader, &mut writer, [pauses_to, versions_to]).await
    }
    .await;
    if rebuilt.is_err() {
        // The live tables were not touched; shadows loaded so far are only in the way.
        if let Err(err) = shadow::drop_shadow(&writer).await {
            tracing::warn!(error = %err, "could not drop the shadow tables of a failed rebuild");
        }
    }
    shadow::unlock_rebuild(&writer).await?;
    rebuilt
}

async fn rebuild_locked(
    mut reader: Client,
    writer: &mut Client,
    [mut pauses_to, mut versions_to]: [Client; 2],
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let estimate = log_reader::last_position(&reader).await?.max(0) as u64;
    let mut progress = Progress::new(estimate);
    let mut written = Written::default();
    let mut seen = load_shadow(
        &mut reader,
        writer,
        [&mut pauses_to, &mut versions_to],
        &mut progress,
        &mut written,
    )
    .await?;
    drop((pauses_to, versions_to));
    tracing::debug!(events = written.events, elapsed = ?started.elapsed(), "loaded the shadow tables");
    let tx = writer.transaction().await?;
    shadow::index_shadow(&tx).await?;
    shadow::grant_shadow(&tx).await?;
    tx.commit().await?;
    tracing::debug!(elapsed = ?started.elapsed(), "indexed the shadow tables");

    let mut catch_up_rounds = 0;
    let mut caught_up = 0;
    while catch_up_rounds < MAX_CATCH_UP_ROUNDS {
        catch_up_rounds += 1;
        let window = Window {
            from: seen,
            to: log_reader::cursor_now(&reader).await?,
        };
        let tx = writer.transaction().await?;
        let read = catch_up(&reader, &tx, &window).await?;
        tx.commit().await?;
        caught_up += read;
        seen = window.to;
        if read < CATCH_UP_ENOUGH {
            break;
        }
    }

    let tx = writer.transaction().await?;
    // Verifies running now finish first, and new ones wait for the swap: a verify that
    // straddled it would compare an old snapshot of the log with the new tables.
    shadow::lock_swap(&tx).await?;
    shadow::lock_live(&tx).await?;
    let locked_at = Instant::now();
    // No writer is in flight now (each takes the lock first), so a snapshot taken now
    // sees every event that the new tables must reflect.
    let window = Window {
        from: seen,
        to: log_reader::cursor_now(&reader).await?,
    };
    caught_up += catch_up(&reader, &tx, &window).await?;
    shadow::swap(&tx, &window.to).await?;
    tx.commit().await?;
    let locked = locked_at.elapsed();
    shadow::drop_retired(&*writer).await?;
    progress.finish("replayed the log");
    let streams = shadow::count_streams(&*writer).await?;
    let muted_rooms = user_rows::count(&*writer, room_mutes::TABLE).await?;
    let paused_users = user_rows::count(&*writer, notification_pauses::TABLE).await?;

    Ok(RebuildReport {
        events: written.events + caught_up,
        streams,
        muted_rooms,
        paused_users,
        catch_up_rounds,
        locked,
        elapsed: started.elapsed(),
        checkpoint: window.to,
    })
}

/// Folds the log and compares the read model with it, both as of one snapshot and user by
/// user, changing nothing. A rebuild's swap waits for it, and it waits for a swap in
/// progress. Memory holds a batch of each read and one user.
#[tracing::instrument(skip(pool))]
pub async fn verify(pool: &Pool) -> Result<VerifyReport, RebuildError> {
    let mut reader = pool.get().await?;
    shadow::lock_swap_shared(&reader).await?;
    let compared = compare(&mut reader).await;
    shadow::unlock_swap_shared(&reader).await?;
    compared
}

async fn compare(reader: &mut Client) -> Result<VerifyReport, RebuildError> {
    let estimate = log_reader::last_position(&*reader).await?.max(0) as u64;
    let mut progress = Progress::new(estimate);
    let reading = store::begin_repeatable_read(reader).await?;
    let mut events = log_reader::in_stream_order(&reading, UserOrder::Bytes, BATCH_SIZE).await?;
    let mut mutes = room_mutes::scan_by_user(&reading, BATCH_SIZE).await?;
    let mut pauses = notification_pauses::scan_by_user(&reading, BATCH_SIZE).await?;
    let mut versions = shadow::versions_by_user(&reading, BATCH_SIZE).await?;
    // Read once the snapshot is taken, so every row a sweep deleted before it has ended by
    // this clock and is left out of the comparison like any other expired mute.
    let now = store::database_now(&reading).await?;
    let mut differences = Vec::new();
    let mut read = 0u64;
    loop {
        // The next user any of the four reads has, in the byte order all four share.
        let candidates = [
            events
                .peek()
                .await?
                .map(|e| (e.app_id.clone(), e.stream_id.clone())),
            mutes
                .peek()
                .await?
                .map(|m| (m.app.clone(), m.client.clone())),
            pauses
                .peek()
                .await?
                .map(|p| (p.app.clone(), p.client.clone())),
            versions
                .peek()
                .await?
                .map(|v| (v.app.clone(), v.client.clone())),
        ];
        let Some(key) = candidates.into_iter().flatten().min() else {
            break;
        };
        let is_key = |app: &str, client: &str| app == key.0 && client == key.1;
        let mut fold = StreamFold::default();
        while let Some(event) = events.peek().await? {
            if !is_key(&event.app_id, &event.stream_id) {
                break;
            }
            let event = events.next().await?.expect("peeked");
            fold.apply(&event)?;
            read += 1;
        }
        let mut found = Found::default();
        while let Some(row) = mutes.peek().await? {
            if !is_key(&row.app, &row.client) {
                break;
            }
            let row = mutes.next().await?.expect("peeked");
            found.mutes.insert(row.room.clone(), row);
        }
        if let Some(row) = pauses.peek().await? {
            if is_key(&row.app, &row.client) {
                found.pause = Some(row.pause);
                pauses.next().await?;
            }
        }
        if let Some(row) = versions.peek().await? {
            if is_key(&row.app, &row.client) {
                found.version = row.version;
                versions.next().await?;
            }
        }
        stream_differences(&key, &fold, &found, now, &mut differences);
        progress.update(read);
    }
    drop((events, mutes, pauses, versions));
    reading.rollback().await?;
    progress.finish("compared the log and the read model");
    Ok(VerifyReport {
        events: read,
        differences,
    })
}
