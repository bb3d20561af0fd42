//! Authentication and authorization: who is calling, and may they call this resource.
//!
//! Runs after routing, lifecycle and CORS (preflights never need a credential), for APIs
//! with `auth` and resources whose auth type is not `none`; prototyped APIs skip it.
//!
//! - **Bearer JWT** (`Authorization: Bearer ...`): the token's unverified `iss` picks one of
//!   the API's key managers, whose [`jwt::JwtVerifier`] checks it. Verified tokens are cached
//!   (see [`TokenCache`]), so a repeated token costs a hash and a compare, not a signature.
//! - **API key** from the configured header or query parameter: its SHA-256 is looked up,
//!   then compared with the stored digest in constant time. (The lookup itself runs on the
//!   digest of the attacker's input, which reveals nothing about stored keys.)
//!
//! The credential maps to an application (by client id or by key). Then, in order:
//! application blocked (403), allowed domains (403), subscription when required (403),
//! the resource's auth type (403), its scopes (403 `insufficient_scope`, RFC 6750 §3.1).
//! A missing credential is 401 with `WWW-Authenticate: Bearer realm=...` and no error code;
//! a bad one 401 `error="invalid_token"`.
//!
//! `spec.rs` is the schema of `key_managers:`, `applications:`, `backend_jwt:` and `auth:`;
//! `compile.rs` turns it into the types below (reading keys, JWKS files and secrets at reload
//! time); this file and its sub-modules answer requests.

pub mod backend_jwt;
pub(crate) mod compile;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub(crate) mod spec;

use crate::request::RequestHead;
use crate::verdict::{ProblemCode, Rejection};
use http::header::{self, HeaderName, HeaderValue};
use jwt::{JwtError, JwtVerifier, VerifiedClaims};
use sha2::{Digest, Sha256};
use spec::AuthType;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// A compiled key manager: its verifier and its (durable) cache.
#[derive(Debug)]
pub struct KeyManager {
    pub name: Arc<str>,
    pub verifier: JwtVerifier,
    pub cache: Arc<TokenCache>,
    pub cache_ttl: u64,
    /// The remote JWKS and its refresh settings, when `jwks_uri` is set.
    pub remote: Option<RemoteJwks>,
}

/// A key manager's remote key set and how to refresh it.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub source: Arc<jwks::JwksSource>,
    pub refresh_ms: u64,
    pub cooldown_ms: u64,
}

/// A consumer application.
#[derive(Debug)]
pub struct Application {
    pub id: Arc<str>,
    pub blocked: bool,
    /// Hosts (`app.example`) and suffixes (`.app.example` for `*.app.example`).
    pub allowed_domains: Vec<String>,
    /// API name → tier.
    pub subscriptions: HashMap<String, Arc<str>>,
}

/// Every application, indexed for the request path.
#[derive(Debug, Default)]
pub struct Applications {
    pub apps: Vec<Application>,
    pub by_client_id: HashMap<String, u32>,
    pub by_key_digest: HashMap<[u8; 32], u32>,
}

/// An API's authentication settings.
#[derive(Debug)]
pub struct ApiAuth {
    /// Indices into the snapshot's key managers.
    pub key_managers: Vec<u32>,
    /// Indices into the snapshot's introspectors.
    pub introspectors: Vec<u32>,
    pub api_key_header: Option<HeaderName>,
    pub api_key_query: Option<String>,
    pub require_subscription: bool,
    pub forward_credentials: bool,
    pub backend_jwt: bool,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub application: Option<u32>,
    /// Shared with the cached claims: making a principal copies no strings.
    pub user: Option<Arc<str>>,
    pub scopes: Arc<[String]>,
    /// The subscription's tier for this API, when there is one.
    pub tier: Option<Arc<str>>,
    pub via_api_key: bool,
    /// Claims kept for throttling conditions (shared with the cached token).
    pub claims: jwt::ExtraClaims,
}

/// What authentication needs from the snapshot.
pub struct AuthContext<'a> {
    pub api_name: &'a str,
    pub auth: &'a ApiAuth,
    pub key_managers: &'a [KeyManager],
    pub introspectors: &'a [introspect::Introspector],
    pub applications: &'a Applications,
    pub auth_type: AuthType,
    pub scopes: &'a [String],
}

/// Where authentication stands after the synchronous part.
#[derive(Debug)]
pub enum AuthStep {
    Done(Principal),
    /// An opaque bearer token not in the caches: the gateway must call this introspector
    /// (with the request's bearer token), then [`complete_introspection`].
    Introspect {
        introspector: u32,
    },
}

