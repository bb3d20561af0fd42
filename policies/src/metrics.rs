//! Prometheus metric families (prometheus 0.14, default registry) and the per-API handles the
//! request path uses.
//!
//! They live in this leaf crate so the compiler can resolve every label set once per
//! snapshot: the request path then bumps a pre-resolved counter (one atomic add) instead of
//! hashing label values and taking the family's lock on every request. Labels are bounded:
//! API names from the config, status classes, problem codes; never paths or credentials.

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::{LazyLock, OnceLock};

const LATENCY_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// All families, registered once in the default registry.
pub struct Families {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub rejections: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_failures: IntCounterVec,
    pub config_revision: IntGauge,
    pub config_reloads: IntCounterVec,
    pub access_log_dropped: IntCounterVec,
    pub jwks_refreshes: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub exchange_requests: IntCounterVec,
    pub decisions: IntCounterVec,
    pub throttled: IntCounterVec,
    pub over_quota: IntCounterVec,
    pub throttle_keys: IntGauge,
    pub threats: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub cache_not_stored: IntCounterVec,
    pub cache_lock_waits: IntCounterVec,
    pub cache_evictions: IntCounter,
    pub cache_bytes: IntGauge,
    pub cache_entries: IntGauge,
    pub cache_purged: IntCounterVec,
}

