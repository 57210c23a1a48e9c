//! The last state this process saw of each user's preference stream, so that a command
//! usually skips the load that costs an append its second round trip.
//!
//! An entry is a stream's version and the read model's state at exactly that version (as
//! one load read them, or as an append of ours left them), with the read model they came
//! from. It is only ever used to decide, and only a decision that no clock can change
//! (`Command::decided_without_a_clock`): an append decided on it names that version and
//! that read model, and the append refuses it if anyone (another instance, a concurrent
//! request, an operator) appended since, if the stream lacks the version (a failover that
//! lost commits) or if a rebuild has swapped the read model; the command then loads and
//! decides again. A decision to do nothing is never answered from an entry alone: a probe
//! first reads the stream's version and read model, and only the same ones vouch for the
//! entry. A stale or lost entry costs the round trips of the path without it, never a
//! wrong event or answer.

use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;

use crate::domain::{AppId, ClientId, MuteState};

/// A stream's version and its state there, read from `read_model` at the database's `at`.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: i32,
    /// The oid of the `stream_versions` table it was read from or written to.
    pub read_model: u32,
    pub state: MuteState,
    pub at: DateTime<Utc>,
}

/// Bounded by entry count; the least used users leave first.
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

    /// Remembers `seen`, unless a later version is already remembered (two requests of one
    /// user finishing out of order).
    pub fn remember(&self, app: &AppId, client: &ClientId, seen: Seen) {
        let Some(entries) = &self.entries else {
            return;
        };
        let key = (app.clone(), client.clone());
        if entries.get(&key).is_some_and(|known| {
            known.read_model == seen.read_model && known.version > seen.version
        }) {
            return;
        }
        entries.insert(key, seen);
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

    fn seen(version: i32, read_model: u32) -> Seen {
        Seen {
            version,
            read_model,
            state: MuteState::default(),
            at: Utc::now(),
        }
    }

    #[test]
    fn an_older_version_does_not_replace_a_newer_one_of_the_same_read_model() {
        let cache = StreamCache::new(10);
        let (app, client) = ids();
        cache.remember(&app, &client, seen(3, 7));
        cache.remember(&app, &client, seen(2, 7));
        assert_eq!(cache.get(&app, &client).unwrap().version, 3);
        cache.remember(&app, &client, seen(4, 7));
        assert_eq!(cache.get(&app, &client).unwrap().version, 4);
        // After a rebuild, what was read from the new read model replaces it.
        cache.remember(&app, &client, seen(2, 8));
        assert_eq!(cache.get(&app, &client).unwrap().read_model, 8);
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = StreamCache::new(0);
        let (app, client) = ids();
        cache.remember(&app, &client, seen(1, 7));
        assert!(cache.get(&app, &client).is_none());
    }
}