/// Authenticates and authorizes a request. `now` is Unix seconds.
pub fn authenticate(cx: &AuthContext<'_>, req: &dyn RequestHead, now: u64) -> Result<AuthStep, Rejection> {
    let realm = cx.api_name;
    let mut principal = match credential(cx, req) {
        Credential::None => return Err(missing(realm)),
        Credential::Malformed => {
            return Err(invalid(realm, ProblemCode::AuthInvalidToken, "the Authorization header is not a Bearer token"))
        }
        Credential::Bearer(token) => {
            // A JWS shape goes to the JWT key managers when the API has some; anything else
            // (or everything, on an introspection-only API) to introspection.
            // (The shape is only looked at when the API has both kinds.)
            let to_jwt =
                cx.auth.introspectors.is_empty() || (!cx.auth.key_managers.is_empty() && token.bytes().filter(|b| *b == b'.').count() == 2);
            if to_jwt {
                from_token(cx, token, now).map_err(|e| invalid(realm, ProblemCode::AuthInvalidToken, &e.to_string()))?
            } else {
                let Some(&i) = cx.auth.introspectors.first() else { return Err(missing(realm)) };
                let Some(intro) = cx.introspectors.get(i as usize) else { return Err(missing(realm)) };
                match intro.cached(token, now) {
                    Some(Ok(claims)) => principal_from_claims(cx, &claims),
                    Some(Err(())) => return Err(invalid(realm, ProblemCode::AuthInvalidToken, "the token is not active")),
                    None => return Ok(AuthStep::Introspect { introspector: i }),
                }
            }
        }
        Credential::ApiKey(key) => {
            from_api_key(cx, key).ok_or_else(|| invalid(realm, ProblemCode::AuthInvalidApiKey, "the API key is not valid"))?
        }
    };
    authorize(cx, req, &mut principal).map_err(|r| Rejection { application: principal.application, ..r })?;
    Ok(AuthStep::Done(principal))
}

