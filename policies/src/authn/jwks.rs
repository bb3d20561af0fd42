//! A remote JWKS (RFC 7517) whose keys outlive snapshots: the gateway's fetcher refreshes it
//! in the background; verifiers read it lock-free.
//!
//! - Refresh every `refresh` (default 5m), or sooner when the IdP's `Cache-Control: max-age`
//!   says so, but never more often than every `min_refresh` (30s... or the cooldown).
//! - A token whose `kid` no key has asks for a refetch, at most once per `cooldown` per key
//!   set, so attackers cannot turn random `kid`s into IdP traffic. The request itself fails
//!   at once (401); the next one after the fetch sees the new key.
//! - A failed fetch keeps the last good keys serving (and is counted by the gateway).
//!
//! Kept in [`crate::state::Durable`] by URI and algorithm list: a reload keeps the keys.

use super::jwt::{parse_algorithm, VerifyKey};
use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct JwksSource {
    /// The JWKS URL, or the OIDC discovery document's URL when `discovery_issuer` is set.
    pub uri: String,
    /// Set for OIDC discovery: the document's `issuer` must equal this exactly, and its
    /// `jwks_uri` is then fetched.
    pub discovery_issuer: Option<String>,
    allowed: Vec<Algorithm>,
    keys: ArcSwap<Vec<VerifyKey>>,
    /// When the next scheduled fetch is due (ms, `state::now_ms` clock).
    pub next_fetch_ms: AtomicU64,
    last_fetch_ms: AtomicU64,
    refetch_wanted: AtomicBool,
    /// A fetch is running (the fetcher's single-flight guard).
    pub fetching: AtomicBool,
    /// At least one fetch succeeded.
    pub loaded: AtomicBool,
}

impl JwksSource {
    pub fn new(uri: String, discovery_issuer: Option<String>, allowed: Vec<Algorithm>) -> Self {
        JwksSource {
            uri,
            discovery_issuer,
            allowed,
            keys: ArcSwap::from_pointee(Vec::new()),
            next_fetch_ms: AtomicU64::new(0),
            last_fetch_ms: AtomicU64::new(0),
            refetch_wanted: AtomicBool::new(false),
            fetching: AtomicBool::new(false),
            loaded: AtomicBool::new(false),
        }
    }

    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.load_full()
    }

    /// Replaces the keys with those of a JWKS document; returns how many are usable.
    /// Keys for encryption, of a type the allow list cannot use, or unparsable, are skipped.
    pub fn replace(&self, document: &[u8], now_ms: u64) -> Result<usize, String> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys = keys_from_set(&set, &self.allowed);
        if keys.is_empty() {
            return Err("the JWKS has no usable signing key".into());
        }
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        self.loaded.store(true, Ordering::Relaxed);
        self.last_fetch_ms.store(now_ms, Ordering::Relaxed);
        Ok(n)
    }

    /// Records a fetch attempt (successful or not) for the cooldown.
    pub fn attempted(&self, now_ms: u64) {
        self.last_fetch_ms.store(now_ms, Ordering::Relaxed);
        self.refetch_wanted.store(false, Ordering::Relaxed);
    }

    /// An unknown `kid` was seen: ask for a refetch unless one happened within `cooldown_ms`.
    pub fn request_refetch(&self, now_ms: u64, cooldown_ms: u64) {
        if now_ms.saturating_sub(self.last_fetch_ms.load(Ordering::Relaxed)) >= cooldown_ms {
            self.refetch_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the fetcher should fetch now.
    pub fn due(&self, now_ms: u64) -> bool {
        self.refetch_wanted.load(Ordering::Relaxed) || now_ms >= self.next_fetch_ms.load(Ordering::Relaxed)
    }
}

/// Verification keys from a JWKS, restricted to the allowed algorithms.
pub fn keys_from_set(set: &jsonwebtoken::jwk::JwkSet, allowed: &[Algorithm]) -> Vec<VerifyKey> {
    use jsonwebtoken::jwk::{AlgorithmParameters as P, PublicKeyUse};
    let mut out = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        // An HMAC key must be long enough to resist guessing (RFC 7518 §3.2: at least the
        // hash size).
        if let P::OctetKey(oct) = &jwk.algorithm {
            use base64::Engine;
            let len = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(oct.value.trim_end_matches('=')).map_or(0, |k| k.len());
            if len < 32 {
                continue;
            }
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        let family: &[Algorithm] = match &jwk.algorithm {
            P::RSA(_) => &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512],
            P::EllipticCurve(_) => &[Algorithm::ES256, Algorithm::ES384],
            P::OctetKeyPair(_) => &[Algorithm::EdDSA],
            P::OctetKey(_) => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        };
        // A JWK's `alg`, when present, pins it: a signing algorithm of the key's type, or the
        // key is skipped (an encryption `alg` such as RSA-OAEP marks a key that is not ours).
        let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
            None => family.to_vec(),
            Some(a) => match parse_algorithm(&format!("{a:?}")) {
                Some(a) if family.contains(&a) => vec![a],
                _ => continue,
            },
        };
        let algorithms: Vec<Algorithm> = algorithms.into_iter().filter(|a| allowed.contains(a)).collect();
        if !algorithms.is_empty() {
            out.extend(VerifyKey::new(jwk.common.key_id.clone(), algorithms, key));
        }
    }
    out
}
