//! Signing keys and JWT minting, shared by scenario token pools and the test identity provider.
//!
//! Signing goes through `jsonwebtoken` (ring backend, the same crypto the gateway verifies
//! with). Keys are PKCS#8 PEM files (what `openssl genpkey` and `../shared/bench/mktoken.py`
//! write), raw HMAC secrets, or ES256/EdDSA key pairs generated at start-up with ring. ring is
//! also used to derive the public half of each key for the IdP's JWKS.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{json, Map, Value};

/// A key that can sign tokens, with its public JWK (none for HMAC secrets).
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public key as a JWK (RFC 7517), with `kid`, `alg` and `use: sig`.
    pub public_jwk: Option<Value>,
    /// The raw secret, for HMAC keys only (the IdP uses it to verify its own tokens).
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// Parses an algorithm name as it appears in a JWT header.
pub fn parse_algorithm(name: &str) -> Result<Algorithm> {
    name.parse::<Algorithm>().map_err(|_| {
        anyhow!("unknown algorithm {name:?} (expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512)")
    })
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Decodes the first PEM block of `text`: returns its label and DER bytes.
fn pem_der(text: &str) -> Result<(String, Vec<u8>)> {
    let begin = text.find("-----BEGIN ").ok_or_else(|| anyhow!("no PEM block (-----BEGIN ...) found"))?;
    let after = &text[begin + 11..];
    let label_end = after.find("-----").ok_or_else(|| anyhow!("malformed PEM header"))?;
    let label = after[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = after.find(&end_marker).ok_or_else(|| anyhow!("PEM block {label:?} has no END line"))?;
    let b64: String = after[body_start..body_end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).context("PEM body is not valid base64")?;
    Ok((label, der))
}

impl SigningKey {
    /// Loads a private key (PKCS#8 PEM; PKCS#1 `RSA PRIVATE KEY` also works for RSA).
    /// `alg` defaults to what the key type implies (RS256, ES256, ES384, EdDSA).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>, kid: &str) -> Result<SigningKey> {
        let (label, der) = pem_der(pem)?;
        if label.contains("PUBLIC") {
            bail!("this is a public key ({label}); a private key is needed to sign");
        }
        let rng = SystemRandom::new();
        let rsa = if label == "RSA PRIVATE KEY" {
            signature::RsaKeyPair::from_der(&der).ok()
        } else {
            signature::RsaKeyPair::from_pkcs8(&der).ok()
        };
        if let Some(pair) = rsa {
            let alg = alg.unwrap_or(Algorithm::RS256);
            if !matches!(
                alg,
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
            ) {
                bail!("an RSA key cannot sign {}", alg_name(alg));
            }
            let parts = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
            let jwk = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&parts.n), "e": URL_SAFE_NO_PAD.encode(&parts.e)});
            let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).context("jsonwebtoken rejected the RSA key")?;
            return Ok(Self::asymmetric(kid, alg, encoding, jwk));
        }
        for (curve_alg, ring_alg, crv) in [
            (Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
            (Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
        ] {
            if let Ok(pair) = signature::EcdsaKeyPair::from_pkcs8(ring_alg, &der, &rng) {
                if alg.is_some_and(|a| a != curve_alg) {
                    bail!("a {crv} key signs {}, not {}", alg_name(curve_alg), alg.map(alg_name).unwrap_or_default());
                }
                let jwk = ec_jwk(pair.public_key().as_ref(), crv)?;
                return Ok(Self::asymmetric(kid, curve_alg, EncodingKey::from_ec_der(&der), jwk));
            }
        }
        if let Ok(pair) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            if alg.is_some_and(|a| a != Algorithm::EdDSA) {
                bail!("an Ed25519 key signs EdDSA only");
            }
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
            return Ok(Self::asymmetric(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(&der), jwk));
        }
        bail!("unsupported private key ({label}): expected an RSA, P-256, P-384 or Ed25519 key in PKCS#8 PEM")
    }

    /// Loads a private key file; see [`SigningKey::from_pem`].
    pub fn from_pem_file(path: &Path, alg: Option<Algorithm>, kid: &str) -> Result<SigningKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
        Self::from_pem(&text, alg, kid).with_context(|| format!("key file {}", path.display()))
    }

    /// An HMAC key (HS256/384/512) from a raw secret.
    pub fn from_secret(secret: &[u8], alg: Algorithm, kid: &str) -> Result<SigningKey> {
        if !is_hmac(alg) {
            bail!("a shared secret can only sign HS256, HS384 or HS512, not {}", alg_name(alg));
        }
        if secret.len() < 16 {
            bail!("HMAC secret is {} bytes; use at least 16", secret.len());
        }
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            encoding: EncodingKey::from_secret(secret),
            public_jwk: None,
            secret: Some(secret.to_vec()),
        })
    }

    /// Generates a fresh key pair (ES256 or EdDSA; ring cannot generate RSA keys, so RSA keys
    /// are always loaded from files).
    pub fn generate(alg: Algorithm, kid: &str) -> Result<SigningKey> {
        let rng = SystemRandom::new();
        match alg {
            Algorithm::ES256 => {
                let ring_alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 =
                    signature::EcdsaKeyPair::generate_pkcs8(ring_alg, &rng).map_err(|_| anyhow!("generating a P-256 key failed"))?;
                let pair = signature::EcdsaKeyPair::from_pkcs8(ring_alg, pkcs8.as_ref(), &rng)
                    .map_err(|e| anyhow!("generated P-256 key rejected: {e}"))?;
                let jwk = ec_jwk(pair.public_key().as_ref(), "P-256")?;
                Ok(Self::asymmetric(kid, alg, EncodingKey::from_ec_der(pkcs8.as_ref()), jwk))
            }
            Algorithm::EdDSA => {
                let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow!("generating an Ed25519 key failed"))?;
                let pair =
                    signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| anyhow!("generated Ed25519 key rejected: {e}"))?;
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
                Ok(Self::asymmetric(kid, alg, EncodingKey::from_ed_der(pkcs8.as_ref()), jwk))
            }
            other => bail!("cannot generate {} keys; load them from a PEM file instead", alg_name(other)),
        }
    }

    fn asymmetric(kid: &str, alg: Algorithm, encoding: EncodingKey, mut jwk: Value) -> SigningKey {
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), Value::String(kid.to_string()));
            obj.insert("alg".into(), Value::String(alg_name(alg)));
            obj.insert("use".into(), Value::String("sig".into()));
        }
        SigningKey { kid: kid.to_string(), alg, encoding, public_jwk: Some(jwk), secret: None }
    }

    /// The HMAC secret, if this is an HMAC key.
    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }

    /// Signs `claims` into a compact JWT with `typ: JWT` and this key's `kid`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| anyhow!("signing a token with key {:?} failed: {e}", self.kid))
    }
}

