//! Deletes expired mutes and pauses from the read models in the background, so that
//! `room_mutes` and `notification_pauses` do not grow with every timed mute or pause ever
//! made. Nothing depends on it for correctness: every
//! read leaves expired rows out by the database's clock, and verify ignores them.

use std::time::Duration;

use tokio::time::Instant;

use crate::periodic;
use crate::projections::{notification_pauses, room_mutes, user_rows};
use crate::store::{Pool, StoreError};

/// How often a process sweeps. Several instances may sweep at once: each skips the rows
/// another holds.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Rows deleted per statement: short transactions, short row locks, bounded WAL.
const BATCH: i64 = 1000;

/// Sweeps `pool` every `interval` on the current runtime, for as long as the runtime lives.
pub fn spawn(pool: Pool, interval: Duration) {
    periodic::spawn_every(Instant::now() + interval, interval, move || {
        let pool = pool.clone();
        async move {
            match sweep(&pool).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "swept expired mutes and pauses"),
                // The next tick tries again; an expired row left meanwhile is invisible.
                Err(err) => {
                    tracing::warn!(error = %err, "sweeping expired mutes and pauses failed")
                }
            }
        }
    });
}

/// Deletes every expired row of both read models, a batch at a time; answers how many.
pub async fn sweep(pool: &Pool) -> Result<u64, StoreError> {
    let conn = pool.get().await?;
    let mut deleted = 0;
    for table in [room_mutes::TABLE, notification_pauses::TABLE] {
        loop {
            let batch = user_rows::sweep_expired(&conn, table, BATCH).await?;
            deleted += batch;
            if batch < BATCH as u64 {
                break;
            }
        }
    }
    Ok(deleted)
}
