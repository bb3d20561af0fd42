//! Token introspection calls (RFC 7662 §2.1), made for the policy when a token is in neither
//! of its caches.
//!
//! Single-flight: concurrent requests with the same uncached token share one call (the first
//! one makes it, the others await its result). The key is the whole token, never a hash, so
//! two tokens can never share a verdict. A failed call is reported as `Unavailable` (503) and
//! not cached: it says nothing about the token.

use pingora::connectors::http::Connector;
use policies::authn::introspect::{IntrospectionResult, Introspector};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

pub struct IntrospectionClient {
    connector: Connector,
    inflight: Mutex<HashMap<String, Arc<OnceCell<IntrospectionResult>>>>,
}

impl Default for IntrospectionClient {
    fn default() -> Self {
        IntrospectionClient { connector: Connector::new(None), inflight: Mutex::new(HashMap::new()) }
    }
}

impl IntrospectionClient {
    pub async fn introspect(&self, intro: &Introspector, token: &str, now: u64) -> IntrospectionResult {
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(token.to_string()).or_default().clone()
        };
        let result = cell.get_or_init(|| self.call(intro, token, now)).await.clone();
        // The first waiter to get here removes the entry; later arrivals find the result in
        // the policy's caches instead.
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(token).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(token);
        }
        result
    }

    async fn call(&self, intro: &Introspector, token: &str, now: u64) -> IntrospectionResult {
        let form = format!("token={}&token_type_hint=access_token", urlencode(token));
        let headers = [
            ("Authorization", intro.authorization.clone()),
            ("Content-Type", http::HeaderValue::from_static("application/x-www-form-urlencoded")),
            ("Accept", http::HeaderValue::from_static("application/json")),
        ];
        let timeout = Duration::from_millis(intro.timeout_ms);
        match crate::outbound::call(&self.connector, "POST", &intro.endpoint, &headers, Some(form.as_bytes()), timeout).await {
            Ok(r) if r.status == 200 => intro.interpret(token, &r.body, now),
            Ok(r) => unavailable(format!("the introspection endpoint answered HTTP {}", r.status)),
            Err(e) => unavailable(e),
        }
    }
}

fn unavailable(why: String) -> IntrospectionResult {
    policies::metrics::FAMILIES.rejections.with_label_values(&["authn", "introspection_call_failed"]).inc();
    tracing::warn!(error = %why, "token introspection failed");
    IntrospectionResult::Unavailable(why)
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
