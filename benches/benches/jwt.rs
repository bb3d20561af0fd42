//! Guards: the cost of authentication per request (authentication issue: cached check under
//! 1 µs; uncached verification within 1.2× of the crypto library's own verify).
//!
//! - `authenticate_cached`: the whole `Snapshot::authenticate` for a repeated token (cache
//!   hit, application lookup, subscription and scope checks), as a request pays it.
//! - `introspection_cache_hit`: the same for an opaque token in the introspection cache.
//! - `backend_jwt_cached`: the `X-JWT-Assertion` value for a caller already seen.
//! - `verify_uncached/<alg>`: our `JwtVerifier::verify` (shape and header checks, key
//!   choice, signature, claims) next to `jsonwebtoken::decode` alone, the naive baseline,
//!   for each algorithm family. RS256 uses the shared bench's 2048-bit key when
//!   ../shared/bench/keys is present.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use policies::authn::jwt::{JwtVerifier, VerifyKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::hint::black_box;

const ISS: &str = "https://idp.example/";
const SECRET: &[u8] = b"bench-hs256-secret-0123456789abcdef";
const NOW: u64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    serde_json::json!({ "iss": ISS, "aud": "orders", "exp": NOW + 600, "azp": "mobile-client", "sub": "alice", "scope": "read write" })
}

fn verifier(alg: Algorithm, key: DecodingKey) -> JwtVerifier {
    JwtVerifier::new(
        ISS.into(),
        vec!["orders".into()],
        vec![alg],
        vec![VerifyKey::new(Some("k".into()), vec![alg], key).unwrap()],
        30,
        8192,
        "azp".into(),
        "sub".into(),
        "scope".into(),
    )
}

fn header(alg: Algorithm) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some("k".into());
    h
}