/// Finishes authentication once the gateway has introspected the token.
pub fn complete_introspection(
    cx: &AuthContext<'_>,
    req: &dyn RequestHead,
    result: &introspect::IntrospectionResult,
) -> Result<Principal, Rejection> {
    match result {
        introspect::IntrospectionResult::Active(claims) => {
            let mut principal = principal_from_claims(cx, claims);
            authorize(cx, req, &mut principal).map_err(|r| Rejection { application: principal.application, ..r })?;
            Ok(principal)
        }
        introspect::IntrospectionResult::Inactive => Err(invalid(cx.api_name, ProblemCode::AuthInvalidToken, "the token is not active")),
        introspect::IntrospectionResult::Unavailable(_) => {
            Err(Rejection::new(ProblemCode::AuthIntrospectionUnavailable, "the identity provider could not check the token; try again")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")))
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(req: &dyn RequestHead) -> Option<&str> {
    let v = req.header_str("authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

enum Credential<'a> {
    None,
    Malformed,
    Bearer(&'a str),
    ApiKey(&'a str),
}

fn credential<'a>(cx: &AuthContext<'_>, req: &'a dyn RequestHead) -> Credential<'a> {
    // An API that takes only API keys ignores Authorization (a proxy in front may add Basic).
    if let Some(v) = req.header("authorization").filter(|_| !cx.auth.key_managers.is_empty() || !cx.auth.introspectors.is_empty()) {
        let Some(v) = crate::request::visible_ascii(v) else { return Credential::Malformed };
        let Some((scheme, token)) = v.split_once(' ') else { return Credential::Malformed };
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Credential::Malformed;
        }
        return Credential::Bearer(token.trim());
    }
    if let Some(name) = &cx.auth.api_key_header {
        if let Some(v) = req.header_str(name.as_str()) {
            return Credential::ApiKey(v);
        }
    }
    if let (Some(param), Some(query)) = (&cx.auth.api_key_query, req.query()) {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                if k == param {
                    return Credential::ApiKey(v);
                }
            }
        }
    }
    Credential::None
}

fn from_token(cx: &AuthContext<'_>, token: &str, now: u64) -> Result<Principal, JwtError> {
    let kms = || cx.auth.key_managers.iter().filter_map(|i| cx.key_managers.get(*i as usize));
    // The cached path first: a hash and a compare per key manager, no decoding at all.
    let cached = kms().find_map(|km| km.cache.get(token, now));
    let claims = match cached {
        Some(c) => c,
        None => {
            let issuer = JwtVerifier::peek_issuer(token).ok_or(JwtError::Malformed)?;
            let km = kms().find(|km| km.verifier.issuer == issuer).ok_or(JwtError::WrongIssuer)?;
            let verified = Arc::new(km.verifier.verify(token, now)?);
            // Cached while it would still verify: until exp plus the clock skew.
            let until = verified.exp.saturating_add(km.verifier.skew()).min(now.saturating_add(km.cache_ttl));
            km.cache.insert(token, verified.clone(), until, now);
            verified
        }
    };
    Ok(principal_from_claims(cx, &claims))
}

/// The empty scope list, allocated once.
pub(crate) fn no_scopes() -> Arc<[String]> {
    static EMPTY: std::sync::OnceLock<Arc<[String]>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from(Vec::new())).clone()
}

fn principal_from_claims(cx: &AuthContext<'_>, claims: &VerifiedClaims) -> Principal {
    let application = claims.application.as_deref().and_then(|c| cx.applications.by_client_id.get(c)).copied();
    // A user token names a user distinct from the client it was issued to.
    let user = claims.user.clone().filter(|u| Some(&**u) != claims.application.as_deref());
    Principal { application, user, scopes: claims.scopes.clone(), tier: None, via_api_key: false, claims: claims.extra.clone() }
}

fn from_api_key(cx: &AuthContext<'_>, key: &str) -> Option<Principal> {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let (stored, app) = cx.applications.by_key_digest.get_key_value(&digest)?;
    if !bool::from(stored.ct_eq(&digest)) {
        return None;
    }
    Some(Principal { application: Some(*app), user: None, scopes: no_scopes(), tier: None, via_api_key: true, claims: jwt::no_extra() })
}

fn authorize(cx: &AuthContext<'_>, req: &dyn RequestHead, p: &mut Principal) -> Result<(), Rejection> {
    let app = p.application.and_then(|i| cx.applications.apps.get(i as usize));
    if let Some(app) = app {
        if app.blocked {
            return Err(Rejection::new(ProblemCode::AuthApplicationBlocked, "the calling application is blocked"));
        }
        p.tier = app.subscriptions.get(cx.api_name).cloned();
        if !app.allowed_domains.is_empty() && !domain_allowed(&app.allowed_domains, req) {
            return Err(Rejection::new(ProblemCode::AuthDomainNotAllowed, "requests from this origin are not allowed for the application"));
        }
    }
    if cx.auth.require_subscription && p.tier.is_none() {
        return Err(Rejection::new(ProblemCode::AuthNotSubscribed, "the calling application is not subscribed to this API"));
    }
    let type_ok = match cx.auth_type {
        AuthType::None | AuthType::Any => true,
        AuthType::Application => p.user.is_none(),
        AuthType::ApplicationUser => p.user.is_some(),
    };
    if !type_ok {
        let what = if cx.auth_type == AuthType::Application { "an application credential" } else { "a token on behalf of a user" };
        return Err(Rejection::new(ProblemCode::AuthWrongCredentialType, format!("this resource needs {what}")));
    }
    let missing: Vec<&str> = cx.scopes.iter().filter(|s| !p.scopes.iter().any(|t| t == *s)).map(String::as_str).collect();
    if !missing.is_empty() {
        let all = cx.scopes.join(" ");
        let mut r = Rejection::new(ProblemCode::AuthInsufficientScope, format!("missing scope(s): {}", missing.join(" ")));
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{all}\"", cx.api_name)) {
            r = r.with_header(header::WWW_AUTHENTICATE, v);
        }
        return Err(r);
    }
    Ok(())
}

fn domain_allowed(allowed: &[String], req: &dyn RequestHead) -> bool {
    let source = req.header("origin").or_else(|| req.header("referer"));
    let Some(host) = source
        .and_then(crate::request::visible_ascii)
        .and_then(|v| v.parse::<http::Uri>().ok())
        .and_then(|u| u.host().map(str::to_ascii_lowercase))
    else {
        return false;
    };
    allowed.iter().any(|d| match d.strip_prefix('.') {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => host == *d,
    })
}

fn missing(realm: &str) -> Rejection {
    let mut r = Rejection::new(ProblemCode::AuthMissing, "this resource needs a credential");
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
        r = r.with_header(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn invalid(realm: &str, code: ProblemCode, detail: &str) -> Rejection {
    let mut r = Rejection::new(code, detail.to_string());
    let value = format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"", detail.replace('"', "'"));
    if let Ok(v) = HeaderValue::from_str(&value) {
        r = r.with_header(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Verified tokens, until their expiry (capped by the key manager's `cache_ttl`).
///
/// Keyed by a 64-bit hash of the token with the whole token kept in the entry and compared
/// on a hit, so a hash collision can never hand one caller another's identity. Sixteen
/// shards, each a `RwLock<HashMap>` held only for the lookup (never across an await).
/// Bounded: a full shard first drops expired entries, then, if still full, is cleared,
/// an approximation that costs re-verifications under churn but never unbounded memory.
/// Lives in [`crate::state::Durable`], so a reload with an unchanged key manager keeps it.
#[derive(Debug)]
pub struct TokenCache {
    shards: Vec<RwLock<HashMap<u64, CachedToken>>>,
    per_shard: usize,
    hasher: ahash::RandomState,
}

#[derive(Debug)]
struct CachedToken {
    token: Box<str>,
    claims: Arc<VerifiedClaims>,
    expires: u64,
}

const SHARDS: usize = 16;

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: ahash::RandomState::new(),
        }
    }

    fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    pub fn get(&self, token: &str, now: u64) -> Option<Arc<VerifiedClaims>> {
        let k = self.key(token);
        let shard = self.shards[(k as usize) % SHARDS].read().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(&k)?;
        (e.expires > now && &*e.token == token).then(|| e.claims.clone())
    }

    pub fn insert(&self, token: &str, claims: Arc<VerifiedClaims>, expires: u64, now: u64) {
        let k = self.key(token);
        let mut shard = self.shards[(k as usize) % SHARDS].write().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.expires > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(k, CachedToken { token: token.into(), claims, expires });
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().map(|m| m.len()).unwrap_or(0)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
