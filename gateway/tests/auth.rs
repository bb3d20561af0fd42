//! Authentication and authorization through the real gateway: JWTs (tokens minted here with
//! jsonwebtoken, and tokens minted independently by Python's `cryptography` for the shared
//! bench in ../shared/bench/keys), API keys, subscriptions, scopes, credential stripping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use std::path::PathBuf;

const ISS: &str = "https://idp.example/";
const HS_SECRET: &str = "gateway-test-hs256-secret-of-32-bytes-or-more";

fn bench_keys() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/keys");
    assert!(dir.join("token_rs256.txt").exists(), "the shared bench keys are expected beside the checkout at {}", dir.display());
    dir
}

fn now() -> u64 {
    unix_now()
}

fn token(claims: serde_json::Value) -> String {
    mint(Algorithm::HS256, "hs1", &EncodingKey::from_secret(HS_SECRET.as_bytes()), &claims)
}

fn claims() -> serde_json::Value {
    json!({ "iss": ISS, "aud": "orders", "exp": now() + 600, "azp": "mobile-client", "sub": "alice", "scope": "order:write" })
}

fn config(up: &TestUpstream) -> String {
    let k = bench_keys();
    format!(
        r#"access_log: {{ enabled: true, path: stdout }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
key_managers:
  - type: jwt
    name: idp
    issuer: "{ISS}"
    audiences: [orders]
    algorithms: [HS256]
    keys: [{{ kid: hs1, alg: HS256, secret_env: TEST_IDP_SECRET }}]
  - type: jwt
    name: bench
    issuer: https://idp.bench.local
    audiences: [bench-api]
    algorithms: [RS256, ES256, EdDSA, HS256]
    keys:
      - {{ kid: k1, alg: RS256, pem_file: "{k}/jwt_rs256_pub.pem" }}
      - {{ kid: k1, alg: ES256, pem_file: "{k}/jwt_es256_pub.pem" }}
      - {{ kid: k1, alg: EdDSA, pem_file: "{k}/jwt_eddsa_pub.pem" }}
      - {{ kid: k1, alg: HS256, secret_file: "{k}/hs256.secret" }}
    claims: {{ application: sub }}
applications:
  - {{ id: mobile, client_ids: [mobile-client], subscriptions: [{{ api: orders, tier: Gold }}] }}
  - {{ id: partner, api_keys: [{{ sha256: "45f05d20999bb4742e828f14f49dce6501ef026ea1e6ef8451786c14d444201b" }}], subscriptions: [{{ api: orders, tier: Silver }}] }}
  - {{ id: bench-user, client_ids: [user-42], subscriptions: [{{ api: bench, tier: Gold }}] }}
apis:
  - name: orders
    context: /orders
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    cors: {{ allow_origins: ["https://app.example"], allow_methods: [GET, PUT], allow_headers: [authorization] }}
    auth: {{ key_managers: [idp], api_keys: {{ header: apikey, query: api_key }}, require_subscription: true }}
    resources:
      - {{ path: /menu, methods: [GET], auth: none }}
      - {{ path: "/order/{{id}}", methods: [GET, PUT], scopes: [order:write] }}
      - {{ path: /catalog, methods: [GET], auth: application }}
  - name: bench
    context: /bench
    version: v1
    endpoint: {{ targets: [{{ url: "{up}" }}] }}
    auth: {{ key_managers: [bench], require_subscription: true, forward_credentials: true }}
    resources: [{{ path: "/*", methods: [GET], scopes: [read] }}]
"#,
        k = k.display(),
        up = up.url()
    )
}

