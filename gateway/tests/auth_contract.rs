//! The authentication issue's public example, `conf/examples/orders-auth.yaml`, run as
//! written except for ports and the static key's path: two `loadtest idp` processes (one
//! signing ES256 JWTs behind the JWKS URI, one issuing opaque tokens behind the introspection
//! endpoint), two echo upstreams, and every kind of credential the example accepts or refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde_json::{json, Value};

const HS_SECRET: &str = "an-hmac-secret-that-is-longer-than-32-bytes";
const ORIGIN: &str = "https://app.example";

fn shared_key(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/keys").join(name)
}

/// A token signed here, with a key the config knows as a static key.
fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, sub: &str, scope: &str) -> String {
    let claims = json!({
        "iss": "https://idp.example/", "aud": "orders", "azp": "mobile-client", "sub": sub,
        "scope": scope, "exp": unix_now() + 600, "iat": unix_now(),
    });
    mint(alg, kid, key, &claims)
}

async fn problem(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    (status, challenge, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_issue_example_config_works_end_to_end() {
    let mobile = "mobile-client:mobile-secret:Gold:order:write";
    let jwt_idp = Idp::start(&["--issuer", "https://idp.example/", "--audience", "orders", "--client", mobile]);
    let opaque_idp = Idp::start(&[
        "--opaque",
        "--issuer",
        "https://idp.example/",
        "--audience",
        "orders",
        "--client",
        mobile,
        "--client",
        "gateway:introspection-secret",
    ]);
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = std::fs::read_to_string(root.join("conf/examples/orders-auth.yaml")).unwrap();
    let config = example
        .replace("127.0.0.1:8080", "127.0.0.1:{port}")
        .replace("127.0.0.1:9900", "127.0.0.1:{admin}")
        .replace("http://127.0.0.1:9100/.well-known/jwks.json", &format!("http://{}/.well-known/jwks.json", jwt_idp.addr))
        .replace("http://127.0.0.1:9100/introspect", &format!("http://{}/introspect", opaque_idp.addr))
        .replace("http://127.0.0.1:9000", &a.url())
        .replace("http://127.0.0.1:9001", &b.url())
        .replace("conf/keys/idp-old.pub.pem", &shared_key("jwt_rs256_pub.pem").display().to_string());
    for gone in ["8080", "9900", "9100", "9000", "9001", "conf/keys"] {
        assert!(!config.lines().filter(|l| !l.trim_start().starts_with('#')).any(|l| l.contains(gone)), "{gone} left in the config");
    }
    let gw = TestGateway::start_with(
        &config,
        &[
            ("IDP_HS_SECRET", HS_SECRET),
            ("INTROSPECTION_SECRET", "introspection-secret"),
            ("GATEWAY_ADMIN_TOKEN", "an-admin-token-for-this-test-only"),
        ],
        "gateway.yaml",
    );
    let c = client();
    let get = |path: &str| c.get(gw.url(path)).header("origin", ORIGIN);

    // Accepted, with the two warnings the example earns: the inert HS256 key, and the
    // generated backend-JWT key.
    let log = gw.log();
    assert!(
        log.contains("config warning")
            && log.contains("key_managers[0].keys[0]")
            && log.contains("HS256, which `algorithms` does not allow"),
        "{log}"
    );
    assert!(log.contains("path=backend_jwt"), "{log}");
    let status: Value =
        c.get(gw.admin_url("/v1/status")).bearer_auth("an-admin-token-for-this-test-only").send().await.unwrap().json().await.unwrap();
    let warned: Vec<&str> = status["warnings"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap()).collect();
    assert_eq!(warned, ["key_managers[0].keys[0]", "backend_jwt"]);

    // The backend JWT's key, public and unauthenticated on the admin listener.
    let r = c.get(gw.admin_url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "max-age=300");
    let jwks: jsonwebtoken::jwk::JwkSet = r.json().await.unwrap();
    assert_eq!(jwks.keys.len(), 1);
    let backend_key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let backend_claims = |echo: &Echo| -> Value {
        let token = &echo.headers["x-jwt-assertion"];
        assert_eq!(jsonwebtoken::decode_header(token).unwrap().kid, jwks.keys[0].common.key_id);
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&["gateway"]);
        jsonwebtoken::decode::<Value>(token, &backend_key, &v).unwrap().claims
    };

    // /menu is `auth: none`: no credential needed.
    let r = c.get(gw.url("/orders/v1/menu")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Echo = r.json().await.unwrap();
    assert_eq!(echo.path, "/menu");
    assert!(!echo.headers.contains_key("x-jwt-assertion"), "no caller, no assertion");

    // An ES256 token from the JWKS issuer: the application token of `mobile`.
    let token = jwt_idp.issue_token("mobile-client", "mobile-secret").await;
    let r = get("/orders/v1/order/7").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Echo = r.json().await.unwrap();
    assert_eq!(echo.path, "/order/7");
    assert!(!echo.headers.contains_key("authorization"), "the credential is stripped");
    let claims = backend_claims(&echo);
    assert_eq!(
        (claims["application"].as_str(), claims["tier"].as_str(), claims["scope"].as_str(), claims["api"].as_str(), claims.get("sub")),
        (Some("mobile"), Some("Gold"), Some("order:write"), Some("orders"), None),
        "{claims}"
    );
    // The same token without an allowed Origin: the application's allowed_domains refuse it.
    let (s, _, body) = problem(c.get(gw.url("/orders/v1/order/7")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("auth.domain_not_allowed")));
    let evil = c.get(gw.url("/orders/v1/order/7")).header("origin", "https://evil.example").bearer_auth(&token);
    let (s, _, body) = problem(evil.send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("auth.domain_not_allowed")));
    // An application token on an `application_user` resource.
    let (s, _, body) = problem(get("/orders/v1/admin/users").bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("auth.wrong_credential_type")));

    // The static RSA key has no `alg`: it verifies RS256 (allowed), not PS256 (not listed).
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(shared_key("jwt_rs256_priv.pem")).unwrap()).unwrap();
    let user_token = sign(Algorithm::RS256, "rsa-old", &rsa, "alice", "admin order:write");
    let r = get("/orders/v1/admin/users").bearer_auth(&user_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let claims = backend_claims(&r.json().await.unwrap());
    assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("alice"), Some("admin order:write")));
    let (s, challenge, body) = problem(
        get("/orders/v1/order/7").bearer_auth(sign(Algorithm::PS256, "rsa-old", &rsa, "alice", "order:write")).send().await.unwrap(),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (401, Some("auth.invalid_token")));
    assert!(challenge.unwrap().starts_with("Bearer realm=\"orders\", error=\"invalid_token\""));
    // A user token without the `admin` scope.
    let (s, challenge, body) = problem(
        get("/orders/v1/admin/users").bearer_auth(sign(Algorithm::RS256, "rsa-old", &rsa, "alice", "order:write")).send().await.unwrap(),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (403, Some("auth.insufficient_scope")));
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""));

    // The HS256 key is outside `algorithms`: a token signed with its secret is refused.
    let hs = sign(Algorithm::HS256, "hs-1", &EncodingKey::from_secret(HS_SECRET.as_bytes()), "alice", "order:write");
    let (s, _, body) = problem(get("/orders/v1/order/7").bearer_auth(hs).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (401, Some("auth.invalid_token")));

    // An opaque token goes to the introspection endpoint once, then the cache answers.
    let opaque = opaque_idp.issue_token("mobile-client", "mobile-secret").await;
    for _ in 0..3 {
        let r = get("/orders/v1/order/7").bearer_auth(&opaque).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", gw.log());
        let claims = backend_claims(&r.json().await.unwrap());
        assert_eq!((claims["application"].as_str(), claims["tier"].as_str()), (Some("mobile"), Some("Gold")));
    }
    assert_eq!(opaque_idp.stats().await["introspections"], 1);
    let (s, _, body) = problem(get("/orders/v1/order/7").bearer_auth("never-issued-opaque-token").send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (401, Some("auth.invalid_token")));

    // The API key `test` (stored as its SHA-256) names `mobile`; it carries no scopes.
    let r = get("/orders/v1/order/7").header("apikey", "test").send().await.unwrap();
    let (s, _, body) = problem(r).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("auth.insufficient_scope")));
    let (s, _, body) = problem(get("/orders/v1/order/7").header("apikey", "tesT").send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (401, Some("auth.invalid_api_key")));
    // No credential at all.
    let (s, challenge, body) = problem(get("/orders/v1/order/7").send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str(), challenge.as_deref()), (401, Some("auth.credentials_missing"), Some("Bearer realm=\"orders\"")));

    // A CORS preflight needs no credential.
    let r = c
        .request(reqwest::Method::OPTIONS, gw.url("/orders/v1/order/7"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::Relaxed) + b.hits.load(std::sync::atomic::Ordering::Relaxed), 6);
}
