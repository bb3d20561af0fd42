//! JWT verification (RFC 7519 over a compact RFC 7515 JWS), one verifier per key manager.
//!
//! Rules, in the order they are checked; each failure is a distinct [`JwtError`]:
//! 1. At most `max_token_size` bytes; exactly three segments (a JWE has five, and unsigned
//!    or detached forms are refused too).
//! 2. The header is a JSON object without `crit` (RFC 7515 §4.1.11: an extension we do not
//!    implement must be refused), `enc`/`zip` (JWE) or `b64: false` (RFC 7797).
//!    `jku`, `x5u`, `x5c` and `jwk` are ignored: they never cause a fetch or a trust decision.
//! 3. `alg` is one jsonwebtoken knows (so `none`, in any spelling, is refused) and is in the
//!    key manager's allow list.
//! 4. The key is chosen by `kid`; a key only verifies the algorithms configured for it
//!    (static keys pin one `alg`; JWKS keys their `alg`, or their family's), and jsonwebtoken
//!    also refuses a key of another family, so an HS256 token "signed" with an RSA public
//!    key never verifies.
//! 5. Signature, then the claims, against an injected clock (`now`, seconds): `exp` required
//!    and in the future (minus skew); `nbf` and `iat` not in the future (plus skew); `iss`
//!    equal to the configured issuer; `aud` (string or array) naming a configured audience.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use std::str::FromStr;

/// Why a token was refused. The message is client-safe (no key material, no claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is too large")]
    TooLarge,
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token uses an unsupported header parameter")]
    UnsupportedHeader,
    #[error("the token's algorithm is not accepted")]
    AlgorithmNotAllowed,
    #[error("no key matches the token")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has no expiry")]
    MissingExpiry,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
}

/// The header members we look at. Unknown members are ignored (RFC 7515 §4), except the
/// ones listed, which change how a token must be processed.
#[derive(serde::Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    crit: Option<serde::de::IgnoredAny>,
    enc: Option<serde::de::IgnoredAny>,
    zip: Option<serde::de::IgnoredAny>,
    b64: Option<bool>,
}

/// The key families of JWS algorithms (RFC 7518 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

pub fn family(alg: Algorithm) -> Family {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
    }
}

/// A verification key and the algorithms it may verify, all of one family (checked by
/// [`VerifyKey::new`] and again before every signature check: the signature primitive
/// used below does not check it, and an HMAC "verified" with public-key bytes is the
/// classic JWT confusion).
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
    family: Family,
}

impl VerifyKey {
    /// `None` when `algorithms` is empty or mixes families.
    pub fn new(kid: Option<String>, algorithms: Vec<Algorithm>, key: DecodingKey) -> Option<VerifyKey> {
        let fam = family(*algorithms.first()?);
        algorithms.iter().all(|a| family(*a) == fam).then_some(VerifyKey { kid, algorithms, key, family: fam })
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// The verified claims a policy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub exp: u64,
    pub application: Option<String>,
    /// Shared with every principal made from this (cached) token: no copy per request.
    pub user: Option<std::sync::Arc<str>>,
    pub scopes: std::sync::Arc<[String]>,
    /// The claims throttling conditions match on (`when: { claim: ... }`), as strings.
    pub extra: ExtraClaims,
}

/// Named claim values carried from a verified token to the principal.
pub type ExtraClaims = std::sync::Arc<[(Box<str>, Box<str>)]>;

/// No extra claims, allocated once.
pub fn no_extra() -> ExtraClaims {
    static EMPTY: std::sync::OnceLock<ExtraClaims> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| std::sync::Arc::from(Vec::new())).clone()
}

/// The claims named in `names` (strings as they are; numbers and booleans as text; other
/// values are left out).
pub fn pick_claims(claims: &Map<String, Value>, names: &[Box<str>]) -> ExtraClaims {
    if names.is_empty() {
        return no_extra();
    }
    let picked: Vec<(Box<str>, Box<str>)> = names
        .iter()
        .filter_map(|n| {
            let text = match claims.get(&**n)? {
                Value::String(s) => s.clone(),
                Value::Number(x) => x.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((n.clone(), text.into_boxed_str()))
        })
        .collect();
    picked.into()
}

#[derive(Debug)]
pub struct JwtVerifier {
    pub issuer: String,
    /// Keys fetched from a JWKS URI, read on every uncached verification, plus the refetch
    /// cooldown (ms) for unknown `kid`s.
    remote: Option<(std::sync::Arc<super::jwks::JwksSource>, u64)>,
    audiences: Vec<String>,
    allowed: Vec<Algorithm>,
    keys: Vec<VerifyKey>,
    skew: u64,
    max_size: usize,
    /// Longest base64url header accepted (at most [`MAX_HEADER`]).
    max_header: usize,
    claim_application: String,
    claim_user: String,
    claim_scopes: String,
    /// Claims to keep for throttling conditions (the compiler sets it).
    pub extra_claims: std::sync::Arc<[Box<str>]>,
}

/// The largest header limit: the header is decoded into a stack buffer of 3/4 of this.
pub const MAX_HEADER: usize = 2048;

/// Parses an algorithm name from the config.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    // `Algorithm::from_str` accepts exactly the registered names; "none" is not one.
    Algorithm::from_str(name).ok()
}

