use super::jwt::*;
use super::*;
use crate::config::{parse, Format};
use crate::state::Durable;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.example/";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256";

struct Keys {
    ec_private: Vec<u8>,
    ec_public: Vec<u8>,
    ed_private: Vec<u8>,
    ed_public: Vec<u8>,
}

fn keys() -> Keys {
    let rng = SystemRandom::new();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng).unwrap();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_pair = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
    Keys {
        ec_private: ec.as_ref().to_vec(),
        ec_public: ec_pair.public_key().as_ref().to_vec(),
        ed_private: ed.as_ref().to_vec(),
        ed_public: ed_pair.public_key().as_ref().to_vec(),
    }
}

fn verifier(k: &Keys) -> JwtVerifier {
    JwtVerifier::new(
        ISS.into(),
        vec!["orders".into()],
        vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256],
        vec![
            VerifyKey::new(Some("ec1".into()), vec![Algorithm::ES256], DecodingKey::from_ec_der(&k.ec_public)).unwrap(),
            VerifyKey::new(Some("ed1".into()), vec![Algorithm::EdDSA], DecodingKey::from_ed_der(&k.ed_public)).unwrap(),
            VerifyKey::new(Some("hs1".into()), vec![Algorithm::HS256], DecodingKey::from_secret(SECRET)).unwrap(),
        ],
        30,
        8192,
        "azp".into(),
        "sub".into(),
        "scope".into(),
    )
}

fn claims() -> serde_json::Value {
    json!({ "iss": ISS, "aud": "orders", "exp": NOW + 600, "iat": NOW - 10, "azp": "mobile-client", "sub": "alice", "scope": "order:read order:write" })
}

fn sign(alg: Algorithm, kid: &str, k: &Keys, c: &serde_json::Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_der(&k.ec_private),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&k.ed_private),
        _ => EncodingKey::from_secret(SECRET),
    };
    encode(&h, c, &key).unwrap()
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with a hand-made header and payload and an arbitrary signature.
fn forge(header: serde_json::Value, payload: &serde_json::Value, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()), b64(sig))
}

#[test]
fn valid_tokens_of_each_algorithm() {
    let k = keys();
    let v = verifier(&k);
    for (alg, kid) in [(Algorithm::ES256, "ec1"), (Algorithm::EdDSA, "ed1"), (Algorithm::HS256, "hs1")] {
        let got = v.verify(&sign(alg, kid, &k, &claims()), NOW).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(got.application.as_deref(), Some("mobile-client"));
        assert_eq!(got.user.as_deref(), Some("alice"));
        assert_eq!(&*got.scopes, ["order:read", "order:write"]);
        assert_eq!(got.exp, NOW + 600);
    }
}

#[test]
fn time_issuer_and_audience_rules() {
    let k = keys();
    let v = verifier(&k);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        v.verify(&sign(Algorithm::ES256, "ec1", &k, &c), NOW)
    };
    assert_eq!(with(&|c| c["exp"] = json!(NOW - 31)), Err(JwtError::Expired));
    assert!(with(&|c| c["exp"] = json!(NOW - 29)).is_ok(), "within clock skew");
    assert_eq!(
        with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        Err(JwtError::MissingExpiry)
    );
    assert_eq!(with(&|c| c["nbf"] = json!(NOW + 60)), Err(JwtError::NotYetValid));
    assert_eq!(with(&|c| c["iat"] = json!(NOW + 60)), Err(JwtError::NotYetValid));
    assert_eq!(with(&|c| c["iss"] = json!("https://idp.example")), Err(JwtError::WrongIssuer), "exact match");
    assert_eq!(with(&|c| c["aud"] = json!("billing")), Err(JwtError::WrongAudience));
    assert!(with(&|c| c["aud"] = json!(["billing", "orders"])).is_ok());
    assert_eq!(
        with(&|c| {
            c.as_object_mut().unwrap().remove("aud");
        }),
        Err(JwtError::WrongAudience)
    );
}

