//! State that outlives a snapshot, kept by stable name so a reload does not reset it.
//!
//! The compiler asks [`Durable`] for a handle (`Arc`) and puts it in the snapshot, so the
//! request path never looks anything up here. The registry holds `Weak`s: when the last
//! snapshot that used a piece of state is dropped, the state goes with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Milliseconds since the process's first call: the clock of health and ejection timers and
/// of idle upstream connections. Policies take `now_ms` as a parameter, so tests inject time
/// instead of sleeping.
///
/// Read from the coarse monotonic clock (Linux: `CLOCK_MONOTONIC_COARSE`, a few ms of
/// resolution, a fraction of a precise read's cost): these timers count in seconds, and the
/// request path reads this clock several times per request.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<u64> = OnceLock::new();
    let now = coarse::monotonic_ms();
    now.saturating_sub(*EPOCH.get_or_init(|| now))
}

/// Seconds since the Unix epoch, from the coarse real-time clock: the clock of token expiry
/// checks (whole seconds).
pub fn unix_now() -> u64 {
    coarse::unix_secs()
}

#[cfg(target_os = "linux")]
mod coarse {
    use nix::time::{clock_gettime, ClockId};

    pub fn monotonic_ms() -> u64 {
        clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)
            .map_or(0, |t| (t.tv_sec() as u64).saturating_mul(1000) + t.tv_nsec() as u64 / 1_000_000)
    }

    pub fn unix_secs() -> u64 {
        clock_gettime(ClockId::CLOCK_REALTIME_COARSE).map_or(0, |t| t.tv_sec().max(0) as u64)
    }
}

