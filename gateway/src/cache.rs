//! Response caching on both exchanges (issue 12). The decisions are `policies::cache`'s (the
//! key, RFC 9111's storing and freshness rules); the storage is `cache_storage.rs`. This
//! module is the glue:
//!
//! - [`ResponseCache`]: the process's storage and pingora-cache's lock (one each, made at
//!   start-up from the top-level `cache:` and kept for the life of the process, so a reload
//!   keeps every entry whose key it still computes).
//! - Pingora's cache phases (`proxy.rs`) call [`ResponseCache::enable`], [`pingora_key`],
//!   [`meta_for`] and [`variance`]: misses, stale entries, fills, revalidation, the cache lock
//!   and `stale-while-revalidate` / `stale-if-error` all happen there, in one place.
//! - The lane asks [`ResponseCache::fresh`] for a fresh hit and serves it itself; anything
//!   else it hands to Pingora with the request already decided (`lane/mod.rs`).

use crate::cache_storage::{Entry, MemoryStorage};
use http::{HeaderMap, HeaderName};
use pingora::cache::key::hash_key;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheKey, CacheMeta, CacheOptionOverrides, HttpCache, VarianceBuilder};
use pingora::http::ResponseHeader;
use policies::cache::spec::CacheSpec;
use policies::cache::{Keep, RequestKey};
use policies::RequestHead;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The process's response cache.
#[derive(Clone, Copy)]
pub struct ResponseCache {
    pub storage: &'static MemoryStorage,
    lock: &'static CacheKeyLockImpl,
    lock_timeout: Duration,
    max_object: usize,
}

impl ResponseCache {
    /// Made once per process (the storage and the lock live as long as it: pingora-cache wants
    /// them `'static`).
    pub fn new(spec: &CacheSpec) -> ResponseCache {
        let max_object = usize::try_from(spec.max_object_size.0).unwrap_or(usize::MAX);
        let budget = usize::try_from(spec.max_memory.0).unwrap_or(usize::MAX);
        let storage: &'static MemoryStorage = Box::leak(Box::new(MemoryStorage::new(budget, max_object)));
        // The lock's age timeout: a writer that holds a key longer lets the waiters go.
        let lock: &'static CacheLock = Box::leak(CacheLock::new_boxed(spec.lock_timeout.0));
        ResponseCache { storage, lock, lock_timeout: spec.lock_timeout.0, max_object }
    }

    /// Turns pingora-cache on for this request (its key comes from `cache_key_callback`).
    pub fn enable(&self, cache: &mut HttpCache) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.lock_timeout);
        cache.enable(self.storage, None, None, Some(self.lock), Some(overrides));
        cache.set_max_file_size_bytes(self.max_object);
    }

    /// The lane's lookup: a fresh entry for `key`, the request's own variant of it.
    pub fn fresh(&self, key: &RequestKey, req: &dyn RequestHead) -> Option<Arc<Entry>> {
        self.storage.fresh(&pingora_key(key), |names| variance(names, |n| req.header(n)))
    }
}

/// pingora-cache's key for a request key: its hash (computed once here; pingora-cache would
/// otherwise hash the bytes again at every use) and the purge tag.
pub fn pingora_key(key: &RequestKey) -> CacheKey {
    let mut k = CacheKey::new(Vec::new(), key.tag.as_str());
    k.set_primary_bin_override(hash_key(&key.primary));
    k
}

/// The field names a response's `Vary` lists (lower case, sorted, no repeats; `*` is never
/// stored, so it is not here).
pub fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// The variance of a request for a response that varies on `names`: pingora-cache's hash of
/// the request's values (an absent field and an empty one differ). `None`: no variance.
pub fn variance<'r>(names: &[HeaderName], field: impl Fn(&str) -> Option<&'r [u8]>) -> Option<[u8; 16]> {
    if names.is_empty() {
        return None;
    }
    let mut b = VarianceBuilder::new();
    for name in names {
        match field(name.as_str()) {
            Some(v) => b.add_value(name.as_str(), v),
            None => b.add_value(name.as_str(), "\0absent"),
        }
    }
    b.finalize()
}

/// The meta a storable response is kept with: fresh for `keep.fresh_for` from now, its stale
/// windows, and its head less the hop-by-hop fields (which belong to the connection it came on).
pub fn meta_for(resp: &ResponseHeader, keep: &Keep) -> CacheMeta {
    let now = SystemTime::now();
    let mut header = resp.clone();
    let nominated: Vec<HeaderName> = resp
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect();
    for name in crate::pipeline::HOP_BY_HOP.iter().copied().chain(nominated.iter().map(HeaderName::as_str)) {
        header.remove_header(name);
    }
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    CacheMeta::new(now + keep.fresh_for, now, secs(keep.stale_while_revalidate), secs(keep.stale_if_error), header)
}

/// The `Age` of an entry now, in seconds (RFC 9111 §4.2.3, as the gateway stored it: the time
/// since it was stored).
pub fn age(entry: &Entry) -> u64 {
    SystemTime::now().duration_since(entry.head.created).map_or(0, |d| d.as_secs())
}
