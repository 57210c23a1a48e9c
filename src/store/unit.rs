//! A transaction whose BEGIN and COMMIT can travel in the same round trip as its
//! statements (tokio-postgres pipelines requests that are awaited together on one
//! connection), which `tokio_postgres::Transaction` cannot: it awaits BEGIN on its own and
//! consumes itself to commit.

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Object;

use super::StoreError;

/// Owns a pooled connection while a transaction may be open on it. If the unit is dropped
/// with the transaction still open (an error, or the request future being cancelled when a
/// client hangs up), it rolls back before the connection can go back to the pool.
pub struct Unit {
    conn: Option<Object>,
    open: AtomicBool,
}

impl Unit {
    pub fn new(conn: Object) -> Self {
        Unit {
            conn: Some(conn),
            open: AtomicBool::new(false),
        }
    }

    pub fn client(&self) -> &Object {
        self.conn.as_ref().expect("connection is held until drop")
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Starts the transaction. Await it together with the first statements so that all of
    /// them are sent at once; statements polled after this one run inside the transaction.
    pub async fn begin(&self) -> Result<(), StoreError> {
        self.open.store(true, Ordering::SeqCst);
        Ok(self.client().batch_execute("BEGIN").await?)
    }

    /// Ends the transaction. Pipelined after a statement that failed, PostgreSQL answers
    /// COMMIT of the aborted transaction with a rollback, so nothing half-done commits.
    pub async fn commit(&self) -> Result<(), StoreError> {
        self.client().batch_execute("COMMIT").await?;
        self.open.store(false, Ordering::SeqCst);
        Ok(())
    }

    pub async fn rollback(&self) -> Result<(), StoreError> {
        self.client().batch_execute("ROLLBACK").await?;
        self.open.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        let (Some(conn), true) = (self.conn.take(), self.open.load(Ordering::SeqCst)) else {
            return;
        };
        // The connection returns to the pool only once the rollback has run (or failed, in
        // which case the connection is broken and the pool discards it).
        tokio::spawn(async move {
            if let Err(err) = conn.batch_execute("ROLLBACK").await {
                tracing::warn!(error = %err, "rollback of an abandoned transaction failed");
            }
        });
    }
}
