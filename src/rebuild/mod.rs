//! Rebuilding and verifying the read model from the log.
//!
//! Rebuild: fold everything committed in one snapshot of the log (streamed in batches) in
//! memory, load the result into shadow tables with COPY, index them, catch up with each
//! window of events committed meanwhile (rewriting only the streams that moved), and
//! finally, with the live tables locked, read the last window and swap by rename. Windows
//! come from the exact snapshot cursor ([`log_reader`]), so a transaction left open
//! anywhere on the server holds back nothing but its own events.
//! Verify: fold the log and read both tables in one repeatable-read snapshot and compare;
//! it never runs across a swap (see [`read_model::lock_swap_shared`]).

pub mod fold;
mod progress;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::store::log_reader::{self, EventKey, LogCursor, StoredEvent, Window};
use crate::store::read_model::{self, MuteRecord, VersionRecord};
use crate::store::{Pool, StoreError};
use fold::{differences, Difference, Fold, ReadModel, UnreadableEvent};
use progress::Progress;

/// Events per read: large enough that round trips do not dominate, small enough that a
/// batch is a few megabytes.
pub const BATCH_SIZE: i64 = 20_000;
/// Catch-up rounds stop once a round reads fewer events than this; the rest is read while
/// the live tables are locked, which then lasts milliseconds.
const CATCH_UP_ENOUGH: u64 = 2_000;
const MAX_CATCH_UP_ROUNDS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("another rebuild is running against this database")]
    Busy,
    #[error(transparent)]
    Unreadable(#[from] UnreadableEvent),
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
    pub catch_up_rounds: usize,
    /// How long writers were held off while the last events were folded and tables swapped.
    pub locked: Duration,
    pub elapsed: Duration,
    /// The snapshot of the log the new read model reflects (recorded in
    /// `projection_checkpoints`).
    pub checkpoint: LogCursor,
}

#[derive(Debug)]
pub struct VerifyReport {
    pub events: u64,
    pub differences: Vec<Difference>,
}

type StreamKey = (String, String);

/// A replay of the log in commit order into a fold, resumable where it stopped.
struct Replay {
    reader: Arc<deadpool_postgres::Client>,
    fold: Fold,
    /// Every event committed in this snapshot has been folded.
    seen: LogCursor,
    progress: Progress,
    events: u64,
}

impl Replay {
    async fn new(reader: deadpool_postgres::Client) -> Result<Self, RebuildError> {
        let estimate = log_reader::last_position(&reader).await?.max(0) as u64;
        Ok(Replay {
            reader: Arc::new(reader),
            fold: Fold::default(),
            seen: LogCursor::start(),
            progress: Progress::new(estimate),
            events: 0,
        })
    }

    fn fetch(
        &self,
        window: &Window,
        after: Option<EventKey>,
    ) -> JoinHandle<Result<Vec<StoredEvent>, StoreError>> {
        let reader = Arc::clone(&self.reader);
        let window = window.clone();
        tokio::spawn(
            async move { log_reader::read_window(&*reader, &window, after, BATCH_SIZE).await },
        )
    }

    /// The server's snapshot now, read on the replay's connection (inside a repeatable-read
    /// transaction, that transaction's snapshot).
    async fn snapshot(&self) -> Result<LogCursor, RebuildError> {
        Ok(log_reader::current(&*self.reader).await?)
    }

