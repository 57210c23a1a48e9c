//! Failed-authentication limiting, in memory: per client address and per presented key.
//!
//! Only failures are counted, so a client that authenticates is never slowed down, and the
//! check costs an atomic load while nobody has failed recently. Each key has a leaky bucket
//! (GCRA): `burst` failures at once, then one more every `window / burst`. A blocked key
//! is refused before its credentials are looked up, so guessing from a blocked address
//! learns nothing and costs the database nothing.
//!
//! The state is per process: behind a load balancer with N instances an address gets up
//! to N times the burst before every instance blocks it.
//!
//! Each table is a bounded S3-FIFO cache (`quick_cache`): a key enters a small probation
//! queue and reaches the main one only if it fails again while there. A flood of distinct
//! one-off keys therefore cycles through probation in O(1) per key and cannot push out the
//! keys that keep failing, which are the ones worth blocking. The table never outgrows its
//! capacity; a key pushed out forgets its debt, which only ever errs towards letting a
//! caller try again.

use std::convert::Infallible;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quick_cache::unsync::Cache;

use crate::config::AuthFailureLimit;

/// Keys tracked per table: what the cache evicts to stay within, so a flood of distinct
/// keys cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

/// The SHA-256 of a credential a caller presented: the secret itself is never kept.
pub type KeyHash = [u8; 32];

pub struct FailureLimiter {
    /// Time one failure keeps counting against its key (`window / burst`).
    interval: Duration,
    /// Debt a key may carry and still be let through: room for one more failure.
    allowance: Duration,
    addresses: Table<IpAddr>,
    keys: Table<KeyHash>,
}

impl FailureLimiter {
    /// `None` when the limit is turned off.
    pub fn new(limit: &AuthFailureLimit) -> Option<Self> {
        if limit.burst == 0 || limit.window.is_zero() {
            return None;
        }
        let interval = limit.window / limit.burst;
        Some(FailureLimiter {
            interval,
            allowance: limit.window.saturating_sub(interval),
            addresses: Table::default(),
            keys: Table::default(),
        })
    }

    /// `Err(retry_after)` when the address or any of the keys is blocked.
    pub fn check(
        &self,
        address: Option<IpAddr>,
        keys: &[KeyHash],
        now: Instant,
    ) -> Result<(), Duration> {
        let wait = |debt: Option<Instant>| {
            debt.and_then(|tat| tat.checked_duration_since(now + self.allowance))
                .filter(|d| !d.is_zero())
        };
        let by_address = address.and_then(|a| wait(self.addresses.debt(&a)));
        let by_key = keys.iter().filter_map(|k| wait(self.keys.debt(k))).max();
        match by_address.max(by_key) {
            Some(retry_after) => Err(retry_after),
            None => Ok(()),
        }
    }

    /// Counts one failed authentication against the address and each presented key.
    pub fn record_failure(&self, address: Option<IpAddr>, keys: &[KeyHash], now: Instant) {
        if let Some(address) = address {
            self.addresses.charge(address, now, self.interval);
        }
        for key in keys {
            self.keys.charge(*key, now, self.interval);
        }
    }
}

struct Table<K> {
    /// Theoretical arrival time of each key's next failure; in the past means no debt.
    debts: Mutex<Cache<K, Instant>>,
    /// Mirrors the cache's length so the common case (no recent failures) takes no lock.
    len: AtomicUsize,
}

impl<K: Eq + Hash> Default for Table<K> {
    fn default() -> Self {
        Table {
            debts: Mutex::new(Cache::new(MAX_TRACKED)),
            len: AtomicUsize::new(0),
        }
    }
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn debt(&self, key: &K) -> Option<Instant> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // A peek: being asked about does not make a key worth keeping, only failing does.
        self.lock().peek(key).copied()
    }

    fn charge(&self, key: K, now: Instant, interval: Duration) {
        let mut debts = self.lock();
        let entry = debts.get_mut_or_insert_with(&key, || Ok::<_, Infallible>(now));
        if let Ok(Some(mut tat)) = entry {
            *tat = (*tat).max(now) + interval;
        }
        self.len.store(debts.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache<K, Instant>> {
        // The cache holds no invariant a panicking holder could break half-way: its
        // methods do not call back into code of ours that could panic.
        self.debts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, window_secs: u64) -> FailureLimiter {
        FailureLimiter::new(&AuthFailureLimit {
            burst,
            window: Duration::from_secs(window_secs),
        })
        .unwrap()
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn a_burst_of_failures_is_allowed_then_the_address_waits_one_interval() {
        let l = limiter(5, 60);
        let now = Instant::now();
        for _ in 0..5 {
            assert!(l.check(A, &[], now).is_ok());
            l.record_failure(A, &[], now);
        }
        assert_eq!(l.check(A, &[], now), Err(Duration::from_secs(12)));
        assert!(
            l.check(B, &[], now).is_ok(),
            "other addresses are not affected"
        );
        let later = now + Duration::from_secs(12);
        assert!(l.check(A, &[], later).is_ok());
        l.record_failure(A, &[], later);
        assert!(l.check(A, &[], later).is_err());
    }

    #[test]
    fn a_key_is_blocked_whatever_address_presents_it() {
        let l = limiter(2, 10);
        let now = Instant::now();
        let key = [7u8; 32];
        l.record_failure(A, &[key], now);
        l.record_failure(B, &[key], now);
        assert!(l.check(None, &[[1u8; 32], key], now).is_err());
        assert!(l.check(None, &[[1u8; 32]], now).is_ok());
    }

    #[test]
    fn checks_alone_never_block() {
        let l = limiter(1, 60);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(l.check(A, &[[0u8; 32]], now).is_ok());
        }
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let off = AuthFailureLimit {
            burst: 0,
            window: Duration::from_secs(60),
        };
        assert!(FailureLimiter::new(&off).is_none());
    }

    fn key(i: u32) -> KeyHash {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        key
    }

    #[test]
    fn a_flood_of_one_off_keys_stays_bounded_and_keeps_the_keys_that_keep_failing() {
        let l = limiter(3, 60);
        let now = Instant::now();
        let guessed = [0xff; 32];
        for _ in 0..3 {
            l.record_failure(None, &[guessed], now);
        }
        assert!(l.check(None, &[guessed], now).is_err());
        for i in 0..(3 * MAX_TRACKED as u32) {
            l.record_failure(None, &[key(i)], now);
        }
        let tracked = l.keys.lock().len();
        assert!(tracked <= MAX_TRACKED, "{tracked} keys tracked");
        assert!(
            l.check(None, &[guessed], now).is_err(),
            "a key that failed repeatedly outlives a flood of one-off keys"
        );
        let newest = key(3 * MAX_TRACKED as u32 - 1);
        l.record_failure(None, &[newest], now);
        l.record_failure(None, &[newest], now);
        l.record_failure(None, &[newest], now);
        assert!(
            l.check(None, &[newest], now).is_err(),
            "new keys are still limited"
        );
    }
}
