//! Apps, their users ("clients"), tokens and rooms: the directory the commands check against.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{execute, query_opt, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, RoomId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: ClientId,
    pub nickname: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub last_login_ms: Option<i64>,
    pub notification_enabled: bool,
}

/// Fields of a user that the platform API may set; `None` keeps what is stored.
#[derive(Debug, Clone, Default)]
/// Changes to a user's profile: `None` keeps a stored value, `Some(None)` clears it.
pub struct ClientProfile {
    pub nickname: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub room_id: RoomId,
    pub name: Option<String>,
    pub room_type: Option<String>,
    pub members: Vec<String>,
}

/// Fields of a room that the platform API may set; `None` keeps what is stored.
#[derive(Debug, Clone, Default)]
/// Changes to a room: `None` keeps a stored value, `Some(None)` clears it (no members).
pub struct RoomProfile {
    pub name: Option<Option<String>>,
    pub room_type: Option<Option<String>>,
    pub members: Option<Option<Vec<String>>>,
}

/// What a client key and token resolve to.
#[derive(Debug)]
pub enum ClientAuth {
    UnknownClientKey,
    /// The key is valid but the token is unknown, expired, revoked or of another app.
    InvalidToken(AppId),
    /// With the time the token has left, by the database's clock.
    Authenticated(AppId, ClientRecord, Duration),
}

/// Through which door a token was issued; stored with it so support can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIssuer {
    /// The app's backend, with its API key.
    Platform,
    /// The app's users themselves, by `POST /auths/sign/v2` with the public client key.
    ClientSignIn,
}

impl TokenIssuer {
    fn as_str(self) -> &'static str {
        match self {
            TokenIssuer::Platform => "platform",
            TokenIssuer::ClientSignIn => "client_sign_in",
        }
    }
}

const CLIENT_COLUMNS: &str =
    "c.client_id, c.nickname, c.email, c.avatar_url, c.last_login_ms, c.notification_enabled";

fn client_from_row(row: &tokio_postgres::Row, offset: usize) -> Result<ClientRecord, StoreError> {
    Ok(ClientRecord {
        client_id: ClientId::parse(row.get::<_, String>(offset))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        nickname: row.get(offset + 1),
        email: row.get(offset + 2),
        avatar_url: row.get(offset + 3),
        last_login_ms: row.get(offset + 4),
        notification_enabled: row.get(offset + 5),
    })
}

fn app_from_row(row: &tokio_postgres::Row, index: usize) -> Result<AppId, StoreError> {
    AppId::parse(row.get::<_, String>(index)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Creates an app; `false` when an app with that id exists already.
#[tracing::instrument(level = "debug", skip(db, api_key_sha256))]
pub async fn insert_app<C: GenericClient>(
    db: &C,
    app: &AppId,
    client_key: &str,
    api_key_sha256: &[u8],
) -> Result<bool, StoreError> {
    let inserted = execute(
        db,
        "INSERT INTO apps (app_id, client_key, api_key_sha256) VALUES ($1, $2, $3)
         ON CONFLICT (app_id) DO NOTHING",
        &[&app.as_str(), &client_key, &api_key_sha256],
    )
    .await?;
    Ok(inserted == 1)
}

/// The client key of an app, if the app exists.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn client_key_of<C: GenericClient>(
    db: &C,
    app: &AppId,
) -> Result<Option<String>, StoreError> {
    let row = query_opt(
        db,
        "SELECT client_key FROM apps WHERE app_id = $1",
        &[&app.as_str()],
    )
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Replaces an app's API key; the old one stops working at once.
#[tracing::instrument(level = "debug", skip(db, api_key_sha256))]
pub async fn replace_api_key<C: GenericClient>(
    db: &C,
    app: &AppId,
    api_key_sha256: &[u8],
) -> Result<(), StoreError> {
    execute(
        db,
        "UPDATE apps SET api_key_sha256 = $2 WHERE app_id = $1",
        &[&app.as_str(), &api_key_sha256],
    )
    .await?;
    Ok(())
}

/// The app of a client key, and whether it lets its users sign themselves in.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn app_by_client_key<C: GenericClient>(
    db: &C,
    client_key: &str,
) -> Result<Option<(AppId, bool)>, StoreError> {
    let row = query_opt(
        db,
        "SELECT app_id, client_sign_in FROM apps WHERE client_key = $1",
        &[&client_key],
    )
    .await?;
    row.map(|r| Ok((app_from_row(&r, 0)?, r.get(1))))
        .transpose()
}

/// Turns client sign-in on or off for an app; `false` when there is no such app.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn set_client_sign_in<C: GenericClient>(
    db: &C,
    app: &AppId,
    enabled: bool,
) -> Result<bool, StoreError> {
    let updated = execute(
        db,
        "UPDATE apps SET client_sign_in = $2 WHERE app_id = $1",
        &[&app.as_str(), &enabled],
    )
    .await?;
    Ok(updated == 1)
}

