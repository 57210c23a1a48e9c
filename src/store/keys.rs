//! API keys with roles (`app_keys`) beside each app's original key (`apps.api_key_sha256`,
//! always `platform`), and the console's sessions, which hold on to the key they began with.

use chrono::{DateTime, Utc};

use super::{execute, query, query_opt, GenericClient, StoreError};
use crate::domain::AppId;

/// What a key may do. `Support` reads (audit, as-of, the change feed, a room's muters, a
/// user's profile); `Platform` also writes and issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Support,
    Platform,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Platform => "platform",
        }
    }

    fn parse(stored: &str) -> Result<Self, StoreError> {
        match stored {
            "support" => Ok(Role::Support),
            "platform" => Ok(Role::Platform),
            other => Err(StoreError::Corrupt(format!("unknown key role {other:?}"))),
        }
    }
}

/// The name `app key list` gives an app's original key; no added key may take it.
pub const ORIGINAL_KEY_NAME: &str = "default";

/// What a presented API key proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    pub app: AppId,
    pub role: Role,
    /// The `app_keys` row, whose use is recorded; `None` for the app's original key.
    pub key_id: Option<i64>,
}

/// A key as `app key list` shows it: never the key itself.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn app_from(row: &tokio_postgres::Row, index: usize) -> Result<AppId, StoreError> {
    AppId::parse(row.get::<_, String>(index)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The app and role of a key by its hash: the app's original key or a live added one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn key_by_hash<C: GenericClient>(
    db: &C,
    key_sha256: &[u8],
) -> Result<Option<KeyAuth>, StoreError> {
    let row = query_opt(
        db,
        "SELECT app_id, 'platform', NULL::bigint FROM apps WHERE api_key_sha256 = $1
         UNION ALL
         SELECT app_id, role, key_id FROM app_keys
         WHERE key_sha256 = $1 AND revoked_at IS NULL
         LIMIT 1",
        &[&key_sha256],
    )
    .await?;
    row.map(|row| {
        Ok(KeyAuth {
            app: app_from(&row, 0)?,
            role: Role::parse(row.get(1))?,
            key_id: row.get(2),
        })
    })
    .transpose()
}

/// Adds a key; `None` when a live key of the app has that name already.
#[tracing::instrument(level = "debug", skip(db, key_sha256))]
pub async fn insert_key<C: GenericClient>(
    db: &C,
    app: &AppId,
    name: &str,
    role: Role,
    key_sha256: &[u8],
) -> Result<Option<KeyRecord>, StoreError> {
    let row = query_opt(
        db,
        "INSERT INTO app_keys (app_id, name, role, key_sha256) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app_id, name) WHERE revoked_at IS NULL DO NOTHING
         RETURNING created_at",
        &[&app.as_str(), &name, &role.as_str(), &key_sha256],
    )
    .await?;
    Ok(row.map(|row| KeyRecord {
        name: name.to_owned(),
        role,
        created_at: row.get(0),
        last_used_at: None,
        revoked_at: None,
    }))
}

/// Every key of the app, the original first, then the added ones oldest first (revoked
/// ones included, so that support can see when one stopped).
#[tracing::instrument(level = "debug", skip(db))]
pub async fn list_keys<C: GenericClient>(
    db: &C,
    app: &AppId,
) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = query(
        db,
        "SELECT name, role, created_at, last_used_at, revoked_at FROM (
             SELECT 0 AS k, 0::bigint AS key_id, $2::text AS name, 'platform' AS role,
                    created_at, NULL::timestamptz AS last_used_at, NULL::timestamptz AS revoked_at
             FROM apps WHERE app_id = $1
             UNION ALL
             SELECT 1, key_id, name, role, created_at, last_used_at, revoked_at
             FROM app_keys WHERE app_id = $1) keys
         ORDER BY k, key_id",
        &[&app.as_str(), &ORIGINAL_KEY_NAME],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(KeyRecord {
                name: row.get(0),
                role: Role::parse(row.get(1))?,
                created_at: row.get(2),
                last_used_at: row.get(3),
                revoked_at: row.get(4),
            })
        })
        .collect()
}

/// Revokes the app's live key of that name; answers whether there was one.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn revoke_key<C: GenericClient>(
    db: &C,
    app: &AppId,
    name: &str,
) -> Result<bool, StoreError> {
    let revoked = execute(
        db,
        "UPDATE app_keys SET revoked_at = now()
         WHERE app_id = $1 AND name = $2 AND revoked_at IS NULL",
        &[&app.as_str(), &name],
    )
    .await?;
    Ok(revoked > 0)
}

/// Stamps these keys as used now (one statement for every key used since the last call).
#[tracing::instrument(level = "debug", skip(db))]
pub async fn touch_keys<C: GenericClient>(db: &C, key_ids: &[i64]) -> Result<(), StoreError> {
    execute(
        db,
        "UPDATE app_keys SET last_used_at = now() WHERE key_id = ANY($1)",
        &[&key_ids],
    )
    .await?;
    Ok(())
}

/// A console session as its cookie proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAuth {
    pub app: AppId,
    pub role: Role,
    /// Past its expiry: the console answers 401 and asks to sign in again.
    pub expired: bool,
}

/// Opens a session for the key with this hash, if the key is live; answers its app and
/// role.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert_session<C: GenericClient>(
    db: &C,
    session_sha256: &[u8],
    key_sha256: &[u8],
    lifetime_secs: f64,
) -> Result<Option<KeyAuth>, StoreError> {
    let Some(key) = key_by_hash(db, key_sha256).await? else {
        return Ok(None);
    };
    execute(
        db,
        "INSERT INTO console_sessions (session_sha256, app_id, key_sha256, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        &[
            &session_sha256,
            &key.app.as_str(),
            &key_sha256,
            &lifetime_secs,
        ],
    )
    .await?;
    Ok(Some(key))
}

/// The session with this hash, with the role of the key it began with; `None` when there
/// is no such session or its key was revoked or replaced since.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn session<C: GenericClient>(
    db: &C,
    session_sha256: &[u8],
) -> Result<Option<SessionAuth>, StoreError> {
    let row = query_opt(
        db,
        "SELECT s.app_id, k.role, s.expires_at <= now()
         FROM console_sessions s
         CROSS JOIN LATERAL (
             SELECT 'platform' AS role FROM apps a
             WHERE a.app_id = s.app_id AND a.api_key_sha256 = s.key_sha256
             UNION ALL
             SELECT k.role FROM app_keys k
             WHERE k.key_sha256 = s.key_sha256 AND k.app_id = s.app_id AND k.revoked_at IS NULL
             LIMIT 1) k
         WHERE s.session_sha256 = $1",
        &[&session_sha256],
    )
    .await?;
    row.map(|row| {
        Ok(SessionAuth {
            app: app_from(&row, 0)?,
            role: Role::parse(row.get(1))?,
            expired: row.get(2),
        })
    })
    .transpose()
}

/// Ends a session, and any that expired more than a day ago (so the table stays small
/// without a sweeper of its own).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete_session<C: GenericClient>(
    db: &C,
    session_sha256: &[u8],
) -> Result<(), StoreError> {
    execute(
        db,
        "DELETE FROM console_sessions
         WHERE session_sha256 = $1 OR expires_at < now() - interval '1 day'",
        &[&session_sha256],
    )
    .await?;
    Ok(())
}