    /// Folds the events committed after what was seen and up to `to`, noting which streams
    /// moved when asked to. The next batch is fetched while this one is folded; memory is
    /// two batches plus the fold.
    #[tracing::instrument(skip(self, moved), fields(from = self.seen.xmax, to = to.xmax))]
    async fn run(
        &mut self,
        to: LogCursor,
        mut moved: Option<&mut HashSet<StreamKey>>,
    ) -> Result<u64, RebuildError> {
        let window = Window {
            from: std::mem::take(&mut self.seen),
            to,
        };
        let mut read = 0;
        let mut next = Some(self.fetch(&window, None));
        while let Some(fetching) = next.take() {
            let batch = match fetching.await {
                Ok(batch) => batch?,
                Err(failed) => std::panic::resume_unwind(failed.into_panic()),
            };
            let Some(last) = batch.last() else { break };
            if batch.len() as i64 == BATCH_SIZE {
                next = Some(self.fetch(&window, Some(last.key)));
            }
            for event in &batch {
                self.fold.apply(event)?;
                if let Some(moved) = moved.as_deref_mut() {
                    moved.insert((event.app_id.clone(), event.stream_id.clone()));
                }
            }
            read += batch.len() as u64;
            self.events += batch.len() as u64;
            self.progress.update(self.events);
        }
        self.seen = window.to;
        Ok(read)
    }
}

/// Rows in primary-key order (byte order, which is the order of the C and C.UTF-8
/// collations): PostgreSQL's sort notices presorted input, so the key is built in one pass
/// instead of a full sort, and each user's rows end up together on disk.
fn mute_records<'a>(
    fold: &'a Fold,
    only: Option<&'a HashSet<StreamKey>>,
) -> impl Iterator<Item = MuteRecord<'a>> {
    streams_of(fold, only)
        .into_iter()
        .flat_map(|(app, client, stream)| {
            let mut mutes: Vec<_> = stream.mutes().collect();
            mutes.sort_unstable_by_key(|(room, _)| room.as_str());
            mutes.into_iter().map(move |(room, stamp)| MuteRecord {
                app,
                client,
                room: room.as_str(),
                muted_at: stamp.muted_at,
                position: stamp.position,
            })
        })
}

fn version_records<'a>(
    fold: &'a Fold,
    only: Option<&'a HashSet<StreamKey>>,
) -> impl Iterator<Item = VersionRecord<'a>> {
    streams_of(fold, only)
        .into_iter()
        .map(|(app, client, stream)| VersionRecord {
            app,
            client,
            version: stream.version(),
        })
}

type StreamRef<'a> = (&'a str, &'a str, &'a fold::StreamFold);

/// All streams of the fold, or only those given, sorted by app and user.
fn streams_of<'a>(fold: &'a Fold, only: Option<&'a HashSet<StreamKey>>) -> Vec<StreamRef<'a>> {
    let mut streams: Vec<StreamRef<'a>> = match only {
        None => fold.streams().collect(),
        Some(keys) => keys
            .iter()
            .filter_map(|(app, client)| {
                fold.stream(app, client)
                    .map(|stream| (app.as_str(), client.as_str(), stream))
            })
            .collect(),
    };
    streams.sort_unstable_by_key(|(app, client, _)| (*app, *client));
    streams
}

/// Rewrites the moved streams in the shadow tables from the fold.
async fn write_moved(
    tx: &deadpool_postgres::Transaction<'_>,
    fold: &Fold,
    moved: &HashSet<StreamKey>,
) -> Result<(), RebuildError> {
    if moved.is_empty() {
        return Ok(());
    }
    let (apps, clients): (Vec<&str>, Vec<&str>) = moved
        .iter()
        .map(|(app, client)| (app.as_str(), client.as_str()))
        .unzip();
    read_model::clear_shadow_streams(tx, &apps, &clients).await?;
    read_model::copy_rows(tx, false, mute_records(fold, Some(moved))).await?;
    read_model::copy_rows(tx, false, version_records(fold, Some(moved))).await?;
    Ok(())
}

/// Replays the whole log into shadow tables and swaps them in. Safe while `serve` runs:
/// writers are held off only for the final catch-up and the swap, and wait rather than fail.
#[tracing::instrument(skip(pool))]
pub async fn rebuild(pool: &Pool) -> Result<RebuildReport, RebuildError> {
    let mut writer = pool.get().await?;
    if !read_model::try_lock_rebuild(&writer).await? {
        return Err(RebuildError::Busy);
    }
    let rebuilt = async {
        let replay = Replay::new(pool.get().await?).await?;
        rebuild_locked(replay, &mut writer).await
    }
    .await;
    if rebuilt.is_err() {
        // The live tables were not touched; shadows loaded so far are only in the way.
        if let Err(err) = read_model::drop_shadow(&writer).await {
            tracing::warn!(error = %err, "could not drop the shadow tables of a failed rebuild");
        }
    }
    read_model::unlock_rebuild(&writer).await?;
    rebuilt
}