fn start(up: &TestUpstream) -> TestGateway {
    TestGateway::start_with(&config(up), &[("TEST_IDP_SECRET", HS_SECRET)], "gateway.yaml")
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_verified_and_stripped() {
    let up = TestUpstream::start("a").await;
    let gw = start(&up);
    let c = client();

    let r = c.get(gw.url("/orders/v1/order/1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"orders\"");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "auth.credentials_missing");

    let r = c.get(gw.url("/orders/v1/order/1")).bearer_auth(token(claims())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let e: Echo = r.json().await.unwrap();
    assert!(!e.headers.contains_key("authorization"), "credentials are not forwarded: {:?}", e.headers);

    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    let r = c.get(gw.url("/orders/v1/order/1")).bearer_auth(token(expired)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"orders\", error=\"invalid_token\", error_description=\"the token has expired\""
    );
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "auth.invalid_token");

    let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims().to_string().as_bytes()));
    assert_eq!(c.get(gw.url("/orders/v1/order/1")).bearer_auth(none).send().await.unwrap().status(), 401);

    let mut no_scope = claims();
    no_scope["scope"] = json!("order:read");
    let r = c.get(gw.url("/orders/v1/order/1")).bearer_auth(token(no_scope)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"orders\", error=\"insufficient_scope\", scope=\"order:write\"");

    let mut stranger = claims();
    stranger["azp"] = json!("unknown-client");
    let r = c.get(gw.url("/orders/v1/order/1")).bearer_auth(token(stranger)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "auth.not_subscribed");

    // auth: none needs nothing; a preflight never needs a credential.
    assert_eq!(c.get(gw.url("/orders/v1/menu")).send().await.unwrap().status(), 200);
    let r = c
        .request(reqwest::Method::OPTIONS, gw.url("/orders/v1/order/1"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // The access log names the application and never the token.
    wait_for("access log", std::time::Duration::from_secs(5), || gw.access_log().contains("auth.not_subscribed"));
    assert!(!gw.access_log().contains("eyJ"), "no token in the access log");
    let lines: Vec<serde_json::Value> = gw.access_log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let app_of = |problem: &str| lines.iter().find(|l| l["problem"] == problem).map(|l| l["application"].clone());
    assert!(lines.iter().any(|l| l["status"] == 200 && l["application"] == "mobile"));
    // A refused credential of a known application names it; an unknown client has none.
    assert_eq!(app_of("auth.insufficient_scope"), Some(json!("mobile")));
    assert_eq!(app_of("auth.not_subscribed"), Some(serde_json::Value::Null));
    assert_eq!(app_of("auth.credentials_missing").or(app_of("auth.invalid_token")), Some(serde_json::Value::Null));
}

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test(flavor = "multi_thread")]
async fn independently_minted_tokens_of_every_family_verify() {
    let up = TestUpstream::start("a").await;
    let gw = start(&up);
    let c = client();
    for alg in ["rs256", "es256", "eddsa", "hs256"] {
        let t = std::fs::read_to_string(bench_keys().join(format!("token_{alg}.txt"))).unwrap();
        let r = c.get(gw.url("/bench/v1/x")).bearer_auth(t.trim()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{alg}");
        let e: Echo = r.json().await.unwrap();
        assert_eq!(e.headers["authorization"], format!("Bearer {}", t.trim()), "forward_credentials keeps it");
    }
    // The classic confusion: HS256 "signed" with the RSA public key (as PEM text), kid of
    // the RSA key. The key manager allows HS256 too, but only with its own secret.
    let public_pem = std::fs::read(bench_keys().join("jwt_rs256_pub.pem")).unwrap();
    let claims = json!({ "iss": "https://idp.bench.local", "aud": "bench-api", "sub": "user-42", "scope": "read", "exp": now() + 600 });
    let forged = mint(Algorithm::HS256, "k1", &EncodingKey::from_secret(&public_pem), &claims);
    let r = c.get(gw.url("/bench/v1/x")).bearer_auth(forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"bench\", error=\"invalid_token\", error_description=\"the token's signature is invalid\""
    );
    // A token for the bench issuer is refused on an API that does not trust that issuer.
    let t = std::fs::read_to_string(bench_keys().join("token_rs256.txt")).unwrap();
    let r = c.get(gw.url("/orders/v1/order/1")).bearer_auth(t.trim()).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_from_header_and_query_are_checked_and_stripped() {
    let up = TestUpstream::start("a").await;
    let gw = start(&up);
    let c = client();
    // The configured digest is the SHA-256 of "partner-key-123".
    let r = c.get(gw.url("/orders/v1/catalog")).header("apikey", "partner-key-123").send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", gw.log());
    let e: Echo = r.json().await.unwrap();
    assert!(!e.headers.contains_key("apikey"));
    let r = c.get(gw.url("/orders/v1/catalog?x=1&api_key=partner-key-123&y=2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Echo>().await.unwrap().path, "/catalog?x=1&y=2");
    let r = c.get(gw.url("/orders/v1/catalog")).header("apikey", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "auth.invalid_api_key");
    // An API key is an application credential: fine for `application`, never carries scopes.
    let r = c.get(gw.url("/orders/v1/order/1")).header("apikey", "partner-key-123").send().await.unwrap();
    assert_eq!(r.status(), 403);
}

/// A JWKS endpoint whose document the test can change, counting fetches.
struct JwksServer {
    port: u16,
    doc: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks_server(doc: String) -> JwksServer {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let doc = std::sync::Arc::new(std::sync::Mutex::new(doc));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (d, h) = (doc.clone(), hits.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (d, h) = (d.clone(), h.clone());
            tokio::spawn(async move {
                // Every path serves the same document: a discovery test puts an object with
                // `issuer`, `jwks_uri` and `keys` in it, which serves as both.
                let svc = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = d.lock().unwrap().clone();
                    async move {
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/jwk-set+json")
                                .header("cache-control", "max-age=3600")
                                .body(Full::new(bytes::Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
            });
        }
    });
    JwksServer { port, doc, hits, task }
}

struct EcKey {
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
}

fn ec_key(kid: &str) -> EcKey {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk =
        json!({ "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..65]) });
    EcKey { pkcs8: pkcs8.as_ref().to_vec(), jwk }
}

fn es_token(key: &EcKey, kid: &str, sub: &str) -> String {
    let claims = json!({ "iss": "https://remote.example/", "exp": now() + 600, "sub": sub, "azp": "remote-client" });
    mint(Algorithm::ES256, kid, &EncodingKey::from_ec_der(&key.pkcs8), &claims)
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_jwks_rotation_refetch_limits_and_idp_outage() {
    let (a, b) = (ec_key("a"), ec_key("b"));
    let server = jwks_server(json!({ "keys": [a.jwk] }).to_string()).await;
    let up = TestUpstream::start("a").await;
    let cfg = format!(
        r#"access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
key_managers:
  - {{ type: jwt, name: remote, issuer: "https://remote.example/", algorithms: [ES256], jwks_uri: "http://127.0.0.1:{}/jwks.json", jwks_refresh: 1h, jwks_refetch_cooldown: 300ms }}
apis:
  - name: svc
    context: /svc
    version: v1
    endpoint: {{ targets: [{{ url: "{}" }}] }}
    auth: {{ key_managers: [remote] }}
    resources: [{{ path: "/*", methods: [GET] }}]
"#,
        server.port,
        up.url()
    );
    let gw = TestGateway::start(&cfg);
    let c = client();
    let status = |t: String| {
        let c = c.clone();
        let url = gw.url("/svc/v1/x");
        async move { c.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }
    };
    // Fetched before serving: the first request already verifies.
    assert_eq!(status(es_token(&a, "a", "u1")).await, 200);
    assert_eq!(server.hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The IdP rotates to key b. The first b token fails and asks for a refetch; soon b works.
    *server.doc.lock().unwrap() = json!({ "keys": [b.jwk] }).to_string();
    assert_eq!(status(es_token(&b, "b", "u2")).await, 401);
    let mut n = 0;
    wait_for_async("rotated key", std::time::Duration::from_secs(5), async || {
        n += 1;
        status(es_token(&b, "b", &format!("u-{n}"))).await == 200
    })
    .await;

    // Unknown kids cannot amplify into IdP traffic: one refetch per cooldown at most.
    let before = server.hits.load(std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    for i in 0..40 {
        assert_eq!(status(es_token(&b, &format!("random-{i}"), "x")).await, 401);
    }
    let elapsed_ms = started.elapsed().as_millis() as usize;
    let fetched = server.hits.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(fetched <= elapsed_ms / 300 + 2, "{fetched} fetches in {elapsed_ms} ms");

    // The IdP goes down: the last good keys keep serving, and the failure is counted.
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(status(es_token(&b, "unknown-kid", "y")).await, 401);
    wait_for_async("failed refresh counted", std::time::Duration::from_secs(10), async || {
        let m = client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        m.contains("gateway_jwks_refreshes_total{key_manager=\"remote\",result=\"error\"}")
    })
    .await;
    assert_eq!(status(es_token(&b, "b", "after-outage")).await, 200, "an uncached token still verifies with the kept keys");
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_discovery_checks_the_issuer_and_finds_the_jwks() {
    let a = ec_key("a");
    let server = jwks_server(String::new()).await;
    // One document serves as both the discovery document and the JWK Set.
    *server.doc.lock().unwrap() = json!({
        "issuer": "https://remote.example/",
        "jwks_uri": format!("http://127.0.0.1:{}/jwks.json", server.port),
        "keys": [a.jwk],
    })
    .to_string();
    let up = TestUpstream::start("a").await;
    let cfg = |issuer: &str| {
        format!(
            r#"access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
key_managers:
  - {{ type: jwt, name: oidc, issuer: "{issuer}", algorithms: [ES256], discovery: "http://127.0.0.1:{}/.well-known/openid-configuration" }}
apis:
  - {{ name: svc, context: /svc, version: v1, endpoint: {{ targets: [{{ url: "{}" }}] }}, auth: {{ key_managers: [oidc] }}, resources: [{{ path: "/*", methods: [GET] }}] }}
"#,
            server.port,
            up.url()
        )
    };
    let gw = TestGateway::start(&cfg("https://remote.example/"));
    let c = client();
    let r = c.get(gw.url("/svc/v1/x")).bearer_auth(es_token(&a, "a", "u")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.hits.load(std::sync::atomic::Ordering::SeqCst), 2, "discovery, then the JWKS");
    drop(gw);

    // A discovery document naming another issuer is refused: no keys, counted as an error.
    let gw = TestGateway::start(&cfg("https://other.example/"));
    let m = client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("gateway_jwks_refreshes_total{key_manager=\"oidc\",result=\"error\"} 1"), "{m}");
    assert!(gw.log().contains("discovery issuer `https://remote.example/` is not the configured `https://other.example/`"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_jwt_names_the_caller_and_cannot_be_spoofed() {
    let up = TestUpstream::start("a").await;
    let cfg = config(&up)
        .replace("applications:", "backend_jwt: { alg: HS256, secret_env: TEST_BACKEND_SECRET, ttl: 2m }\napplications:")
        .replace(
            "require_subscription: true }\n    resources:\n      - { path: /menu",
            "require_subscription: true, backend_jwt: true }\n    resources:\n      - { path: /menu",
        );
    assert!(cfg.contains("backend_jwt: true"), "{cfg}");
    let backend_secret = "backend-signing-secret-of-at-least-32-bytes";
    let gw = TestGateway::start_with(&cfg, &[("TEST_IDP_SECRET", HS_SECRET), ("TEST_BACKEND_SECRET", backend_secret)], "gateway.yaml");
    let c = client();
    let r = c
        .get(gw.url("/orders/v1/order/1"))
        .bearer_auth(token(claims()))
        .header("x-jwt-assertion", "forged-by-client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: Echo = r.json().await.unwrap();
    let assertion = &e.headers["x-jwt-assertion"];
    assert_ne!(assertion, "forged-by-client");
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_issuer(&["gateway"]);
    let got = jsonwebtoken::decode::<serde_json::Value>(assertion, &jsonwebtoken::DecodingKey::from_secret(backend_secret.as_bytes()), &v)
        .unwrap()
        .claims;
    assert_eq!(got["application"], "mobile");
    assert_eq!(got["sub"], "alice");
    assert_eq!(got["tier"], "Gold");
    assert_eq!(got["scope"], "order:write");
    assert_eq!(got["api"], "orders");
    // The same caller gets the same assertion (minted once, reused).
    let again: Echo = c.get(gw.url("/orders/v1/order/2")).bearer_auth(token(claims())).send().await.unwrap().json().await.unwrap();
    assert_eq!(&again.headers["x-jwt-assertion"], assertion);
    // An open resource forwards no identity, and the client's forged header is still removed.
    let open: Echo = c.get(gw.url("/orders/v1/menu")).header("x-jwt-assertion", "forged").send().await.unwrap().json().await.unwrap();
    assert!(!open.headers.contains_key("x-jwt-assertion"), "{:?}", open.headers);
}

/// An RFC 7662 introspection endpoint: checks the gateway's Basic credentials, answers by
/// token, counts calls per token. `slow` never answers in time; `shared` answers after 300 ms.
async fn introspection_idp() -> (u16, std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = counted.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let calls = calls.clone();
                    async move {
                        let authorized = req.headers().get("authorization").and_then(|v| v.to_str().ok())
                            == Some(&format!("Basic {}", base64_std("gateway:intro-secret")));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let form = String::from_utf8_lossy(&body).to_string();
                        let token = form.split('&').find_map(|p| p.strip_prefix("token=")).unwrap_or("").to_string();
                        *calls.lock().unwrap().entry(token.clone()).or_insert(0) += 1;
                        let (status, json) = if !authorized {
                            (401, json!({ "error": "invalid_client" }))
                        } else {
                            match token.as_str() {
                                "slow" => {
                                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                                    (200, json!({ "active": true }))
                                }
                                "shared" => {
                                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                                    (
                                        200,
                                        json!({ "active": true, "client_id": "mobile-client", "sub": "bob", "scope": "order:write", "exp": now() + 600 }),
                                    )
                                }
                                "good" => (
                                    200,
                                    json!({ "active": true, "client_id": "mobile-client", "sub": "alice", "scope": "order:write", "exp": now() + 600 }),
                                ),
                                "no-scope" => (
                                    200,
                                    json!({ "active": true, "client_id": "mobile-client", "scope": "order:read", "exp": now() + 600 }),
                                ),
                                _ => (200, json!({ "active": false })),
                            }
                        };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(bytes::Bytes::from(json.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
            });
        }
    });
    (port, calls)
}

fn base64_std(v: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v)
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_are_introspected_cached_and_single_flighted() {
    let (idp, calls) = introspection_idp().await;
    let up = TestUpstream::start("a").await;
    let cfg = |secret_var: &str| {
        format!(
            r#"access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{{port}}" }}]
admin: {{ address: "127.0.0.1:{{admin}}" }}
key_managers:
  - {{ type: introspection, name: legacy, endpoint: "http://127.0.0.1:{idp}/introspect", client_id: gateway, client_secret_env: {secret_var}, timeout: 500ms, negative_cache_ttl: 1m }}
applications:
  - {{ id: mobile, client_ids: [mobile-client], subscriptions: [{{ api: legacy, tier: Gold }}] }}
apis:
  - {{ name: legacy, context: /legacy, version: v1, endpoint: {{ targets: [{{ url: "{}" }}] }}, auth: {{ key_managers: [legacy], require_subscription: true }}, resources: [{{ path: "/*", methods: [GET], scopes: [order:write] }}] }}
"#,
            up.url()
        )
    };
    let gw = TestGateway::start_with(&cfg("TEST_INTRO_SECRET"), &[("TEST_INTRO_SECRET", "intro-secret")], "gateway.yaml");
    let c = client();
    let get = |t: &'static str| {
        let (c, url) = (c.clone(), gw.url("/legacy/v1/x"));
        async move { c.get(url).bearer_auth(t).send().await.unwrap() }
    };
    let count = |t: &str| *calls.lock().unwrap().get(t).unwrap_or(&0);

    assert_eq!(get("good").await.status(), 200);
    assert_eq!(get("good").await.status(), 200);
    assert_eq!(count("good"), 1, "the positive cache answers the second time");

    let r = get("revoked").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"legacy\", error=\"invalid_token\", error_description=\"the token is not active\""
    );
    assert_eq!(get("revoked").await.status(), 401);
    assert_eq!(count("revoked"), 1, "the negative cache answers the second time");

    assert_eq!(get("no-scope").await.status(), 403);

    let started = std::time::Instant::now();
    let r = get("slow").await;
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "bounded by the 500ms timeout");
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], "auth.introspection_unavailable");

    // Ten concurrent requests with one uncached token make exactly one call.
    let all = futures_util::future::join_all((0..10).map(|_| get("shared"))).await;
    assert!(all.iter().all(|r| r.status() == 200));
    assert_eq!(count("shared"), 1, "single flight");
    drop(gw);

    // Wrong client credentials at the IdP: not a verdict on the token, a 503.
    let gw = TestGateway::start_with(&cfg("TEST_INTRO_SECRET"), &[("TEST_INTRO_SECRET", "wrong-secret")], "gateway.yaml");
    let r = c.get(gw.url("/legacy/v1/x")).bearer_auth("good").send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_uri_added_by_a_reload_is_fetched_before_it_serves() {
    let a = ec_key("a");
    let server = jwks_server(json!({ "keys": [a.jwk] }).to_string()).await;
    let up = TestUpstream::start("a").await;
    let gw = TestGateway::start("access_log: { enabled: false }\nlisteners: [{ address: \"127.0.0.1:{port}\" }]\nadmin: { address: \"127.0.0.1:{admin}\" }\napis: []\n");
    let cfg = format!(
        r#"access_log: {{ enabled: false }}
listeners: [{{ address: "127.0.0.1:{}" }}]
admin: {{ address: "127.0.0.1:{}" }}
key_managers:
  - {{ type: jwt, name: remote, issuer: "https://remote.example/", algorithms: [ES256], jwks_uri: "http://127.0.0.1:{}/jwks.json" }}
apis:
  - {{ name: svc, context: /svc, version: v1, endpoint: {{ targets: [{{ url: "{}" }}] }}, auth: {{ key_managers: [remote] }}, resources: [{{ path: "/*", methods: [GET] }}] }}
"#,
        gw.port,
        gw.admin_port,
        server.port,
        up.url()
    );
    let c = client();
    let r = c.put(gw.admin_url("/v1/config")).header("content-type", "application/yaml").body(cfg).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The very first request after the reload already verifies.
    let r = c.get(gw.url("/svc/v1/x")).bearer_auth(es_token(&a, "a", "u")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
