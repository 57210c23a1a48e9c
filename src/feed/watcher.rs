//! One poller per process wakes every waiting feed request and live stream.
//!
//! Alternatives weighed (docs/architecture.md, "Waking readers"): a NOTIFY per append
//! would wake readers at once, but PostgreSQL serialises every committing transaction that
//! has notified on one cluster-wide lock, a cost every write would pay for readers that
//! are mostly not there; each waiting request polling on its own multiplies queries by
//! readers. One poll per process, only while someone waits, costs one indexed query per
//! interval whatever the number of readers, and writes pay nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::store::log_reader::{self, LogCursor};
use crate::store::{Pool, StoreError};

/// Events of these streams, `(app, user)`, may have been committed; `All` when the poller
/// cannot tell (it just started, or a reader fell behind), and every reader should look.
#[derive(Debug)]
pub enum Moved {
    All,
    Streams(Vec<(String, String)>),
}

impl Moved {
    fn concerns(&self, app: &str, client: Option<&str>) -> bool {
        match self {
            Moved::All => true,
            Moved::Streams(streams) => streams
                .iter()
                .any(|(a, c)| a == app && client.is_none_or(|client| c == client)),
        }
    }
}

#[derive(Clone)]
pub struct LogWatcher {
    sender: broadcast::Sender<Arc<Moved>>,
}

impl LogWatcher {
    /// Starts polling `pool` every `interval` on the current runtime, for as long as the
    /// runtime lives; a poll reads nothing while nobody is subscribed.
    pub fn spawn(pool: Pool, interval: Duration) -> Self {
        let (sender, _) = broadcast::channel(64);
        tokio::spawn(poll(pool, interval, sender.clone()));
        LogWatcher { sender }
    }

    /// Subscribe before reading, then wait: nothing committed after the read is missed.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
        }
    }
}

pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Moved>>,
}

impl Subscription {
    /// Returns once events of `app` (of `client` only, when given) may have been committed
    /// since the subscription; pending forever if the poller is gone.
    pub async fn moved(&mut self, app: &str, client: Option<&str>) {
        loop {
            match self.receiver.recv().await {
                Ok(moved) if moved.concerns(app, client) => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

async fn poll(pool: Pool, interval: Duration, sender: broadcast::Sender<Arc<Moved>>) {
    let mut seen: Option<LogCursor> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if sender.receiver_count() == 0 {
            // Nobody waits: read nothing, and start afresh (waking everyone once) later.
            seen = None;
            continue;
        }
        match poll_once(&pool, seen.as_ref()).await {
            Ok((now, moved)) => {
                seen = Some(now);
                if let Some(moved) = moved {
                    // No receiver left since the count above is not an error.
                    let _ = sender.send(Arc::new(moved));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "the change-feed poller could not read the log")
            }
        }
    }
}

async fn poll_once(
    pool: &Pool,
    seen: Option<&LogCursor>,
) -> Result<(LogCursor, Option<Moved>), StoreError> {
    let db = pool.get().await?;
    match seen {
        None => Ok((log_reader::cursor_now(&db).await?, Some(Moved::All))),
        Some(seen) => {
            let (now, streams) = log_reader::streams_moved(&db, seen).await?;
            let moved = (!streams.is_empty()).then_some(Moved::Streams(streams));
            Ok((now, moved))
        }
    }
}
