//! The mechanics of rebuilding the read model beside the live one: shadow tables
//! (`<table>_rebuild`) loaded by COPY, given the live tables' indexes and grants, and swapped
//! in by rename; the advisory locks that keep rebuilds and verifies apart; and the store's
//! own rows in it, `stream_versions`. What a read model's rows are comes from its module in
//! [`crate::projections`].

use deadpool_postgres::Transaction;
use std::pin::Pin;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::batches::Batches;
use super::log_reader::LogCursor;
use super::{execute, query, GenericClient, StoreError};
use crate::domain::STREAM_TYPE_USER_PREFERENCES;
use crate::projections::{notification_pauses, room_mutes};

/// Held for a whole rebuild, so two rebuilds cannot race over the shadow tables.
const REBUILD_LOCK_KEY: i64 = 0x6368_6174_7265_6275; // "chatrebu"
/// Shared by each verify for its whole run, exclusive for a rebuild's swap: a verify never
/// compares a snapshot of the log taken before a swap with the tables swapped in after it.
/// Taken before any table lock by both, so it cannot deadlock with them.
const SWAP_LOCK_KEY: i64 = 0x6368_6174_7377_6170; // "chatswap"

/// A `stream_versions` row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub app: String,
    pub client: String,
    pub version: i32,
}

/// A `stream_versions` row to write.
pub struct VersionRecord<'a> {
    pub app: &'a str,
    pub client: &'a str,
    pub version: i32,
}

/// Takes the rebuild lock for this session; `false` when another rebuild holds it.
#[tracing::instrument(skip(db))]
pub async fn try_lock_rebuild<C: GenericClient>(db: &C) -> Result<bool, StoreError> {
    let row = db
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBUILD_LOCK_KEY])
        .await?;
    Ok(row.get(0))
}

#[tracing::instrument(skip(db))]
pub async fn unlock_rebuild<C: GenericClient>(db: &C) -> Result<(), StoreError> {
    db.query_one("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK_KEY])
        .await?;
    Ok(())
}

/// Waits until no swap is in progress and keeps one from starting until
/// [`unlock_swap_shared`]. A session lock, taken before the verify's snapshot, so that the
/// snapshot is taken after any swap it waited for.
#[tracing::instrument(skip(db))]
pub async fn lock_swap_shared<C: GenericClient>(db: &C) -> Result<(), StoreError> {
    db.query_one("SELECT pg_advisory_lock_shared($1)", &[&SWAP_LOCK_KEY])
        .await?;
    Ok(())
}

#[tracing::instrument(skip(db))]
pub async fn unlock_swap_shared<C: GenericClient>(db: &C) -> Result<(), StoreError> {
    db.query_one("SELECT pg_advisory_unlock_shared($1)", &[&SWAP_LOCK_KEY])
        .await?;
    Ok(())
}

/// Waits for running verifies to finish and holds new ones off until the swap commits.
#[tracing::instrument(skip(tx))]
pub async fn lock_swap(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&SWAP_LOCK_KEY])
        .await?;
    Ok(())
}

/// Every `stream_versions` row of preference streams, user after user in byte order of
/// `(app, user)`, as [`room_mutes::scan_by_user`] reads its rows.
#[tracing::instrument(skip(tx))]
pub async fn versions_by_user<'t, 'a>(
    tx: &'t tokio_postgres::Transaction<'a>,
    batch: i32,
) -> Result<Batches<'t, 'a, VersionRow>, StoreError> {
    Batches::open(
        tx,
        "SELECT app_id, stream_id, version FROM stream_versions WHERE stream_type = $1
         ORDER BY app_id COLLATE \"C\", stream_id COLLATE \"C\"",
        &[&STREAM_TYPE_USER_PREFERENCES],
        batch,
        |row| {
            Ok(VersionRow {
                app: row.get(0),
                client: row.get(1),
                version: row.get(2),
            })
        },
    )
    .await
}

/// The read-model tables a rebuild replaces, each with a shadow named `<table>_rebuild`.
const TABLES: [&str; 3] = [
    room_mutes::TABLE,
    notification_pauses::TABLE,
    "stream_versions",
];
const SHADOW: &str = "_rebuild";
/// The live tables a swap replaced, until they are dropped after it.
const RETIRED: &str = "_retired";

/// Creates the empty shadow of the table `R` is written to, shaped like the live one,
/// without indexes (dropping one a crashed rebuild left behind). Created in the loading
/// transaction, it can be loaded with `COPY … FREEZE`.
#[tracing::instrument(skip(tx), fields(table = R::TABLE))]
pub async fn create_shadow<R: ShadowRow>(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let table = R::TABLE;
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}{SHADOW};
         CREATE TABLE {table}{SHADOW} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES);"
    ))
    .await?;
    Ok(())
}

