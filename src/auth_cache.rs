//! Successful authentications remembered per process, so that a request usually skips the
//! round trip that checks its credentials.
//!
//! A change made on any instance (a token revoked or expired by hand, a profile updated, an
//! app's keys replaced) must stop being served from every cache within one second. The
//! database announces each such change (`migrations/V6__auth_notify.sql`) to a connection
//! per process that listens for it ([`AuthListener`]); an entry looked up before a notice
//! that concerns it is void from then on (found so at its next hit, so that a notice costs
//! O(1) however large the cache).
//! A notice is lost when the listener is: so the listener vouches for the cache with a
//! heartbeat every [`HEARTBEAT`], and the cache serves and keeps nothing once [`LEASE`] has
//! passed since the last heartbeat that was answered (every notice committed before it was
//! sent had been applied by then). A listener that reconnects starts from an empty cache.
//!
//! Keys are SHA-256 digests of the credentials; a token or an API key is never kept.
//! Token expiry is checked on every hit against the expiry read with the entry, measured on
//! the database's clock (as the time left) so the two clocks need not agree. Failures are
//! never cached: an unknown credential always costs its round trip and counts against the
//! failed-authentication limiter as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::config::AuthCacheSettings;
use crate::domain::AppId;
use crate::ratelimit::KeyHash;
use crate::store::auth_events::{AuthChange, AuthListener, Heard};
use crate::store::directory::ClientRecord;
use crate::store::keys::KeyAuth;
use crate::store::PoolSettings;

/// How often the listener proves it still hears the database.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long one answered heartbeat vouches for the cache: under the one second a change may
/// take to reach every instance, whatever happens to the listener meanwhile.
const LEASE: Duration = Duration::from_millis(750);
/// A heartbeat not answered within this counts as a lost listener.
const HEARTBEAT_LIMIT: Duration = Duration::from_millis(500);
/// Pause before connecting the listener again.
const RECONNECT: Duration = Duration::from_millis(500);

#[derive(Clone)]
struct ClientEntry {
    app: AppId,
    client: ClientRecord,
    until: Instant,
    /// The generation when its lookup began: a change announced later voids it.
    since: u64,
}

#[derive(Clone)]
struct PlatformEntry {
    key: KeyAuth,
    until: Instant,
    since: u64,
}

/// What a notice concerned: an app, or one user of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Concern {
    app: String,
    client: Option<String>,
}

/// The generation of the last notice for each concern, so that a notice costs O(1) however
/// many entries it voids: they are found void when next looked up. Entries older than
/// `floor` are void whatever they concern (set when the map is emptied to stay bounded, and
/// when notices may have been missed).
#[derive(Default)]
struct Changes {
    /// Generation and time of the notice: one older than the TTL voids nothing still kept.
    last: HashMap<Concern, (u64, Instant)>,
    floor: u64,
}

/// Taken before a lookup: what it finds is void if a notice concerning it comes after.
pub struct Ticket {
    generation: u64,
    at: Instant,
}

pub struct AuthCache {
    clients: Cache<KeyHash, ClientEntry>,
    platforms: Cache<KeyHash, PlatformEntry>,
    ttl: Duration,
    started: Instant,
    /// Nanoseconds after `started` until which the listener vouches for the cache.
    vouched_until: AtomicU64,
    /// Bumped by every notice and every flush, before `changes` records it.
    generation: AtomicU64,
    changes: RwLock<Changes>,
    capacity: usize,
    listener: Mutex<Option<Arc<AuthListener>>>,
}

impl AuthCache {
    /// `None` when the settings turn the cache off. Serves nothing until [`AuthCache::listen`]
    /// has a listener vouching for it.
    pub fn new(settings: &AuthCacheSettings) -> Option<Arc<Self>> {
        if settings.ttl.is_zero() || settings.capacity == 0 {
            return None;
        }
        Some(Arc::new(AuthCache {
            clients: Cache::new(settings.capacity),
            platforms: Cache::new(settings.capacity),
            ttl: settings.ttl,
            started: Instant::now(),
            vouched_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            changes: RwLock::new(Changes::default()),
            capacity: settings.capacity,
            listener: Mutex::new(None),
        }))
    }

