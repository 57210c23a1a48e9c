//! Group commit: appends that different users' requests make at the same time in one
//! worker share a transaction, so they cost PostgreSQL one commit (one WAL flush) and one
//! round trip instead of one each. A command's single event decided without a clock comes
//! here (`command::append_remembered`, `command::handle`), once its request holds no
//! connection: one append statement each.
//!
//! No request waits to fill a group: a committer takes whatever is waiting when it is
//! free, so alone a request commits alone, and under load the groups grow with the queue.
//! A group is all or nothing. If one member's append fails (its stream moved on, its room
//! went, its stream is locked by someone else past the lock timeout), that member is
//! answered so and the rest are sent again as a group, so the others do not pay for it.
//! A failure no member caused (the connection, the server) is every member's answer.
//!
//! A queued append holds its user's turn (`service::turns`) until it is resolved, even if
//! its request goes away, so the user's next command cannot overtake it; an append whose
//! request has gone before its group is sent is not sent.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::turns::Turn;
use crate::domain::{AppId, ClientId, Event, EventMetadata};
use crate::metrics;
use crate::projections::UserPreferences;
use crate::store::{stream, Pool, Retryable, StoreError, Unit};

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
    /// Longest an append waits in the queue for a committer to take it; then it is taken
    /// out unsent and answered 503. Once taken, the committer's own bounds apply (the pool
    /// timeout, the lock timeout), as they would to a request appending on its own.
    wait: Duration,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    committers: usize,
    /// Names the next append queued, so a request can find its own.
    next_id: u64,
}

/// An append decided at `version` of the user's stream in `read_model`, and where to answer.
struct Waiting {
    id: u64,
    app: AppId,
    client: ClientId,
    version: i32,
    read_model: u32,
    event: Event,
    metadata: EventMetadata,
    answer: oneshot::Sender<Result<stream::Recorded, StoreError>>,
    _turn: Arc<Turn>,
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

    fn answer(self, answer: Result<stream::Recorded, StoreError>) {
        // A request that went away (its client hung up, its wait ran out) needs no answer.
        let _ = self.answer.send(answer);
    }
}

/// An append to make in the next group, as `stream::append` would make it.
pub struct Queued<'a> {
    pub app: &'a AppId,
    pub client: &'a ClientId,
    pub version: i32,
    pub read_model: u32,
    pub event: Event,
    pub metadata: &'a EventMetadata,
    /// The user's turn, held until the append is resolved.
    pub turn: Arc<Turn>,
}

impl GroupCommit {
    /// A worker's group commit on `pool`, whose appends wait at most `wait` for a committer.
    pub fn new(pool: Pool, wait: Duration) -> Arc<Self> {
        Arc::new(GroupCommit {
            pool,
            queue: Mutex::default(),
            wait,
        })
    }

    /// Makes `queued`, checked as `stream::append` checks it, in the next group this worker
    /// commits.
    pub async fn append(
        self: &Arc<Self>,
        queued: Queued<'_>,
    ) -> Result<stream::Recorded, StoreError> {
        let (answer, mut answered) = oneshot::channel();
        let (id, start_committer) = {
            let mut queue = self.queue();
            let id = queue.next_id;
            queue.next_id += 1;
            queue.waiting.push(Waiting {
                id,
                app: queued.app.clone(),
                client: queued.client.clone(),
                version: queued.version,
                read_model: queued.read_model,
                event: queued.event,
                metadata: queued.metadata.clone(),
                answer,
                _turn: queued.turn,
            });
            let start = queue.committers < COMMITTERS;
            queue.committers += usize::from(start);
            (id, start)
        };
        if start_committer {
            tokio::spawn(Arc::clone(self).commit_waiting());
        }
        let ended = || StoreError::Unavailable("the group commit ended without an answer".into());
        if let Ok(answer) = tokio::time::timeout(self.wait, &mut answered).await {
            return answer.unwrap_or_else(|_| Err(ended()));
        }
        let unsent = {
            let mut queue = self.queue();
            let at = queue.waiting.iter().position(|waiting| waiting.id == id);
            at.map(|at| queue.waiting.remove(at))
        };
        if unsent.is_some() {
            return Err(StoreError::Unavailable(format!(
                "no group commit took the append within {} ms",
                self.wait.as_millis()
            )));
        }
        answered.await.unwrap_or_else(|_| Err(ended()))
    }

    /// Commits what is waiting, group by group, until nothing is.
    async fn commit_waiting(self: Arc<Self>) {
        let mut committer = Committer {
            queue: &self.queue,
            ended: false,
        };
        loop {
            let mut group = {
                let mut queue = self.queue();
                queue.waiting.retain(|waiting| !waiting.answer.is_closed());
                if queue.waiting.is_empty() {
                    queue.committers -= 1;
                    committer.ended = true;
                    return;
                }
                let taken = queue.waiting.len().min(MOST_PER_GROUP);
                queue.waiting.drain(..taken).collect::<Vec<_>>()
            };
            // One lock order for every group, so two groups (on two instances) cannot
            // deadlock on each other's stream rows.
            group.sort_by(|a, b| (&a.app, &a.client).cmp(&(&b.app, &b.client)));
            self.commit(group).await;
        }
    }

    /// Commits `group`, answering each member once its outcome is known.
    async fn commit(&self, mut group: Vec<Waiting>) {
        let unit = match self.pool.get().await {
            Ok(conn) => Unit::new(conn),
            Err(err) => return answer_all(group, &StoreError::from(err).to_string()),
        };
        let mut waited_on_a_lock = false;
        while !group.is_empty() {
            let appends: Vec<_> = group.iter().map(Waiting::append).collect();
            let refused = match stream::append_each::<UserPreferences>(&unit, &appends).await {
                Ok(recorded) => {
                    metrics::group_committed(recorded.len());
                    group
                        .into_iter()
                        .zip(recorded)
                        .for_each(|(waiting, recorded)| waiting.answer(Ok(recorded)));
                    return;
                }
                Err(refused) => refused,
            };
            let member = match refused.append {
                // The COMMIT itself failed: the connection is gone, and the outcome unknown.
                _ if unit.is_open() => None,
                // Waiting on a lock a second time: likely a table locked (a rebuild's swap,
                // a migration), which every member would wait for in turn.
                Some(_) if refused.lock_timed_out && waited_on_a_lock => None,
                Some(_) if refused.error.is_unavailable() && !refused.lock_timed_out => None,
                member => member,
            };
            let Some(member) = member else {
                return answer_all(group, &unavailable_detail(&refused.error));
            };
            waited_on_a_lock |= refused.lock_timed_out;
            metrics::group_split();
            group.remove(member).answer(Err(refused.error));
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        lock(&self.queue)
    }
}

/// Nothing panics while holding it; if something did, the queue is still whole.
fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running committer's place in the count, given back if it ends by panicking, so the
/// worker can start committers again.
struct Committer<'a> {
    queue: &'a Mutex<Queue>,
    ended: bool,
}

impl Drop for Committer<'_> {
    fn drop(&mut self) {
        if !self.ended {
            lock(self.queue).committers -= 1;
        }
    }
}

fn answer_all(group: Vec<Waiting>, detail: &str) {
    for waiting in group {
        waiting.answer(Err(StoreError::Unavailable(detail.to_owned())));
    }
}

fn unavailable_detail(error: &StoreError) -> String {
    match error {
        StoreError::Unavailable(detail) => detail.clone(),
        other => other.to_string(),
    }
}