async fn rebuild_locked(
    mut replay: Replay,
    writer: &mut deadpool_postgres::Client,
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let to = replay.snapshot().await?;
    replay.run(to, None).await?;
    tracing::debug!(events = replay.events, elapsed = ?started.elapsed(), "folded the committed log");
    let tx = writer.transaction().await?;
    read_model::create_shadow(&tx).await?;
    read_model::copy_rows(&tx, true, mute_records(&replay.fold, None)).await?;
    read_model::copy_rows(&tx, true, version_records(&replay.fold, None)).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "copied the fold into the shadow tables");
    read_model::index_shadow(&tx).await?;
    read_model::grant_shadow(&tx).await?;
    tx.commit().await?;
    tracing::debug!(elapsed = ?started.elapsed(), "indexed the shadow tables");

    let mut catch_up_rounds = 0;
    while catch_up_rounds < MAX_CATCH_UP_ROUNDS {
        catch_up_rounds += 1;
        let to = replay.snapshot().await?;
        let mut moved = HashSet::new();
        let read = replay.run(to, Some(&mut moved)).await?;
        let tx = writer.transaction().await?;
        write_moved(&tx, &replay.fold, &moved).await?;
        tx.commit().await?;
        if read < CATCH_UP_ENOUGH {
            break;
        }
    }

    let tx = writer.transaction().await?;
    // Verifies running now finish first, and new ones wait for the swap: a verify that
    // straddled it would compare an old snapshot of the log with the new tables.
    read_model::lock_swap(&tx).await?;
    read_model::lock_live(&tx).await?;
    let locked_at = Instant::now();
    // No writer is in flight now (each takes the lock first), so a snapshot taken now
    // sees every event that the new tables must reflect.
    let to = replay.snapshot().await?;
    let mut moved = HashSet::new();
    replay.run(to, Some(&mut moved)).await?;
    write_moved(&tx, &replay.fold, &moved).await?;
    read_model::swap(&tx, &replay.seen).await?;
    tx.commit().await?;
    let locked = locked_at.elapsed();
    replay.progress.finish("replayed the log");

    Ok(RebuildReport {
        events: replay.events,
        streams: replay.fold.streams().count(),
        muted_rooms: replay.fold.muted_rooms(),
        catch_up_rounds,
        locked,
        elapsed: started.elapsed(),
        checkpoint: replay.seen,
    })
}

/// Folds the log and compares the read model with it, both as of one snapshot, changing
/// nothing. A rebuild's swap waits for it, and it waits for a swap in progress.
#[tracing::instrument(skip(pool))]
pub async fn verify(pool: &Pool) -> Result<VerifyReport, RebuildError> {
    let mut replay = Replay::new(pool.get().await?).await?;
    read_model::lock_swap_shared(&*replay.reader).await?;
    read_model::begin_snapshot(&*replay.reader).await?;
    let compared = compare(&mut replay).await;
    read_model::end_snapshot(&*replay.reader).await?;
    read_model::unlock_swap_shared(&*replay.reader).await?;
    compared
}

async fn compare(replay: &mut Replay) -> Result<VerifyReport, RebuildError> {
    let to = replay.snapshot().await?;
    replay.run(to, None).await?;
    replay.progress.finish("replayed the log");
    let mut model = ReadModel::default();
    read_model::scan(&*replay.reader, |row| model.add(row)).await?;
    Ok(VerifyReport {
        events: replay.events,
        differences: differences(&replay.fold, &model),
    })
}
