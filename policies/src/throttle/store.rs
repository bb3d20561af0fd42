//! Where throttling counters live. [`CounterStore`] is the one interface the chain's commit
//! step uses; [`LocalStore`] keeps the counters in this process. A Redis store (several
//! gateway nodes, issue 13) implements the same call: one request's checks go to the store
//! together and are decided all or nothing, which a single Lua script does atomically.

use super::window::Window;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A counter's identity: its level and a keyed hash of what it counts (API, application,
/// client address, ...). Keys name things, never snapshot positions, so counters survive a
/// reload that reorders the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub level: u8,
    pub hash: u64,
}

/// One limit a request must fit in.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub key: Key,
    pub limit: u64,
    pub window_ms: u64,
    /// `false` (`stop_on_quota_reach: false`): counted, reported, never refused.
    pub enforce: bool,
}

/// Where a request stands against one of its limits, after it was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    /// Until the oldest counted request leaves the window.
    pub reset_ms: u64,
    /// The count was over the limit (only for a check that does not enforce).
    pub over: bool,
}

/// The store's answer for one request's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every check had room; each was counted. `tightest`: the index of the check with the
    /// fewest requests left, and where it stands.
    Admitted { tightest: Option<(usize, Standing)>, over_quota: bool },
    /// Check `index` had no room; nothing was counted anywhere.
    Refused { index: usize, limit: u64, retry_after_ms: u64 },
}

/// The store's answer: at once (in-process), or after a round trip (a remote store).
pub enum Acquire<'a> {
    Ready(Outcome),
    /// Awaited by the chain's commit step: one `.await`, never a hand-written continuation.
    Pending(std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>),
}

/// The counter store: in-process now, Redis for several nodes (issue 13). One call per
/// request carries all its checks, so a remote store can decide them atomically in one round
/// trip (a Lua script), or count them in local leases it reconciles in batches.
pub trait CounterStore: Send + Sync {
    /// Decides `checks` together at `now_ms`: if every enforcing check has room, counts the
    /// request in all of them; otherwise counts it in none.
    fn acquire<'a>(&'a self, now_ms: u64, checks: &'a [Check]) -> Acquire<'a>;
    /// Forgets idle keys. Called about once a second.
    fn sweep(&self, now_ms: u64);
    /// Keys held (for the metrics).
    fn keys(&self) -> usize;
}

const SHARDS: usize = 64;

/// Keys are already keyed hashes: the map uses them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.0 ^= u64::from(n) << 56;
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type Map = HashMap<Key, Entry, BuildHasherDefault<PassThrough>>;

struct Entry {
    window: Window,
    /// The window length it was last counted with (for the sweep).
    window_ms: u64,
}

/// Counters in this process: 64 mutex-guarded shards, each lock held for one key's update
/// and never across an await. Memory is bounded by `max_keys`: a key that would pass the
/// bound is counted in its level's shared overflow key instead, so a flood of distinct keys
/// (one per spoofed address) is throttled together rather than let through or grown without
/// end. Idle keys are forgotten by [`LocalStore::sweep`].
pub struct LocalStore {
    shards: Box<[Mutex<Map>; SHARDS]>,
    keys: AtomicUsize,
    max_keys: usize,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").field("keys", &self.keys()).field("max_keys", &self.max_keys).finish()
    }
}

/// The overflow key of a level: where keys beyond `max_keys` are counted.
fn overflow(level: u8) -> Key {
    Key { level, hash: 0 }
}

impl LocalStore {
    pub fn new(max_keys: usize) -> LocalStore {
        LocalStore { shards: Box::new(std::array::from_fn(|_| Mutex::new(Map::default()))), keys: AtomicUsize::new(0), max_keys }
    }

    fn shard(&self, key: &Key) -> &Mutex<Map> {
        &self.shards[(key.hash as usize ^ usize::from(key.level)) % SHARDS]
    }

    /// Runs `f` on the key's window, creating it if there is room (else on the overflow key).
    fn with_window<R>(&self, key: Key, window_ms: u64, f: impl FnOnce(&mut Window) -> R) -> R {
        let shard = self.shard(&key);
        let mut map = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = map.get_mut(&key) {
            e.window_ms = window_ms;
            return f(&mut e.window);
        }
        if self.keys.load(Ordering::Relaxed) < self.max_keys {
            self.keys.fetch_add(1, Ordering::Relaxed);
            let e = map.entry(key).or_insert(Entry { window: Window::default(), window_ms });
            return f(&mut e.window);
        }
        drop(map);
        let key = overflow(key.level);
        let mut map = self.shard(&key).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.entry(key).or_insert_with(|| Entry { window: Window::default(), window_ms });
        e.window_ms = window_ms;
        f(&mut e.window)
    }
}

impl CounterStore for LocalStore {
    fn acquire<'a>(&'a self, now_ms: u64, checks: &'a [Check]) -> Acquire<'a> {
        Acquire::Ready(self.acquire_now(now_ms, checks))
    }

    fn sweep(&self, now_ms: u64) {
        LocalStore::sweep(self, now_ms);
    }

    fn keys(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }
}

