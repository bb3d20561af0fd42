//! The JWKS fetcher: keeps every remote key set of the current snapshot fresh.
//!
//! One loop per process (100 ms tick) walks the snapshot's key managers; a source that is
//! due (its refresh time came, or an unknown `kid` asked for a refetch past the cooldown) is
//! fetched in its own task, one fetch per source at a time. The fetch uses Pingora's HTTP
//! connector (http and https, system roots). A failure keeps the last good keys serving and
//! is logged and counted; the next attempt waits for the cooldown.

use async_trait::async_trait;
use control_api::Store;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use policies::authn::jwks::JwksSource;
use policies::metrics::FAMILIES;
use policies::state::now_ms;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JwksFetcher {
    pub store: Arc<Store>,
    connector: Arc<Connector>,
}

impl JwksFetcher {
    pub fn new(store: Arc<Store>) -> Self {
        JwksFetcher { store, connector: Arc::new(Connector::new(None)) }
    }

    /// Starts a fetch for every source that is due and not already being fetched.
    fn round(&self) {
        let snapshot = self.store.load();
        let now = now_ms();
        for km in &snapshot.key_managers {
            let Some(r) = km.remote.clone() else { continue };
            if !r.source.due(now) || r.source.fetching.swap(true, Ordering::AcqRel) {
                continue;
            }
            let (connector, name) = (self.connector.clone(), km.name.clone());
            tokio::spawn(async move {
                refresh(&connector, &name, &r.source, r.refresh_ms, r.cooldown_ms).await;
                r.source.fetching.store(false, Ordering::Release);
            });
        }
    }

    /// Fetches every source of the current snapshot once (at startup, before serving). It
    /// runs in a short-lived runtime, so it uses a connector of its own: pooled connections
    /// belong to the runtime that made them.
    pub async fn fetch_all_now(&self) {
        let connector = Connector::new(None);
        let snapshot = self.store.load();
        for km in &snapshot.key_managers {
            if let Some(r) = &km.remote {
                refresh(&connector, &km.name, &r.source, r.refresh_ms, r.cooldown_ms).await;
            }
        }
    }
}

/// Fetches, before a new snapshot is served, every remote key set it uses that has never
/// loaded (a `jwks_uri` added by a reload), so its first requests find their keys. Called by
/// the prepare hook on a blocking-pool thread during apply; outside a runtime (startup, the
/// offline `gateway validate`) it does nothing, and startup fetches by itself. A failure does
/// not fail the reload: the background loop retries.
pub fn fetch_unloaded_blocking(snapshot: &policies::Snapshot) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
    let pending: Vec<_> = snapshot
        .key_managers
        .iter()
        .filter_map(|km| km.remote.as_ref().map(|r| (km.name.clone(), r.clone())))
        .filter(|(_, r)| !r.source.loaded.load(Ordering::Relaxed))
        .collect();
    if pending.is_empty() {
        return;
    }
    handle.block_on(async {
        let connector = Connector::new(None);
        for (name, r) in pending {
            refresh(&connector, &name, &r.source, r.refresh_ms, r.cooldown_ms).await;
        }
    });
}

#[async_trait]
impl BackgroundService for JwksFetcher {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::ticker::every(TICK, shutdown, || self.round()).await;
    }
}

async fn refresh(connector: &Connector, name: &str, source: &JwksSource, refresh_ms: u64, cooldown_ms: u64) {
    let now = now_ms();
    source.attempted(now);
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_keys(connector, source)).await {
        Ok(Ok((body, max_age))) => match source.replace(&body, now) {
            Ok(n) => {
                FAMILIES.jwks_refreshes.with_label_values(&[name, "ok"]).inc();
                FAMILIES.jwks_keys.with_label_values(&[name]).set(n as i64);
                // Cache-Control max-age, within [cooldown, refresh].
                let next = max_age.map_or(refresh_ms, |s| (s * 1000).clamp(cooldown_ms.max(1000), refresh_ms));
                source.next_fetch_ms.store(now + next, Ordering::Relaxed);
                tracing::debug!(key_manager = name, keys = n, "JWKS refreshed");
            }
            Err(e) => failed(name, source, now, cooldown_ms, &e),
        },
        Ok(Err(e)) => failed(name, source, now, cooldown_ms, &e),
        Err(_) => failed(name, source, now, cooldown_ms, "timed out"),
    }
}

fn failed(name: &str, source: &JwksSource, now: u64, cooldown_ms: u64, why: &str) {
    FAMILIES.jwks_refreshes.with_label_values(&[name, "error"]).inc();
    source.next_fetch_ms.store(now + cooldown_ms.max(1000), Ordering::Relaxed);
    tracing::warn!(key_manager = name, uri = %source.uri, error = why, "JWKS fetch failed; the last good keys keep serving");
}

/// The JWKS document of a source: directly, or through OIDC discovery (whose `issuer` must
/// equal the configured one exactly, OpenID Connect Discovery §4.3).
async fn fetch_keys(connector: &Connector, source: &JwksSource) -> Result<(Vec<u8>, Option<u64>), String> {
    let Some(expected) = &source.discovery_issuer else {
        return fetch(connector, &source.uri).await;
    };
    let (doc, _) = fetch(connector, &source.uri).await?;
    let doc: serde_json::Value = serde_json::from_slice(&doc).map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let issuer = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
    if issuer != expected {
        return Err(format!("discovery issuer `{issuer}` is not the configured `{expected}`"));
    }
    let jwks_uri = doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or("discovery document has no jwks_uri")?;
    if !(jwks_uri.starts_with("https://") || jwks_uri.starts_with("http://")) {
        return Err("discovery jwks_uri is not an http(s) URL".into());
    }
    fetch(connector, jwks_uri).await
}

/// GETs a JWKS (or discovery) document; returns the body and the response's `max-age`.
async fn fetch(connector: &Connector, uri: &str) -> Result<(Vec<u8>, Option<u64>), String> {
    let uri: http::Uri = uri.parse().map_err(|_| "bad URI".to_string())?;
    let accept = http::HeaderValue::from_static("application/jwk-set+json, application/json");
    let r = crate::outbound::call(connector, "GET", &uri, &[("Accept", accept)], None, FETCH_TIMEOUT).await?;
    if r.status != 200 {
        return Err(format!("HTTP {}", r.status));
    }
    Ok((r.body, r.max_age))
}
