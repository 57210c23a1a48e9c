//! Issuing tokens: the one place a token is made, hashed and stored, whichever door
//! (platform API, client sign-in, the demo) asks for it.

use chrono::{DateTime, Duration, Utc};

use crate::domain::{AppId, ClientId};
use crate::secrets;
use crate::store::{
    directory::{self, TokenIssuer},
    GenericClient, StoreError,
};

/// How long a token lives unless the platform API asks for another lifetime.
pub const DEFAULT_TOKEN_DAYS: u32 = 7;

/// What to issue: a lifetime and the door it is issued through.
#[derive(Debug, Clone, Copy)]
pub struct TokenGrant {
    pub days: u32,
    pub issuer: TokenIssuer,
}

/// A token as issued. The token itself exists only here: it is stored as SHA-256.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The issue time as stored for the user's `lastLoginTimeMS`.
    pub issued_at_ms: i64,
}

/// Issues a token for an existing user on `db` (inside the caller's transaction, so the
/// user and the token commit together).
pub async fn issue<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    grant: TokenGrant,
) -> Result<IssuedToken, StoreError> {
    let token = secrets::new_secret();
    let expires_at = Utc::now() + Duration::days(i64::from(grant.days));
    let issued_at_ms = directory::insert_token_from(
        db,
        app,
        client,
        &secrets::sha256(&token),
        expires_at,
        grant.issuer,
    )
    .await?;
    Ok(IssuedToken {
        token,
        expires_at,
        issued_at_ms,
    })
}
