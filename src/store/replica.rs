//! Reads that may trail the primary by the replication lag (audit, as-of, the push
//! dispatcher's list of a room's muters) go to a read replica when one is configured. When
//! it cannot answer, the primary does: these reads are worth more late than never, and the
//! primary is the one server that is never behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{query_opt, Pool, StoreError};

/// After the replica failed, how long its reads go straight to the primary before it is
/// tried again: a replica that hangs rather than refuses would otherwise cost each read
/// the connect timeout first.
const REPLICA_RETRY: Duration = Duration::from_secs(5);

/// One worker's pools for lag-tolerant reads.
#[derive(Clone)]
pub struct ReadPool {
    replica: Option<Pool>,
    primary: Pool,
    health: Arc<ReplicaHealth>,
}

/// Shared by every worker: one failure sends all of them to the primary for a while.
#[derive(Debug)]
pub struct ReplicaHealth {
    origin: Instant,
    /// Milliseconds after `origin` before which the replica is not tried.
    avoid_until: AtomicU64,
}

impl Default for ReplicaHealth {
    fn default() -> Self {
        ReplicaHealth {
            origin: Instant::now(),
            avoid_until: AtomicU64::new(0),
        }
    }
}

impl ReplicaHealth {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn usable(&self) -> bool {
        self.now() >= self.avoid_until.load(Ordering::Relaxed)
    }

    fn failed(&self) {
        let until = self.now().saturating_add(REPLICA_RETRY.as_millis() as u64);
        self.avoid_until.store(until, Ordering::Relaxed);
    }
}

/// The outcome of a read that may be retried on the primary.
pub trait Retryable {
    /// True when the server could not answer (as opposed to: the request was wrong).
    fn is_unavailable(&self) -> bool;
}

impl Retryable for StoreError {
    fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl ReadPool {
    pub fn new(replica: Option<Pool>, primary: Pool, health: Arc<ReplicaHealth>) -> Self {
        ReadPool {
            replica,
            primary,
            health,
        }
    }

    /// Runs `read` on the replica, or on the primary when there is none, the replica was
    /// found unavailable moments ago, or it is unavailable now.
    pub async fn run<T, E, F, Fut>(&self, read: F) -> Result<T, E>
    where
        F: Fn(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: Retryable + std::fmt::Debug,
    {
        if let Some(replica) = self.replica.as_ref().filter(|_| self.health.usable()) {
            match read(replica.clone()).await {
                Err(err) if err.is_unavailable() => {
                    tracing::warn!(error = ?err, "read replica unavailable; reading from the primary");
                    self.health.failed();
                    crate::metrics::replica_fallback();
                }
                answered => return answered,
            }
        } else if self.replica.is_some() {
            crate::metrics::replica_fallback();
        }
        read(self.primary.clone()).await
    }

    /// The replica's replay lag, `None` when none is configured or it does not answer.
    pub async fn replica_lag(&self) -> Option<Duration> {
        let replica = self.replica.as_ref()?;
        match lag(replica).await {
            Ok(lag) => Some(lag),
            Err(err) => {
                tracing::warn!(error = %err, "read replica did not report its lag");
                self.health.failed();
                None
            }
        }
    }
}

/// How far replay trails what the replica received: zero when caught up (an idle primary
/// sends nothing, and the last replayed commit's age would then look like lag), zero too
/// when the server is not a standby at all.
async fn lag(pool: &Pool) -> Result<Duration, StoreError> {
    let conn = pool.get().await?;
    let row = query_opt(
        &conn,
        "SELECT CASE
                    WHEN NOT pg_is_in_recovery()
                      OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                    ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
                END::float8",
        &[],
    )
    .await?;
    let seconds: f64 = row.map_or(0.0, |r| r.get(0));
    Ok(Duration::from_secs_f64(seconds.max(0.0)))
}
