//! Personal data beside the log (`event_personal_data`, `migrations/V9__*.sql`): erasing a
//! user's, and expiring everyone's after the retention window. The log's facts are never
//! touched; only the side table and the user's profile and tokens change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::types::Json;
use uuid::Uuid;

use super::{execute, query_one, query_opt, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, EventMetadata, STREAM_TYPE_USER_PREFERENCES};

/// The erasures of a user are a stream of their own: a fact about the person, not a
/// preference, so the preference decider, its read model, rebuild and verify never see it.
pub const STREAM_TYPE_PERSONAL_DATA: &str = "personal_data";

/// The event that records an erasure. Its data holds counts only, nothing about the person.
pub const PERSONAL_DATA_ERASED: &str = "PersonalDataErased";

/// What one erasure removed. All zero and `already_erased`: nothing was left to remove,
/// and nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    pub events_erased: u64,
    pub profile_cleared: bool,
    pub tokens_revoked: u64,
    /// The `PersonalDataErased` event appended, if this call changed anything or was the
    /// user's first erasure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    #[serde(skip)]
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Locks the user's directory row: concurrent erasures of one user queue here.
const LOCK_CLIENT: &str = "SELECT 1 FROM clients WHERE app_id = $1 AND client_id = $2 FOR UPDATE";

/// Clears the fields of the user's events that still hold personal data. Only the
/// preference stream: the erasure events' own provenance is the erasing backend's.
const ERASE_EVENTS: &str = "UPDATE event_personal_data p
     SET address = NULL, port = NULL, user_agent = NULL, removed = 'erased'
     FROM events e
     WHERE e.position = p.position AND e.app_id = $1 AND e.stream_type = $2
       AND e.stream_id = $3 AND p.removed IS NULL";

const CLEAR_PROFILE: &str = "UPDATE clients SET nickname = NULL, email = NULL, avatar_url = NULL,
                        updated_at = now()
     WHERE app_id = $1 AND client_id = $2
       AND (nickname IS NOT NULL OR email IS NOT NULL OR avatar_url IS NOT NULL)";

/// Every token still usable; the `tokens_auth_changed` trigger tells every instance's
/// authentication cache, within this transaction.
const REVOKE_TOKENS: &str = "UPDATE tokens SET revoked_at = now()
     WHERE app_id = $1 AND client_id = $2 AND revoked_at IS NULL";

const ERASED_BEFORE: &str = "SELECT coalesce(max(stream_version), 0) FROM events
     WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3";

/// One statement, like every append: the next version of the user's erasure stream.
const APPEND_ERASED: &str = "INSERT INTO events (event_id, app_id, stream_type, stream_id,
                         stream_version, event_type, schema_version, data, metadata,
                         recorded_at)
     VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, clock_timestamp())
     RETURNING recorded_at";

/// Erases the user's personal data in one transaction of `tx`'s caller: the fields beside
/// their events, their profile's nickname, email and avatar, their tokens, and appends
/// `PersonalDataErased` with `metadata` (the erasing admin and request). `None` when the
/// app has no such user. Idempotent: a second call finds nothing and appends nothing.
#[tracing::instrument(skip(tx, metadata))]
pub async fn erase<C: GenericClient>(
    tx: &C,
    app: &AppId,
    client: &ClientId,
    metadata: &EventMetadata,
) -> Result<Option<Erased>, StoreError> {
    let (app_id, client_id) = (app.as_str(), client.as_str());
    if query_opt(tx, LOCK_CLIENT, &[&app_id, &client_id])
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let events_erased = execute(
        tx,
        ERASE_EVENTS,
        &[&app_id, &STREAM_TYPE_USER_PREFERENCES, &client_id],
    )
    .await?;
    let profile_cleared = execute(tx, CLEAR_PROFILE, &[&app_id, &client_id]).await? > 0;
    let tokens_revoked = execute(tx, REVOKE_TOKENS, &[&app_id, &client_id]).await?;
    let version: i32 = query_one(
        tx,
        ERASED_BEFORE,
        &[&app_id, &STREAM_TYPE_PERSONAL_DATA, &client_id],
    )
    .await?
    .get(0);
    let mut erased = Erased {
        events_erased,
        profile_cleared,
        tokens_revoked,
        event_id: None,
        recorded_at: None,
    };
    if version > 0 && events_erased == 0 && !profile_cleared && tokens_revoked == 0 {
        return Ok(Some(erased));
    }
    let event_id = super::new_event_id();
    let row = query_one(
        tx,
        APPEND_ERASED,
        &[
            &event_id,
            &app_id,
            &STREAM_TYPE_PERSONAL_DATA,
            &client_id,
            &(version + 1),
            &PERSONAL_DATA_ERASED,
            &Json(&erased),
            &Json(metadata),
        ],
    )
    .await?;
    erased.event_id = Some(event_id);
    erased.recorded_at = Some(row.get(0));
    Ok(Some(erased))
}

/// Expires up to `batch` of the oldest events' personal data recorded before `before`
/// (the oldest first, by the partial index); answers how many. Short transactions, so a
/// large backlog never holds many row locks or one long snapshot.
#[tracing::instrument(skip(db))]
pub async fn expire_batch<C: GenericClient>(
    db: &C,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    execute(
        db,
        "UPDATE event_personal_data
         SET address = NULL, port = NULL, user_agent = NULL, removed = 'expired'
         WHERE position IN (SELECT position FROM event_personal_data
                            WHERE removed IS NULL AND recorded_at < $1
                            ORDER BY recorded_at LIMIT $2
                            FOR UPDATE SKIP LOCKED)",
        &[&before, &batch],
    )
    .await
}