impl LocalStore {
    /// [`CounterStore::acquire`], answered at once.
    pub fn acquire_now(&self, now_ms: u64, checks: &[Check]) -> Outcome {
        let mut tightest: Option<(usize, Standing)> = None;
        let mut over_quota = false;
        for (i, c) in checks.iter().enumerate() {
            let refused = self.with_window(c.key, c.window_ms, |w| {
                let count = w.count(now_ms, c.window_ms);
                if c.enforce && count >= c.limit {
                    return Err(w.wait_ms(now_ms, c.window_ms, c.limit));
                }
                w.add(now_ms, c.window_ms);
                let over = count >= c.limit;
                let standing = Standing {
                    limit: c.limit,
                    remaining: c.limit.saturating_sub(count + 1),
                    reset_ms: w.reset_ms(now_ms, c.window_ms),
                    over,
                };
                Ok(standing)
            });
            match refused {
                Ok(standing) => {
                    over_quota |= standing.over;
                    if tightest.is_none_or(|(_, t)| standing.remaining < t.remaining) {
                        tightest = Some((i, standing));
                    }
                }
                Err(retry_after_ms) => {
                    // Check, then commit: what the earlier levels counted is taken back.
                    for undo in &checks[..i] {
                        self.with_window(undo.key, undo.window_ms, |w| w.remove(now_ms, undo.window_ms));
                    }
                    return Outcome::Refused { index: i, limit: c.limit, retry_after_ms };
                }
            }
        }
        Outcome::Admitted { tightest, over_quota }
    }

    /// Forgets keys with nothing counted.
    pub fn sweep(&self, now_ms: u64) {
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = map.len();
            map.retain(|k, e| k.hash == 0 || e.window.count(now_ms, e.window_ms) > 0);
            let gone = before - map.len();
            if gone > 0 {
                self.keys.fetch_sub(gone, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn check(level: u8, hash: u64, limit: u64) -> Check {
        Check { key: Key { level, hash }, limit, window_ms: 1000, enforce: true }
    }

    #[test]
    fn a_refusal_by_one_level_consumes_nothing_from_the_others() {
        let store = LocalStore::new(1000);
        let wide = check(1, 11, 10);
        let narrow = check(2, 22, 2);
        assert!(matches!(store.acquire_now(0, &[wide, narrow]), Outcome::Admitted { .. }));
        assert!(matches!(store.acquire_now(0, &[wide, narrow]), Outcome::Admitted { .. }));
        assert_eq!(store.acquire_now(0, &[wide, narrow]), Outcome::Refused { index: 1, limit: 2, retry_after_ms: 1010 });
        // The wide level counted two, not three: eight are left of it.
        match store.acquire_now(0, &[wide]) {
            Outcome::Admitted { tightest: Some((0, s)), .. } => assert_eq!(s.remaining, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tightest_standing_is_reported_and_an_unenforced_limit_counts_over_quota() {
        let store = LocalStore::new(1000);
        let billing = Check { enforce: false, ..check(3, 33, 1) };
        let api = check(4, 44, 100);
        let Outcome::Admitted { tightest, over_quota } = store.acquire_now(0, &[api, billing]) else { panic!() };
        assert_eq!(tightest.map(|(i, s)| (i, s.remaining)), Some((1, 0)));
        assert!(!over_quota);
        let Outcome::Admitted { over_quota, .. } = store.acquire_now(1, &[api, billing]) else { panic!("not enforced") };
        assert!(over_quota);
    }

    #[test]
    fn idle_keys_are_forgotten_and_a_flood_of_new_keys_shares_one_overflow_counter() {
        let store = LocalStore::new(100);
        for k in 1..=100 {
            assert!(matches!(store.acquire_now(0, &[check(5, k, 1)]), Outcome::Admitted { .. }));
        }
        assert_eq!(CounterStore::keys(&store), 100);
        // Past the bound: keys 101.. count together, in the overflow key (limit 1: one passes).
        assert!(matches!(store.acquire_now(0, &[check(5, 101, 1)]), Outcome::Admitted { .. }));
        assert!(matches!(store.acquire_now(0, &[check(5, 102, 1)]), Outcome::Refused { .. }));
        assert_eq!(CounterStore::keys(&store), 100);
        store.sweep(2_000);
        assert_eq!(CounterStore::keys(&store), 0);
        assert!(matches!(store.acquire_now(2_000, &[check(5, 102, 1)]), Outcome::Admitted { .. }));
        assert_eq!(CounterStore::keys(&store), 1);
    }

    #[test]
    fn concurrent_increments_from_many_threads_lose_no_count() {
        let store = Arc::new(LocalStore::new(1000));
        let limit = 10_000;
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (store, admitted) = (store.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for i in 0..2_000u64 {
                        // Two shared levels and one per thread, all in one window.
                        let checks = [check(1, 1, limit), check(2, 2, limit), check(3, 100 + t, limit)];
                        if matches!(store.acquire_now(i % 500, &checks), Outcome::Admitted { .. }) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 10_000, "exactly the limit of 16 000 tries");
        let Outcome::Refused { .. } = store.acquire_now(499, &[check(1, 1, limit)]) else { panic!("the shared key holds 10 000") };
        let Outcome::Admitted { tightest: Some((_, s)), .. } = store.acquire_now(499, &[check(3, 100, limit)]) else { panic!() };
        assert!(s.remaining < limit - 1, "the per-thread key counted its admissions");
    }
}
