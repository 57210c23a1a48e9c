//! Erasing a user and expiring personal data (docs/privacy.md): the one code path behind
//! `POST /admin/clients/{uid}/erase` and `chatprefs erase`, and behind `serve`'s periodic
//! retention and `chatprefs prune`.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::ServiceError;
use crate::domain::{AppId, ClientId, EventMetadata};
use crate::periodic;
use crate::store::privacy::{self, Erased};
use crate::store::{Pool, StoreError};

/// How often `serve` expires personal data; several instances may do it at once (each
/// skips the rows another holds).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Rows expired per statement: short transactions, short row locks, bounded WAL.
pub const RETENTION_BATCH: i64 = 1000;

/// Erases `client`'s personal data in one transaction (see [`privacy::erase`]).
#[tracing::instrument(skip(pool, metadata))]
pub async fn erase(
    pool: &Pool,
    app: &AppId,
    client: &ClientId,
    metadata: &EventMetadata,
) -> Result<Erased, ServiceError> {
    let mut conn = pool.get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await.map_err(StoreError::from)?;
    let erased = privacy::erase(&tx, app, client, metadata)
        .await?
        .ok_or(ServiceError::ClientNotFound)?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(erased)
}

/// Expires the personal data of every event recorded more than `retention_days` ago, a
/// batch at a time, calling `progress` with the running total after each batch; answers
/// the total. `0` days keeps everything.
pub async fn expire(
    pool: &Pool,
    retention_days: u32,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
    let conn = pool.get().await?;
    let mut expired = 0;
    loop {
        let batch = privacy::expire_batch(&conn, before, RETENTION_BATCH).await?;
        expired += batch;
        progress(expired);
        if batch < RETENTION_BATCH as u64 {
            return Ok(expired);
        }
    }
}

/// Expires personal data every `interval` on the current runtime, for as long as it lives.
pub fn spawn_retention(pool: Pool, retention_days: u32, interval: Duration) {
    if retention_days == 0 {
        return;
    }
    periodic::spawn_every(Instant::now(), interval, move || {
        let pool = pool.clone();
        async move {
            match expire(&pool, retention_days, |_| {}).await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired personal data"),
                // The next tick tries again.
                Err(err) => tracing::warn!(error = %err, "expiring personal data failed"),
            }
        }
    });
}
