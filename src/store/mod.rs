//! Everything that speaks SQL but the read models' own (in [`crate::projections`]).
//! Callers get domain types and [`StoreError`], never rows.

pub mod audit;
pub mod auth_events;
pub mod batches;
pub mod directory;
pub mod keys;
pub mod log_reader;
mod pool;
pub mod privacy;
mod replica;
mod roles;
pub mod shadow;
pub mod stream;
mod unit;

pub use deadpool_postgres::{GenericClient, Pool};
pub use pool::{
    connect_pool, describe, ensure_database, migrate, schema_status, Migrated, PoolSettings,
    RequestWaits, SchemaStatus, WorkerPools,
};
pub use replica::{ReadPool, ReplicaHealth, Retryable};
pub use roles::grant_runtime_role;
pub use unit::Unit;

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

/// The unique key that turns a stale append into a concurrency conflict.
const STREAM_VERSION_CONSTRAINT: &str = "events_stream_version_key";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached in time; the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Another writer appended to the same stream first.
    #[error("stream was appended to concurrently")]
    Conflict,
    /// The append's own checks refused the event (its room is missing, the stream lacks the
    /// event before it, or the read model was rebuilt since the state decided on was read):
    /// nothing was appended. See `stream::append_statement`.
    #[error("the append's checks refused the event")]
    NotAppended,
    /// Stored data that this version cannot read; a bug or a manual edit, never user input.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        let db = err.as_db_error();
        if let Some(db) = db {
            if *db.code() == SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some(STREAM_VERSION_CONSTRAINT)
            {
                return StoreError::Conflict;
            }
            // How the append refuses an event its checks fail (`stream::append_statement`).
            if *db.code() == SqlState::NOT_NULL_VIOLATION
                && db.table() == Some("stream_versions")
                && db.column() == Some("version")
            {
                return StoreError::NotAppended;
            }
        }
        if err.is_closed() || is_unavailable(err.code()) || (db.is_none() && err.code().is_none()) {
            return StoreError::Unavailable(err.to_string());
        }
        StoreError::Database(err)
    }
}

/// Error classes that mean "the server is going away or not there yet", not "your query is
/// wrong". A write refused as read-only (25006) reached a server that is, or has become, a
/// standby: during a failover that passes once the new primary is found. A serialization
/// failure (40001) is what a read replica answers when replay cancels a query that holds
/// back rows it must remove: retried on the primary, or later. A lock waited on past
/// `lock_timeout` (55P03) is held by another session; once it lets go, a retry goes through.
fn is_unavailable(code: Option<&SqlState>) -> bool {
    code.is_some_and(|c| {
        let c = c.code();
        c.starts_with("08")
            || c.starts_with("57P")
            // 55P03: a lock waited on past `lock_timeout` (`RequestWaits::lock`).
            // 40P01: chosen as a deadlock's victim; a retry goes through.
            || ["53300", "25006", "40001", "40P01", "55P03"].contains(&c)
    })
}

/// Failing to get a connection, whatever the reason (refused, timed out, the database
/// being dropped or restarted), means the service cannot work right now: unavailable.
impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

/// A new event's id. Time-ordered (UUIDv7), so the log's unique `event_id` index grows at
/// its right edge as `position` does: random (v4) ids put every append on a random leaf of
/// an index as large as the log, the one read or dirtied from outside the cache, and after
/// each checkpoint written whole to the WAL once more.
pub fn new_event_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// The database server's clock: the one `recorded_at` is read from, so "now" compared
/// with it does not depend on the application server's clock.
pub async fn database_now<C: GenericClient>(db: &C) -> Result<DateTime<Utc>, StoreError> {
    let row = query_opt(db, "SELECT clock_timestamp()", &[]).await?;
    row.map(|row| row.get(0))
        .ok_or_else(|| StoreError::Corrupt("SELECT returned no row".into()))
}

/// A read-only repeatable-read transaction: everything read in it, log and read model
/// alike, comes from one snapshot.
#[tracing::instrument(skip(client))]
pub async fn begin_repeatable_read(
    client: &mut deadpool_postgres::Client,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Prepares once per connection (deadpool keeps the cache), then runs.
pub(crate) async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

pub(crate) async fn query_one<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<tokio_postgres::Row, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_one(&statement, params).await?)
}

pub(crate) async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

pub(crate) async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}
