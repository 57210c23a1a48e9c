//! When each added API key was last used, without a write per request: a request only
//! notes its key's id in memory, and a background task stamps every key noted since its last
//! round in one statement, once a [`INTERVAL`]. `app key list` shows the stamp, so it may
//! lag by up to that much.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::periodic;
use crate::store::{keys, Pool, StoreError};

/// How often a process writes the keys it saw used.
pub const INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct KeyUsage {
    used: Mutex<HashSet<i64>>,
}

impl KeyUsage {
    /// Notes that the key was used; costs a set insert.
    pub fn touch(&self, key_id: i64) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(key_id);
        }
    }

    /// Stamps every key noted since the last flush as used now.
    pub async fn flush(&self, pool: &Pool) -> Result<(), StoreError> {
        let ids: Vec<i64> = match self.used.lock() {
            Ok(mut used) => used.drain().collect(),
            Err(_) => return Ok(()),
        };
        if ids.is_empty() {
            return Ok(());
        }
        let conn = pool.get().await?;
        keys::touch_keys(&conn, &ids).await
    }

    /// Flushes every `interval` on the current runtime, for as long as it lives.
    pub fn spawn(self: Arc<Self>, pool: Pool, interval: Duration) {
        periodic::spawn_every(Instant::now() + interval, interval, move || {
            let (usage, pool) = (Arc::clone(&self), pool.clone());
            async move {
                // A failed round loses only its stamps; the next use notes the key again.
                if let Err(err) = usage.flush(&pool).await {
                    tracing::warn!(error = %err, "recording API key use failed");
                }
            }
        });
    }
}
