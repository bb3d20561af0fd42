//! Forgets idle throttling counters once a second, and reports how many are held
//! (`gateway_throttle_keys`). The store is the process's (`state::Durable`), whichever
//! snapshot is current.

use async_trait::async_trait;
use control_api::Store;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use policies::metrics::FAMILIES;
use policies::state::now_ms;
use std::sync::Arc;
use std::time::Duration;

pub struct ThrottleSweeper {
    pub store: Arc<Store>,
}

#[async_trait]
impl BackgroundService for ThrottleSweeper {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::ticker::every(Duration::from_secs(1), shutdown, || {
            let snapshot = self.store.load();
            let counters = &snapshot.throttling.store;
            counters.sweep(now_ms());
            FAMILIES.throttle_keys.set(i64::try_from(counters.keys()).unwrap_or(i64::MAX));
        })
        .await;
    }
}