/// Resolves a client key and token hash in one round trip. A token only counts for the app
/// whose client key came with it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn authenticate_client<C: GenericClient>(
    db: &C,
    client_key: &str,
    token_sha256: &[u8],
) -> Result<ClientAuth, StoreError> {
    let sql = format!(
        "SELECT a.app_id, {CLIENT_COLUMNS}, extract(epoch FROM t.expires_at - now())::float8
         FROM apps a
         LEFT JOIN tokens t ON t.token_sha256 = $2 AND t.app_id = a.app_id
                           AND t.revoked_at IS NULL AND t.expires_at > now()
         LEFT JOIN clients c ON c.app_id = t.app_id AND c.client_id = t.client_id
         WHERE a.client_key = $1"
    );
    let Some(row) = query_opt(db, &sql, &[&client_key, &token_sha256]).await? else {
        return Ok(ClientAuth::UnknownClientKey);
    };
    let app = app_from_row(&row, 0)?;
    if row.get::<_, Option<String>>(1).is_none() {
        return Ok(ClientAuth::InvalidToken(app));
    }
    let left = Duration::try_from_secs_f64(row.get::<_, f64>(7)).unwrap_or_default();
    Ok(ClientAuth::Authenticated(
        app,
        client_from_row(&row, 1)?,
        left,
    ))
}

#[tracing::instrument(level = "debug", skip(db))]
pub async fn find_client<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<Option<ClientRecord>, StoreError> {
    let sql =
        format!("SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.app_id = $1 AND c.client_id = $2");
    let row = query_opt(db, &sql, &[&app.as_str(), &client.as_str()]).await?;
    row.map(|r| client_from_row(&r, 0)).transpose()
}

/// Creates a user or updates the fields given; the others keep their stored values.
#[tracing::instrument(level = "debug", skip(db, profile))]
pub async fn upsert_client<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    profile: &ClientProfile,
) -> Result<ClientRecord, StoreError> {
    let sql = format!(
        "INSERT INTO clients AS c (app_id, client_id, nickname, email, avatar_url)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (app_id, client_id) DO UPDATE SET
             nickname = CASE WHEN $6 THEN excluded.nickname ELSE c.nickname END,
             email = CASE WHEN $7 THEN excluded.email ELSE c.email END,
             avatar_url = CASE WHEN $8 THEN excluded.avatar_url ELSE c.avatar_url END,
             updated_at = now()
         RETURNING {CLIENT_COLUMNS}"
    );
    let row = query_opt(
        db,
        &sql,
        &[
            &app.as_str(),
            &client.as_str(),
            &profile.nickname.clone().flatten(),
            &profile.email.clone().flatten(),
            &profile.avatar_url.clone().flatten(),
            &profile.nickname.is_some(),
            &profile.email.is_some(),
            &profile.avatar_url.is_some(),
        ],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("upsert returned no row".into()))?;
    client_from_row(&row, 0)
}

/// Stores a new token for a user, recording which door issued it, and records the issue as
/// their last login.
#[tracing::instrument(level = "debug", skip(db, token_sha256))]
pub async fn insert_token_from<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    token_sha256: &[u8],
    expires_at: DateTime<Utc>,
    issuer: TokenIssuer,
) -> Result<i64, StoreError> {
    let row = query_opt(
        db,
        "WITH issued AS (
             INSERT INTO tokens (token_sha256, app_id, client_id, expires_at, issued_by)
             VALUES ($3, $1, $2, $4, $5) RETURNING issued_at)
         UPDATE clients SET last_login_ms = (extract(epoch FROM (SELECT issued_at FROM issued)) * 1000)::bigint
         WHERE app_id = $1 AND client_id = $2
         RETURNING last_login_ms",
        &[
            &app.as_str(),
            &client.as_str(),
            &token_sha256,
            &expires_at,
            &issuer.as_str(),
        ],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("token issued for a missing user".into()))?;
    Ok(row.get(0))
}

/// Revokes one token of a user (when its hash is given) or all of them; answers how many
/// tokens stopped working.
#[tracing::instrument(level = "debug", skip(db, token_sha256))]
pub async fn revoke_tokens<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    token_sha256: Option<&[u8]>,
) -> Result<u64, StoreError> {
    execute(
        db,
        "UPDATE tokens SET revoked_at = now()
         WHERE app_id = $1 AND client_id = $2 AND revoked_at IS NULL
           AND ($3::bytea IS NULL OR token_sha256 = $3)",
        &[&app.as_str(), &client.as_str(), &token_sha256],
    )
    .await
}

/// Creates a room or updates the fields given; the others keep their stored values.
#[tracing::instrument(level = "debug", skip(db, profile))]
pub async fn upsert_room<C: GenericClient>(
    db: &C,
    app: &AppId,
    room: &RoomId,
    profile: &RoomProfile,
) -> Result<RoomRecord, StoreError> {
    let row = query_opt(
        db,
        "INSERT INTO rooms AS r (app_id, room_id, name, room_type, members)
         VALUES ($1, $2, $3, $4, coalesce($5, '{}'::text[]))
         ON CONFLICT (app_id, room_id) DO UPDATE SET
             name = CASE WHEN $6 THEN excluded.name ELSE r.name END,
             room_type = CASE WHEN $7 THEN excluded.room_type ELSE r.room_type END,
             members = CASE WHEN $8 THEN excluded.members ELSE r.members END,
             updated_at = now()
         RETURNING room_id, name, room_type, members",
        &[
            &app.as_str(),
            &room.as_str(),
            &profile.name.clone().flatten(),
            &profile.room_type.clone().flatten(),
            &profile.members.clone().flatten(),
            &profile.name.is_some(),
            &profile.room_type.is_some(),
            &profile.members.is_some(),
        ],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("upsert returned no row".into()))?;
    Ok(RoomRecord {
        room_id: RoomId::parse(row.get::<_, String>(0))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        name: row.get(1),
        room_type: row.get(2),
        members: row.get(3),
    })
}