/// Drops the tables a swap retired (and any a crashed rebuild left behind).
#[tracing::instrument(level = "debug", skip(db))]
pub async fn drop_retired<C: GenericClient>(db: &C) -> Result<(), StoreError> {
    for table in TABLES {
        db.batch_execute(&format!("DROP TABLE IF EXISTS {table}{RETIRED}"))
            .await?;
    }
    Ok(())
}

/// A view or a foreign key on a live table would follow it when it is renamed away and
/// silently read the retired rows: refuse the swap instead, as a `DROP` without `CASCADE`
/// would.
async fn refuse_dependents(tx: &Transaction<'_>, table: &str) -> Result<(), StoreError> {
    let dependents = tx
        .query(
            "SELECT DISTINCT d.classid::regclass::text FROM pg_depend d
             WHERE d.refobjid = $1::text::regclass AND d.deptype = 'n'
               AND d.classid IN ('pg_rewrite'::regclass, 'pg_constraint'::regclass)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                               WHERE d.classid = 'pg_constraint'::regclass AND c.oid = d.objid
                                 AND c.conrelid = $1::text::regclass)",
            &[&table],
        )
        .await?;
    if dependents.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "a view or a foreign key depends on {table}; drop it before rebuilding"
        )))
    }
}

/// Drops the shadow tables, so a rebuild that failed leaves nothing behind.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn drop_shadow<C: GenericClient>(db: &C) -> Result<(), StoreError> {
    for table in TABLES {
        db.batch_execute(&format!("DROP TABLE IF EXISTS {table}{SHADOW}"))
            .await?;
    }
    Ok(())
}

/// A row that a binary COPY can write into a shadow table.
pub trait ShadowRow {
    /// The live table; its shadow is `<TABLE>_rebuild`.
    const TABLE: &'static str;
    const COPY: &'static str;
    const TYPES: &'static [Type];
    fn values(&self) -> Vec<&(dyn ToSql + Sync)>;
}

impl ShadowRow for VersionRecord<'_> {
    const TABLE: &'static str = "stream_versions";
    const COPY: &'static str =
        "COPY stream_versions_rebuild (app_id, stream_type, stream_id, version)";
    const TYPES: &'static [Type] = &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT4];
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.app,
            &STREAM_TYPE_USER_PREFERENCES,
            &self.client,
            &self.version,
        ]
    }
}

/// Rows going into one shadow table through one binary COPY, written as they come: memory
/// holds the COPY's buffer, not the rows.
pub struct ShadowCopy {
    writer: Pin<Box<BinaryCopyInWriter>>,
}

impl ShadowCopy {
    /// Starts the COPY into `R`'s shadow; `freeze` when the table was created in this
    /// transaction.
    pub async fn start<R: ShadowRow>(
        tx: &Transaction<'_>,
        freeze: bool,
    ) -> Result<Self, StoreError> {
        let sink = tx
            .copy_in(&format!(
                "{} FROM STDIN (FORMAT binary, FREEZE {freeze})",
                R::COPY
            ))
            .await?;
        Ok(ShadowCopy {
            writer: Box::pin(BinaryCopyInWriter::new(sink, R::TYPES)),
        })
    }

    pub async fn write<R: ShadowRow>(&mut self, row: &R) -> Result<(), StoreError> {
        self.writer.as_mut().write(&row.values()).await?;
        Ok(())
    }

    pub async fn finish(mut self) -> Result<u64, StoreError> {
        Ok(self.writer.as_mut().finish().await?)
    }
}

/// Writes rows into their shadow table with one binary COPY; `freeze` when the table was
/// created in this transaction.
#[tracing::instrument(skip_all, fields(table = R::COPY))]
pub async fn copy_rows<R: ShadowRow>(
    tx: &Transaction<'_>,
    freeze: bool,
    rows: impl Iterator<Item = R>,
) -> Result<u64, StoreError> {
    let mut copy = ShadowCopy::start::<R>(tx, freeze).await?;
    for row in rows {
        copy.write(&row).await?;
    }
    copy.finish().await
}

/// An index of a live table, as the catalog describes it.
struct LiveIndex {
    name: String,
    definition: String,
    /// `p` or `u` when the index backs a primary-key or unique constraint.
    constraint: Option<String>,
}