/// `unwrap_or_else(panic)` is deliberate: registration only fails on a duplicate name or a
/// malformed family, both programming errors caught by the first test that touches metrics.
#[allow(clippy::expect_used)]
pub static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    throttled: register_int_counter_vec!(
        "gateway_throttled_requests_total",
        "Requests refused with 429, by API, level and tier (or `condition`).",
        &["api", "level", "tier"]
    )
    .expect("register gateway_throttled_requests_total"),
    over_quota: register_int_counter_vec!(
        "gateway_throttle_over_quota_total",
        "Requests let through over the quota of a tier with stop_on_quota_reach: false, by API, level and tier.",
        &["api", "level", "tier"]
    )
    .expect("register gateway_throttle_over_quota_total"),
    throttle_keys: register_int_gauge!("gateway_throttle_keys", "Throttling counters held in this process.")
        .expect("register gateway_throttle_keys"),
    threats: register_int_counter_vec!(
        "gateway_threat_detections_total",
        "Requests a threat protector caught, by API, protector, rule and action (blocked, or logged in monitor mode).",
        &["api", "protector", "rule", "action"]
    )
    .expect("register gateway_threat_detections_total"),
    cache_requests: register_int_counter_vec!(
        "gateway_cache_requests_total",
        "Requests to cached resources, by API and result (hit, miss, stale, expired, bypass; the X-Cache value).",
        &["api", "result"]
    )
    .expect("register gateway_cache_requests_total"),
    cache_not_stored: register_int_counter_vec!(
        "gateway_cache_not_stored_total",
        "Responses to cacheable requests that were not stored, by API and reason.",
        &["api", "reason"]
    )
    .expect("register gateway_cache_not_stored_total"),
    cache_lock_waits: register_int_counter_vec!(
        "gateway_cache_lock_waits_total",
        "Requests that waited for another request's fetch of the same key (the cache lock), by API.",
        &["api"]
    )
    .expect("register gateway_cache_lock_waits_total"),
    cache_evictions: prometheus::register_int_counter!(
        "gateway_cache_evictions_total",
        "Entries the cache evicted to stay within cache.max_memory."
    )
    .expect("register gateway_cache_evictions_total"),
    cache_bytes: register_int_gauge!("gateway_cache_bytes", "Bytes the cache holds (metadata, headers and bodies).")
        .expect("register gateway_cache_bytes"),
    cache_entries: register_int_gauge!("gateway_cache_entries", "Entries the cache holds.").expect("register gateway_cache_entries"),
    cache_purged: register_int_counter_vec!(
        "gateway_cache_purged_total",
        "Entries removed by the control API's purges, by scope (all, api, url).",
        &["scope"]
    )
    .expect("register gateway_cache_purged_total"),
    requests: register_int_counter_vec!(
        "gateway_http_requests_total",
        "Requests answered, by API and status class.",
        &["api", "status_class"]
    )
    .expect("register gateway_http_requests_total"),
    duration: register_histogram_vec!(
        "gateway_http_request_duration_seconds",
        "Time from request head to the end of the response, by API.",
        &["api"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register gateway_http_request_duration_seconds"),
    upstream_duration: register_histogram_vec!(
        "gateway_upstream_duration_seconds",
        "Time from sending the request upstream to its response head, by API.",
        &["api"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register gateway_upstream_duration_seconds"),
    rejections: register_int_counter_vec!(
        "gateway_policy_rejections_total",
        "Requests answered by the gateway itself, by policy and problem code.",
        &["policy", "reason"]
    )
    .expect("register gateway_policy_rejections_total"),
    upstream_healthy: register_int_gauge_vec!(
        "gateway_upstream_healthy",
        "1 when the target is in rotation, 0 when marked down by health checks or ejected.",
        &["target"]
    )
    .expect("register gateway_upstream_healthy"),
    upstream_failures: register_int_counter_vec!(
        "gateway_upstream_failures_total",
        "Failed upstream attempts, by kind (connect, timeout, error).",
        &["api", "kind"]
    )
    .expect("register gateway_upstream_failures_total"),
    config_revision: register_int_gauge!("gateway_config_revision", "Revision of the config being served.")
        .expect("register gateway_config_revision"),
    config_reloads: register_int_counter_vec!(
        "gateway_config_reloads_total",
        "Config apply attempts, by source (startup, file, sighup, api, rollback) and result (ok, unchanged, invalid, stale, error).",
        &["source", "result"]
    )
    .expect("register gateway_config_reloads_total"),
    access_log_dropped: register_int_counter_vec!(
        "gateway_access_log_dropped_total",
        "Access-log lines dropped because the writer fell behind.",
        &["reason"]
    )
    .expect("register gateway_access_log_dropped_total"),
    jwks_refreshes: register_int_counter_vec!(
        "gateway_jwks_refreshes_total",
        "JWKS fetches by key manager and result (ok, error). On error the last good keys keep serving.",
        &["key_manager", "result"]
    )
    .expect("register gateway_jwks_refreshes_total"),
    jwks_keys: register_int_gauge_vec!("gateway_jwks_keys", "Usable keys in a key manager's remote JWKS.", &["key_manager"])
        .expect("register gateway_jwks_keys"),
    exchange_requests: register_int_counter_vec!(
        "gateway_exchange_requests_total",
        "Requests answered, by the exchange that served them: lane (the gateway's HTTP/1 loop) or pingora (Pingora's proxy phases).",
        &["exchange"]
    )
    .expect("register gateway_exchange_requests_total"),
    decisions: register_int_counter_vec!(
        "gateway_request_decisions_total",
        "Requests decided (the chain's commit step), by exchange. Each request is decided once, even when the lane hands it to Pingora.",
        &["exchange"]
    )
    .expect("register gateway_request_decisions_total"),
});

/// A counter per exchange, resolved once: the request path bumps it with one atomic add.
pub struct PerExchange([LazyLock<IntCounter>; 2]);

impl PerExchange {
    pub fn get(&self, exchange: crate::chain::Exchange) -> &IntCounter {
        &self.0[exchange as usize]
    }
}

/// `gateway_exchange_requests_total` by exchange.
pub static EXCHANGE_REQUESTS: PerExchange = PerExchange([
    LazyLock::new(|| FAMILIES.exchange_requests.with_label_values(&["lane"])),
    LazyLock::new(|| FAMILIES.exchange_requests.with_label_values(&["pingora"])),
]);

/// `gateway_request_decisions_total` by exchange.
pub static DECISIONS: PerExchange = PerExchange([
    LazyLock::new(|| FAMILIES.decisions.with_label_values(&["lane"])),
    LazyLock::new(|| FAMILIES.decisions.with_label_values(&["pingora"])),
]);

/// Handles for one API (or for unrouted requests, API `-`), each resolved on first use and
/// then kept: the request path pays one atomic load to find it, and an API that never sees
/// traffic costs no series (each Prometheus child carries its own copy of the family's
/// descriptor, about 1 KiB for a histogram, which adds up over 10,000 APIs).
#[derive(Debug)]
pub struct ApiMetrics {
    api: std::sync::Arc<str>,
    /// Index: status / 100 (1..=5); 0 for anything else.
    by_class: [OnceLock<IntCounter>; 6],
    duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
    /// Index: `CacheStatus as usize`.
    cache: [OnceLock<IntCounter>; 5],
}

const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

impl ApiMetrics {
    pub fn new(api: std::sync::Arc<str>) -> ApiMetrics {
        ApiMetrics {
            api,
            by_class: Default::default(),
            duration: OnceLock::new(),
            upstream_duration: OnceLock::new(),
            cache: Default::default(),
        }
    }

    pub fn count(&self, status: u16) {
        let class = usize::from(status / 100);
        let class = if class <= 5 { class } else { 0 };
        self.by_class[class].get_or_init(|| FAMILIES.requests.with_label_values(&[&*self.api, CLASSES[class]])).inc();
    }

    pub fn observe_duration(&self, seconds: f64) {
        self.duration.get_or_init(|| FAMILIES.duration.with_label_values(&[&*self.api])).observe(seconds);
    }

    /// A request to a cached resource, by how the cache served it.
    pub fn count_cache(&self, status: crate::cache::CacheStatus) {
        let i = status as usize;
        self.cache[i].get_or_init(|| FAMILIES.cache_requests.with_label_values(&[&*self.api, status.label()])).inc();
    }

    pub fn observe_upstream(&self, seconds: f64) {
        self.upstream_duration.get_or_init(|| FAMILIES.upstream_duration.with_label_values(&[&*self.api])).observe(seconds);
    }
}
