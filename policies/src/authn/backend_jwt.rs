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
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

/// The compiled `backend_jwt` settings.
pub struct BackendJwt {
    pub header: http::HeaderName,
    issuer: String,
    alg: Algorithm,
    key: EncodingKey,
    /// The signing key's thumbprint, named in each token's header so backends pick the key
    /// from [`BackendJwt::jwks`]. `None` for HMAC keys.
    kid: Option<String>,
    /// The public half, for `/.well-known/jwks.json` on the admin listener.
    jwk: Option<serde_json::Value>,
    ttl: u64,
    claims: crate::config::BackendClaimsSpec,
    /// Hash of who is calling → the minted token. The hash is computed from borrowed
    /// fields, so a hit allocates nothing; the entry keeps the fields to rule out collisions.
    cache: RwLock<HashMap<u64, Entry>>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for BackendJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendJwt").field("header", &self.header).field("alg", &self.alg).field("kid", &self.kid).finish()
    }
}

struct Entry {
    api: Arc<str>,
    application: Option<Arc<str>>,
    user: Option<Arc<str>>,
    tier: Option<Arc<str>>,
    scopes: Arc<[String]>,
    value: http::HeaderValue,
    exp: u64,
}

impl Entry {
    fn is_for(&self, api: &str, application: Option<&str>, p: &Principal) -> bool {
        &*self.api == api
            && self.application.as_deref() == application
            && self.user == p.user
            && self.tier == p.tier
            && (Arc::ptr_eq(&self.scopes, &p.scopes) || self.scopes == p.scopes)
    }
}

const CACHE_CAPACITY: usize = 50_000;

impl BackendJwt {
    pub fn new(
        header: http::HeaderName,
        issuer: String,
        alg: Algorithm,
        key: EncodingKey,
        jwk: Option<serde_json::Value>,
        ttl: u64,
        claims: crate::config::BackendClaimsSpec,
    ) -> Self {
        let kid = jwk.as_ref().and_then(|j| j["kid"].as_str()).map(str::to_string);
        BackendJwt {
            header,
            issuer,
            alg,
            key,
            kid,
            jwk,
            ttl: ttl.max(2),
            claims,
            cache: RwLock::new(HashMap::new()),
            hasher: Default::default(),
        }
    }

    /// The public key set backends verify the tokens with (empty for an HMAC key).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.jwk.iter().collect::<Vec<_>>() })
    }

    /// The header value for a caller of `api`; `application` is the application id.
    pub fn assertion(&self, api: &Arc<str>, application: Option<&Arc<str>>, p: &Principal, now: u64) -> Option<http::HeaderValue> {
        let hash = self.hasher.hash_one((&**api, application.map(|a| &**a), p.user.as_deref(), p.tier.as_deref(), &*p.scopes));
        if let Some(e) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            // Reused while more than half of its lifetime is left.
            if e.is_for(api, application.map(|a| &**a), p) && e.exp.saturating_sub(now) > self.ttl / 2 {
                return Some(e.value.clone());
            }
        }
        let exp = now + self.ttl;
        let c = &self.claims;
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        claims.insert(c.api.clone(), (**api).into());
        if let Some(a) = application {
            claims.insert(c.application.clone(), (**a).into());
        }
        if let Some(u) = &p.user {
            claims.insert(c.user.clone(), (**u).into());
        }
        if let Some(t) = &p.tier {
            claims.insert(c.tier.clone(), (**t).into());
        }
        claims.insert(c.scopes.clone(), p.scopes.join(" ").into());
        let header = Header { kid: self.kid.clone(), ..Header::new(self.alg) };
        let token = jsonwebtoken::encode(&header, &claims, &self.key).ok()?;
        let value = http::HeaderValue::from_str(&token).ok()?;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        let entry = Entry {
            api: api.clone(),
            application: application.cloned(),
            user: p.user.clone(),
            tier: p.tier.clone(),
            scopes: p.scopes.clone(),
            value: value.clone(),
            exp,
        };
        cache.insert(hash, entry);
        Some(value)
    }
}
