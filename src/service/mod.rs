//! The application service: what the HTTP handlers ask for, in the domain's words. It owns
//! connections, transactions and retries; it knows nothing of HTTP (the edge maps its
//! answers and errors to the wire).

mod command;
pub mod group_commit;
pub mod privacy;
pub mod stream_cache;
pub mod sweep;
pub mod tokens;
pub mod turns;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::audit::{self, AsOf, AuditError, AuditPage};
use crate::domain::{AppId, ClientId, Command, DomainError, EventMetadata, MuteState, RoomId};
use crate::feed::{self, watcher::LogWatcher, FeedCursor, FeedError, FeedPage};
use crate::projections::{notification_pauses, room_mutes};
use crate::store::{
    self,
    audit::AuditFilter,
    directory::{self, ClientAuth, ClientProfile, ClientRecord, RoomProfile, RoomRecord},
    keys::{self, KeyAuth, SessionAuth},
    Pool, ReadPool, Retryable, SchemaStatus, StoreError,
};
use command::{Remembered, Writer};
use group_commit::GroupCommit;
use stream_cache::StreamCache;
use tokens::{IssuedToken, TokenGrant};
use turns::UserTurns;

/// A user's mutes and pause in force, both read models pipelined on one connection.
async fn preferences<C: store::GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<MuteState, StoreError> {
    let (mutes, pause) = futures_util::try_join!(
        room_mutes::muted_rooms(db, app, client),
        notification_pauses::pause_in_force(db, app, client),
    )?;
    Ok(mutes.with_pause(pause))
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("room not found")]
    RoomNotFound,
    #[error("client not found")]
    ClientNotFound,
    #[error(
        "concurrency conflict persisted after {} attempts",
        command::MAX_ATTEMPTS
    )]
    Conflict,
    /// The domain refused the command (a mute's end out of range).
    #[error(transparent)]
    Refused(DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Retryable for ServiceError {
    fn is_unavailable(&self) -> bool {
        matches!(self, ServiceError::Store(store) if store.is_unavailable())
    }
}

/// The user a command acts on: already known when the user acts on their own behalf (they
/// were authenticated), named by id when an app's backend acts for them.
#[derive(Debug)]
pub enum Subject {
    Known(ClientRecord),
    Named(ClientId),
}

/// Who of the users asked about is not to be notified about a room.
#[derive(Debug)]
pub struct Silenced {
    /// Everyone not to notify (muted the room, or paused all notifications), sorted by id.
    pub muted: Vec<ClientId>,
    /// Those of `muted` who paused all notifications, sorted by id.
    pub paused: Vec<ClientId>,
}

/// A user created or updated, with their muted rooms and the token issued, if one was.
#[derive(Debug)]
pub struct UpsertedClient {
    pub client: ClientRecord,
    pub mutes: MuteState,
    pub token: Option<IssuedToken>,
}

/// One worker's service: its pool for writes and fresh reads, and `reads` for what may
/// trail the primary (audit, as-of, a room's muters).
#[derive(Clone)]
pub struct Service {
    pool: Pool,
    reads: ReadPool,
    watcher: LogWatcher,
    /// Shared by the process's workers.
    streams: Arc<StreamCache>,
    /// Shared by the process's workers.
    turns: Arc<UserTurns>,
    /// This worker's.
    group_commit: Arc<GroupCommit>,
}

impl Service {
    pub fn new(
        pool: Pool,
        reads: ReadPool,
        watcher: LogWatcher,
        streams: Arc<StreamCache>,
        turns: Arc<UserTurns>,
        group_commit_wait: Duration,
    ) -> Self {
        Service {
            group_commit: GroupCommit::new(pool.clone(), group_commit_wait),
            pool,
            reads,
            watcher,
            streams,
            turns,
        }
    }

    /// The user a client key and token hash prove, in one round trip.
    pub async fn authenticate_client(
        &self,
        client_key: &str,
        token_sha256: &[u8],
    ) -> Result<ClientAuth, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(directory::authenticate_client(&conn, client_key, token_sha256).await?)
    }

    /// The app and role of an API key (by its hash): the app's original key or a live
    /// added one.
    pub async fn key_by_hash(&self, key_sha256: &[u8]) -> Result<Option<KeyAuth>, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(keys::key_by_hash(&conn, key_sha256).await?)
    }

    /// Opens a console session for a live API key (by its hash): answers the session's
    /// secret (for its cookie; stored only as SHA-256) and what the key proves.
    pub async fn open_console_session(
        &self,
        key_sha256: &[u8],
        lifetime: Duration,
    ) -> Result<Option<(String, KeyAuth)>, ServiceError> {
        let secret = crate::secrets::new_secret();
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        let session_hash = crate::secrets::sha256(&secret);
        let opened =
            keys::insert_session(&conn, &session_hash, key_sha256, lifetime.as_secs_f64()).await?;
        Ok(opened.map(|key| (secret, key)))
    }

    /// The console session a cookie's secret (by its hash) proves.
    pub async fn console_session(
        &self,
        session_sha256: &[u8],
    ) -> Result<Option<SessionAuth>, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(keys::session(&conn, session_sha256).await?)
    }

    pub async fn close_console_session(&self, session_sha256: &[u8]) -> Result<(), ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(keys::delete_session(&conn, session_sha256).await?)
    }

    /// A user's profile and mutes in force, for support.
    pub async fn client_profile(
        &self,
        app: &AppId,
        id: &ClientId,
    ) -> Result<(ClientRecord, MuteState), ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        let client = directory::find_client(&conn, app, id)
            .await?
            .ok_or(ServiceError::ClientNotFound)?;
        let mutes = room_mutes::muted_rooms(&conn, app, id).await?;
        Ok((client, mutes))
    }

    /// The app of a client key, and whether it lets its users sign themselves in.
    pub async fn app_by_client_key(
        &self,
        client_key: &str,
    ) -> Result<Option<(AppId, bool)>, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(directory::app_by_client_key(&conn, client_key).await?)
    }

    /// The user's mutes in force, oldest mute first, and their pause in force.
    pub async fn me(&self, app: &AppId, client: &ClientId) -> Result<MuteState, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(preferences(&conn, app, client).await?)
    }

    /// Runs a mute or unmute for the subject (idempotent); answers the user and their
    /// muted rooms afterwards.
    pub async fn run(
        &self,
        app: &AppId,
        subject: Subject,
        command: Command,
        metadata: &EventMetadata,
    ) -> Result<(ClientRecord, MuteState), ServiceError> {
        let id = match &subject {
            Subject::Known(client) => &client.client_id,
            Subject::Named(id) => id,
        };
        let turn = Arc::new(self.turns.take(app, id).await.ok_or_else(|| {
            StoreError::Unavailable("an earlier request of this user is still running".into())
        })?);
        let writer = Writer {
            pool: &self.pool,
            cache: &self.streams,
            group: &self.group_commit,
            turn: &turn,
        };
        let seen = command::recall(&self.streams, app, id);
        let (subject, seen) = match subject {
            Subject::Known(client) => {
                let remembered = command::append_remembered(
                    &writer,
                    seen,
                    app,
                    &client.client_id,
                    &command,
                    metadata,
                )
                .await?;
                match remembered {
                    Remembered::Answered(mutes) => return Ok((client, mutes)),
                    Remembered::Unused(seen) => (Subject::Known(client), seen),
                }
            }
            named => (named, seen),
        };
        let unit = writer.unit().await?;
        let client = match subject {
            Subject::Known(client) => client,
            Subject::Named(id) => directory::find_client(unit.client(), app, &id)
                .await?
                .ok_or(ServiceError::ClientNotFound)?,
        };
        let mutes = command::handle(
            &writer,
            unit,
            app,
            &client.client_id,
            command,
            metadata,
            seen,
        )
        .await?;
        Ok((client, mutes))
    }

    /// Creates or updates a user and, with a grant, issues them a token, in one transaction.
    #[tracing::instrument(skip(self, profile))]
    pub async fn upsert_client(
        &self,
        app: &AppId,
        id: &ClientId,
        profile: &ClientProfile,
        grant: Option<TokenGrant>,
    ) -> Result<UpsertedClient, ServiceError> {
        let mut conn = self.pool.get().await.map_err(StoreError::from)?;
        let tx = conn.transaction().await.map_err(StoreError::from)?;
        let mut client = directory::upsert_client(&tx, app, id, profile).await?;
        let token = match grant {
            Some(grant) => {
                let issued = tokens::issue(&tx, app, id, grant).await?;
                client.last_login_ms = Some(issued.issued_at_ms);
                Some(issued)
            }
            None => None,
        };
        let mutes = preferences(&tx, app, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(UpsertedClient {
            client,
            mutes,
            token,
        })
    }

    /// Revokes the user's token with this hash, or all of their tokens; answers how many
    /// stopped working.
    #[tracing::instrument(skip(self, only))]
    pub async fn revoke_tokens(
        &self,
        app: &AppId,
        id: &ClientId,
        only: Option<&[u8]>,
    ) -> Result<u64, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        if directory::find_client(&conn, app, id).await?.is_none() {
            return Err(ServiceError::ClientNotFound);
        }
        Ok(directory::revoke_tokens(&conn, app, id, only).await?)
    }

    /// Erases the user's personal data, clears their profile, revokes their tokens and
    /// records the erasure (idempotent: see [`privacy::erase`]).
    pub async fn erase_client(
        &self,
        app: &AppId,
        id: &ClientId,
        metadata: &EventMetadata,
    ) -> Result<crate::store::privacy::Erased, ServiceError> {
        privacy::erase(&self.pool, app, id, metadata).await
    }

    #[tracing::instrument(skip(self, profile))]
    pub async fn upsert_room(
        &self,
        app: &AppId,
        room: &RoomId,
        profile: &RoomProfile,
    ) -> Result<RoomRecord, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        Ok(directory::upsert_room(&conn, app, room, profile).await?)
    }

    /// Which of `clients` are not to be notified about `room`, and which of those because
    /// they paused all notifications. Both reads are pipelined on one connection.
    pub async fn muted_among(
        &self,
        app: &AppId,
        room: &RoomId,
        clients: &[ClientId],
    ) -> Result<Silenced, ServiceError> {
        let conn = self.pool.get().await.map_err(StoreError::from)?;
        let (muted, paused) = futures_util::try_join!(
            room_mutes::muted_among(&conn, app, room, clients),
            notification_pauses::paused_among(&conn, app, clients),
        )?;
        let mut muted = muted.ok_or(ServiceError::RoomNotFound)?;
        muted.extend(paused.iter().cloned());
        muted.sort_unstable();
        muted.dedup();
        Ok(Silenced { muted, paused })
    }

    /// Up to `limit` of the room's muters with ids after `after`, from the read replica
    /// when there is one.
    pub async fn muters(
        &self,
        app: &AppId,
        room: &RoomId,
        after: Option<&ClientId>,
        limit: i64,
    ) -> Result<Vec<room_mutes::Muter>, ServiceError> {
        self.reads
            .run(|pool| async move {
                let conn = pool.get().await.map_err(StoreError::from)?;
                room_mutes::muters_page(&conn, app, room, after, limit)
                    .await?
                    .ok_or(ServiceError::RoomNotFound)
            })
            .await
    }

    /// A page of the audit trail, from the read replica when there is one.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage, AuditError> {
        self.reads
            .run(|pool| async move { audit::page(&pool, filter).await })
            .await
    }

    /// The user's muted rooms at `at` (now when `None`), from the read replica when there
    /// is one.
    pub async fn muted_as_of(
        &self,
        app: &AppId,
        client: &ClientId,
        at: Option<DateTime<Utc>>,
    ) -> Result<AsOf, AuditError> {
        self.reads
            .run(|pool| async move { audit::muted_as_of(&pool, app, client, at).await })
            .await
    }

    /// The app's next events after `after`; when there are none yet, waits up to `wait`
    /// for the next commit.
    pub async fn feed(
        &self,
        app: &AppId,
        after: &FeedCursor,
        limit: i64,
        wait: Duration,
    ) -> Result<FeedPage, FeedError> {
        if wait.is_zero() {
            feed::read(&self.pool, app, after, limit).await
        } else {
            feed::wait(&self.pool, &self.watcher, app, after, limit, wait).await
        }
    }

    /// The user's stream version now: where a live stream opened without a resume point
    /// starts.
    pub async fn stream_version(&self, app: &AppId, client: &ClientId) -> Result<i32, StoreError> {
        feed::live::current_version(&self.pool, app, client).await
    }

    /// The database's schema against the one this binary migrates to.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        store::schema_status(&self.pool).await
    }
}
