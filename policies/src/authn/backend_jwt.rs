//! Backend JWT: the gateway tells the upstream who called, in a token it signs itself, so
//! backends can trust the identity without seeing (or re-verifying) the caller's credential.
//!
//! Claims: `iss`, `iat`, `exp`, the API, the application id, the user, the subscription tier
//! and the scopes (claim names configurable). Signing costs tens of microseconds for
//! asymmetric keys, so a token is minted once per caller and API and reused until half of
//! its lifetime is left (a bounded cache, cleared when full).

use super::Principal;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::collections::HashMap;
use std::sync::RwLock;

/// The compiled `backend_jwt` settings.
pub struct BackendJwt {
    pub header: http::HeaderName,
    issuer: String,
    alg: Algorithm,
    key: EncodingKey,
    ttl: u64,
    claims: crate::config::BackendClaimsSpec,
    cache: RwLock<HashMap<CacheKey, (http::HeaderValue, u64)>>,
}

impl std::fmt::Debug for BackendJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendJwt").field("header", &self.header).field("alg", &self.alg).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    api: String,
    application: Option<String>,
    user: Option<String>,
    tier: Option<String>,
    scopes: Vec<String>,
}

const CACHE_CAPACITY: usize = 50_000;

impl BackendJwt {
    pub fn new(header: http::HeaderName, issuer: String, alg: Algorithm, key: EncodingKey, ttl: u64, claims: crate::config::BackendClaimsSpec) -> Self {
        BackendJwt { header, issuer, alg, key, ttl: ttl.max(2), claims, cache: RwLock::new(HashMap::new()) }
    }

    /// The header value for a caller of `api`; `application` is the application id.
    pub fn assertion(&self, api: &str, application: Option<&str>, p: &Principal, now: u64) -> Option<http::HeaderValue> {
        let key = CacheKey {
            api: api.to_string(),
            application: application.map(str::to_string),
            user: p.user.clone(),
            tier: p.tier.as_deref().map(str::to_string),
            scopes: p.scopes.clone(),
        };
        if let Some((v, exp)) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            // Reused while more than half of its lifetime is left.
            if exp.saturating_sub(now) > self.ttl / 2 {
                return Some(v.clone());
            }
        }
        let exp = now + self.ttl;
        let c = &self.claims;
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        claims.insert(c.api.clone(), api.into());
        if let Some(a) = application {
            claims.insert(c.application.clone(), a.into());
        }
        if let Some(u) = &p.user {
            claims.insert(c.user.clone(), u.clone().into());
        }
        if let Some(t) = &p.tier {
            claims.insert(c.tier.clone(), t.to_string().into());
        }
        claims.insert(c.scopes.clone(), p.scopes.join(" ").into());
        let token = jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key).ok()?;
        let value = http::HeaderValue::from_str(&token).ok()?;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, (value.clone(), exp));
        Some(value)
    }
}
