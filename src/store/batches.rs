//! Reading a large query in batches through a portal of the caller's transaction, so that
//! memory holds one batch whatever the size of the table.

use std::collections::VecDeque;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Portal, Row, Transaction};

use super::StoreError;

/// Rows the server hands out a batch at a time; several can be open in one transaction.
pub struct Batches<'t, 'a, T> {
    tx: &'t Transaction<'a>,
    portal: Portal,
    batch: i32,
    buffer: VecDeque<T>,
    done: bool,
    read: fn(&Row) -> Result<T, StoreError>,
}

impl<'t, 'a, T> Batches<'t, 'a, T> {
    pub(crate) async fn open(
        tx: &'t Transaction<'a>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        batch: i32,
        read: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Self, StoreError> {
        let portal = tx.bind(sql, params).await?;
        Ok(Batches {
            tx,
            portal,
            batch,
            buffer: VecDeque::new(),
            done: false,
            read,
        })
    }

    /// The next row without taking it; `None` at the end.
    pub async fn peek(&mut self) -> Result<Option<&T>, StoreError> {
        if self.buffer.is_empty() && !self.done {
            let rows = self.tx.query_portal(&self.portal, self.batch).await?;
            self.done = rows.len() < self.batch as usize;
            for row in &rows {
                self.buffer.push_back((self.read)(row)?);
            }
        }
        Ok(self.buffer.front())
    }

    pub async fn next(&mut self) -> Result<Option<T>, StoreError> {
        self.peek().await?;
        Ok(self.buffer.pop_front())
    }
}
