//! The response cache's storage: a pingora-cache `Storage` in memory with a hard budget in
//! bytes and TinyUFO's admission and eviction, shared by both exchanges (Pingora's cache
//! phases fill it and serve from it; the lane serves fresh hits from it, [`MemoryStorage::fresh`]). pingora-cache's own `MemCache` is for tests only: unbounded, no eviction of its
//! own, a copy of the body on every hit.
//!
//! - An entry is its serialised `CacheMeta` and its body as one `Bytes` (a hit clones a
//!   reference, never the bytes). Its size counts the meta, the header and the body.
//! - TinyUFO weighs in units of 1 KiB (its weight is a `u16`), so the budget is exact to a
//!   KiB per entry; the bytes actually held are counted separately ([`MemoryStorage::bytes`]).
//! - TinyUFO may refuse a new entry (its admission filter keeps a popular old one over a new
//!   one-hit wonder): the refused entry is simply not stored.
//! - A body larger than `max_object_size` is not stored: the miss handler stops buffering at
//!   the limit and the response streams through uncached.
//! - Each entry keeps its tag (API and URL, `policies::cache::url_tag`) in an index beside
//!   TinyUFO, which cannot be walked: purges by API or URL find their entries there. The index
//!   changes on fills, evictions and purges, never on hits.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use pingora::cache::key::{CacheHashKey, CompactCacheKey};
use pingora::cache::storage::{HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::{Error, ErrorType, Result};
use policies::metrics::FAMILIES;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tinyufo::TinyUfo;

const UNIT: usize = 1024;

/// One stored response.
pub struct Entry {
    /// Its key (TinyUFO reports evictions by its own 64-bit hash only).
    key: u128,
    meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
    size: usize,
    /// What the lane needs to serve the entry without deserialising the meta.
    pub head: StoredHead,
}

/// A stored response's head and freshness, as the lane serves it.
pub struct StoredHead {
    pub status: u16,
    pub fields: Vec<(HeaderName, HeaderValue)>,
    pub created: SystemTime,
    pub fresh_until: SystemTime,
    /// The variance the entry was stored under (the response's `Vary`), and the field names
    /// it was computed from.
    pub variance: Option<[u8; 16]>,
    pub vary: Vec<HeaderName>,
}

impl StoredHead {
    fn of(meta: &CacheMeta) -> StoredHead {
        let header = meta.response_header();
        StoredHead {
            status: header.status.as_u16(),
            fields: header.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            created: meta.created(),
            fresh_until: meta.fresh_until(),
            variance: meta.variance(),
            vary: crate::cache::vary_names(&header.headers),
        }
    }
}

/// The in-memory storage.
pub struct MemoryStorage {
    entries: TinyUfo<u128, Arc<Entry>>,
    bytes: AtomicUsize,
    max_object: usize,
    /// Each entry's tag, for purges (see the module's notes).
    tags: Mutex<HashMap<u128, Arc<str>>>,
}

fn weight(size: usize) -> u16 {
    u16::try_from(size.div_ceil(UNIT).max(1)).unwrap_or(u16::MAX)
}

impl MemoryStorage {
    /// `budget` bytes in all, entries of at most `max_object` bytes of body.
    pub fn new(budget: usize, max_object: usize) -> MemoryStorage {
        let units = (budget / UNIT).max(1);
        // TinyUFO sizes its tables for an estimated entry count: a 16 KiB average entry.
        MemoryStorage {
            entries: TinyUfo::new(units, (budget / (16 * UNIT)).max(16)),
            bytes: AtomicUsize::new(0),
            max_object,
            tags: Mutex::new(HashMap::new()),
        }
    }

    /// The entry under `key` if it is fresh now, following the response's `Vary`: when the
    /// entry found was stored under a variance, `variance_of` computes the request's from the
    /// entry's field names, and the matching variant is looked up. (The lane's hit path; no
    /// lock, no copy.)
    pub fn fresh(&self, key: &CacheKey, variance_of: impl Fn(&[HeaderName]) -> Option<[u8; 16]>) -> Option<Arc<Entry>> {
        let mut entry = self.entries.get(&key_of(key))?;
        if entry.head.variance.is_some() {
            let wanted = variance_of(&entry.head.vary);
            if wanted != entry.head.variance {
                let wanted = wanted?;
                let mut variant = key.clone();
                variant.set_variance_key(wanted);
                entry = self.entries.get(&key_of(&variant))?;
                if entry.head.variance != Some(wanted) {
                    return None;
                }
            }
        }
        (SystemTime::now() < entry.head.fresh_until).then_some(entry)
    }

    /// How many entries the storage holds.
    pub fn len(&self) -> usize {
        self.tags.lock().map_or(0, |t| t.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn gauges(&self) {
        FAMILIES.cache_bytes.set(i64::try_from(self.bytes()).unwrap_or(i64::MAX));
        FAMILIES.cache_entries.set(i64::try_from(self.len()).unwrap_or(i64::MAX));
    }

    /// The bytes held (meta, headers and bodies).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn insert(&self, key: u128, entry: Entry, tag: Arc<str>) {
        self.remove(key);
        let size = entry.size;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        let evicted = self.entries.put(key, Arc::new(entry), weight(size));
        if let Ok(mut tags) = self.tags.lock() {
            tags.insert(key, tag);
            for e in &evicted {
                if e.data.key != key {
                    tags.remove(&e.data.key);
                }
            }
        }
        for e in evicted {
            // Evicted entries, and the new one if TinyUFO did not admit it.
            self.bytes.fetch_sub(e.data.size, Ordering::Relaxed);
            if e.data.key != key {
                FAMILIES.cache_evictions.inc();
            } else if let Ok(mut tags) = self.tags.lock() {
                // Not admitted.
                tags.remove(&key);
            }
        }
        self.gauges();
    }

    fn remove(&self, key: u128) -> bool {
        let removed = match self.entries.remove(&key) {
            Some(old) => {
                self.bytes.fetch_sub(old.size, Ordering::Relaxed);
                true
            }
            None => false,
        };
        if let Ok(mut tags) = self.tags.lock() {
            tags.remove(&key);
        }
        removed
    }

    fn purge_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        let keys: Vec<u128> = match self.tags.lock() {
            Ok(tags) => tags.iter().filter(|(_, t)| matches(t)).map(|(k, _)| *k).collect(),
            Err(_) => return 0,
        };
        let n = keys.into_iter().filter(|k| self.remove(*k)).count();
        self.gauges();
        n
    }
}

impl policies::cache::Purge for MemoryStorage {
    fn purge_all(&self) -> usize {
        self.purge_where(|_| true)
    }

    fn purge_tagged(&self, prefix: Option<&str>, exact: Option<&str>) -> usize {
        self.purge_where(|t| prefix.is_some_and(|p| t.starts_with(p)) || exact.is_some_and(|e| t == e))
    }
}

fn key_of(key: &impl CacheHashKey) -> u128 {
    u128::from_le_bytes(key.combined_bin())
}

fn internal(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InternalError, why)
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(entry) = self.entries.get(&key_of(key)) else { return Ok(None) };
        let meta = CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?;
        Ok(Some((meta, Box::new(Hit { body: Some(entry.body.clone()) }))))
    }

    async fn get_miss_handler(&'static self, key: &CacheKey, meta: &CacheMeta, _trace: &SpanHandle) -> Result<MissHandler> {
        let head = StoredHead::of(meta);
        let meta = meta.serialize()?;
        let tag = Arc::from(key.user_tag.as_str());
        Ok(Box::new(Miss { store: self, key: key_of(key), meta, head, tag, body: BytesMut::new(), too_large: false }))
    }

    async fn purge(&'static self, target: PurgeTarget<'_>, _purge_type: PurgeType, _trace: &SpanHandle) -> Result<PurgeOutcome> {
        let key: &CompactCacheKey = target.key();
        Ok(if self.remove(key_of(key)) { PurgeOutcome::Purged(None) } else { PurgeOutcome::NotFound })
    }

    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _trace: &SpanHandle) -> Result<bool> {
        let key = key_of(key);
        let Some(old) = self.entries.get(&key) else { return Ok(false) };
        let head = StoredHead::of(meta);
        let meta = meta.serialize()?;
        let head_bytes: usize = head.fields.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        let size = old.body.len() + meta.0.len() + meta.1.len() + head_bytes;
        let tag = self.tags.lock().ok().and_then(|t| t.get(&key).cloned()).unwrap_or_else(|| Arc::from(""));
        self.insert(key, Entry { key, meta, body: old.body.clone(), size, head }, tag);
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

struct Hit {
    body: Option<Bytes>,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        Ok(self.body.take())
    }

    async fn finish(self: Box<Self>, _storage: &'static (dyn Storage + Sync), _key: &CacheKey, _trace: &SpanHandle) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

struct Miss {
    store: &'static MemoryStorage,
    key: u128,
    meta: (Vec<u8>, Vec<u8>),
    head: StoredHead,
    tag: Arc<str>,
    body: BytesMut,
    too_large: bool,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.too_large {
            return Ok(());
        }
        if self.body.len() + data.len() > self.store.max_object {
            // Stop buffering; the response goes on to the client uncached.
            self.too_large = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        if self.too_large {
            return Err(internal("the response is larger than cache.max_object_size"));
        }
        let head_bytes: usize = self.head.fields.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        let size = self.body.len() + self.meta.0.len() + self.meta.1.len() + head_bytes;
        self.store.insert(self.key, Entry { key: self.key, meta: self.meta, body: self.body.freeze(), size, head: self.head }, self.tag);
        Ok(MissFinishType::Created(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::trace::Span;
    use pingora::http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, ResponseHeader::build(200, None).unwrap())
    }

    async fn fill(store: &'static MemoryStorage, key: &CacheKey, body: &[u8]) -> Result<MissFinishType> {
        let trace = Span::inactive().handle();
        let mut miss = store.get_miss_handler(key, &meta(), &trace).await?;
        for chunk in body.chunks(1000) {
            miss.write_body(Bytes::copy_from_slice(chunk), false).await?;
        }
        miss.write_body(Bytes::new(), true).await?;
        miss.finish().await
    }

    async fn read(store: &'static MemoryStorage, key: &CacheKey) -> Option<Vec<u8>> {
        let trace = Span::inactive().handle();
        let (meta, mut hit) = store.lookup(key, &trace).await.unwrap()?;
        assert!(meta.is_fresh(SystemTime::now()));
        let mut out = Vec::new();
        while let Some(b) = hit.read_body().await.unwrap() {
            out.extend_from_slice(&b);
        }
        Some(out)
    }

    #[tokio::test]
    async fn a_filled_entry_is_served_whole_and_purged() {
        let store: &'static MemoryStorage = Box::leak(Box::new(MemoryStorage::new(1 << 20, 64 << 10)));
        let key = CacheKey::new("GET /menu", "");
        assert!(matches!(fill(store, &key, &[7u8; 5000]).await, Ok(MissFinishType::Created(n)) if n > 5000));
        assert_eq!(read(store, &key).await, Some(vec![7u8; 5000]));
        assert!(store.bytes() > 5000);
        let trace = Span::inactive().handle();
        let purged = store.purge(PurgeTarget::Active(&key.to_compact()), PurgeType::Invalidation, &trace).await.unwrap();
        assert!(matches!(purged, PurgeOutcome::Purged(_)));
        assert_eq!(read(store, &key).await, None);
        assert_eq!(store.bytes(), 0);
        let again = store.purge(PurgeTarget::Active(&key.to_compact()), PurgeType::Invalidation, &trace).await.unwrap();
        assert!(matches!(again, PurgeOutcome::NotFound));
    }

    #[tokio::test]
    async fn a_body_over_max_object_size_is_not_stored() {
        let store: &'static MemoryStorage = Box::leak(Box::new(MemoryStorage::new(1 << 20, 4096)));
        let key = CacheKey::new("GET /big", "");
        assert!(fill(store, &key, &[1u8; 5000]).await.is_err());
        assert_eq!(read(store, &key).await, None);
        assert_eq!(store.bytes(), 0);
    }

    #[tokio::test]
    async fn the_budget_holds_under_a_stream_of_distinct_keys() {
        let budget = 256 << 10;
        let store: &'static MemoryStorage = Box::leak(Box::new(MemoryStorage::new(budget, 64 << 10)));
        for i in 0..2000 {
            fill(store, &CacheKey::new(format!("GET /item/{i}"), ""), &[0u8; 3000]).await.unwrap();
            // Exact to a KiB per entry (TinyUFO's unit): at most one unit over per entry held.
            assert!(store.bytes() <= budget + budget / 3, "{i}: {} bytes held", store.bytes());
        }
        let held = (0..2000).filter(|i| store.entries.get(&key_of(&CacheKey::new(format!("GET /item/{i}"), ""))).is_some()).count();
        assert!(held > 20 && held * 3000 <= budget + budget / 3, "{held} entries held");
    }

    #[tokio::test]
    async fn updating_the_meta_keeps_the_body_and_replacing_an_entry_keeps_the_count() {
        let store: &'static MemoryStorage = Box::leak(Box::new(MemoryStorage::new(1 << 20, 64 << 10)));
        let key = CacheKey::new("GET /menu", "");
        fill(store, &key, b"first").await.unwrap();
        let one = store.bytes();
        fill(store, &key, b"again").await.unwrap();
        assert_eq!(store.bytes(), one, "a refill replaces, it does not add");
        let trace = Span::inactive().handle();
        assert!(store.update_meta(&key, &meta(), &trace).await.unwrap());
        assert_eq!(read(store, &key).await.as_deref(), Some(&b"again"[..]));
        assert!(!store.update_meta(&CacheKey::new("GET /none", ""), &meta(), &trace).await.unwrap());
    }
}
