//! The last state this process saw of each user's preference stream, so that a command
//! usually skips the load that costs an append its second round trip.
//!
//! Nothing here has to be invalidated. An entry is a stream's version and the read model's
//! state at exactly that version (as one load read them, or as an append of ours left them),
//! and it is only ever used to decide: an append decided on it names that version, and the
//! stream-version key refuses it if anyone (another instance, a concurrent request, an
//! operator) appended since, after which the command loads and decides again. A decision to
//! do nothing is never answered from an entry alone: a probe first reads the stream's
//! version, and only the same version vouches for the entry. A stale or lost entry costs
//! the round trips of today's path, never a wrong event or answer.
//!
//! The clock a cached decision uses is the database's, as read with the entry, advanced by
//! this process's monotonic clock: the application servers' wall clocks still do not matter.

use std::time::Instant;

use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;

use crate::domain::{AppId, ClientId, MuteState};

/// A stream's version and its state there, with the database's clock when they were read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: i32,
    pub state: MuteState,
    database_now: DateTime<Utc>,
    read_at: Instant,
}

impl Seen {
    /// The database's clock now, as estimated from when the entry was read.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.read_at.elapsed()).unwrap_or(chrono::Duration::zero());
        self.database_now + elapsed
    }
}

/// Bounded by entry count; the least recently used users leave first.
pub struct StreamCache {
    entries: Option<Cache<(AppId, ClientId), Seen>>,
}

impl StreamCache {
    /// A cache of `capacity` users; 0 remembers nothing (every command loads).
    pub fn new(capacity: usize) -> Self {
        StreamCache {
            entries: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    pub fn get(&self, app: &AppId, client: &ClientId) -> Option<Seen> {
        self.entries.as_ref()?.get(&(app.clone(), client.clone()))
    }

    /// Remembers the stream at `version` with `state`, read at `database_now`, unless a later
    /// version is already remembered (two requests of one user finishing out of order).
    pub fn remember(
        &self,
        app: &AppId,
        client: &ClientId,
        version: i32,
        state: MuteState,
        database_now: DateTime<Utc>,
    ) {
        let Some(entries) = &self.entries else {
            return;
        };
        let key = (app.clone(), client.clone());
        if entries.get(&key).is_some_and(|seen| seen.version > version) {
            return;
        }
        entries.insert(
            key,
            Seen {
                version,
                state,
                database_now,
                read_at: Instant::now(),
            },
        );
    }

    /// Forgets a stream whose entry turned out stale.
    pub fn forget(&self, app: &AppId, client: &ClientId) {
        if let Some(entries) = &self.entries {
            entries.remove(&(app.clone(), client.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (AppId, ClientId) {
        (AppId::parse("a").unwrap(), ClientId::parse("u").unwrap())
    }

    #[test]
    fn an_older_version_does_not_replace_a_newer_one() {
        let cache = StreamCache::new(10);
        let (app, client) = ids();
        cache.remember(&app, &client, 3, MuteState::default(), Utc::now());
        cache.remember(&app, &client, 2, MuteState::default(), Utc::now());
        assert_eq!(cache.get(&app, &client).unwrap().version, 3);
        cache.remember(&app, &client, 4, MuteState::default(), Utc::now());
        assert_eq!(cache.get(&app, &client).unwrap().version, 4);
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = StreamCache::new(0);
        let (app, client) = ids();
        cache.remember(&app, &client, 1, MuteState::default(), Utc::now());
        assert!(cache.get(&app, &client).is_none());
    }

    #[test]
    fn the_estimated_clock_starts_at_the_database_clock_and_moves_forward() {
        let cache = StreamCache::new(10);
        let (app, client) = ids();
        let read = Utc::now() - chrono::Duration::days(3);
        cache.remember(&app, &client, 1, MuteState::default(), read);
        let now = cache.get(&app, &client).unwrap().now();
        assert!(now >= read && now < read + chrono::Duration::seconds(5));
    }
}
