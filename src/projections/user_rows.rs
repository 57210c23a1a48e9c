//! What the read models keyed by user (`app_id`, `client_id`) with an end (`until`) share:
//! clearing users from their shadow table in a rebuild, counting, and sweeping what has
//! ended. Each model names its own table ([`super::room_mutes::TABLE`],
//! [`super::notification_pauses::TABLE`]); the statements are the same for both.

use deadpool_postgres::Transaction;

use crate::store::{execute, query_one, GenericClient, StoreError};

/// Removes these users' rows from `table`'s shadow, so that their new rows can be copied in.
#[tracing::instrument(skip(tx, apps, clients), fields(streams = apps.len()))]
pub async fn clear_shadow(
    tx: &Transaction<'_>,
    table: &str,
    apps: &[&str],
    clients: &[&str],
) -> Result<(), StoreError> {
    let sql = format!(
        "DELETE FROM {table}_rebuild
         WHERE (app_id, client_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
    );
    execute(tx, &sql, &[&apps, &clients]).await?;
    Ok(())
}

/// How many rows `table` holds (expired ones not yet swept included).
#[tracing::instrument(skip(db))]
pub async fn count<C: GenericClient>(db: &C, table: &str) -> Result<usize, StoreError> {
    let row = query_one(db, &format!("SELECT count(*) FROM {table}"), &[]).await?;
    Ok(row.get::<_, i64>(0).max(0) as usize)
}

/// Deletes up to `batch` rows of `table` whose end passed by the database's clock, oldest
/// end first; answers how many. Only the read model: the log keeps every event, and every
/// read leaves expired rows out already, so this only keeps the table from growing.
///
/// The rows are found on the table's partial index on `until` and locked, skipping rows
/// another sweep or a writer holds rather than waiting; a row locked by this statement
/// cannot change before it ends, so deleting by its `ctid` is a direct lookup (a key join
/// would read every expired row for each batch). The end is checked again all the same.
#[tracing::instrument(skip(db))]
pub async fn sweep_expired<C: GenericClient>(
    db: &C,
    table: &str,
    batch: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM {table}
         WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM {table} WHERE until <= now()
             ORDER BY until LIMIT $1 FOR UPDATE SKIP LOCKED))
           AND until <= now()"
    );
    execute(db, &sql, &[&batch]).await
}
