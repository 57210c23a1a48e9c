//! Setting up apps: the one place keys are generated and shown.

use serde::Serialize;

use crate::domain::{AppId, ClientId, RoomId};
use crate::secrets;
use crate::service::tokens::{self, TokenGrant, DEFAULT_TOKEN_DAYS};
use crate::store::{
    directory::{self, ClientProfile, RoomProfile, TokenIssuer},
    keys::{self, KeyRecord, Role},
    Pool, StoreError,
};

/// An app's credentials as issued. The API key exists only here: it is stored hashed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppCredentials {
    #[serde(rename = "appID")]
    pub app_id: String,
    pub client_key: String,
    pub api_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("app {0} exists already; its API key cannot be shown again")]
    AppExists(String),
    #[error("there is no app {0}")]
    NoSuchApp(String),
    #[error("app {0} has a live key named {1:?} already")]
    KeyNameTaken(String, String),
    #[error("a key name is 1 to 64 bytes without control characters, and not {default:?} (the app's original key)", default = keys::ORIGINAL_KEY_NAME)]
    InvalidKeyName,
    #[error("app {0} has no live key named {1:?} (the original key, `default`, is replaced, not revoked)")]
    NoSuchKey(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn create_app(pool: &Pool, app: &AppId) -> Result<AppCredentials, ProvisionError> {
    create_app_with(pool, app, false).await
}

/// Creates an app; with `client_sign_in` its users may get tokens by `POST /auths/sign/v2`
/// with the public client key alone (see docs/clients.md).
#[tracing::instrument(skip(pool))]
pub async fn create_app_with(
    pool: &Pool,
    app: &AppId,
    client_sign_in: bool,
) -> Result<AppCredentials, ProvisionError> {
    let mut conn = pool.get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await.map_err(StoreError::from)?;
    let client_key = secrets::new_client_key();
    let api_key = secrets::new_secret();
    if !directory::insert_app(&tx, app, &client_key, &secrets::sha256(&api_key)).await? {
        return Err(ProvisionError::AppExists(app.to_string()));
    }
    directory::set_client_sign_in(&tx, app, client_sign_in).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(AppCredentials {
        app_id: app.to_string(),
        client_key,
        api_key,
    })
}

/// Turns client sign-in on or off for an existing app.
#[tracing::instrument(skip(pool))]
pub async fn set_client_sign_in(
    pool: &Pool,
    app: &AppId,
    enabled: bool,
) -> Result<(), ProvisionError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    if directory::set_client_sign_in(&conn, app, enabled).await? {
        Ok(())
    } else {
        Err(ProvisionError::NoSuchApp(app.to_string()))
    }
}

/// A key added to an app, as issued: the key itself exists only here.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedKey {
    #[serde(rename = "appID")]
    pub app_id: String,
    pub name: String,
    pub role: &'static str,
    pub api_key: String,
}

/// Adds an API key with `role` to an existing app.
#[tracing::instrument(skip(pool))]
pub async fn create_key(
    pool: &Pool,
    app: &AppId,
    role: Role,
    name: Option<&str>,
) -> Result<IssuedKey, ProvisionError> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => format!("{}-{}", role.as_str(), &secrets::new_client_key()[..8]),
    };
    if name.is_empty()
        || name.len() > 64
        || name.chars().any(char::is_control)
        || name == keys::ORIGINAL_KEY_NAME
    {
        return Err(ProvisionError::InvalidKeyName);
    }
    let conn = pool.get().await.map_err(StoreError::from)?;
    if directory::client_key_of(&conn, app).await?.is_none() {
        return Err(ProvisionError::NoSuchApp(app.to_string()));
    }
    let api_key = secrets::new_secret();
    match keys::insert_key(&conn, app, &name, role, &secrets::sha256(&api_key)).await? {
        Some(_) => Ok(IssuedKey {
            app_id: app.to_string(),
            name,
            role: role.as_str(),
            api_key,
        }),
        None => Err(ProvisionError::KeyNameTaken(app.to_string(), name)),
    }
}

/// The app's keys, the original first; never the keys themselves.
#[tracing::instrument(skip(pool))]
pub async fn list_keys(pool: &Pool, app: &AppId) -> Result<Vec<KeyRecord>, ProvisionError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    let listed = keys::list_keys(&conn, app).await?;
    if listed.is_empty() {
        return Err(ProvisionError::NoSuchApp(app.to_string()));
    }
    Ok(listed)
}

/// Revokes the app's live key of that name.
#[tracing::instrument(skip(pool))]
pub async fn revoke_key(pool: &Pool, app: &AppId, name: &str) -> Result<(), ProvisionError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    if keys::revoke_key(&conn, app, name).await? {
        Ok(())
    } else {
        Err(ProvisionError::NoSuchKey(app.to_string(), name.to_owned()))
    }
}

/// Prints a freshly added key: on screen only this once.
pub fn print_key(key: &IssuedKey, json: bool) -> serde_json::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(key)?);
    } else {
        println!(
            "app:      {}\nname:     {}\nrole:     {}\nAPI key:  {}   (shown only now: store it safely)",
            key.app_id, key.name, key.role, key.api_key
        );
    }
    Ok(())
}

