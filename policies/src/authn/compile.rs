//! Authentication spec → compiled key managers, introspectors, applications, the backend-JWT
//! signer and each API's [`ApiAuth`]. Called by [`crate::compile()`], which walks the document;
//! errors carry their field paths (`key_managers[0].keys[1].alg`, `apis[2].auth.api_keys`).

use super::introspect::Introspector;
use super::jwt::{parse_algorithm, JwtVerifier, VerifyKey};
use super::{ApiAuth, Application, Applications, KeyManager};
use crate::config::{ApiSpec, AuthSpec, AuthType, GatewaySpec, IntrospectionSpec, JwtKeyManagerSpec, KeyManagerSpec, ResourceSpec};
use crate::error::{ConfigError, Errors};
use crate::state::Durable;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Where a named key manager is compiled to.
pub(crate) enum KmRef<'a> {
    Jwt(u32, &'a str),
    Introspection(u32),
}

/// Name → where the compiled key manager is. JWT key managers and introspectors are
/// numbered separately, in config order.
pub(crate) fn key_manager_index(spec: &GatewaySpec) -> HashMap<&str, KmRef<'_>> {
    let mut km_index: HashMap<&str, KmRef<'_>> = HashMap::new();
    let (mut jwt_n, mut intro_n) = (0u32, 0u32);
    for k in &spec.key_managers {
        let r = match k {
            KeyManagerSpec::Jwt(j) => {
                jwt_n += 1;
                KmRef::Jwt(jwt_n - 1, j.issuer.as_str())
            }
            KeyManagerSpec::Introspection(_) => {
                intro_n += 1;
                KmRef::Introspection(intro_n - 1)
            }
        };
        km_index.insert(k.name(), r);
    }
    km_index
}