fn ec_jwk(point: &[u8], crv: &str) -> Result<Value> {
    // An uncompressed point: 0x04 || X || Y.
    if point.first() != Some(&4) || point.len() % 2 != 1 {
        bail!("unexpected EC public key encoding");
    }
    let half = (point.len() - 1) / 2;
    Ok(json!({
        "kty": "EC",
        "crv": crv,
        "x": URL_SAFE_NO_PAD.encode(&point[1..1 + half]),
        "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
    }))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A process-unique token id (`jti`), so two minted tokens never collide in a token cache.
pub fn next_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("lt-{}-{}-{}", std::process::id(), unix_now(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn claims() -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("sub".into(), json!("user-1"));
        c.insert("exp".into(), json!(unix_now() + 600));
        c
    }

    #[test]
    fn generated_es256_key_signs_and_its_jwk_verifies() {
        let key = SigningKey::generate(Algorithm::ES256, "k-es").unwrap();
        let token = key.sign(&claims()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk.clone().unwrap()).unwrap();
        let dk = DecodingKey::from_jwk(&jwk).unwrap();
        let data = jsonwebtoken::decode::<Value>(&token, &dk, &Validation::new(Algorithm::ES256)).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some("k-es"));
        assert_eq!(data.claims["sub"], "user-1");
    }

    #[test]
    fn generated_eddsa_key_signs_and_its_jwk_verifies() {
        let key = SigningKey::generate(Algorithm::EdDSA, "k-ed").unwrap();
        let token = key.sign(&claims()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk.clone().unwrap()).unwrap();
        let dk = DecodingKey::from_jwk(&jwk).unwrap();
        jsonwebtoken::decode::<Value>(&token, &dk, &Validation::new(Algorithm::EdDSA)).unwrap();
    }

    #[test]
    fn hmac_keys_sign_and_refuse_short_secrets() {
        let key = SigningKey::from_secret(b"0123456789abcdef0123", Algorithm::HS256, "k-hs").unwrap();
        let token = key.sign(&claims()).unwrap();
        let dk = DecodingKey::from_secret(b"0123456789abcdef0123");
        jsonwebtoken::decode::<Value>(&token, &dk, &Validation::new(Algorithm::HS256)).unwrap();
        assert!(SigningKey::from_secret(b"short", Algorithm::HS256, "k").is_err());
        assert!(SigningKey::from_secret(b"0123456789abcdef0123", Algorithm::RS256, "k").is_err());
    }

    #[test]
    fn pem_errors_are_explained() {
        let err = SigningKey::from_pem("not a key", None, "k").unwrap_err().to_string();
        assert!(err.contains("no PEM block"), "{err}");
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = SigningKey::from_pem(public, None, "k").unwrap_err().to_string();
        assert!(err.contains("public key"), "{err}");
        assert!(parse_algorithm("XX999").is_err());
    }
}