impl JwtVerifier {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: String,
        audiences: Vec<String>,
        allowed: Vec<Algorithm>,
        keys: Vec<VerifyKey>,
        skew: u64,
        max_size: usize,
        claim_application: String,
        claim_user: String,
        claim_scopes: String,
    ) -> Self {
        JwtVerifier {
            issuer,
            remote: None,
            audiences,
            allowed,
            keys,
            skew,
            max_size,
            max_header: MAX_HEADER,
            claim_application,
            claim_user,
            claim_scopes,
            extra_claims: std::sync::Arc::from(Vec::new()),
        }
    }

    /// Sets the header size limit (clamped to [`MAX_HEADER`]).
    pub fn with_max_header(mut self, bytes: usize) -> Self {
        self.max_header = bytes.min(MAX_HEADER);
        self
    }

    /// The clock skew allowed on time claims, in seconds.
    pub fn skew(&self) -> u64 {
        self.skew
    }

    /// Adds a remote key set, consulted after the static keys.
    pub fn with_remote(mut self, source: std::sync::Arc<super::jwks::JwksSource>, cooldown_ms: u64) -> Self {
        self.remote = Some((source, cooldown_ms));
        self
    }

    /// The unverified `iss` of a token, to pick the key manager (cheap: decodes the payload
    /// only). Nothing is trusted from it.
    pub fn peek_issuer(token: &str) -> Option<String> {
        let payload = token.split('.').nth(1)?;
        if payload.len() > 16 * 1024 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v.get("iss")?.as_str().map(str::to_string)
    }

    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedClaims, JwtError> {
        if token.len() > self.max_size {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Malformed);
        };
        // The signed message: header and payload with the dot between them.
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        if header_b64.len() > self.max_header {
            return Err(JwtError::TooLarge);
        }
        let mut buf = [0u8; 1536];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(header_b64, &mut buf).map_err(|_| JwtError::Malformed)?;
        // Parsed into borrowed fields: no allocation for the header on the request path.
        let header: RawHeader<'_> = serde_json::from_slice(&buf[..n]).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() || header.b64 == Some(false) {
            return Err(JwtError::UnsupportedHeader);
        }
        let alg = header.alg.as_deref().and_then(parse_algorithm).ok_or(JwtError::AlgorithmNotAllowed)?;
        if !self.allowed.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let kid = header.kid.as_deref();

        let remote_keys = self.remote.as_ref().map(|(src, _)| src.keys());
        let fits = |k: &&VerifyKey| k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid);
        let mut candidates = self.keys.iter().chain(remote_keys.iter().flat_map(|v| v.iter())).filter(fits).peekable();
        if candidates.peek().is_none() {
            if let Some((src, cooldown)) = &self.remote {
                // Maybe the IdP rotated its keys: ask for a refetch (rate-limited).
                src.request_refetch(crate::state::now_ms(), *cooldown);
            }
            return Err(JwtError::UnknownKey);
        }
        // The signature is checked once per candidate key with the primitive alone (the
        // header was parsed above; `jsonwebtoken::decode` would parse it again).
        let mut verified = false;
        for key in candidates {
            if key.family != family(alg) {
                continue;
            }
            if jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, alg).unwrap_or(false) {
                verified = true;
                break;
            }
        }
        if !verified {
            return Err(JwtError::BadSignature);
        }
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| JwtError::Malformed)?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<VerifiedClaims, JwtError> {
        // NumericDate may be fractional (RFC 7519 §2); seconds are enough here.
        let num = |name: &str| claims.get(name).and_then(|v| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)));
        let exp = num("exp").ok_or(JwtError::MissingExpiry)?;
        if exp.saturating_add(self.skew) <= now {
            return Err(JwtError::Expired);
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = num(name) {
                if t > now.saturating_add(self.skew) {
                    return Err(JwtError::NotYetValid);
                }
            } else if claims.contains_key(name) {
                return Err(JwtError::Malformed);
            }
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(JwtError::WrongIssuer);
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.iter().any(|x| x == a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(|a| self.audiences.iter().any(|x| x == a)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::WrongAudience);
            }
        }
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let scopes: Vec<String> = match claims.get(&self.claim_scopes) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        Ok(VerifiedClaims {
            exp,
            application: string(&self.claim_application),
            user: string(&self.claim_user).map(Into::into),
            scopes: scopes.into(),
            extra: pick_claims(claims, &self.extra_claims),
        })
    }
}
