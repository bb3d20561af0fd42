//! The cache's config: `cache:` at the top (the storage, process-wide) and `cache:` on an API
//! or a resource (what is cached, and for how long).

use crate::config::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::time::Duration;

/// `cache:` at the top: the in-memory storage every API's entries share. A restart changes it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// The storage's budget: headers and bodies of every entry, in bytes.
    #[serde(default = "default_max_memory")]
    pub max_memory: ByteSize,
    /// A response body larger than this is streamed through uncached.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: ByteSize,
    /// How long concurrent misses for one key wait for the first one's fetch before they go
    /// upstream themselves.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: HumanDuration,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec { max_memory: default_max_memory(), max_object_size: default_max_object_size(), lock_timeout: default_lock_timeout() }
    }
}

fn default_max_memory() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_max_object_size() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_lock_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

/// `cache:` on an API (for all its GET and HEAD resources) or on a resource (overriding the
/// API's key by key). Absent everywhere: nothing is cached.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CachePolicySpec {
    /// `false` turns caching off (for one resource of a cached API, say).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How long a response is fresh when the backend says nothing (no `Cache-Control` age,
    /// no `Expires`). Default 60s.
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
    /// `true`: one entry for every consumer. `false` (the default): a request with a
    /// credential gets its own consumer's entry.
    #[serde(default)]
    pub shared: Option<bool>,
    /// Request header fields whose values are part of the key (besides the response's `Vary`).
    #[serde(default)]
    pub vary: Option<Vec<String>>,
    /// How long past its freshness a response may be served while one background request
    /// refreshes it (the response's own `stale-while-revalidate` may shorten it). Default 0.
    #[serde(default)]
    pub stale_while_revalidate: Option<HumanDuration>,
    /// How long past its freshness a response may be served when the upstream fails or
    /// answers 5xx. Default 0.
    #[serde(default)]
    pub stale_if_error: Option<HumanDuration>,
    /// Whether the client's `Cache-Control: no-cache` / `no-store` (and `Pragma: no-cache`)
    /// are honoured (`honor`, the default) or ignored (`ignore`: clients cannot force misses).
    #[serde(default)]
    pub request_cache_control: Option<RequestCacheControl>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RequestCacheControl {
    Honor,
    Ignore,
}