fn cases() -> Vec<(&'static str, Algorithm, String, DecodingKey)> {
    let rng = SystemRandom::new();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec_pub = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng).unwrap().public_key().as_ref().to_vec();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_pub = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap().public_key().as_ref().to_vec();
    let mut out = vec![
        (
            "HS256",
            Algorithm::HS256,
            encode(&header(Algorithm::HS256), &claims(), &EncodingKey::from_secret(SECRET)).unwrap(),
            DecodingKey::from_secret(SECRET),
        ),
        (
            "ES256",
            Algorithm::ES256,
            encode(&header(Algorithm::ES256), &claims(), &EncodingKey::from_ec_der(ec.as_ref())).unwrap(),
            DecodingKey::from_ec_der(&ec_pub),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            encode(&header(Algorithm::EdDSA), &claims(), &EncodingKey::from_ed_der(ed.as_ref())).unwrap(),
            DecodingKey::from_ed_der(&ed_pub),
        ),
    ];
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/keys");
    if let (Ok(private), Ok(public)) = (std::fs::read(keys.join("jwt_rs256_priv.pem")), std::fs::read(keys.join("jwt_rs256_pub.pem"))) {
        let t = encode(&header(Algorithm::RS256), &claims(), &EncodingKey::from_rsa_pem(&private).unwrap()).unwrap();
        out.push(("RS256", Algorithm::RS256, t, DecodingKey::from_rsa_pem(&public).unwrap()));
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_uncached");
    for (name, alg, token, key) in cases() {
        let v = verifier(alg, key.clone());
        group.bench_with_input(BenchmarkId::new("ours", name), &token, |b, t| b.iter(|| black_box(v.verify(t, NOW).is_ok())));
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        group.bench_with_input(BenchmarkId::new("jsonwebtoken_decode", name), &token, |b, t| {
            b.iter(|| black_box(jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(t, &key, &validation).is_ok()))
        });
    }
    group.finish();

    // The whole cached path through a compiled snapshot.
    std::env::set_var("BENCH_JWT_SECRET", std::str::from_utf8(SECRET).unwrap());
    let yaml = format!(
        "key_managers: [{{ type: jwt, name: idp, issuer: \"{ISS}\", audiences: [orders], algorithms: [HS256], keys: [{{ kid: k, alg: HS256, secret_env: BENCH_JWT_SECRET }}] }}]\n\
         applications: [{{ id: mobile, client_ids: [mobile-client], subscriptions: [{{ api: orders, tier: Gold }}] }}]\n\
         apis: [{{ name: orders, context: /orders, version: v1, auth: {{ key_managers: [idp], require_subscription: true }}, resources: [{{ path: \"/order/{{id}}\", methods: [GET], scopes: [read], mock: {{ body: x }} }}] }}]\n"
    );
    let snapshot =
        policies::compile(&policies::parse(yaml.as_bytes(), policies::Format::Yaml).unwrap(), &policies::state::Durable::new()).unwrap();
    let token = encode(&header(Algorithm::HS256), &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
    let parts =
        http::Request::get("/orders/v1/order/42").header("authorization", format!("Bearer {token}")).body(()).unwrap().into_parts().0;
    let plan = snapshot.route(&parts, "/orders/v1/order/42").unwrap();
    assert!(snapshot.authenticate(&parts, &plan, NOW).unwrap().is_some());
    c.bench_function("authenticate_cached", |b| b.iter(|| black_box(snapshot.authenticate(&parts, &plan, NOW).is_ok())));

    // An opaque token answered from the introspection positive cache.
    std::env::set_var("BENCH_INTRO_SECRET", "bench-secret");
    let yaml = "key_managers: [{ type: introspection, name: legacy, endpoint: \"http://127.0.0.1:1/introspect\", client_id: gw, client_secret_env: BENCH_INTRO_SECRET }]\n\
         applications: [{ id: mobile, client_ids: [mobile-client], subscriptions: [{ api: orders, tier: Gold }] }]\n\
         apis: [{ name: orders, context: /orders, version: v1, auth: { key_managers: [legacy], require_subscription: true }, resources: [{ path: \"/order/{id}\", methods: [GET], scopes: [read], mock: { body: x } }] }]\n";
    let snapshot =
        policies::compile(&policies::parse(yaml.as_bytes(), policies::Format::Yaml).unwrap(), &policies::state::Durable::new()).unwrap();
    let opaque = "opaque-token-0123456789abcdef0123456789abcdef";
    let body = serde_json::json!({ "active": true, "client_id": "mobile-client", "sub": "alice", "scope": "read write", "exp": NOW + 600 })
        .to_string();
    snapshot.introspectors[0].interpret(opaque, body.as_bytes(), NOW);
    let parts =
        http::Request::get("/orders/v1/order/42").header("authorization", format!("Bearer {opaque}")).body(()).unwrap().into_parts().0;
    let plan = snapshot.route(&parts, "/orders/v1/order/42").unwrap();
    assert!(matches!(snapshot.authenticate(&parts, &plan, NOW), Ok(Some(policies::authn::AuthStep::Done(_)))));
    c.bench_function("introspection_cache_hit", |b| b.iter(|| black_box(snapshot.authenticate(&parts, &plan, NOW).is_ok())));

    // The backend JWT for a caller already seen (generated ES256 key): a hash of borrowed
    // fields and a compare, no signing and no allocation but the header value's refcount.
    let yaml = "apis: [{ name: orders, context: /orders, version: v1, auth: { api_keys: { header: k }, backend_jwt: true }, resources: [{ path: /x, mock: { body: x } }] }]\n";
    let snapshot =
        policies::compile(&policies::parse(yaml.as_bytes(), policies::Format::Yaml).unwrap(), &policies::state::Durable::new()).unwrap();
    let bj = snapshot.backend_jwt.as_ref().unwrap();
    let principal = policies::authn::Principal {
        application: Some(0),
        user: Some("alice".into()),
        scopes: vec!["read".to_string(), "write".to_string()].into(),
        tier: Some("Gold".into()),
        via_api_key: false,
        claims: policies::authn::jwt::no_extra(),
    };
    let (api, app): (std::sync::Arc<str>, std::sync::Arc<str>) = ("orders".into(), "mobile".into());
    assert!(bj.assertion(&api, Some(&app), &principal, NOW).is_some());
    c.bench_function("backend_jwt_cached", |b| b.iter(|| black_box(bj.assertion(&api, Some(&app), &principal, NOW).is_some())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