    /// The key of a client key and token: a digest of both, so a token is never kept and
    /// counts only with the client key it came with.
    pub fn client_key(client_key: &str, token_sha256: &KeyHash) -> KeyHash {
        Sha256::new()
            .chain_update(client_key.as_bytes())
            .chain_update([0])
            .chain_update(token_sha256)
            .finalize()
            .into()
    }

    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::SeqCst),
            at: Instant::now(),
        }
    }

    pub fn client(&self, key: &KeyHash) -> Option<(AppId, ClientRecord)> {
        if !self.vouched() {
            return None;
        }
        let entry = self.clients.get(key)?;
        let client = Some(entry.client.client_id.as_str());
        if Instant::now() >= entry.until || self.void(entry.since, entry.app.as_str(), client) {
            self.clients.remove(key);
            return None;
        }
        Some((entry.app, entry.client))
    }

    /// Keeps a token found valid for `expires_in` more (by the database's clock), counted
    /// from before the lookup so the entry never outlives the token.
    pub fn keep_client(
        &self,
        ticket: Ticket,
        key: KeyHash,
        app: &AppId,
        client: &ClientRecord,
        expires_in: Duration,
    ) {
        let entry = ClientEntry {
            app: app.clone(),
            client: client.clone(),
            until: ticket.at + expires_in.min(self.ttl),
            since: ticket.generation,
        };
        self.keep(&self.clients, key, entry);
    }

    /// What an API key proved (its app and role), if still vouched for.
    pub fn platform(&self, api_key_sha256: &KeyHash) -> Option<KeyAuth> {
        if !self.vouched() {
            return None;
        }
        let entry = self.platforms.get(api_key_sha256)?;
        if Instant::now() >= entry.until || self.void(entry.since, entry.key.app.as_str(), None) {
            self.platforms.remove(api_key_sha256);
            return None;
        }
        Some(entry.key)
    }

    pub fn keep_platform(&self, ticket: Ticket, api_key_sha256: KeyHash, key: &KeyAuth) {
        let entry = PlatformEntry {
            key: key.clone(),
            until: ticket.at + self.ttl,
            since: ticket.generation,
        };
        self.keep(&self.platforms, api_key_sha256, entry);
    }

    /// Inserts while the listener vouches; a notice that came since the ticket voids the
    /// entry when it is looked up.
    fn keep<V: Clone>(&self, cache: &Cache<KeyHash, V>, key: KeyHash, value: V) {
        if self.vouched() {
            cache.insert(key, value);
        }
    }

    /// Whether a lookup begun at generation `since` for `app` (and `client`) predates a
    /// notice that concerns it.
    fn void(&self, since: u64, app: &str, client: Option<&str>) -> bool {
        let Ok(changes) = self.changes.read() else {
            return true;
        };
        if since < changes.floor {
            return true;
        }
        if changes.last.is_empty() {
            return false;
        }
        let after = |concern: &Concern| changes.last.get(concern).is_some_and(|&(g, _)| g > since);
        let mut concern = Concern {
            app: app.to_owned(),
            client: None,
        };
        if after(&concern) {
            return true;
        }
        concern.client = client.map(str::to_owned);
        client.is_some() && after(&concern)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_nanos()).unwrap_or(u64::MAX)
    }

    fn vouched(&self) -> bool {
        self.nanos(Instant::now()) < self.vouched_until.load(Ordering::SeqCst)
    }

    /// Every notice committed before `sent` has been applied.
    fn vouch(&self, sent: Instant) {
        self.vouched_until
            .store(self.nanos(sent + LEASE), Ordering::SeqCst);
    }

    /// Stops serving and empties the cache: notices may have been missed.
    fn lapse(&self) {
        self.vouched_until.store(0, Ordering::SeqCst);
        self.forget(&AuthChange::default());
    }

    fn forget(&self, change: &AuthChange) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(mut changes) = self.changes.write() else {
            return;
        };
        let now = Instant::now();
        if changes.last.len() >= self.capacity {
            changes
                .last
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
        }
        match &change.app {
            Some(app) if changes.last.len() < self.capacity => {
                let concern = Concern {
                    app: app.clone(),
                    client: change.client.clone(),
                };
                changes.last.insert(concern, (generation, now));
            }
            _ => {
                changes.last.clear();
                changes.floor = generation;
                drop(changes);
                self.clients.clear();
                self.platforms.clear();
            }
        }
    }

    fn heard(&self, heard: Heard) {
        match heard {
            Heard::Changed(change) => self.forget(&change),
            Heard::Lost => self.lapse(),
        }
    }

    /// Returns once every change committed before the call has been applied here, so that a
    /// request that changed what credentials prove is followed by no stale hit on this
    /// instance. If the listener cannot tell, the cache stops serving until it can.
    pub async fn settle(&self) {
        let listener = self.listener.lock().map(|l| l.clone()).unwrap_or_default();
        let sent = Instant::now();
        match listener {
            Some(listener) if listener.heartbeat(HEARTBEAT_LIMIT).await.is_ok() => self.vouch(sent),
            _ => self.lapse(),
        }
    }

    fn set_listener(&self, listener: Option<Arc<AuthListener>>) {
        if let Ok(mut current) = self.listener.lock() {
            *current = listener;
        }
    }

    /// Keeps a listener connected for as long as the runtime lives, vouching for the cache
    /// while it hears the database.
    pub async fn listen(self: Arc<Self>, database_url: String, settings: PoolSettings) {
        loop {
            let cache = Arc::clone(&self);
            match AuthListener::connect(&database_url, &settings, move |h| cache.heard(h)).await {
                Ok(listener) => {
                    let listener = Arc::new(listener);
                    // What was announced before LISTEN is lost: start empty.
                    self.lapse();
                    self.set_listener(Some(Arc::clone(&listener)));
                    let mut ticks = tokio::time::interval(HEARTBEAT);
                    loop {
                        ticks.tick().await;
                        let sent = Instant::now();
                        if let Err(err) = listener.heartbeat(HEARTBEAT_LIMIT).await {
                            tracing::warn!(error = %err, "auth cache listener lost; authenticating every request until it is back");
                            break;
                        }
                        self.vouch(sent);
                    }
                    self.set_listener(None);
                    self.lapse();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for auth changes; authenticating every request until it can")
                }
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientId;

    fn cache() -> Arc<AuthCache> {
        let cache = AuthCache::new(&AuthCacheSettings::default()).expect("on by default");
        cache.vouch(Instant::now());
        cache
    }

    /// Keeps `user` of `app_id` under `key`, as a lookup that began now would.
    fn keep(cache: &AuthCache, key: KeyHash, app_id: &str, user: &str, ttl: Duration) {
        cache.keep_client(cache.ticket(), key, &app(app_id), &record(user), ttl);
    }

    fn record(id: &str) -> ClientRecord {
        ClientRecord {
            client_id: ClientId::parse(id).unwrap(),
            nickname: None,
            email: None,
            avatar_url: None,
            last_login_ms: None,
            notification_enabled: true,
        }
    }

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    fn change(app: &str, client: Option<&str>) -> AuthChange {
        AuthChange {
            app: Some(app.into()),
            client: client.map(str::to_owned),
        }
    }

    #[test]
    fn a_zero_ttl_turns_the_cache_off() {
        let off = AuthCacheSettings {
            ttl: Duration::ZERO,
            ..AuthCacheSettings::default()
        };
        assert!(AuthCache::new(&off).is_none());
    }

    #[test]
    fn a_token_is_served_until_its_expiry_and_no_longer() {
        let cache = cache();
        let key = AuthCache::client_key("ck", &[1; 32]);
        keep(&cache, key, "a", "u1", Duration::ZERO);
        assert!(cache.client(&key).is_none(), "expired on arrival");
        keep(&cache, key, "a", "u1", Duration::from_secs(60));
        assert_eq!(cache.client(&key).unwrap().1, record("u1"));
    }

    #[test]
    fn a_lookup_that_began_before_a_notice_concerning_it_is_void() {
        let cache = cache();
        let key = AuthCache::client_key("ck", &[1; 32]);
        let keep = |ticket| {
            cache.keep_client(
                ticket,
                key,
                &app("a"),
                &record("u1"),
                Duration::from_secs(60),
            )
        };
        let ticket = cache.ticket();
        cache.forget(&change("other", None));
        cache.forget(&change("a", Some("u2")));
        keep(ticket);
        assert!(cache.client(&key).is_some(), "the notices concern others");
        let ticket = cache.ticket();
        cache.forget(&change("a", Some("u1")));
        keep(ticket);
        assert!(cache.client(&key).is_none());
    }

    #[test]
    fn more_notices_than_the_capacity_void_everything_older() {
        let settings = AuthCacheSettings {
            capacity: 2,
            ..AuthCacheSettings::default()
        };
        let cache = AuthCache::new(&settings).unwrap();
        cache.vouch(Instant::now());
        let key = AuthCache::client_key("ck", &[1; 32]);
        keep(&cache, key, "a", "u1", Duration::from_secs(60));
        for user in ["u2", "u3", "u4"] {
            cache.forget(&change("a", Some(user)));
        }
        assert!(cache.client(&key).is_none());
        assert!(cache.changes.read().unwrap().last.len() <= 2);
    }

    #[test]
    fn a_notice_drops_only_what_it_concerns() {
        let cache = cache();
        let keys = [("a", "u1"), ("a", "u2"), ("b", "u1")].map(|(a, u)| {
            let key = AuthCache::client_key(a, &sha2::Sha256::digest(u).into());
            cache.keep_client(
                cache.ticket(),
                key,
                &app(a),
                &record(u),
                Duration::from_secs(60),
            );
            key
        });
        let key = KeyAuth {
            app: app("a"),
            role: crate::store::keys::Role::Support,
            key_id: Some(1),
        };
        cache.keep_platform(cache.ticket(), [9; 32], &key);
        cache.forget(&change("a", Some("u1")));
        let served = keys.map(|k| cache.client(&k).is_some());
        assert_eq!(served, [false, true, true]);
        assert!(
            cache.platform(&[9; 32]).is_some(),
            "a user's change keeps the app's key"
        );
        cache.forget(&change("a", None));
        assert!(cache.platform(&[9; 32]).is_none());
        assert!(cache.client(&keys[2]).is_some(), "another app is untouched");
    }

    #[test]
    fn nothing_is_served_or_kept_once_the_listener_stops_vouching() {
        let cache = cache();
        let key = AuthCache::client_key("ck", &[1; 32]);
        keep(&cache, key, "a", "u1", Duration::from_secs(60));
        cache.vouched_until.store(0, Ordering::SeqCst);
        assert!(cache.client(&key).is_none());
        cache.vouch(Instant::now());
        assert!(cache.client(&key).is_some(), "a pause alone loses no entry");
        cache.lapse();
        cache.vouch(Instant::now());
        assert!(
            cache.client(&key).is_none(),
            "a lost listener empties the cache"
        );
        cache.vouched_until.store(0, Ordering::SeqCst);
        keep(&cache, key, "a", "u1", Duration::from_secs(60));
        cache.vouch(Instant::now());
        assert!(cache.client(&key).is_none());
    }
}
