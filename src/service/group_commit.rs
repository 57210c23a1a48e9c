//! Group commit: appends that different users' requests make at the same time in one
//! worker share a transaction, so they cost PostgreSQL one commit (one WAL flush) and one
//! round trip instead of one each. Only appends decided on a remembered stream come here
//! (`command::append_remembered`): one statement each, needing no read first.
//!
//! No request waits to fill a group: a committer takes whatever is waiting when it is
//! free, so alone a request commits alone, and under load the groups grow with the queue.
//! A group is all or nothing; if it fails because one member's append was refused (its
//! stream moved on, its room went), each member is sent again on its own, pipelined, so the
//! others do not pay for it.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::domain::{AppId, ClientId, Event, EventMetadata};
use crate::metrics;
use crate::projections::UserPreferences;
use crate::store::{stream, Pool, StoreError, Unit};

/// Groups committing at once in each worker. Two keep a group filling while the other
/// commits; with more, groups stay small and each costs a commit again
/// (docs/performance.md, "Group commit").
const COMMITTERS: usize = 2;

/// Most appends in one group: a group's row locks are held until its commit.
const MOST_PER_GROUP: usize = 16;

/// One worker's queue of appends waiting for a commit, and its committers.
pub struct GroupCommit {
    pool: Pool,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    committers: usize,
}

/// An append decided at `version` of the user's stream in `read_model`, and where to answer.
struct Waiting {
    app: AppId,
    client: ClientId,
    version: i32,
    read_model: u32,
    event: Event,
    metadata: EventMetadata,
    answer: oneshot::Sender<Result<stream::Recorded, StoreError>>,
}

impl Waiting {
    fn append(&self) -> stream::Append<'_> {
        stream::Append {
            app: &self.app,
            client: &self.client,
            version: self.version,
            read_model: Some(self.read_model),
            event: &self.event,
            metadata: &self.metadata,
        }
    }
}

impl GroupCommit {
    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(GroupCommit {
            pool,
            queue: Mutex::default(),
        })
    }

    /// Appends `event` as `version` of the user's stream, checked as `stream::append` checks
    /// it, in the next group this worker commits.
    pub async fn append(
        self: &Arc<Self>,
        app: &AppId,
        client: &ClientId,
        version: i32,
        read_model: u32,
        event: Event,
        metadata: &EventMetadata,
    ) -> Result<stream::Recorded, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start_committer = {
            let mut queue = self.queue();
            queue.waiting.push(Waiting {
                app: app.clone(),
                client: client.clone(),
                version,
                read_model,
                event,
                metadata: metadata.clone(),
                answer,
            });
            let start = queue.committers < COMMITTERS;
            queue.committers += usize::from(start);
            start
        };
        if start_committer {
            tokio::spawn(Arc::clone(self).commit_waiting());
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the group commit ended without an answer".into(),
            ))
        })
    }

    /// Commits what is waiting, group by group, until nothing is.
    async fn commit_waiting(self: Arc<Self>) {
        loop {
            let mut group = {
                let mut queue = self.queue();
                if queue.waiting.is_empty() {
                    queue.committers -= 1;
                    return;
                }
                let taken = queue.waiting.len().min(MOST_PER_GROUP);
                queue.waiting.drain(..taken).collect::<Vec<_>>()
            };
            // One lock order for every group, so two groups (on two instances) cannot
            // deadlock on each other's stream rows.
            group.sort_by(|a, b| (&a.app, &a.client).cmp(&(&b.app, &b.client)));
            let answers = self.commit(&group).await;
            for (waiting, answer) in group.into_iter().zip(answers) {
                // A request that went away (its client hung up) needs no answer.
                let _ = waiting.answer.send(answer);
            }
        }
    }

    /// Each member's answer, in order.
    async fn commit(&self, group: &[Waiting]) -> Vec<Result<stream::Recorded, StoreError>> {
        let unit = match self.pool.get().await {
            Ok(conn) => Unit::new(conn),
            Err(err) => {
                let detail = err.to_string();
                return group
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(detail.clone())))
                    .collect();
            }
        };
        let appends: Vec<_> = group.iter().map(Waiting::append).collect();
        metrics::group_committed(appends.len());
        let failed = match stream::append_all::<UserPreferences>(&unit, &appends).await {
            Ok(recorded) => return recorded.into_iter().map(Ok).collect(),
            Err(err) if appends.len() == 1 => return vec![Err(err)],
            Err(err) => err,
        };
        if unit.is_open() {
            // The COMMIT itself failed: the connection is gone, and the outcome unknown.
            return group
                .iter()
                .map(|_| Err(StoreError::Unavailable(failed.to_string())))
                .collect();
        }
        // Nothing of the group was written. Each member alone, so that only the one refused
        // (or failing) answers so.
        metrics::group_split();
        let alone = appends.iter().map(|append| async {
            let recorded =
                stream::append_all::<UserPreferences>(&unit, std::slice::from_ref(append)).await?;
            Ok(recorded.into_iter().next().expect("one event, one record"))
        });
        futures_util::future::join_all(alone).await
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding it; if something did, the queue is still whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
