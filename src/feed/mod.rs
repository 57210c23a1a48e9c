//! The change feed: an app's events in commit order, each exactly once, resumed from an
//! opaque cursor, optionally waiting for the next one; and users' live streams.

pub mod cursor;
pub mod live;
pub mod watcher;

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::AppId;
use crate::metrics;
use crate::store::audit::AuditEntry;
use crate::store::log_reader::{self, FeedRead};
use crate::store::{Pool, StoreError};
pub use cursor::{FeedCursor, InvalidCursor};
use watcher::LogWatcher;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Invalid(#[from] InvalidCursor),
    #[error("the cursor is from a later state of the log than the database has: was the database restored from a backup?")]
    FromTheFuture,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug)]
pub struct FeedPage {
    pub entries: Vec<AuditEntry>,
    pub next: FeedCursor,
}

/// A cursor after everything committed now: following from it shows only what comes next.
pub async fn now(pool: &Pool) -> Result<FeedCursor, FeedError> {
    let db = pool.get().await.map_err(StoreError::from)?;
    Ok(FeedCursor::Seen(log_reader::cursor_now(&db).await?))
}

/// The app's next events after `after`, at most `limit`, without waiting.
#[tracing::instrument(skip(pool))]
pub async fn read(
    pool: &Pool,
    app: &AppId,
    after: &FeedCursor,
    limit: i64,
) -> Result<FeedPage, FeedError> {
    let db = pool.get().await.map_err(StoreError::from)?;
    // One row more than asked tells whether the window goes on past this page.
    let read = match after {
        FeedCursor::Seen(from) => {
            let read = log_reader::read_feed_from(&db, app, from, limit + 1).await?;
            if !from.precedes(&read.window.to) {
                return Err(FeedError::FromTheFuture);
            }
            read
        }
        FeedCursor::Within { window, last } => {
            log_reader::read_feed_window(&db, app, window, *last, limit + 1).await?
        }
    };
    Ok(page_of(read, limit))
}

fn page_of(read: FeedRead, limit: i64) -> FeedPage {
    let FeedRead {
        mut entries,
        window,
    } = read;
    let next = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        let (last, _) = entries.last().expect("limit is at least 1");
        FeedCursor::Within {
            last: *last,
            window,
        }
    } else {
        FeedCursor::Seen(window.to)
    };
    FeedPage {
        entries: entries.into_iter().map(|(_, entry)| entry).collect(),
        next,
    }
}

/// Like [`read`], but when nothing follows `after` yet, waits up to `wait` for the app's
/// next commit and answers with it (within the poll interval of the commit).
#[tracing::instrument(skip(pool, watcher))]
pub async fn wait(
    pool: &Pool,
    watcher: &LogWatcher,
    app: &AppId,
    after: &FeedCursor,
    limit: i64,
    wait: Duration,
) -> Result<FeedPage, FeedError> {
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    let mut after = after.clone();
    let mut woken = false;
    loop {
        let mut subscription = watcher.subscribe();
        let page = read(pool, app, &after, limit).await?;
        if !page.entries.is_empty() || Instant::now() >= deadline {
            if woken {
                page.entries
                    .iter()
                    .for_each(|entry| metrics::feed_delivered(entry.recorded_at));
            }
            return Ok(page);
        }
        after = page.next;
        let _waiting = metrics::feed_request_waiting();
        woken = tokio::time::timeout_at(deadline, subscription.moved(app.as_str(), None))
            .await
            .is_ok();
        if !woken {
            return Ok(FeedPage {
                entries: Vec::new(),
                next: after,
            });
        }
    }
}
