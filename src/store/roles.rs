//! The least-privilege role `serve` can run as: it appends to the log but cannot rewrite
//! it, and it cannot change the schema.

use tokio_postgres::{error::SqlState, Config};

use super::pool::{connect, created_concurrently, MIGRATION_LOCK_KEY};

/// What `serve` does with each table, and nothing more. `events` is the point: SELECT and
/// INSERT only, so even a compromised service cannot rewrite history (the triggers are the
/// second line, for roles that do hold UPDATE or DELETE).
const TABLE_PRIVILEGES: &[(&str, &str)] = &[
    ("events", "SELECT, INSERT"),
    // Erasure and retention clear rows in place (never DELETE: the audit tells "erased"
    // and "expired" from "never recorded"); the append trigger inserts as the caller.
    ("event_personal_data", "SELECT, INSERT, UPDATE"),
    ("apps", "SELECT"),
    ("app_keys", "SELECT, UPDATE (last_used_at)"),
    ("console_sessions", "SELECT, INSERT, DELETE"),
    ("clients", "SELECT, INSERT, UPDATE"),
    ("tokens", "SELECT, INSERT, UPDATE"),
    ("rooms", "SELECT, INSERT, UPDATE"),
    ("room_mutes", "SELECT, INSERT, UPDATE, DELETE"),
    ("notification_pauses", "SELECT, INSERT, UPDATE, DELETE"),
    ("stream_versions", "SELECT, INSERT, UPDATE"),
    ("projection_checkpoints", "SELECT"),
    ("refinery_schema_history", "SELECT"),
];

#[derive(Debug, thiserror::Error)]
#[error("role name {0:?} is not a plain identifier (a-z, 0-9, _; at most 63 bytes; not starting with a digit)")]
pub struct InvalidRoleName(String);

/// Only plain names, so the role can be written into SQL without any quoting doubt.
fn checked(name: &str) -> Result<&str, InvalidRoleName> {
    let mut bytes = name.bytes();
    let plain = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 63;
    plain
        .then_some(name)
        .ok_or_else(|| InvalidRoleName(name.to_owned()))
}

/// Creates `role` (LOGIN, nothing else) if it does not exist, then sets its privileges on
/// the database named in `database_url` to exactly what `serve` needs. Idempotent.
#[tracing::instrument(skip(database_url))]
pub async fn grant_runtime_role(database_url: &str, role: &str) -> anyhow::Result<()> {
    let role = checked(role)?;
    let config: Config = database_url.parse()?;
    let database = config
        .get_dbname()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?
        .replace('"', "\"\"");
    let client = connect(&config).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            ))
            .await
        {
            Ok(()) => tracing::info!(role, "created runtime role"),
            Err(err) if created_concurrently(&err, SqlState::DUPLICATE_OBJECT) => {}
            Err(err) => return Err(err.into()),
        }
    }
    // Concurrent GRANTs on one object fail with "tuple concurrently updated": two
    // instances migrating together take turns, as they do for the migrations.
    let mut sql = format!(
        "BEGIN;
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY});
         GRANT CONNECT ON DATABASE \"{database}\" TO {role};
         GRANT USAGE ON SCHEMA public TO {role};
         REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role};\n"
    );
    for (table, privileges) in TABLE_PRIVILEGES {
        sql.push_str(&format!("GRANT {privileges} ON {table} TO {role};\n"));
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::checked;

    #[test]
    fn only_plain_role_names_are_accepted() {
        assert!(checked("chatprefs_app").is_ok());
        assert!(checked("_x9").is_ok());
        for bad in ["", "9lives", "Upper", "a-b", "a\"; DROP", &"a".repeat(64)] {
            assert!(checked(bad).is_err(), "{bad}");
        }
    }
}
