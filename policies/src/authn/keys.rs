//! Key material at compile time: which algorithm family a PEM key belongs to (so a static key
//! needs no `alg` when its type says it), the public JWK of the backend-JWT signing key (so
//! backends can fetch it), and the generated key used when none is configured.
//!
//! Nothing here runs on the request path.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

/// What a key can verify or sign, from its own encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// Every JWS algorithm a key of this kind can be used with. An EC key's curve fixes its
    /// algorithm (RFC 7518 §3.4); an RSA key serves PKCS#1 v1.5 and PSS alike.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyKind::Rsa => &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512],
            KeyKind::EcP256 => &[Algorithm::ES256],
            KeyKind::EcP384 => &[Algorithm::ES384],
            KeyKind::Ed25519 => &[Algorithm::EdDSA],
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

// Object identifiers, DER-encoded with their tag and length.
const OID_RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// A PEM block: its label and DER body.
#[derive(Debug)]
pub struct Pem {
    pub label: String,
    pub der: Vec<u8>,
}

/// The first PEM block of a file.
pub fn parse_pem(text: &[u8]) -> Result<Pem, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not a PEM file (not text)".to_string())?;
    let begin = text.find("-----BEGIN ").ok_or("not a PEM file (no -----BEGIN line)")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or("malformed PEM header")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body.find(&end_marker).ok_or_else(|| format!("no `{end_marker}` line"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|e| format!("bad base64 in the PEM body: {e}"))?;
    Ok(Pem { label, der })
}

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The kind of key a PEM block holds: SubjectPublicKeyInfo (`PUBLIC KEY`), PKCS#8
/// (`PRIVATE KEY`) or PKCS#1 (`RSA PUBLIC KEY`, `RSA PRIVATE KEY`). The AlgorithmIdentifier
/// is read with a small DER walk, so bytes inside the key itself are never mistaken for it.
pub fn key_kind(pem: &Pem) -> Result<KeyKind, String> {
    if pem.label.starts_with("RSA ") {
        return Ok(KeyKind::Rsa);
    }
    let unsupported = || format!("`{}` PEM blocks are not supported; give a PUBLIC KEY (SPKI) or PRIVATE KEY (PKCS#8)", pem.label);
    if !matches!(pem.label.as_str(), "PUBLIC KEY" | "PRIVATE KEY") {
        return Err(unsupported());
    }
    let malformed = || "malformed key (not DER SubjectPublicKeyInfo or PKCS#8)".to_string();
    let (tag, outer, _) = tlv(&pem.der).ok_or_else(malformed)?;
    if tag != 0x30 {
        return Err(malformed());
    }
    let (mut tag, mut algid, mut rest) = tlv(outer).ok_or_else(malformed)?;
    if tag == 0x02 {
        // PKCS#8: a version number comes first.
        (tag, algid, rest) = tlv(rest).ok_or_else(malformed)?;
    }
    let _ = rest;
    if tag != 0x30 {
        return Err(malformed());
    }
    let (_, _, params) = tlv(algid).ok_or_else(malformed)?;
    let oid = &algid[..algid.len() - params.len()];
    match oid {
        OID_RSA | OID_RSA_PSS => Ok(KeyKind::Rsa),
        OID_ED25519 => Ok(KeyKind::Ed25519),
        OID_EC if params.starts_with(OID_P256) => Ok(KeyKind::EcP256),
        OID_EC if params.starts_with(OID_P384) => Ok(KeyKind::EcP384),
        OID_EC => Err("an EC key on a curve JWS does not use with these algorithms (P-256 or P-384 only)".into()),
        _ => Err("not an RSA, EC or Ed25519 key".into()),
    }
}

/// The public half of a backend-JWT signing key as a JWK (RFC 7517), with its RFC 7638
/// thumbprint as `kid`. `der` is PKCS#8 (or PKCS#1 for RSA).
pub fn public_jwk(alg: Algorithm, der: &[u8]) -> Result<serde_json::Value, String> {
    use ring::signature::{self, KeyPair};
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let rng = ring::rand::SystemRandom::new();
    // Members in the lexicographic order RFC 7638 §3.2 requires for the thumbprint.
    let required: Vec<(&str, String)> = match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (ring_alg, crv) = if alg == Algorithm::ES256 {
                (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
            } else {
                (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
            };
            let pair = signature::EcdsaKeyPair::from_pkcs8(ring_alg, der, &rng).map_err(|e| e.to_string())?;
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            let half = (point.len() - 1) / 2;
            vec![("crv", crv.into()), ("kty", "EC".into()), ("x", b64(&point[1..1 + half])), ("y", b64(&point[1 + half..]))]
        }
        Algorithm::EdDSA => {
            let pair = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| e.to_string())?;
            vec![("crv", "Ed25519".into()), ("kty", "OKP".into()), ("x", b64(pair.public_key().as_ref()))]
        }
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return Err("an HMAC key has no public half".into()),
        _ => {
            let pair =
                signature::RsaKeyPair::from_pkcs8(der).or_else(|_| signature::RsaKeyPair::from_der(der)).map_err(|e| e.to_string())?;
            let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
            vec![("e", b64(&parts.e)), ("kty", "RSA".into()), ("n", b64(&parts.n))]
        }
    };
    let kid = thumbprint(&required);
    let mut jwk = serde_json::Map::new();
    for (k, v) in required {
        jwk.insert(k.into(), v.into());
    }
    jwk.insert("use".into(), "sig".into());
    jwk.insert("alg".into(), format!("{alg:?}").into());
    jwk.insert("kid".into(), kid.into());
    Ok(serde_json::Value::Object(jwk))
}