#[tracing::instrument(skip(tx))]
async fn indexes_of(tx: &Transaction<'_>, table: &str) -> Result<Vec<LiveIndex>, StoreError> {
    let rows = tx
        .query(
            "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), c.contype::text
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
                                      AND c.contype IN ('p', 'u')
             WHERE x.indrelid = $1::text::regclass
             ORDER BY 1",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| LiveIndex {
            name: row.get(0),
            definition: row.get(1),
            constraint: row.get(2),
        })
        .collect())
}

/// The definition of a live index rewritten to build its shadow twin on the shadow table:
/// `CREATE … INDEX name ON public.table USING …` becomes `… name_rebuild ON public.table_rebuild …`.
fn shadow_definition(definition: &str, index: &str, table: &str) -> Option<String> {
    let head = format!("INDEX {index} ON ");
    let at = definition.find(&head)?;
    let rest = &definition[at + head.len()..];
    let end = rest.find(" USING ")?;
    let target = &rest[..end];
    let ours = target == table || target.ends_with(&format!(".{table}"));
    ours.then(|| {
        format!(
            "{}INDEX {index}{SHADOW} ON {target}{SHADOW}{}",
            &definition[..at],
            &rest[end..]
        )
    })
}

/// Gives the loaded shadow tables the live tables' keys and indexes, whatever migrations
/// made them (built once, after the load, which is far cheaper than maintaining them row
/// by row), and statistics.
#[tracing::instrument(skip(tx))]
pub async fn index_shadow(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // Enough sort memory to build each index in one in-memory sort rather than an
    // external merge on disk (the default 64 MB spills at about a million mutes).
    tx.batch_execute("SET LOCAL maintenance_work_mem = '512MB'")
        .await?;
    for table in TABLES {
        for index in indexes_of(tx, table).await? {
            let definition =
                shadow_definition(&index.definition, &index.name, table).ok_or_else(|| {
                    StoreError::Corrupt(format!("cannot rebuild index {}", index.definition))
                })?;
            tx.batch_execute(&definition).await?;
            let kind = match index.constraint.as_deref() {
                Some("p") => "PRIMARY KEY",
                Some("u") => "UNIQUE",
                _ => continue,
            };
            tx.batch_execute(&format!(
                "ALTER TABLE {table}{SHADOW} ADD CONSTRAINT {name}{SHADOW} {kind} USING INDEX {name}{SHADOW}",
                name = index.name
            ))
            .await?;
        }
        tx.batch_execute(&format!("ANALYZE {table}{SHADOW}"))
            .await?;
    }
    Ok(())
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Grants on the shadow tables what the live tables grant to other roles (a runtime role
/// that may write the read model, say): a swapped-in table keeps no privileges of the one
/// it replaces, and the service would lose access at the swap.
#[tracing::instrument(skip(tx))]
pub async fn grant_shadow(tx: &Transaction<'_>) -> Result<(), StoreError> {
    for table in TABLES {
        let grants = tx
            .query(
                "SELECT r.rolname::text, a.privilege_type, a.is_grantable
                 FROM pg_class c
                 CROSS JOIN LATERAL aclexplode(c.relacl) a
                 LEFT JOIN pg_roles r ON r.oid = a.grantee
                 WHERE c.oid = $1::text::regclass AND a.grantee <> c.relowner",
                &[&table],
            )
            .await?;
        for grant in grants {
            let grantee = grant
                .get::<_, Option<String>>(0)
                .map_or_else(|| "PUBLIC".to_owned(), |role| quoted(&role));
            let privilege: String = grant.get(1);
            let option = if grant.get(2) {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            tx.batch_execute(&format!(
                "GRANT {privilege} ON {table}{SHADOW} TO {grantee}{option}"
            ))
            .await?;
        }
    }
    Ok(())
}

/// How many preference streams the live read model holds.
#[tracing::instrument(skip(db))]
pub async fn count_streams<C: GenericClient>(db: &C) -> Result<usize, StoreError> {
    let row = db
        .query_one(
            "SELECT count(*) FROM stream_versions WHERE stream_type = $1",
            &[&STREAM_TYPE_USER_PREFERENCES],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(0) as usize)
}

/// These users' versions in the shadow table (0 when they have none), in the order of
/// [`super::log_reader::UserOrder::Indexed`], so that their events can be merged in.
#[tracing::instrument(skip_all, fields(streams = apps.len()))]
pub async fn shadow_versions(
    tx: &Transaction<'_>,
    apps: &[&str],
    clients: &[&str],
) -> Result<Vec<VersionRow>, StoreError> {
    let rows = query(
        tx,
        "SELECT u.app_id, u.client_id, coalesce(v.version, 0)
         FROM unnest($1::text[], $2::text[]) AS u(app_id, client_id)
         LEFT JOIN stream_versions_rebuild v
                ON v.app_id = u.app_id AND v.stream_type = $3 AND v.stream_id = u.client_id
         ORDER BY u.app_id, u.client_id",
        &[&apps, &clients, &STREAM_TYPE_USER_PREFERENCES],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| VersionRow {
            app: row.get(0),
            client: row.get(1),
            version: row.get(2),
        })
        .collect())
}

/// Removes these streams' versions from the shadow table, so that their new ones can be
/// copied in.
#[tracing::instrument(skip_all, fields(streams = apps.len()))]
pub async fn clear_shadow_versions(
    tx: &Transaction<'_>,
    apps: &[&str],
    clients: &[&str],
) -> Result<(), StoreError> {
    execute(
        tx,
        "DELETE FROM stream_versions_rebuild
         WHERE stream_type = $3
           AND (app_id, stream_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        &[&apps, &clients, &STREAM_TYPE_USER_PREFERENCES],
    )
    .await?;
    Ok(())
}

/// Waits for every in-flight write to finish and holds new ones off until commit. Writers
/// lock `stream_versions` before anything else, so taking it first cannot deadlock with
/// them; requests meanwhile wait (up to `--lock-timeout-ms`, then 503). The read
/// models follow in the order the load statement reads them (`UserPreferences::LOAD`).
#[tracing::instrument(skip(tx))]
pub async fn lock_live(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(
        "LOCK TABLE stream_versions, room_mutes, notification_pauses IN ACCESS EXCLUSIVE MODE",
    )
    .await?;
    Ok(())
}

/// Replaces the live tables with the shadow ones and records the log cursor they reflect
/// (with the highest position then, for people reading the table).
/// Running servers keep their prepared statements: PostgreSQL re-plans them by name against
/// the new tables, whose columns are the same.
#[tracing::instrument(skip(tx))]
pub async fn swap(tx: &Transaction<'_>, cursor: &LogCursor) -> Result<(), StoreError> {
    for table in TABLES {
        refuse_dependents(tx, table).await?;
        let live_indexes = indexes_of(tx, table).await?;
        let shadow_indexes = indexes_of(tx, &format!("{table}{SHADOW}")).await?;
        // The live table is renamed away, not dropped: dropping a large table unlinks its
        // files at commit, while the lock still holds writers off (400 ms for 7.6 million
        // rows). [`drop_retired`] drops it once the lock is gone.
        tx.batch_execute(&format!(
            "ALTER TABLE {table} RENAME TO {table}{RETIRED};
             ALTER TABLE {table}{SHADOW} RENAME TO {table};"
        ))
        .await?;
        // Renaming an index renames the constraint it backs, too.
        for index in live_indexes {
            tx.batch_execute(&format!(
                "ALTER INDEX {name} RENAME TO {name}{RETIRED}",
                name = index.name
            ))
            .await?;
        }
        for index in shadow_indexes {
            if let Some(live) = index.name.strip_suffix(SHADOW) {
                tx.batch_execute(&format!("ALTER INDEX {} RENAME TO {live}", index.name))
                    .await?;
            }
        }
    }
    let xip: Vec<String> = cursor.xip.iter().map(u64::to_string).collect();
    execute(
        tx,
        "INSERT INTO projection_checkpoints (projection, position, transaction_id, xip, updated_at)
         VALUES ($1, (SELECT coalesce(max(position), 0) FROM events), $2::text::xid8,
                 $3::text[]::xid8[], now())
         ON CONFLICT (projection) DO UPDATE SET position = excluded.position,
             transaction_id = excluded.transaction_id, xip = excluded.xip,
             updated_at = excluded.updated_at",
        &[&room_mutes::TABLE, &cursor.xmax.to_string(), &xip],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_indexes_are_defined_on_the_shadow_table() {
        assert_eq!(
            shadow_definition(
                "CREATE UNIQUE INDEX room_mutes_pkey ON public.room_mutes USING btree (app_id, client_id, room_id)",
                "room_mutes_pkey",
                "room_mutes"
            )
            .as_deref(),
            Some("CREATE UNIQUE INDEX room_mutes_pkey_rebuild ON public.room_mutes_rebuild USING btree (app_id, client_id, room_id)")
        );
        assert_eq!(
            shadow_definition("CREATE INDEX i ON other USING btree (a)", "i", "room_mutes"),
            None
        );
    }
}