/// Prints an app's keys as a table, or as JSON.
pub fn print_keys(listed: &[KeyRecord], json: bool) -> serde_json::Result<()> {
    let stamp = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    if json {
        let rows: Vec<_> = listed
            .iter()
            .map(|k| {
                serde_json::json!({
                    "name": k.name,
                    "role": k.role.as_str(),
                    "createdAt": stamp(Some(k.created_at)),
                    "lastUsedAt": stamp(k.last_used_at),
                    "revokedAt": stamp(k.revoked_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<9} {:<21} {:<21} REVOKED",
        "NAME", "ROLE", "CREATED", "LAST USED"
    );
    for k in listed {
        let dash = |t| stamp(t).unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<9} {:<21} {:<21} {}",
            k.name.escape_debug().to_string(),
            k.role.as_str(),
            dash(Some(k.created_at)),
            dash(k.last_used_at),
            dash(k.revoked_at)
        );
    }
    Ok(())
}

pub const DEMO_APP: &str = "demo-app";
pub const DEMO_USER: &str = "demo-user";
pub const DEMO_ROOM: &str = "demo-room";

#[derive(Debug, Clone)]
pub struct Demo {
    pub credentials: AppCredentials,
    pub user: String,
    pub room: String,
    pub token: String,
}

/// Makes sure the demo app, user and room exist and issues a fresh token. The demo app's
/// API key is replaced each time, because a stored key can never be shown again.
#[tracing::instrument(skip(pool))]
pub async fn ensure_demo(pool: &Pool) -> Result<Demo, StoreError> {
    let app = AppId::parse(DEMO_APP).expect("valid demo id");
    let user = ClientId::parse(DEMO_USER).expect("valid demo id");
    let room = RoomId::parse(DEMO_ROOM).expect("valid demo id");
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let api_key = secrets::new_secret();
    let api_key_hash = secrets::sha256(&api_key);
    directory::insert_app(&tx, &app, &secrets::new_client_key(), &api_key_hash).await?;
    directory::replace_api_key(&tx, &app, &api_key_hash).await?;
    let client_key = directory::client_key_of(&tx, &app)
        .await?
        .ok_or_else(|| StoreError::Corrupt("demo app vanished".into()))?;
    let profile = ClientProfile {
        nickname: Some(Some("Demo User".into())),
        email: Some(Some("demo@example.com".into())),
        avatar_url: None,
    };
    directory::upsert_client(&tx, &app, &user, &profile).await?;
    let room_profile = RoomProfile {
        name: Some(Some("Demo Room".into())),
        room_type: Some(Some("group".into())),
        members: Some(Some(vec![DEMO_USER.into()])),
    };
    directory::upsert_room(&tx, &app, &room, &room_profile).await?;
    let grant = TokenGrant {
        days: DEFAULT_TOKEN_DAYS,
        issuer: TokenIssuer::Platform,
    };
    let token = tokens::issue(&tx, &app, &user, grant).await?.token;
    tx.commit().await?;
    Ok(Demo {
        credentials: AppCredentials {
            app_id: DEMO_APP.into(),
            client_key,
            api_key,
        },
        user: DEMO_USER.into(),
        room: DEMO_ROOM.into(),
        token,
    })
}

/// Prints freshly issued credentials: the API key is on screen only this once.
pub fn print_credentials(credentials: &AppCredentials, json: bool) -> serde_json::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(credentials)?);
    } else {
        println!(
            "app:        {}\nclient key: {}\nAPI key:    {}   (shown only now: store it safely)",
            credentials.app_id, credentials.client_key, credentials.api_key
        );
    }
    Ok(())
}

/// The banner `serve --demo` prints: the demo's keys and ready `curl` commands.
pub fn print_demo(demo: &Demo, bind: &str, port: u16) {
    let url = local_url(bind, port);
    let c = &demo.credentials;
    println!(
        "\nchatprefs demo is ready (keys are printed here only; the API key and token are new at every start)\n\
         \n  app:         {}\n  client key:  {}\n  API key:     {}\n  user:        {}\n  token:       {}\n  room:        {}\n\
         \nMute the demo room as {}:\n\
         \n  curl -X POST '{url}/me/mute/{}' -H 'IM-CLIENT-KEY: {}' -H 'IM-Authorization: {}'\n\
         \nUnmute it:\n\
         \n  curl -X DELETE '{url}/me/mute/{}' -H 'IM-CLIENT-KEY: {}' -H 'IM-Authorization: {}'\n\
         \nSupport console (sign in with the API key above; support staff get a key of their own\n\
         with `chatprefs app key create --app {} --role support`):\n\
         \n  {url}/console\n",
        c.app_id, c.client_key, c.api_key, demo.user, demo.token, demo.room,
        demo.user, demo.room, c.client_key, demo.token,
        demo.room, c.client_key, demo.token, c.app_id,
    );
}

/// A URL a person on this machine can paste: wildcard binds are reached via loopback.
fn local_url(bind: &str, port: u16) -> String {
    let host = bind.rsplit_once(':').map_or(bind, |(host, _)| host);
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("http://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_via_loopback() {
        assert_eq!(local_url("0.0.0.0:8080", 8080), "http://127.0.0.1:8080");
        assert_eq!(local_url("127.0.0.1:0", 4321), "http://127.0.0.1:4321");
        assert_eq!(local_url("[::]:80", 80), "http://[::1]:80");
    }
}
