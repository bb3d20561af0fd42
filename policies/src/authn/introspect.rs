//! OAuth2 token introspection (RFC 7662) for opaque tokens: what the policy decides, and
//! what it leaves to the gateway (the HTTP call itself, which is asynchronous).
//!
//! - Active tokens are cached until the earlier of their `exp` and `cache_ttl`; inactive ones
//!   for `negative_cache_ttl`, so a replayed bad token does not reach the IdP either.
//! - RFC 7662 §2.2: `active` is the only required member; `{"active": false}` says nothing
//!   else. An active token without `exp` is cached for `cache_ttl`.
//! - The call is made by the gateway (single-flight per token); a failed or slow call is not
//!   a verdict on the token: it answers 503 and is not cached.

use super::jwt::{no_extra, pick_claims, VerifiedClaims};
use super::TokenCache;
use std::sync::Arc;

/// A compiled introspection key manager.
#[derive(Debug)]
pub struct Introspector {
    pub endpoint: http::Uri,
    /// `Basic base64(client_id:secret)`.
    pub authorization: http::HeaderValue,
    pub timeout_ms: u64,
    pub cache_ttl: u64,
    pub negative_ttl: u64,
    pub positive: Arc<TokenCache>,
    pub negative: Arc<TokenCache>,
    claim_application: String,
    claim_user: String,
    claim_scopes: String,
    /// Claims to keep for throttling conditions (the compiler sets it).
    pub extra_claims: Arc<[Box<str>]>,
}

/// The outcome of a call, as the gateway hands it back.
#[derive(Debug, Clone)]
pub enum IntrospectionResult {
    Active(Arc<VerifiedClaims>),
    Inactive,
    /// The IdP could not answer (timeout, refused, non-200, not JSON).
    Unavailable(String),
}

impl Introspector {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        endpoint: http::Uri,
        authorization: http::HeaderValue,
        timeout_ms: u64,
        cache_ttl: u64,
        negative_ttl: u64,
        positive: Arc<TokenCache>,
        negative: Arc<TokenCache>,
        claims: &crate::config::ClaimNamesSpec,
    ) -> Self {
        Introspector {
            endpoint,
            authorization,
            timeout_ms,
            cache_ttl,
            negative_ttl,
            positive,
            negative,
            claim_application: claims.application.clone(),
            claim_user: claims.user.clone(),
            claim_scopes: claims.scopes.clone(),
            extra_claims: Arc::from(Vec::new()),
        }
    }

    /// A cached verdict: `Some(Ok(claims))` active, `Some(Err(()))` known inactive.
    pub fn cached(&self, token: &str, now: u64) -> Option<Result<Arc<VerifiedClaims>, ()>> {
        if let Some(c) = self.positive.get(token, now) {
            return Some(Ok(c));
        }
        self.negative.get(token, now).map(|_| Err(()))
    }

    /// Interprets an introspection response body (RFC 7662 §2.2) and caches the verdict.
    pub fn interpret(&self, token: &str, body: &[u8], now: u64) -> IntrospectionResult {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return IntrospectionResult::Unavailable("the introspection response is not JSON".into());
        };
        if v.get("active").and_then(serde_json::Value::as_bool) != Some(true) {
            let inactive =
                Arc::new(VerifiedClaims { exp: 0, application: None, user: None, scopes: super::no_scopes(), extra: no_extra() });
            self.negative.insert(token, inactive, now + self.negative_ttl, now);
            return IntrospectionResult::Inactive;
        }
        let string = |name: &str| v.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
        let exp = v.get("exp").and_then(serde_json::Value::as_u64);
        if exp.is_some_and(|e| e <= now) {
            // Active but already expired: the IdP's clock and ours disagree; trust the time.
            let inactive =
                Arc::new(VerifiedClaims { exp: 0, application: None, user: None, scopes: super::no_scopes(), extra: no_extra() });
            self.negative.insert(token, inactive, now + self.negative_ttl, now);
            return IntrospectionResult::Inactive;
        }
        let scopes: Vec<String> = match v.get(&self.claim_scopes) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        let until = exp.unwrap_or(u64::MAX).min(now + self.cache_ttl);
        let claims = Arc::new(VerifiedClaims {
            exp: until,
            application: string(&self.claim_application),
            user: string(&self.claim_user).map(Into::into),
            scopes: scopes.into(),
            extra: v.as_object().map_or_else(no_extra, |o| pick_claims(o, &self.extra_claims)),
        });
        self.positive.insert(token, claims.clone(), until, now);
        IntrospectionResult::Active(claims)
    }
}