#[test]
fn alg_none_in_every_spelling_and_unlisted_algorithms_are_refused() {
    let k = keys();
    let v = verifier(&k);
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let t = forge(json!({ "alg": alg, "kid": "ec1" }), &claims(), b"");
        assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgorithmNotAllowed), "{alg}");
        let t = format!("{}.{}.", b64(json!({ "alg": alg }).to_string().as_bytes()), b64(claims().to_string().as_bytes()));
        assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgorithmNotAllowed), "{alg} unsigned");
    }
    let mut h = Header::new(Algorithm::HS384);
    h.kid = Some("hs1".into());
    let t = encode(&h, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(v.verify(&t, NOW), Err(JwtError::AlgorithmNotAllowed));
}

#[test]
fn hs256_signed_with_the_public_key_never_verifies() {
    let k = keys();
    let v = verifier(&k);
    // The classic confusion: HMAC keyed with the EC public key, kid of the EC key.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("ec1".into());
    let t = encode(&h, &claims(), &EncodingKey::from_secret(&k.ec_public)).unwrap();
    assert_eq!(v.verify(&t, NOW), Err(JwtError::UnknownKey));
    // Without kid every HS256 key is tried: the real secret does not match.
    let t = encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(&k.ec_public)).unwrap();
    assert_eq!(v.verify(&t, NOW), Err(JwtError::BadSignature));
}