#[cfg(not(target_os = "linux"))]
mod coarse {
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    pub fn monotonic_ms() -> u64 {
        static BASE: OnceLock<Instant> = OnceLock::new();
        BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    pub fn unix_secs() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

/// The registry of durable state.
#[derive(Debug, Default)]
pub struct Durable {
    targets: Mutex<HashMap<String, Weak<TargetHealth>>>,
    token_caches: Mutex<HashMap<String, Weak<crate::authn::TokenCache>>>,
    jwks: Mutex<HashMap<String, Weak<crate::authn::jwks::JwksSource>>>,
    /// The process's generated backend-JWT key (PKCS#8), made on first use: a reload keeps
    /// it, so backends that fetched its JWK keep verifying.
    signing_key: Mutex<Option<Arc<[u8]>>>,
    /// The process's throttling counters: made by the first snapshot, shared by every later
    /// one, so a reload (even one that renames or re-tiers things) keeps what was counted.
    throttle_store: OnceLock<Arc<crate::throttle::store::LocalStore>>,
}

impl Durable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The health of an upstream target, keyed by its URL: unchanged targets keep their
    /// health across reloads.
    pub fn target_health(&self, key: &str) -> Arc<TargetHealth> {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(TargetHealth::new(key));
        map.insert(key.to_string(), Arc::downgrade(&fresh));
        fresh
    }

    /// The verified-token cache of a key manager. `fingerprint` covers everything that
    /// decides a verification (issuer, audiences, algorithms, key material, claim names), so
    /// a reload that changes none of it keeps the cache, and any change starts a fresh one.
    pub fn token_cache(&self, fingerprint: &str, capacity: usize) -> Arc<crate::authn::TokenCache> {
        let mut map = self.token_caches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(fingerprint).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(crate::authn::TokenCache::new(capacity));
        map.insert(fingerprint.to_string(), Arc::downgrade(&fresh));
        fresh
    }

    /// The remote key set of a JWKS URI (for one list of allowed algorithms): a reload keeps
    /// the fetched keys and their refresh schedule.
    pub fn jwks_source(
        &self,
        uri: &str,
        discovery_issuer: Option<&str>,
        allowed: &[jsonwebtoken::Algorithm],
    ) -> Arc<crate::authn::jwks::JwksSource> {
        let key = format!("{uri}|{discovery_issuer:?}|{allowed:?}");
        let mut map = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(crate::authn::jwks::JwksSource::new(uri.to_string(), discovery_issuer.map(str::to_string), allowed.to_vec()));
        map.insert(key, Arc::downgrade(&fresh));
        fresh
    }

    /// The ES256 key that signs backend JWTs when no key is configured, generated once per
    /// process.
    /// The throttling counter store; `max_keys` applies when the first snapshot makes it.
    pub fn throttle_store(&self, max_keys: usize) -> Arc<crate::throttle::store::LocalStore> {
        self.throttle_store.get_or_init(|| Arc::new(crate::throttle::store::LocalStore::new(max_keys))).clone()
    }

    pub fn generated_signing_key(&self) -> Result<Arc<[u8]>, String> {
        let mut slot = self.signing_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = &*slot {
            return Ok(key.clone());
        }
        let key: Arc<[u8]> = crate::authn::keys::generate_es256()?.into();
        *slot = Some(key.clone());
        Ok(key)
    }

    /// Live targets (for tests and the status endpoint).
    pub fn target_count(&self) -> usize {
        let map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }
}

/// Health of one upstream target, from active probes and from passive observation.
///
/// A target is used when active checks have not marked it down and it is not ejected.
/// Active state flips only after `unhealthy_after` failures or `healthy_after` successes in
/// a row; passive ejection after `consecutive_failures` failed requests in a row, for
/// `eject_for`. All fields are atomics: the request path only reads and bumps them.
#[derive(Debug)]
pub struct TargetHealth {
    pub key: String,
    active_down: AtomicBool,
    /// Consecutive probe results pointing away from the current active state.
    active_streak: AtomicU32,
    passive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// When the next active probe is due (ms, [`now_ms`] clock), and whether one is running.
    pub next_probe_ms: AtomicU64,
    pub probing: AtomicBool,
}

impl TargetHealth {
    fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            active_down: AtomicBool::new(false),
            active_streak: AtomicU32::new(0),
            passive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            next_probe_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    pub fn is_healthy(&self, now_ms: u64) -> bool {
        !self.active_down.load(Ordering::Relaxed) && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Records an active probe. Returns `Some(healthy)` when the active state changed.
    pub fn record_probe(&self, ok: bool, healthy_after: u32, unhealthy_after: u32) -> Option<bool> {
        let down = self.active_down.load(Ordering::Relaxed);
        // A result that agrees with the current state resets the streak.
        if ok != down {
            self.active_streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.active_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if down { healthy_after } else { unhealthy_after };
        if streak >= needed.max(1) {
            self.active_down.store(!down, Ordering::Relaxed);
            self.active_streak.store(0, Ordering::Relaxed);
            if ok {
                // Recovered: forget passive strikes too.
                self.passive_failures.store(0, Ordering::Relaxed);
                self.ejected_until_ms.store(0, Ordering::Relaxed);
            }
            return Some(ok);
        }
        None
    }

    /// Forgets the active-check verdict (health checks were removed from the config: a
    /// target they had marked down must not stay down forever).
    pub fn clear_active(&self) {
        if self.active_down.swap(false, Ordering::Relaxed) {
            self.active_streak.store(0, Ordering::Relaxed);
        }
    }

    /// A request to this target failed (connect error, timeout, broken response).
    /// Returns true when this failure ejected the target.
    pub fn record_failure(&self, now_ms: u64, threshold: u32, eject_for_ms: u64) -> bool {
        if threshold == 0 {
            return false;
        }
        let n = self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= threshold {
            self.passive_failures.store(0, Ordering::Relaxed);
            self.ejected_until_ms.store(now_ms + eject_for_ms, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A request to this target got a response: the failure streak ends.
    pub fn record_success(&self) {
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_state_across_snapshots() {
        let d = Durable::new();
        let a = d.target_health("http://127.0.0.1:1");
        a.record_failure(0, 1, 1000);
        let b = d.target_health("http://127.0.0.1:1");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!b.is_healthy(10));
        drop((a, b));
        assert_eq!(d.target_count(), 0);
        assert!(d.target_health("http://127.0.0.1:1").is_healthy(10));
    }

    #[test]
    fn active_state_needs_a_streak() {
        let h = TargetHealth::new("t");
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(h.record_probe(true, 2, 3), None); // streak broken
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(h.record_probe(false, 2, 3), None);
        assert_eq!(h.record_probe(false, 2, 3), Some(false));
        assert!(!h.is_healthy(0));
        assert_eq!(h.record_probe(true, 2, 3), None);
        assert_eq!(h.record_probe(true, 2, 3), Some(true));
        assert!(h.is_healthy(0));
    }

    #[test]
    fn passive_ejection_expires() {
        let h = TargetHealth::new("t");
        assert!(!h.record_failure(100, 2, 1000));
        h.record_success();
        assert!(!h.record_failure(100, 2, 1000));
        assert!(h.record_failure(100, 2, 1000));
        assert!(!h.is_healthy(500));
        assert!(h.is_healthy(1100));
    }
}
