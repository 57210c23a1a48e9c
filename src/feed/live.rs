//! A user's live preference stream (`GET /me/events`): every change to their preferences,
//! in stream order, resumable by stream version; bounded per user and per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::watcher::LogWatcher;
use crate::domain::{AppId, ClientId};
use crate::metrics::{self, GaugeGuard};
use crate::store::audit::AuditEntry;
use crate::store::log_reader;
use crate::store::{Pool, StoreError};

/// A quiet stream still sends a comment this often, so proxies and clients can tell an
/// idle stream from a dead connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const PAGE: i64 = 100;

#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    pub per_process: usize,
    pub per_user: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            per_process: 10_000,
            per_user: 5,
        }
    }
}

type UserKey = (String, String);

/// The live streams open in this process, by user.
#[derive(Debug)]
pub struct LiveStreams {
    limits: LiveLimits,
    open: Mutex<(usize, HashMap<UserKey, usize>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("too many live streams are open (for this user or on this server)")]
pub struct TooManyStreams;

impl LiveStreams {
    pub fn new(limits: LiveLimits) -> Arc<Self> {
        Arc::new(LiveStreams {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for one more stream of this user, held until the slot is dropped.
    pub fn open(
        self: &Arc<Self>,
        app: &AppId,
        client: &ClientId,
    ) -> Result<LiveSlot, TooManyStreams> {
        let key = (app.as_str().to_owned(), client.as_str().to_owned());
        let mut open = self.open.lock().expect("stream counts");
        let (total, per_user) = &mut *open;
        let mine = per_user.get(&key).copied().unwrap_or(0);
        if *total >= self.limits.per_process || mine >= self.limits.per_user {
            return Err(TooManyStreams);
        }
        *total += 1;
        per_user.insert(key.clone(), mine + 1);
        Ok(LiveSlot {
            streams: Arc::clone(self),
            key,
            _gauge: metrics::feed_stream_opened(),
        })
    }
}

pub struct LiveSlot {
    streams: Arc<LiveStreams>,
    key: UserKey,
    _gauge: GaugeGuard,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("stream counts");
        let (total, per_user) = &mut *open;
        *total -= 1;
        if let Some(mine) = per_user.get_mut(&self.key) {
            *mine -= 1;
            if *mine == 0 {
                per_user.remove(&self.key);
            }
        }
    }
}

#[derive(Debug)]
pub enum LiveItem {
    Event {
        version: i32,
        entry: Box<AuditEntry>,
    },
    KeepAlive,
}

/// What a live stream needs from the server it runs in.
#[derive(Clone)]
pub struct LiveContext {
    pub pool: Pool,
    pub watcher: LogWatcher,
    pub shutdown: watch::Receiver<bool>,
}

/// Streams the user's events after stream version `after` into the returned channel until
/// the receiver is dropped, the server shuts down or the database fails (the client then
/// resumes with its last version).
pub fn follow(
    context: LiveContext,
    app: AppId,
    client: ClientId,
    after: i32,
    slot: LiveSlot,
) -> mpsc::Receiver<LiveItem> {
    let (sender, receiver) = mpsc::channel(PAGE as usize);
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(err) = run(context, &app, &client, after, &sender).await {
            tracing::warn!(error = %err, app = app.as_str(), "a live stream ended on a database error");
        }
    });
    receiver
}

async fn run(
    mut context: LiveContext,
    app: &AppId,
    client: &ClientId,
    mut version: i32,
    sender: &mpsc::Sender<LiveItem>,
) -> Result<(), StoreError> {
    let mut woken = false;
    loop {
        let mut subscription = context.watcher.subscribe();
        let events = {
            let db = context.pool.get().await?;
            log_reader::stream_after(&db, app, client, version, PAGE).await?
        };
        let full = events.len() as i64 == PAGE;
        for (at, entry) in events {
            if woken {
                metrics::feed_delivered(entry.recorded_at);
            }
            version = at;
            if sender
                .send(LiveItem::Event {
                    version,
                    entry: Box::new(entry),
                })
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        if full {
            continue;
        }
        woken = tokio::select! {
            () = subscription.moved(app.as_str(), Some(client.as_str())) => true,
            () = tokio::time::sleep(KEEP_ALIVE) => {
                if sender.send(LiveItem::KeepAlive).await.is_err() {
                    return Ok(());
                }
                false
            }
            () = stopping(&mut context.shutdown) => return Ok(()),
            () = sender.closed() => return Ok(()),
        };
    }
}

async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // A closed channel means the server is gone: stop too.
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// The user's stream version now: where a stream opened without `Last-Event-ID` starts.
pub async fn current_version(
    pool: &Pool,
    app: &AppId,
    client: &ClientId,
) -> Result<i32, StoreError> {
    let db = pool.get().await?;
    log_reader::stream_version(&db, app, client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_per_user_and_per_process() {
        let streams = LiveStreams::new(LiveLimits {
            per_process: 3,
            per_user: 2,
        });
        let app = AppId::parse("a").unwrap();
        let (u1, u2, u3) = (
            ClientId::parse("u1").unwrap(),
            ClientId::parse("u2").unwrap(),
            ClientId::parse("u3").unwrap(),
        );
        let first = streams.open(&app, &u1).unwrap();
        let _second = streams.open(&app, &u1).unwrap();
        assert!(streams.open(&app, &u1).is_err(), "third stream of one user");
        let _other = streams.open(&app, &u2).unwrap();
        assert!(
            streams.open(&app, &u3).is_err(),
            "fourth stream of the process"
        );
        drop(first);
        assert!(
            streams.open(&app, &u1).is_ok(),
            "a closed stream frees its place"
        );
    }
}