pub(crate) fn compile_key_managers(
    spec: &GatewaySpec,
    durable: &Durable,
    extra_claims: &Arc<[Box<str>]>,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> (Vec<KeyManager>, Vec<Introspector>) {
    let mut out = Vec::new();
    let mut intros = Vec::new();
    let mut names = HashSet::new();
    for (i, km) in spec.key_managers.iter().enumerate() {
        let path = format!("key_managers[{i}]");
        if !names.insert(km.name()) {
            errors.push(format!("{path}.name"), format!("`{}` is used by another key manager", km.name()));
        }
        match km {
            KeyManagerSpec::Jwt(j) => {
                if let Some(km) = compile_jwt(j, &path, durable, extra_claims, errors, warnings) {
                    out.push(km);
                }
            }
            KeyManagerSpec::Introspection(x) => {
                if let Some(intro) = compile_introspection(x, &path, durable, extra_claims, errors) {
                    intros.push(intro);
                }
            }
        }
    }
    (out, intros)
}

fn compile_introspection(
    spec: &IntrospectionSpec,
    path: &str,
    durable: &Durable,
    extra_claims: &Arc<[Box<str>]>,
    errors: &mut Errors,
) -> Option<Introspector> {
    let before = errors.0.len();
    let endpoint =
        spec.endpoint.parse::<http::Uri>().ok().filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if endpoint.is_none() {
        errors.push(format!("{path}.endpoint"), format!("`{}` is not an http(s) URL", spec.endpoint));
    }
    let secret = match std::env::var(&spec.client_secret_env) {
        Ok(s) if !s.is_empty() => Some(s),
        _ => {
            errors.push(format!("{path}.client_secret_env"), format!("the environment variable {} is not set", spec.client_secret_env));
            None
        }
    };
    if spec.timeout.0.is_zero() {
        errors.push(format!("{path}.timeout"), "must be greater than 0");
    }
    if errors.0.len() > before {
        return None;
    }
    // RFC 6749 §2.3.1: id and secret are form-encoded, then joined and base64-encoded.
    let form = |v: &str| -> String {
        v.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", form(&spec.client_id), form(secret.as_deref()?)));
    let authorization = HeaderValue::from_str(&format!("Basic {basic}")).ok()?;
    let mut fp = Sha256::new();
    fp.update(format!("{spec:?}"));
    fp.update(secret.as_deref()?.as_bytes());
    // Cached answers hold the claims picked for throttling conditions: a new list, new caches.
    fp.update(format!("{extra_claims:?}"));
    let fp = hex::encode(fp.finalize());
    let mut intro = Introspector::new(
        endpoint?,
        authorization,
        spec.timeout.0.as_millis() as u64,
        spec.cache_ttl.0.as_secs().max(1),
        spec.negative_cache_ttl.0.as_secs(),
        durable.token_cache(&format!("{fp}+"), 100_000),
        durable.token_cache(&format!("{fp}-"), 100_000),
        &spec.claims,
    );
    intro.extra_claims = extra_claims.clone();
    Some(intro)
}

fn compile_jwt(
    spec: &JwtKeyManagerSpec,
    path: &str,
    durable: &Durable,
    extra_claims: &Arc<[Box<str>]>,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<KeyManager> {
    let before = errors.0.len();
    let mut allowed = Vec::new();
    for (k, a) in spec.algorithms.iter().enumerate() {
        match parse_algorithm(a) {
            Some(alg) => allowed.push(alg),
            None => errors.push(format!("{path}.algorithms[{k}]"), format!("`{a}` is not a supported JWS algorithm")),
        }
    }
    if spec.algorithms.is_empty() {
        errors.push(format!("{path}.algorithms"), "list the accepted algorithms, e.g. [RS256, ES256]");
    }
    if spec.issuer.is_empty() {
        errors.push(format!("{path}.issuer"), "must not be empty");
    }
    // Everything that decides a verification goes into the cache fingerprint.
    let mut fingerprint = Sha256::new();
    // The whole spec (names of secrets, never their values) plus the key material below.
    fingerprint.update(format!("{spec:?}"));
    // Cached tokens hold the claims picked for throttling conditions.
    fingerprint.update(format!("{extra_claims:?}"));
    let mut keys = Vec::new();
    for (k, key) in spec.keys.iter().enumerate() {
        let kpath = format!("{path}.keys[{k}]");
        if let Some(vk) = compile_static_key(key, &kpath, &allowed, &mut fingerprint, errors, warnings) {
            keys.push(vk);
        }
    }
    if let Some(file) = &spec.jwks_file {
        match std::fs::read(file).map_err(|e| e.to_string()).and_then(|b| {
            fingerprint.update(&b);
            serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&b).map_err(|e| e.to_string())
        }) {
            Ok(set) => keys.extend(crate::authn::jwks::keys_from_set(&set, &allowed)),
            Err(e) => errors.push(format!("{path}.jwks_file"), format!("cannot load `{file}`: {e}")),
        }
    }
    if spec.jwks_uri.is_some() && spec.discovery.is_some() {
        errors.push(format!("{path}.discovery"), "give jwks_uri or discovery, not both");
    }
    let remote_uri = spec.jwks_uri.as_ref().map(|u| ("jwks_uri", u)).or(spec.discovery.as_ref().map(|u| ("discovery", u)));
    let remote = match remote_uri {
        None => None,
        Some((field, uri)) => {
            let ok = uri.parse::<http::Uri>().ok().filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if ok.is_none() {
                errors.push(format!("{path}.{field}"), format!("`{uri}` is not an http(s) URL"));
            }
            if spec.jwks_refresh.0 < Duration::from_secs(1) {
                errors.push(format!("{path}.jwks_refresh"), "must be at least 1s");
            }
            fingerprint.update(uri.as_bytes());
            Some(crate::authn::RemoteJwks {
                source: durable.jwks_source(uri, (field == "discovery").then_some(spec.issuer.as_str()), &allowed),
                refresh_ms: spec.jwks_refresh.0.as_millis() as u64,
                cooldown_ms: spec.jwks_refetch_cooldown.0.as_millis() as u64,
            })
        }
    };
    if keys.is_empty() && remote.is_none() && errors.0.len() == before {
        errors.push(format!("{path}.keys"), "no usable key: add keys, a jwks_file, a jwks_uri or discovery");
    }
    if spec.max_header_size.0 < 128 || spec.max_header_size.0 > crate::authn::jwt::MAX_HEADER as u64 {
        errors.push(format!("{path}.max_header_size"), "must be between 128B and 2KiB");
    }
    if spec.max_token_size.0 < 256 || spec.max_token_size.0 > 64 * 1024 {
        errors.push(format!("{path}.max_token_size"), "must be between 256B and 64KiB");
    }
    if errors.0.len() > before {
        return None;
    }
    let cache = durable.token_cache(&hex::encode(fingerprint.finalize()), 100_000);
    let verifier = JwtVerifier::new(
        spec.issuer.clone(),
        spec.audiences.clone(),
        allowed,
        keys,
        spec.clock_skew.0.as_secs(),
        spec.max_token_size.0 as usize,
        spec.claims.application.clone(),
        spec.claims.user.clone(),
        spec.claims.scopes.clone(),
    );
    let mut verifier = verifier.with_max_header(spec.max_header_size.0 as usize);
    verifier.extra_claims = extra_claims.clone();
    let verifier = match &remote {
        Some(r) => verifier.with_remote(r.source.clone(), r.cooldown_ms),
        None => verifier,
    };
    Some(KeyManager { name: Arc::from(spec.name.as_str()), verifier, cache, cache_ttl: spec.cache_ttl.0.as_secs().max(1), remote })
}

/// One static key. Its algorithms are the ones its type can serve (an HMAC secret: HS*; a
/// PEM key: read from the key itself), narrowed to `alg` when pinned and to the key
/// manager's allow list. A key left with no algorithm is accepted but inert, with a warning:
/// the allow list is the authority on what a token may use.
fn compile_static_key(
    key: &crate::config::StaticKeySpec,
    kpath: &str,
    allowed: &[Algorithm],
    fingerprint: &mut Sha256,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<VerifyKey> {
    let pinned = match &key.alg {
        None => None,
        Some(a) => match parse_algorithm(a) {
            Some(alg) => Some(alg),
            None => {
                errors.push(format!("{kpath}.alg"), format!("`{a}` is not a supported JWS algorithm"));
                return None;
            }
        },
    };
    let sources = [key.secret_env.is_some(), key.secret_file.is_some(), key.pem_file.is_some()].iter().filter(|b| **b).count();
    if sources != 1 {
        errors.push(kpath, "give exactly one of secret_env, secret_file, pem_file");
        return None;
    }
    let material: Result<Vec<u8>, String> = if let Some(var) = &key.secret_env {
        std::env::var(var).map(String::into_bytes).map_err(|_| format!("the environment variable {var} is not set"))
    } else if let Some(f) = key.secret_file.as_ref().or(key.pem_file.as_ref()) {
        std::fs::read(f).map_err(|e| format!("cannot read `{f}`: {e}"))
    } else {
        Err("no key material".into())
    };
    let material = material.map_err(|e| errors.push(kpath, e)).ok()?;
    const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    let (family, kind): (&[Algorithm], _) = if key.pem_file.is_none() {
        if material.len() < 32 {
            errors.push(kpath, "an HMAC secret must be at least 32 bytes");
            return None;
        }
        (HMAC, None)
    } else {
        if material.windows(11).any(|w| w == b"PRIVATE KEY") {
            errors.push(format!("{kpath}.pem_file"), "holds a private key; give the public key (a gateway never needs the signing key)");
            return None;
        }
        let kind = crate::authn::keys::parse_pem(&material)
            .and_then(|pem| crate::authn::keys::key_kind(&pem))
            .map_err(|e| errors.push(format!("{kpath}.pem_file"), e))
            .ok()?;
        (kind.algorithms(), Some(kind))
    };
    let what = kind.map_or("an HMAC secret", |k| k.describe());
    if let Some(p) = pinned {
        if !family.contains(&p) {
            let fix = if kind.is_none() {
                "HMAC secrets verify HS256, HS384 or HS512"
            } else {
                "give the algorithm of this key, or leave `alg` out"
            };
            errors.push_err(ConfigError::new(format!("{kpath}.alg"), format!("{p:?} cannot be used with {what}")).with_hint(fix));
            return None;
        }
    }
    let algorithms: Vec<Algorithm> = match pinned {
        Some(p) => vec![p],
        None => family.to_vec(),
    };
    let usable: Vec<Algorithm> = algorithms.iter().copied().filter(|a| allowed.contains(a)).collect();
    fingerprint.update(&material);
    let decoded = match kind {
        None => Ok(DecodingKey::from_secret(&material)),
        Some(crate::authn::keys::KeyKind::EcP256 | crate::authn::keys::KeyKind::EcP384) => DecodingKey::from_ec_pem(&material),
        Some(crate::authn::keys::KeyKind::Ed25519) => DecodingKey::from_ed_pem(&material),
        Some(crate::authn::keys::KeyKind::Rsa) => DecodingKey::from_rsa_pem(&material),
    };
    let decoded = decoded.map_err(|e| errors.push(format!("{kpath}.pem_file"), format!("not a usable public key: {e}"))).ok()?;
    if usable.is_empty() {
        let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
        warnings.push_err(
            ConfigError::new(
                kpath,
                match names.len() {
                    1 => format!("{what} for {}, which `algorithms` does not allow: tokens signed with it are rejected", names[0]),
                    _ => format!("{what} for {}, none of which `algorithms` allows: tokens signed with it are rejected", names.join("/")),
                },
            )
            .with_hint(format!("add {} to algorithms to accept them, or remove the key", names[0])),
        );
        return None;
    }
    VerifyKey::new(key.kid.clone(), usable, decoded)
}

/// The key that signs backend JWTs: the top-level `backend_jwt:` section, or its defaults
/// when an API asks for a backend JWT and the document has none. Without a configured key the
/// process's generated ES256 key signs, and a warning says so.
pub(crate) fn compile_backend_jwt(
    spec: &GatewaySpec,
    durable: &Durable,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<crate::authn::backend_jwt::BackendJwt> {
    use crate::authn::keys::{self, KeyKind};
    let defaults;
    let b = match &spec.backend_jwt {
        Some(b) => b,
        None if spec.apis.iter().any(|a| a.auth.as_ref().is_some_and(|x| x.backend_jwt)) => {
            defaults = crate::config::BackendJwtSpec::default();
            &defaults
        }
        None => return None,
    };
    let before = errors.0.len();
    let header = HeaderName::from_bytes(b.header.as_bytes())
        .map_err(|_| errors.push("backend_jwt.header", format!("`{}` is not a header name", b.header)))
        .ok();
    let pinned = match &b.alg {
        None => None,
        Some(a) => match parse_algorithm(a) {
            Some(alg) => Some(alg),
            None => {
                errors.push("backend_jwt.alg", format!("`{a}` is not a supported JWS algorithm"));
                return None;
            }
        },
    };
    let hmac = |a: Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    // (algorithm, signing key, public JWK).
    let signer: Option<(Algorithm, jsonwebtoken::EncodingKey, Option<serde_json::Value>)> = match (&b.secret_env, &b.pem_file) {
        (Some(_), Some(_)) => {
            errors.push("backend_jwt", "give secret_env or pem_file, not both");
            None
        }
        (Some(var), None) => {
            let alg = pinned.unwrap_or(Algorithm::HS256);
            match std::env::var(var) {
                _ if !hmac(alg) => {
                    errors.push(
                        "backend_jwt.alg",
                        format!("{alg:?} needs a private key in pem_file; secret_env is for HS256, HS384 or HS512"),
                    );
                    None
                }
                Ok(s) if s.len() >= 32 => Some((alg, jsonwebtoken::EncodingKey::from_secret(s.as_bytes()), None)),
                Ok(_) => {
                    errors.push("backend_jwt.secret_env", "an HMAC secret must be at least 32 bytes");
                    None
                }
                Err(_) => {
                    errors.push("backend_jwt.secret_env", format!("the environment variable {var} is not set"));
                    None
                }
            }
        }
        (None, Some(file)) => {
            let loaded = std::fs::read(file).map_err(|e| format!("cannot read `{file}`: {e}")).and_then(|pem_bytes| {
                let pem = keys::parse_pem(&pem_bytes)?;
                let kind = keys::key_kind(&pem)?;
                let alg = pinned.unwrap_or(kind.algorithms()[0]);
                if !kind.algorithms().contains(&alg) {
                    return Err(format!("{} cannot sign {alg:?}", kind.describe()));
                }
                let key = match kind {
                    KeyKind::EcP256 | KeyKind::EcP384 => jsonwebtoken::EncodingKey::from_ec_pem(&pem_bytes),
                    KeyKind::Ed25519 => jsonwebtoken::EncodingKey::from_ed_pem(&pem_bytes),
                    KeyKind::Rsa => jsonwebtoken::EncodingKey::from_rsa_pem(&pem_bytes),
                }
                .map_err(|e| format!("not a usable private key: {e}"))?;
                let jwk = keys::public_jwk(alg, &pem.der).map_err(|e| format!("not a usable private key: {e}"))?;
                Ok((alg, key, Some(jwk)))
            });
            loaded.map_err(|e| errors.push("backend_jwt.pem_file", e)).ok()
        }
        (None, None) => match pinned {
            Some(a) if a != Algorithm::ES256 => {
                errors.push("backend_jwt.alg", format!("a generated key is ES256; for {a:?} configure pem_file or secret_env"));
                None
            }
            _ => match durable
                .generated_signing_key()
                .and_then(|der| Ok((jsonwebtoken::EncodingKey::from_ec_der(&der), keys::public_jwk(Algorithm::ES256, &der)?)))
            {
                Ok((key, jwk)) => {
                    warnings.push_err(
                        ConfigError::new(
                            "backend_jwt",
                            format!(
                                "no signing key is configured: backend JWTs are signed with an ES256 key generated at start-up (kid {}), \
                                 published at the admin listener's /.well-known/jwks.json; each restart and each gateway node has its own",
                                jwk["kid"].as_str().unwrap_or("?")
                            ),
                        )
                        .with_hint("configure backend_jwt.pem_file for a key that backends can pin"),
                    );
                    Some((Algorithm::ES256, key, Some(jwk)))
                }
                Err(e) => {
                    errors.push("backend_jwt", format!("cannot generate a signing key: {e}"));
                    None
                }
            },
        },
    };
    if b.ttl.0.as_secs() < 2 {
        errors.push("backend_jwt.ttl", "must be at least 2s");
    }
    if errors.0.len() > before {
        return None;
    }
    let (alg, key, jwk) = signer?;
    Some(crate::authn::backend_jwt::BackendJwt::new(header?, b.issuer.clone(), alg, key, jwk, b.ttl.0.as_secs(), b.claims.clone()))
}

pub(crate) fn compile_applications(spec: &GatewaySpec, errors: &mut Errors) -> Applications {
    let mut out = Applications::default();
    let mut ids = HashSet::new();
    for (i, app) in spec.applications.iter().enumerate() {
        let path = format!("applications[{i}]");
        if !ids.insert(app.id.as_str()) {
            errors.push(format!("{path}.id"), format!("`{}` is used by another application", app.id));
        }
        let idx = out.apps.len() as u32;
        for (j, c) in app.client_ids.iter().enumerate() {
            if out.by_client_id.insert(c.clone(), idx).is_some() {
                errors.push(format!("{path}.client_ids[{j}]"), format!("`{c}` belongs to another application too"));
            }
        }
        for (j, k) in app.api_keys.iter().enumerate() {
            match hex::decode(&k.sha256).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(d) => {
                    if out.by_key_digest.insert(d, idx).is_some() {
                        errors.push(format!("{path}.api_keys[{j}].sha256"), "this key belongs to another application too");
                    }
                }
                None => errors.push(format!("{path}.api_keys[{j}].sha256"), "must be 64 hex digits (the SHA-256 of the key)"),
            }
        }
        let mut domains = Vec::new();
        for (j, d) in app.allowed_domains.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            let host_ok = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            match d.strip_prefix("*.") {
                Some(rest) if host_ok(rest) => domains.push(format!(".{rest}")),
                None if host_ok(&d) => domains.push(d),
                _ => {
                    errors.push(format!("{path}.allowed_domains[{j}]"), format!("`{d}` is not a host name (app.example or *.app.example)"))
                }
            }
        }
        out.apps.push(Application {
            id: Arc::from(app.id.as_str()),
            blocked: app.blocked,
            allowed_domains: domains,
            subscriptions: app.subscriptions.iter().map(|s| (s.api.clone(), Arc::from(s.tier.as_str()))).collect(),
        });
    }
    out
}

/// Every subscription names an API of the document (`names`: the API names).
pub(crate) fn check_subscriptions(spec: &GatewaySpec, names: &HashSet<&str>, errors: &mut Errors) {
    for (a, app) in spec.applications.iter().enumerate() {
        for (j, sub) in app.subscriptions.iter().enumerate() {
            if !names.contains(sub.api.as_str()) {
                errors.push(format!("applications[{a}].subscriptions[{j}].api"), format!("no API is named `{}`", sub.api));
            }
        }
    }
}

/// An API's `auth:` (at `path`, the API's field path): its key managers by index, where API
/// keys are read from, and what is forwarded.
pub(crate) fn compile_api_auth(a: &AuthSpec, path: &str, km_index: &HashMap<&str, KmRef<'_>>, errors: &mut Errors) -> ApiAuth {
    let (mut kms, mut intros) = (Vec::new(), Vec::new());
    for (k, name) in a.key_managers.iter().enumerate() {
        match km_index.get(name.as_str()) {
            Some(KmRef::Jwt(i, _)) => kms.push(*i),
            Some(KmRef::Introspection(i)) => intros.push(*i),
            None => errors.push(format!("{path}.auth.key_managers[{k}]"), format!("no key manager is named `{name}`")),
        }
    }
    if intros.len() > 1 {
        errors.push(
            format!("{path}.auth.key_managers"),
            "at most one introspection key manager per API (an opaque token names no issuer to choose by)",
        );
    }
    let (mut header, mut query) = (None, None);
    if let Some(src) = &a.api_keys {
        if src.header.is_none() && src.query.is_none() {
            errors.push(format!("{path}.auth.api_keys"), "name a `header` or a `query` parameter");
        }
        if let Some(h) = &src.header {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) if n != http::header::AUTHORIZATION => header = Some(n),
                _ => errors.push(format!("{path}.auth.api_keys.header"), format!("`{h}` is not a usable header name")),
            }
        }
        if let Some(q) = &src.query {
            if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                errors.push(format!("{path}.auth.api_keys.query"), format!("`{q}` is not a usable query parameter name"));
            }
        }
        query = src.query.clone();
    }
    let mut issuers = HashSet::new();
    for (k, name) in a.key_managers.iter().enumerate() {
        if let Some(KmRef::Jwt(_, iss)) = km_index.get(name.as_str()) {
            if !issuers.insert(iss) {
                errors.push(
                    format!("{path}.auth.key_managers[{k}]"),
                    format!("another key manager of this API has the issuer `{iss}`; the issuer must pick one"),
                );
            }
        }
    }
    if kms.is_empty() && intros.is_empty() && a.api_keys.is_none() && a.key_managers.is_empty() {
        errors.push(format!("{path}.auth"), "accepts no credential: list key_managers or api_keys");
    }
    ApiAuth {
        key_managers: kms,
        introspectors: intros,
        api_key_header: header,
        api_key_query: query,
        require_subscription: a.require_subscription,
        forward_credentials: a.forward_credentials,
        backend_jwt: a.backend_jwt,
    }
}

/// A resource's `auth` and `scopes` (at `rpath`), which need `auth:` on its API (`spec`).
pub(crate) fn check_resource_auth(spec: &ApiSpec, r: &ResourceSpec, rpath: &str, errors: &mut Errors) {
    if spec.auth.is_none() && r.auth.is_some() {
        errors.push(format!("{rpath}.auth"), "needs `auth:` on the API");
    }
    if spec.auth.is_none() && !r.scopes.is_empty() {
        errors.push(format!("{rpath}.scopes"), "needs `auth:` on the API");
    }
    if r.auth == Some(AuthType::None) && !r.scopes.is_empty() {
        errors.push(format!("{rpath}.scopes"), "cannot be checked on an `auth: none` resource");
    }
}