#[test]
fn forged_tampered_and_malformed_tokens() {
    let k = keys();
    let v = verifier(&k);
    let good = sign(Algorithm::ES256, "ec1", &k, &claims());
    let parts: Vec<&str> = good.split('.').collect();

    assert_eq!(v.verify(&sign(Algorithm::ES256, "nope", &k, &claims()), NOW), Err(JwtError::UnknownKey));
    let mut evil = claims();
    evil["scope"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(evil.to_string().as_bytes()), parts[2]);
    assert_eq!(v.verify(&tampered, NOW), Err(JwtError::BadSignature));
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(v.verify(&stripped, NOW), Err(JwtError::BadSignature));
    let zeros = format!("{}.{}.{}", parts[0], parts[1], b64(&[0u8; 64]));
    assert_eq!(v.verify(&zeros, NOW), Err(JwtError::BadSignature), "ECDSA signature of zeros");

    for bad in ["", "abc", "a.b", "a.b.c.d", "a.b.c.d.e", &format!("{}.{}", parts[0], parts[1]), "!!!.@@@.###"] {
        assert_eq!(v.verify(bad, NOW), Err(JwtError::Malformed), "{bad:?}");
    }
    let jwe = format!("{}.{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[1], parts[2]);
    assert_eq!(v.verify(&jwe, NOW), Err(JwtError::Malformed));
    let big = format!("{}.{}.{}", parts[0], b64(&vec![b'a'; 9000]), parts[2]);
    assert_eq!(v.verify(&big, NOW), Err(JwtError::TooLarge));
    for header in [
        json!({ "alg": "ES256", "kid": "ec1", "crit": ["exp"] }),
        json!({ "alg": "ES256", "enc": "A256GCM" }),
        json!({ "alg": "ES256", "b64": false }),
    ] {
        assert_eq!(v.verify(&forge(header, &claims(), b"x"), NOW), Err(JwtError::UnsupportedHeader));
    }
    // jku/x5u/jwk are ignored: the embedded key is not trusted, the configured one decides.
    let other = keys();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec1".into());
    h.jku = Some("http://127.0.0.1:1/evil.json".into());
    let t = encode(&h, &claims(), &EncodingKey::from_ec_der(&other.ec_private)).unwrap();
    assert_eq!(v.verify(&t, NOW), Err(JwtError::BadSignature));
}

#[test]
fn token_cache_is_exact_and_expires() {
    let cache = TokenCache::new(32);
    let c = Arc::new(VerifiedClaims {
        exp: NOW + 60,
        application: None,
        user: Some("u".into()),
        scopes: super::no_scopes(),
        extra: super::jwt::no_extra(),
    });
    cache.insert("tok-a", c.clone(), NOW + 60, NOW);
    assert_eq!(cache.get("tok-a", NOW).as_deref(), Some(&*c));
    assert!(cache.get("tok-b", NOW).is_none());
    assert!(cache.get("tok-a", NOW + 60).is_none(), "expired at exp");
    for i in 0..1000 {
        cache.insert(&format!("t{i}"), c.clone(), NOW + 60, NOW);
    }
    assert!(cache.len() <= 32 + 16, "bounded: {}", cache.len());
}

fn snapshot_with(extra_env: &str) -> crate::Snapshot {
    let yaml = format!(
        r#"
key_managers:
  - {{ type: jwt, name: idp, issuer: "{ISS}", audiences: [orders], algorithms: [HS256], keys: [{{ kid: hs1, alg: HS256, secret_env: {extra_env} }}] }}
applications:
  - {{ id: mobile, client_ids: [mobile-client], subscriptions: [{{ api: orders, tier: Gold }}] }}
  - {{ id: partner, client_ids: [partner-client], api_keys: [{{ sha256: "{}" }}], allowed_domains: ["*.partner.example"], subscriptions: [{{ api: orders, tier: Silver }}] }}
  - {{ id: stranger, client_ids: [stranger-client] }}
  - {{ id: banned, client_ids: [banned-client], blocked: true, subscriptions: [{{ api: orders, tier: Gold }}] }}
apis:
  - name: orders
    context: /orders
    version: v1
    auth: {{ key_managers: [idp], api_keys: {{ header: apikey }}, require_subscription: true }}
    resources:
      - {{ path: /menu, auth: none, mock: {{ body: menu }} }}
      - {{ path: "/order/{{id}}", methods: [GET, PUT], scopes: [order:write], mock: {{ body: order }} }}
      - {{ path: "/admin/*", auth: application_user, scopes: [admin], mock: {{ body: admin }} }}
      - {{ path: /app, auth: application, mock: {{ body: app }} }}
"#,
        hex::encode(sha2::Sha256::digest(b"partner-secret-key"))
    );
    std::env::set_var(extra_env, std::str::from_utf8(SECRET).unwrap());
    crate::compile(&parse(yaml.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap()
}

fn request(path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn hs(c: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("hs1".into());
    encode(&h, &c, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn check(s: &crate::Snapshot, path: &str, headers: &[(&str, &str)]) -> Result<Option<Principal>, Rejection> {
    let parts = request(path, headers);
    let plan = s.route(&parts, path).map_err(|r| r.rejection)?;
    s.authenticate(&parts, &plan, NOW).map(|step| match step {
        Some(AuthStep::Done(p)) => Some(p),
        Some(AuthStep::Introspect { .. }) => panic!("no introspection configured"),
        None => None,
    })
}

#[test]
fn applications_subscriptions_scopes_and_auth_types() {
    let s = snapshot_with("AUTHN_TEST_SECRET_1");
    let bearer = |c: serde_json::Value| format!("Bearer {}", hs(c));
    let code = |r: Result<Option<Principal>, Rejection>| r.map(|_| ()).map_err(|e| e.code);

    assert_eq!(code(check(&s, "/orders/v1/menu", &[])), Ok(()));
    let missing = check(&s, "/orders/v1/order/1", &[]).unwrap_err();
    assert_eq!(missing.code, ProblemCode::AuthMissing);
    assert_eq!(missing.headers[0].1, "Bearer realm=\"orders\"");

    let p = check(&s, "/orders/v1/order/1", &[("authorization", &bearer(claims()))]).unwrap().unwrap();
    assert_eq!(p.tier.as_deref(), Some("Gold"));
    assert_eq!(p.user.as_deref(), Some("alice"));

    let mut no_scope = claims();
    no_scope["scope"] = json!("order:read");
    let r = check(&s, "/orders/v1/order/1", &[("authorization", &bearer(no_scope))]).unwrap_err();
    assert_eq!(r.code, ProblemCode::AuthInsufficientScope);
    assert_eq!(r.headers[0].1, "Bearer realm=\"orders\", error=\"insufficient_scope\", scope=\"order:write\"");

    let mut stranger = claims();
    stranger["azp"] = json!("stranger-client");
    assert_eq!(code(check(&s, "/orders/v1/order/1", &[("authorization", &bearer(stranger))])), Err(ProblemCode::AuthNotSubscribed));
    let mut unknown = claims();
    unknown["azp"] = json!("nobody");
    assert_eq!(code(check(&s, "/orders/v1/order/1", &[("authorization", &bearer(unknown))])), Err(ProblemCode::AuthNotSubscribed));
    let mut banned = claims();
    banned["azp"] = json!("banned-client");
    assert_eq!(code(check(&s, "/orders/v1/order/1", &[("authorization", &bearer(banned))])), Err(ProblemCode::AuthApplicationBlocked));

    // A client-credentials token (sub == azp) is an application token.
    let mut app_token = claims();
    app_token["sub"] = json!("mobile-client");
    app_token["scope"] = json!("admin");
    assert_eq!(
        code(check(&s, "/orders/v1/admin/x", &[("authorization", &bearer(app_token.clone()))])),
        Err(ProblemCode::AuthWrongCredentialType)
    );
    assert_eq!(code(check(&s, "/orders/v1/app", &[("authorization", &bearer(app_token))])), Ok(()));
    let mut user_admin = claims();
    user_admin["scope"] = json!("admin");
    assert_eq!(code(check(&s, "/orders/v1/admin/x", &[("authorization", &bearer(user_admin))])), Ok(()));
    assert_eq!(code(check(&s, "/orders/v1/app", &[("authorization", &bearer(claims()))])), Err(ProblemCode::AuthWrongCredentialType));

    let bad = check(&s, "/orders/v1/order/1", &[("authorization", "Bearer not.a.jwt")]).unwrap_err();
    assert_eq!(bad.code, ProblemCode::AuthInvalidToken);
    assert!(bad.headers[0].1.to_str().unwrap().starts_with("Bearer realm=\"orders\", error=\"invalid_token\", error_description="));
    assert_eq!(code(check(&s, "/orders/v1/order/1", &[("authorization", "Basic dXNlcjpwYXNz")])), Err(ProblemCode::AuthInvalidToken));
}

#[test]
fn api_keys_and_allowed_domains() {
    let s = snapshot_with("AUTHN_TEST_SECRET_2");
    let code = |r: Result<Option<Principal>, Rejection>| r.map(|p| p.map(|p| p.via_api_key)).map_err(|e| e.code);
    let key = ("apikey", "partner-secret-key");
    assert_eq!(code(check(&s, "/orders/v1/app", &[key, ("origin", "https://shop.partner.example")])), Ok(Some(true)));
    assert_eq!(code(check(&s, "/orders/v1/app", &[key, ("referer", "https://a.b.partner.example/page")])), Ok(Some(true)));
    assert_eq!(
        code(check(&s, "/orders/v1/app", &[key, ("origin", "https://partner.example.evil")])),
        Err(ProblemCode::AuthDomainNotAllowed)
    );
    assert_eq!(code(check(&s, "/orders/v1/app", &[key])), Err(ProblemCode::AuthDomainNotAllowed));
    assert_eq!(code(check(&s, "/orders/v1/app", &[("apikey", "wrong")])), Err(ProblemCode::AuthInvalidApiKey));
    // Scopes come only from tokens: an API key cannot call a scoped resource.
    assert_eq!(
        code(check(&s, "/orders/v1/order/1", &[key, ("origin", "https://x.partner.example")])),
        Err(ProblemCode::AuthInsufficientScope)
    );
}

#[test]
fn verified_tokens_are_cached_and_reloads_keep_the_cache() {
    let durable = Durable::new();
    std::env::set_var("AUTHN_TEST_SECRET_3", std::str::from_utf8(SECRET).unwrap());
    let yaml = format!("key_managers: [{{ type: jwt, name: idp, issuer: \"{ISS}\", algorithms: [HS256], keys: [{{ alg: HS256, secret_env: AUTHN_TEST_SECRET_3 }}] }}]\napis: []\n");
    let spec = parse(yaml.as_bytes(), Format::Yaml).unwrap();
    let a = crate::compile(&spec, &durable).unwrap();
    let b = crate::compile(&spec, &durable).unwrap();
    assert!(Arc::ptr_eq(&a.key_managers[0].cache, &b.key_managers[0].cache));
}

#[test]
fn auth_config_mistakes_are_reported_with_paths() {
    let dir = std::env::temp_dir().join(format!("authn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    std::fs::write(&private, "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n").unwrap();
    std::env::set_var("AUTHN_TEST_SECRET_4", std::str::from_utf8(SECRET).unwrap());
    let yaml = format!(
        r#"
key_managers:
  - {{ type: jwt, name: a, issuer: "{ISS}", algorithms: [RS256], keys: [{{ alg: RS256, pem_file: "{}" }}] }}
  - {{ type: jwt, name: b, issuer: "{ISS}", algorithms: [HS256], keys: [{{ alg: HS256, secret_env: AUTHN_TEST_SECRET_4 }}] }}
  - {{ type: jwt, name: c, issuer: "{ISS}", algorithms: [HS256], keys: [{{ alg: HS256, secret_env: AUTHN_TEST_SECRET_4 }}] }}
applications:
  - {{ id: x, allowed_domains: ["*.a/b"] }}
apis:
  - name: api
    context: /api
    version: v1
    auth: {{ key_managers: [b, c], api_keys: {{ query: "" }} }}
    resources: [{{ path: /x, auth: none, scopes: [s], mock: {{ body: x }} }}]
"#,
        private.display()
    );
    let errs = crate::compile(&parse(yaml.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "key_managers[0].keys[0].pem_file",
        "applications[0].allowed_domains[0]",
        "apis[0].auth.api_keys.query",
        "apis[0].auth.key_managers[1]",
        "apis[0].resources[0].scopes",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {errs:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fractional_dates_are_numeric_dates() {
    let k = keys();
    let v = verifier(&k);
    let mut c = claims();
    c["exp"] = json!((NOW + 600) as f64 + 0.5);
    c["iat"] = json!((NOW - 10) as f64 + 0.25);
    assert!(v.verify(&sign(Algorithm::ES256, "ec1", &k, &c), NOW).is_ok());
}

#[test]
fn backend_jwt_without_a_key_signs_with_a_generated_es256_key_and_warns() {
    let durable = Durable::new();
    let doc = b"apis: [{ name: a, context: /a, version: v1, auth: { api_keys: { header: k }, backend_jwt: true }, resources: [{ path: /x, mock: { body: x } }] }]\n";
    let spec = parse(doc, Format::Yaml).unwrap();
    let s = crate::compile(&spec, &durable).unwrap();
    let bj = s.backend_jwt.as_ref().unwrap();
    let jwks = bj.jwks();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert_eq!(s.warnings[0].path, "backend_jwt");
    assert!(s.warnings[0].message.contains(&kid), "{}", s.warnings[0].message);
    // A reload keeps the key (backends that fetched it keep verifying).
    let again = crate::compile(&spec, &durable).unwrap();
    assert_eq!(again.backend_jwt.as_ref().unwrap().jwks(), jwks);
    // Minted tokens name the key and verify with the published JWK.
    let p = Principal {
        application: None,
        user: Some("alice".into()),
        scopes: vec!["a".to_string()].into(),
        tier: Some("Gold".into()),
        via_api_key: false,
        claims: super::jwt::no_extra(),
    };
    let api: Arc<str> = "a".into();
    let token = bj.assertion(&api, None, &p, NOW).unwrap();
    let token = token.to_str().unwrap();
    assert_eq!(jsonwebtoken::decode_header(token).unwrap().kid.as_deref(), Some(kid.as_str()));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.validate_exp = false;
    let got = jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap().claims;
    assert_eq!((got["sub"].as_str(), got["tier"].as_str(), got["scope"].as_str()), (Some("alice"), Some("Gold"), Some("a")));
    // The same caller gets the same token (cached); another user gets another.
    assert_eq!(bj.assertion(&api, None, &p, NOW + 1).unwrap(), token);
    let bob = Principal { user: Some("bob".into()), ..p.clone() };
    assert_ne!(bj.assertion(&api, None, &bob, NOW + 1).unwrap(), token);
}

#[test]
fn backend_jwt_key_mistakes_are_reported_with_paths() {
    let err = |doc: &[u8]| crate::compile(&parse(doc, Format::Yaml).unwrap(), &Durable::new()).unwrap_err()[0].clone();
    assert_eq!(err(b"backend_jwt: { alg: HS256, secret_env: AUTHN_TEST_UNSET_VAR }\napis: []\n").path, "backend_jwt.secret_env");
    assert_eq!(err(b"backend_jwt: { alg: ES256, secret_env: X }\napis: []\n").path, "backend_jwt.alg");
    assert_eq!(err(b"backend_jwt: { alg: RS256 }\napis: []\n").path, "backend_jwt.alg");
    assert_eq!(err(b"backend_jwt: { secret_env: X, pem_file: y }\napis: []\n").path, "backend_jwt");
    let es = format!("backend_jwt: {{ alg: RS256, pem_file: \"{}\" }}\napis: []\n", shared_key("jwt_es256_priv.pem"));
    let e = err(es.as_bytes());
    assert_eq!(e.path, "backend_jwt.pem_file");
    assert!(e.message.contains("EC P-256 key cannot sign RS256"), "{e}");
}

#[test]
fn a_configured_backend_key_takes_its_algorithm_from_the_pem_and_publishes_its_public_half() {
    for (file, alg, kty) in
        [("jwt_rs256_priv.pem", "RS256", "RSA"), ("jwt_es256_priv.pem", "ES256", "EC"), ("jwt_eddsa_priv.pem", "EdDSA", "OKP")]
    {
        let doc = format!("backend_jwt: {{ pem_file: \"{}\" }}\napis: []\n", shared_key(file));
        let s = crate::compile(&parse(doc.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap();
        let jwks = s.backend_jwt.as_ref().unwrap().jwks();
        assert_eq!((jwks["keys"][0]["alg"].as_str(), jwks["keys"][0]["kty"].as_str()), (Some(alg), Some(kty)), "{file}");
        assert!(s.warnings.is_empty());
    }
}

fn shared_key(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/keys").join(name).display().to_string()
}

#[test]
fn static_keys_without_alg_verify_what_their_type_and_the_allow_list_permit() {
    std::env::set_var("AUTHN_TEST_SECRET_6", std::str::from_utf8(SECRET).unwrap());
    // The issue's own example: an HS256 key beside `algorithms: [RS256, ES256]`, and a PEM
    // key with no `alg`.
    let doc = format!(
        "key_managers: [{{ type: jwt, name: idp, issuer: \"{ISS}\", algorithms: [RS256, ES256], keys: [\n  {{ kid: hs-1, alg: HS256, secret_env: AUTHN_TEST_SECRET_6 }},\n  {{ kid: rsa-old, pem_file: \"{}\" }},\n  {{ kid: ec, pem_file: \"{}\" }},\n  {{ kid: ed, pem_file: \"{}\" }}] }}]\napis: []\n",
        shared_key("jwt_rs256_pub.pem"),
        shared_key("jwt_es256_pub.pem"),
        shared_key("jwt_eddsa_pub.pem"),
    );
    let s = crate::compile(&parse(doc.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap();
    let paths: Vec<&str> = s.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["key_managers[0].keys[0]", "key_managers[0].keys[3]"], "{:?}", s.warnings);
    assert!(s.warnings[0].message.contains("an HMAC secret for HS256, which `algorithms` does not allow"), "{}", s.warnings[0]);
    assert_eq!(s.warnings[0].hint.as_deref(), Some("add HS256 to algorithms to accept them, or remove the key"));
    assert!(s.warnings[1].message.starts_with("an Ed25519 key for EdDSA"), "{}", s.warnings[1]);
    let v = &s.key_managers[0].verifier;
    // The RSA key serves RS256 (in the allow list) but not PS256 (not in it); the EC key ES256.
    let rsa_priv = std::fs::read(shared_key("jwt_rs256_priv.pem")).unwrap();
    let ec_priv = std::fs::read(shared_key("jwt_es256_priv.pem")).unwrap();
    let sign_with = |alg, kid: &str, pem: &[u8]| {
        let key = if alg == Algorithm::ES256 { EncodingKey::from_ec_pem(pem) } else { EncodingKey::from_rsa_pem(pem) }.unwrap();
        let h = jsonwebtoken::Header { kid: Some(kid.into()), ..jsonwebtoken::Header::new(alg) };
        jsonwebtoken::encode(&h, &claims(), &key).unwrap()
    };
    assert!(v.verify(&sign_with(Algorithm::RS256, "rsa-old", &rsa_priv), NOW).is_ok());
    assert!(v.verify(&sign_with(Algorithm::ES256, "ec", &ec_priv), NOW).is_ok());
    assert!(v.verify(&sign_with(Algorithm::PS256, "rsa-old", &rsa_priv), NOW).is_err());
    // HS256 is refused even with the configured secret: the allow list decides.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header { kid: Some("hs-1".into()), ..jsonwebtoken::Header::new(Algorithm::HS256) },
        &claims(),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert!(v.verify(&hs, NOW).is_err());
}

#[test]
fn a_pinned_alg_must_fit_the_key() {
    let doc = format!(
        "key_managers: [{{ type: jwt, name: idp, issuer: \"{ISS}\", algorithms: [ES256, RS256], keys: [{{ alg: RS256, pem_file: \"{}\" }}] }}]\napis: []\n",
        shared_key("jwt_es256_pub.pem")
    );
    let errs = crate::compile(&parse(doc.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap_err();
    assert_eq!(errs[0].path, "key_managers[0].keys[0].alg");
    assert_eq!(errs[0].message, "RS256 cannot be used with an EC P-256 key");
}

#[test]
fn a_key_never_spans_families() {
    assert!(VerifyKey::new(None, vec![Algorithm::HS256, Algorithm::RS256], DecodingKey::from_secret(SECRET)).is_none());
    assert!(VerifyKey::new(None, vec![], DecodingKey::from_secret(SECRET)).is_none());
    assert!(VerifyKey::new(None, vec![Algorithm::RS256, Algorithm::PS256], DecodingKey::from_secret(SECRET)).is_some());
}

#[test]
fn every_listed_algorithm_verifies() {
    use ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING;
    let rng = SystemRandom::new();
    let p384 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let p384_pub = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, p384.as_ref(), &rng).unwrap().public_key().as_ref().to_vec();
    let keys_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/keys");
    let rsa_private = std::fs::read(keys_dir.join("jwt_rs256_priv.pem")).expect("the shared bench RSA key beside the checkout");
    let rsa_public = std::fs::read(keys_dir.join("jwt_rs256_pub.pem")).unwrap();
    let cases: Vec<(Algorithm, EncodingKey, DecodingKey)> = vec![
        (Algorithm::ES384, EncodingKey::from_ec_der(p384.as_ref()), DecodingKey::from_ec_der(&p384_pub)),
        (Algorithm::HS384, EncodingKey::from_secret(SECRET), DecodingKey::from_secret(SECRET)),
        (Algorithm::HS512, EncodingKey::from_secret(SECRET), DecodingKey::from_secret(SECRET)),
    ]
    .into_iter()
    .chain(
        [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512]
            .into_iter()
            .map(|a| (a, EncodingKey::from_rsa_pem(&rsa_private).unwrap(), DecodingKey::from_rsa_pem(&rsa_public).unwrap())),
    )
    .collect();
    for (alg, enc, dec) in cases {
        let v = JwtVerifier::new(
            ISS.into(),
            vec![],
            vec![alg],
            vec![VerifyKey::new(None, vec![alg], dec).unwrap()],
            30,
            8192,
            "azp".into(),
            "sub".into(),
            "scope".into(),
        );
        let t = encode(&Header::new(alg), &claims(), &enc).unwrap();
        assert!(v.verify(&t, NOW).is_ok(), "{alg:?}");
        // One bit of the signature flipped: refused.
        let flipped = format!("{}A", &t[..t.len() - 1]);
        let flipped = if flipped == t { format!("{}B", &t[..t.len() - 1]) } else { flipped };
        assert_eq!(v.verify(&flipped, NOW), Err(JwtError::BadSignature), "{alg:?}");
    }
}

#[test]
fn the_header_size_is_bounded_separately() {
    let k = keys();
    let v = verifier(&k).with_max_header(128);
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec1".into());
    let small = encode(&h, &claims(), &EncodingKey::from_ec_der(&k.ec_private)).unwrap();
    assert!(v.verify(&small, NOW).is_ok());
    h.kid = Some(format!("ec1{}", "x".repeat(200)));
    let big = encode(&h, &claims(), &EncodingKey::from_ec_der(&k.ec_private)).unwrap();
    assert_eq!(v.verify(&big, NOW), Err(JwtError::TooLarge));
}
