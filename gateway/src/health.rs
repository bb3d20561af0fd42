//! Active health checks: one loop per process walks the current snapshot's targets and probes
//! the ones that are due with pingora-load-balancing's `HttpHealthCheck`. Results go into the
//! target's durable `TargetHealth`, which the request path reads (and which survives reloads).

use crate::upstream::prepared;
use async_trait::async_trait;
use control_api::Store;
use pingora::lb::health_check::HealthCheck;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use policies::metrics::FAMILIES;
use policies::state::now_ms;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct HealthChecker {
    pub store: Arc<Store>,
}

const TICK: Duration = Duration::from_millis(100);

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::ticker::every(TICK, shutdown, || self.round()).await;
    }
}

impl HealthChecker {
    fn round(&self) {
        let snapshot = self.store.load();
        let now = now_ms();
        // Health is kept per target URL, and two APIs may share a target: only a URL that no
        // endpoint checks any more has its active verdict cleared.
        let checked: std::collections::HashSet<&str> = snapshot
            .apis
            .iter()
            .filter_map(|a| a.endpoint.as_ref())
            .filter(|e| e.health_check.is_some())
            .flat_map(|e| e.targets.iter().map(|t| t.url.as_str()))
            .collect();
        for api in &snapshot.apis {
            let Some(endpoint) = &api.endpoint else { continue };
            for target in &endpoint.targets {
                FAMILIES.upstream_healthy.with_label_values(&[&target.url]).set(i64::from(target.health.is_healthy(now)));
                let Some(hc) = &endpoint.health_check else {
                    if !checked.contains(target.url.as_str()) {
                        target.health.clear_active();
                    }
                    continue;
                };
                let health = &target.health;
                if health.next_probe_ms.load(Ordering::Relaxed) > now || health.probing.swap(true, Ordering::AcqRel) {
                    continue;
                }
                health.next_probe_ms.store(now + hc.interval.as_millis() as u64, Ordering::Relaxed);
                let snapshot = snapshot.clone();
                let (healthy_after, unhealthy_after) = (hc.healthy_after, hc.unhealthy_after);
                let url = target.url.clone();
                let health = health.clone();
                // The probe borrows the checker from the snapshot; the task holds the snapshot.
                let api_name = api.name.clone();
                tokio::spawn(async move {
                    let target = snapshot
                        .api_by_name(&api_name)
                        .and_then(|a| a.endpoint.as_ref())
                        .and_then(|e| e.targets.iter().find(|t| t.url == url));
                    let ok = match target.and_then(prepared) {
                        Some(p) => match &p.check {
                            Some(check) => check.check(&p.backend).await.is_ok(),
                            None => true,
                        },
                        None => false,
                    };
                    if let Some(now_healthy) = health.record_probe(ok, healthy_after, unhealthy_after) {
                        if now_healthy {
                            tracing::info!(target = %url, "upstream target healthy again");
                        } else {
                            tracing::warn!(target = %url, "upstream target marked unhealthy by health checks");
                        }
                    }
                    health.probing.store(false, Ordering::Release);
                });
            }
        }
    }
}
