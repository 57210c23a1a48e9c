//! Support staff's questions, shared by `GET /admin/audit`, `GET /admin/clients/{uid}/mute`
//! and `chatprefs audit`: who did what, when, from where; and what was muted at an instant.

pub mod output;

use chrono::{DateTime, Utc};

use crate::domain::{evolve, AppId, ClientId, IdError, MuteState, Pause, RoomId, RoomMute};
use crate::store::audit::{self as log, AuditEntry, AuditFilter};
use crate::store::{self, directory, Pool, Retryable, StoreError};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// A query parameter that cannot be used; the text is safe to show to the caller.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

impl From<IdError> for InvalidQuery {
    fn from(err: IdError) -> Self {
        InvalidQuery(err.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Invalid(#[from] InvalidQuery),
    #[error("client not found")]
    ClientNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Retryable for AuditError {
    fn is_unavailable(&self) -> bool {
        matches!(self, AuditError::Store(store) if store.is_unavailable())
    }
}

/// A query parameter that must be a whole number in `range`; `default` when left out.
pub fn whole_number_in(
    name: &str,
    raw: Option<&str>,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, InvalidQuery> {
    let Some(raw) = raw else { return Ok(default) };
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            InvalidQuery(format!(
                "{name} must be a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        })
}

/// An instant as people and programs write it: RFC 3339 (`2026-01-01T15:02:00Z`, any
/// offset) or milliseconds since the epoch, like every IMKIT time.
pub fn parse_instant(name: &str, raw: &str) -> Result<DateTime<Utc>, InvalidQuery> {
    let raw = raw.trim();
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
    } else {
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|at| at.with_timezone(&Utc))
    };
    parsed.ok_or_else(|| {
        InvalidQuery(format!(
            "{name} must be an RFC 3339 time (2026-01-01T15:02:00Z) or milliseconds since the epoch"
        ))
    })
}

/// The audit filters as they arrive (query string or command line), before validation;
/// the query string's documented form is [`crate::api_types::AuditQuery`].
#[derive(Debug, Default)]
pub struct AuditParams {
    pub client: Option<String>,
    pub room: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
}

impl AuditParams {
    pub fn into_filter(self, app: AppId) -> Result<AuditFilter, InvalidQuery> {
        let limit = whole_number_in("limit", self.limit.as_deref(), 1..=MAX_LIMIT, DEFAULT_LIMIT)?;
        let after = self
            .after
            .as_deref()
            .map(|raw| {
                raw.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        InvalidQuery("after must be the position of an audit entry".into())
                    })
            })
            .transpose()?;
        let since = self
            .since
            .as_deref()
            .map(|s| parse_instant("since", s))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|s| parse_instant("until", s))
            .transpose()?;
        Ok(AuditFilter {
            app,
            client: self.client.map(ClientId::parse).transpose()?,
            room: self.room.map(RoomId::parse).transpose()?,
            since,
            until,
            after,
            limit,
        })
    }
}

/// One page of the audit trail. Continue with `after = next` while `has_more`; when it is
/// false the page reached the end of what was committed when it was read.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<i64>,
    pub has_more: bool,
}

#[tracing::instrument(skip(pool))]
pub async fn page(pool: &Pool, filter: &AuditFilter) -> Result<AuditPage, AuditError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    if let Some(after) = filter.after {
        if !log::is_cursor_of(&conn, &filter.app, after).await? {
            return Err(InvalidQuery(format!(
                "after={after} is not the position of an event of this app"
            ))
            .into());
        }
    }
    // One row more than asked tells whether another page follows.
    let probe = AuditFilter {
        limit: filter.limit + 1,
        ..filter.clone()
    };
    let mut entries = log::page(&conn, &probe).await?;
    let has_more = entries.len() as i64 > filter.limit;
    entries.truncate(filter.limit as usize);
    let next = entries.last().map(|e| e.position).or(filter.after);
    Ok(AuditPage {
        entries,
        next,
        has_more,
    })
}

/// A user's muted rooms at an instant.
#[derive(Debug, Clone)]
pub struct AsOf {
    pub client: ClientId,
    pub app: AppId,
    pub at: DateTime<Utc>,
    /// Oldest mute first, as in the user object.
    pub mutes: Vec<RoomMute>,
    /// The pause of all notifications in force then, if any.
    pub pause: Option<Pause>,
}

/// The user's muted rooms as they were at `at` (now by the database's clock when `None`):
/// the stream up to then, folded with the live projection's `evolve`, keeping the mutes
/// and the pause whose end is after `at`.
#[tracing::instrument(skip(pool))]
pub async fn muted_as_of(
    pool: &Pool,
    app: &AppId,
    client: &ClientId,
    at: Option<DateTime<Utc>>,
) -> Result<AsOf, AuditError> {
    let conn = pool.get().await.map_err(StoreError::from)?;
    if directory::find_client(&conn, app, client).await?.is_none() {
        return Err(AuditError::ClientNotFound);
    }
    let at = match at {
        Some(at) => at,
        None => store::database_now(&conn).await?,
    };
    let events = log::stream_until(&conn, app, client, at).await?;
    let state = events
        .iter()
        .fold(MuteState::default(), |state, (event, recorded_at)| {
            evolve(state, event, *recorded_at)
        });
    let state = state.active_at(at);
    Ok(AsOf {
        client: client.clone(),
        app: app.clone(),
        at,
        pause: state.pause().copied(),
        mutes: state.into_mutes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_epoch_milliseconds() {
        let expected = DateTime::parse_from_rfc3339("2026-01-01T15:02:00.250Z").unwrap();
        assert_eq!(
            parse_instant("t", "2026-01-01T15:02:00.250Z").unwrap(),
            expected
        );
        assert_eq!(
            parse_instant("t", "2026-01-01T17:02:00.250+02:00").unwrap(),
            expected
        );
        assert_eq!(parse_instant("t", "1767279720250").unwrap(), expected);
        for bad in ["", "yesterday", "2026-01-01", "-5", "99999999999999999999"] {
            assert!(parse_instant("t", bad).is_err(), "{bad:?}");
        }
    }

    fn params(limit: Option<&str>, after: Option<&str>) -> AuditParams {
        AuditParams {
            limit: limit.map(str::to_owned),
            after: after.map(str::to_owned),
            ..AuditParams::default()
        }
    }

    #[test]
    fn limit_defaults_to_100_and_stays_within_1_to_1000() {
        let app = AppId::parse("a").unwrap();
        assert_eq!(
            params(None, None).into_filter(app.clone()).unwrap().limit,
            100
        );
        assert_eq!(
            params(Some("1000"), None)
                .into_filter(app.clone())
                .unwrap()
                .limit,
            1000
        );
        for bad in ["0", "1001", "-1", "ten"] {
            assert!(
                params(Some(bad), None).into_filter(app.clone()).is_err(),
                "{bad}"
            );
        }
        for bad in ["0", "x", "-3"] {
            assert!(
                params(None, Some(bad)).into_filter(app.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