/// RFC 7638 thumbprint of a JWK's required members, given in lexicographic order. Values
/// are base64url or fixed names, so none needs JSON escaping.
fn thumbprint(required: &[(&str, String)]) -> String {
    let canonical = format!("{{{}}}", required.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect::<Vec<_>>().join(","));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A fresh ES256 key pair in PKCS#8 DER, for a backend JWT with no configured key.
pub fn generate_es256() -> Result<Vec<u8>, String> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| "the system random generator failed".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shared_key(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/keys").join(name)).unwrap()
    }

    #[test]
    fn key_kinds_come_from_the_algorithm_identifier() {
        let kind = |name: &str| key_kind(&parse_pem(&shared_key(name)).unwrap());
        assert_eq!(kind("jwt_rs256_pub.pem"), Ok(KeyKind::Rsa));
        assert_eq!(kind("jwt_rs256_priv.pem"), Ok(KeyKind::Rsa));
        assert_eq!(kind("jwt_es256_pub.pem"), Ok(KeyKind::EcP256));
        assert_eq!(kind("jwt_es256_priv.pem"), Ok(KeyKind::EcP256));
        assert_eq!(kind("jwt_eddsa_pub.pem"), Ok(KeyKind::Ed25519));
        assert_eq!(kind("jwt_eddsa_priv.pem"), Ok(KeyKind::Ed25519));
    }

    #[test]
    fn a_p384_key_and_garbage_are_told_apart() {
        // SPKI of a P-384 key: only the AlgorithmIdentifier matters here.
        let mut der = vec![0x30, 0x76, 0x30, 0x10];
        der.extend_from_slice(OID_EC);
        der.extend_from_slice(OID_P384);
        der.extend_from_slice(&[0x03, 0x62, 0x00]);
        der.extend(std::iter::repeat_n(0x04, 0x61));
        assert_eq!(key_kind(&Pem { label: "PUBLIC KEY".into(), der }), Ok(KeyKind::EcP384));
        assert!(key_kind(&Pem { label: "PUBLIC KEY".into(), der: vec![0x30, 0x03, 0x02, 0x01] }).is_err());
        assert!(key_kind(&Pem { label: "CERTIFICATE".into(), der: vec![] }).unwrap_err().contains("not supported"));
        assert!(parse_pem(b"hello").is_err());
        assert!(parse_pem(b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n").unwrap_err().contains("base64"));
    }

    #[test]
    fn generated_keys_publish_a_thumbprinted_jwk_that_verifies_their_tokens() {
        let der = generate_es256().unwrap();
        let jwk = public_jwk(Algorithm::ES256, &der).unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["kid"].as_str().unwrap().len(), 43);
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &serde_json::json!({ "exp": 4_000_000_000u64 }),
            &jsonwebtoken::EncodingKey::from_ec_der(&der),
        )
        .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap();
    }

    #[test]
    fn rsa_and_ed25519_signing_keys_publish_their_public_half() {
        let rsa = parse_pem(&shared_key("jwt_rs256_priv.pem")).unwrap();
        let jwk = public_jwk(Algorithm::RS256, &rsa.der).unwrap();
        assert_eq!((jwk["kty"].as_str(), jwk["e"].as_str()), (Some("RSA"), Some("AQAB")));
        let ed = parse_pem(&shared_key("jwt_eddsa_priv.pem")).unwrap();
        let jwk = public_jwk(Algorithm::EdDSA, &ed.der).unwrap();
        assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
        assert!(public_jwk(Algorithm::HS256, b"secret").is_err());
    }

    #[test]
    fn the_thumbprint_matches_rfc_7638s_example() {
        // RFC 7638 §3.1: the example RSA key's thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let required = [("e", "AQAB".to_string()), ("kty", "RSA".to_string()), ("n", n.to_string())];
        assert_eq!(thumbprint(&required), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
