//! `loadtest idp`: a test identity provider for gateway tests and benchmarks.
//!
//! Just enough of OAuth 2.0 / OpenID Connect for a gateway's key managers to be exercised on
//! one machine, with no external service:
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | OIDC discovery: issuer, `jwks_uri`, token and introspection endpoints |
//! | `GET /.well-known/jwks.json` (also `/jwks`) | the public signing keys (RFC 7517); HMAC keys are never published |
//! | `POST /token` | client credentials grant (RFC 6749 section 4.4), client authentication by Basic or form |
//! | `POST /introspect` | token introspection (RFC 7662), client authentication required |
//! | `GET /stats` | counters (tokens issued, introspections, JWKS fetches): lets a test check that a gateway caches |
//! | `GET /health` | `200 ok` |
//!
//! Keys come from a directory of PEM files (such as `../shared/bench/keys`) or are generated
//! at start-up (ES256 and EdDSA; ring cannot generate RSA keys). Tokens are JWTs signed with
//! `jsonwebtoken`, or opaque random strings (`--opaque`) that only introspection can resolve;
//! opaque tokens are kept in a bounded in-memory store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::SecureRandom;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::IdpArgs;
use crate::jwt::{self, SigningKey};

/// Request bodies above this are refused (forms here are a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// Opaque tokens kept at most; the oldest are dropped first.
const MAX_OPAQUE_TOKENS: usize = 100_000;

/// A client allowed to use the token and introspection endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub secret: String,
    pub tier: Option<String>,
    /// Space-separated scopes the client may get (and gets by default).
    pub scope: Option<String>,
}

impl Client {
    /// Parses `ID:SECRET[:TIER[:SCOPE]]`.
    pub fn parse(s: &str) -> Result<Client> {
        let mut parts = s.splitn(4, ':');
        let id = parts.next().unwrap_or_default().to_string();
        let secret = parts.next().ok_or_else(|| anyhow!("bad --client {s:?}: expected ID:SECRET[:TIER[:SCOPE]]"))?.to_string();
        if id.is_empty() || secret.is_empty() {
            bail!("bad --client {s:?}: id and secret must not be empty");
        }
        let tier = parts.next().filter(|t| !t.is_empty()).map(str::to_string);
        let scope = parts.next().filter(|t| !t.is_empty()).map(str::to_string);
        Ok(Client { id, secret, tier, scope })
    }
}

/// Everything the IdP needs, fixed at start-up.
pub struct IdpConfig {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<SigningKey>,
    /// Index into `keys` of the key that signs new tokens.
    pub signing: usize,
    pub clients: Vec<Client>,
    pub token_ttl: Duration,
    pub opaque: bool,
}

/// Counters served at `/stats`.
#[derive(Debug, Default)]
pub struct IdpStats {
    pub tokens_issued: AtomicU64,
    pub token_errors: AtomicU64,
    pub introspections: AtomicU64,
    pub introspections_active: AtomicU64,
    pub jwks_requests: AtomicU64,
    pub discovery_requests: AtomicU64,
}

struct State {
    cfg: IdpConfig,
    stats: Arc<IdpStats>,
    jwks: Bytes,
    discovery: Bytes,
    opaque: Mutex<OpaqueStore>,
    rng: ring::rand::SystemRandom,
}

/// Opaque tokens and their claims, bounded: insertion order is kept so the oldest can go.
#[derive(Default)]
struct OpaqueStore {
    claims: HashMap<String, Map<String, Value>>,
    order: VecDeque<String>,
}

impl OpaqueStore {
    fn insert(&mut self, token: String, claims: Map<String, Value>) {
        while self.order.len() >= MAX_OPAQUE_TOKENS {
            if let Some(old) = self.order.pop_front() {
                self.claims.remove(&old);
            }
        }
        self.order.push_back(token.clone());
        self.claims.insert(token, claims);
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
pub fn parse_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares secrets without an early exit: both are hashed to fixed-length digests, which are
/// then compared with a branch-free fold, so timing does not reveal a common prefix.
fn secrets_equal(a: &str, b: &str) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a.as_bytes());
    let db = ring::digest::digest(&ring::digest::SHA256, b.as_bytes());
    da.as_ref().iter().zip(db.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn bytes_response(body: &Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.clone()));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// RFC 6749 section 5.2 error; `invalid_client` via Basic gets 401 and a challenge.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let mut resp = json_response(status, &json!({"error": error, "error_description": description}));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"loadtest-idp\""));
    }
    resp
}

impl State {
    /// Authenticates the client from `Authorization: Basic` or form fields (RFC 6749 2.3.1).
    fn authenticate(&self, auth: Option<&HeaderValue>, form: &BTreeMap<String, String>) -> Option<&Client> {
        let (id, secret) = match auth.and_then(|v| v.to_str().ok()) {
            Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") => {
                let decoded = STANDARD.decode(v[6..].trim()).ok()?;
                let text = String::from_utf8(decoded).ok()?;
                let (id, secret) = text.split_once(':')?;
                (form_decode(id), form_decode(secret))
            }
            _ => (form.get("client_id")?.clone(), form.get("client_secret")?.clone()),
        };
        self.cfg.clients.iter().find(|c| c.id == id && secrets_equal(&c.secret, &secret))
    }

    fn token(&self, client: &Client, form: &BTreeMap<String, String>) -> Response<Full<Bytes>> {
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            self.stats.token_errors.fetch_add(1, Ordering::Relaxed);
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported");
        }
        let allowed: Vec<&str> = client.scope.as_deref().map(|s| s.split(' ').collect()).unwrap_or_default();
        let scope = match form.get("scope") {
            Some(requested) => {
                if let Some(bad) = requested.split(' ').find(|s| !s.is_empty() && !allowed.contains(s)) {
                    self.stats.token_errors.fetch_add(1, Ordering::Relaxed);
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &format!("scope {bad:?} is not allowed for this client"));
                }
                Some(requested.clone())
            }
            None => client.scope.clone(),
        };
        let now = jwt::unix_now();
        let ttl = self.cfg.token_ttl.as_secs().max(1);
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.cfg.issuer));
        c.insert("sub".into(), json!(client.id));
        c.insert("aud".into(), json!(self.cfg.audience));
        c.insert("azp".into(), json!(client.id));
        c.insert("client_id".into(), json!(client.id));
        if let Some(s) = &scope {
            c.insert("scope".into(), json!(s));
        }
        if let Some(t) = &client.tier {
            c.insert("tier".into(), json!(t));
        }
        c.insert("iat".into(), json!(now));
        c.insert("nbf".into(), json!(now));
        c.insert("exp".into(), json!(now + ttl));
        c.insert("jti".into(), json!(jwt::next_jti()));
        let access_token = if self.cfg.opaque {
            let mut raw = [0u8; 32];
            if self.rng.fill(&mut raw).is_err() {
                return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no randomness");
            }
            let token = URL_SAFE_NO_PAD.encode(raw);
            if let Ok(mut store) = self.opaque.lock() {
                store.insert(token.clone(), c);
            }
            token
        } else {
            match self.cfg.keys[self.cfg.signing].sign(&c) {
                Ok(t) => t,
                Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
            }
        };
        self.stats.tokens_issued.fetch_add(1, Ordering::Relaxed);
        let mut body = json!({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl});
        if let Some(s) = scope {
            body["scope"] = json!(s);
        }
        json_response(StatusCode::OK, &body)
    }

    /// Claims of a token this IdP issued and that is still valid.
    fn verify(&self, token: &str) -> Option<Map<String, Value>> {
        if let Ok(store) = self.opaque.lock() {
            if let Some(c) = store.claims.get(token) {
                let exp = c.get("exp").and_then(Value::as_u64).unwrap_or(0);
                return (exp > jwt::unix_now()).then(|| c.clone());
            }
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.cfg.keys.iter().find(|k| Some(&k.kid) == header.kid.as_ref() && k.alg == header.alg)?;
        let decoding = match (&key.public_jwk, key.secret()) {
            (_, Some(secret)) => DecodingKey::from_secret(secret),
            (Some(jwk), None) => DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).ok()?).ok()?,
            (None, None) => return None,
        };
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.validate_aud = false;
        v.leeway = 0;
        jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &v).ok().map(|d| d.claims)
    }

    fn introspect(&self, form: &BTreeMap<String, String>) -> Response<Full<Bytes>> {
        self.stats.introspections.fetch_add(1, Ordering::Relaxed);
        let Some(token) = form.get("token") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the token parameter is required");
        };
        // RFC 7662 section 2.2: an inactive token says nothing more than that.
        let Some(claims) = self.verify(token) else {
            return json_response(StatusCode::OK, &json!({"active": false}));
        };
        self.stats.introspections_active.fetch_add(1, Ordering::Relaxed);
        let mut body = Map::new();
        body.insert("active".into(), json!(true));
        body.insert("token_type".into(), json!("Bearer"));
        for k in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "tier", "azp"] {
            if let Some(v) = claims.get(k) {
                body.insert(k.into(), v.clone());
            }
        }
        json_response(StatusCode::OK, &Value::Object(body))
    }

    fn stats_json(&self) -> Value {
        let s = &self.stats;
        json!({
            "tokens_issued": s.tokens_issued.load(Ordering::Relaxed),
            "token_errors": s.token_errors.load(Ordering::Relaxed),
            "introspections": s.introspections.load(Ordering::Relaxed),
            "introspections_active": s.introspections_active.load(Ordering::Relaxed),
            "jwks_requests": s.jwks_requests.load(Ordering::Relaxed),
            "discovery_requests": s.discovery_requests.load(Ordering::Relaxed),
        })
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let resp = match (method, path.as_str()) {
        (Method::GET, "/health") => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
        (Method::GET, "/.well-known/openid-configuration") => {
            state.stats.discovery_requests.fetch_add(1, Ordering::Relaxed);
            bytes_response(&state.discovery)
        }
        (Method::GET, "/.well-known/jwks.json" | "/jwks") => {
            state.stats.jwks_requests.fetch_add(1, Ordering::Relaxed);
            bytes_response(&state.jwks)
        }
        (Method::GET, "/stats") => json_response(StatusCode::OK, &state.stats_json()),
        (Method::POST, "/token" | "/introspect") => {
            let auth = req.headers().get(AUTHORIZATION).cloned();
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "request body too large"));
                }
            };
            let form = parse_form(&String::from_utf8_lossy(&body));
            match state.authenticate(auth.as_ref(), &form) {
                None => {
                    if path == "/token" {
                        state.stats.token_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
                }
                Some(client) if path == "/token" => {
                    let client = client.clone();
                    state.token(&client, &form)
                }
                Some(_) => state.introspect(&form),
            }
        }
        (_, "/token" | "/introspect") => oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use POST"),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found", "path": path})),
    };
    Ok(resp)
}

fn build_state(cfg: IdpConfig, stats: Arc<IdpStats>) -> Result<State> {
    if cfg.keys.is_empty() {
        bail!("the IdP has no signing keys");
    }
    let keys: Vec<Value> = cfg.keys.iter().filter_map(|k| k.public_jwk.clone()).collect();
    let jwks = Bytes::from(json!({"keys": keys}).to_string());
    let algs: Vec<String> = cfg.keys.iter().map(|k| format!("{:?}", k.alg)).collect();
    let iss = cfg.issuer.trim_end_matches('/');
    let discovery = Bytes::from(
        json!({
            "issuer": cfg.issuer,
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "token_endpoint": format!("{iss}/token"),
            "introspection_endpoint": format!("{iss}/introspect"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": algs,
        })
        .to_string(),
    );
    Ok(State { cfg, stats, jwks, discovery, opaque: Mutex::new(OpaqueStore::default()), rng: ring::rand::SystemRandom::new() })
}

/// Serves the IdP on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, cfg: IdpConfig, stats: Arc<IdpStats>, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let state = Arc::new(build_state(cfg, stats)?);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
        });
    }
    Ok(())
}

/// Loads every private key in `dir`: `*.pem` files holding a private key, and `*.secret` files
/// holding an HMAC secret (HS256). Public keys and other files are skipped.
pub fn load_key_dir(dir: &Path, kid: Option<&str>) -> Result<Vec<SigningKey>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read key directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut keys = Vec::new();
    for path in entries {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("key").to_string();
        let id = kid.map(str::to_string).unwrap_or_else(|| stem.clone());
        match path.extension().and_then(|e| e.to_str()) {
            Some("pem") => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                if text.contains("PRIVATE KEY") {
                    keys.push(SigningKey::from_pem(&text, None, &id).with_context(|| format!("key file {}", path.display()))?);
                }
            }
            Some("secret") => {
                let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                keys.push(
                    SigningKey::from_secret(secret, Algorithm::HS256, &id).with_context(|| format!("secret file {}", path.display()))?,
                );
            }
            _ => {}
        }
    }
    if keys.is_empty() {
        bail!("no private keys (*.pem) or secrets (*.secret) in {}", dir.display());
    }
    Ok(keys)
}

/// Builds the IdP configuration from the command line.
pub fn config_from_args(args: &IdpArgs, listen: SocketAddr) -> Result<IdpConfig> {
    let keys = match &args.keys {
        Some(dir) => load_key_dir(dir, args.kid.as_deref())?,
        None => {
            let kid = args.kid.clone().unwrap_or_else(|| "k1".to_string());
            vec![SigningKey::generate(Algorithm::ES256, &kid)?, SigningKey::generate(Algorithm::EdDSA, &format!("{kid}-ed"))?]
        }
    };
    let signing = match &args.alg {
        Some(name) => {
            let alg = jwt::parse_algorithm(name)?;
            keys.iter().position(|k| k.alg == alg).ok_or_else(|| anyhow!("no loaded key signs {name}"))?
        }
        // RS256 when available: it is what most gateways are configured for first.
        None => keys.iter().position(|k| k.alg == Algorithm::RS256).unwrap_or(0),
    };
    let clients = if args.clients.is_empty() {
        vec![
            Client {
                id: "bench-client".into(),
                secret: "bench-secret".into(),
                tier: Some("Gold".into()),
                scope: Some("read write".into()),
            },
            Client { id: "gateway".into(), secret: "gateway-secret".into(), tier: None, scope: None },
        ]
    } else {
        args.clients.iter().map(|c| Client::parse(c)).collect::<Result<Vec<_>>>()?
    };
    Ok(IdpConfig {
        issuer: args.issuer.clone().unwrap_or_else(|| format!("http://{listen}")),
        audience: args.audience.clone(),
        keys,
        signing,
        clients,
        token_ttl: args.token_ttl,
        opaque: args.opaque,
    })
}

/// An IdP on its own runtime thread, stopped when dropped (for tests).
pub struct BackgroundIdp {
    pub addr: SocketAddr,
    pub stats: Arc<IdpStats>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundIdp {
    /// Starts on `listen`; `make` builds the config once the bound address is known.
    pub fn start(listen: SocketAddr, make: impl FnOnce(SocketAddr) -> Result<IdpConfig>) -> Result<Self> {
        let std_listener = std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let cfg = make(addr)?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let stats = Arc::new(IdpStats::default());
        let (stop, rx) = watch::channel(false);
        let s = stats.clone();
        let thread = std::thread::Builder::new().name("idp".into()).spawn(move || {
            let _ = rt.block_on(async move { serve(TcpListener::from_std(std_listener)?, cfg, s, rx).await });
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(BackgroundIdp { addr, stats, stop, thread: Some(thread) })
    }
}

impl Drop for BackgroundIdp {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `loadtest idp`.
pub fn run(args: IdpArgs) -> Result<()> {
    crate::target::check_listen(args.listen, args.allow_remote)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let cfg = config_from_args(&args, addr)?;
        println!("listening on {addr}");
        eprintln!("issuer {}", cfg.issuer);
        for k in &cfg.keys {
            eprintln!("key kid={} alg={:?}{}", k.kid, k.alg, if k.public_jwk.is_none() { " (HMAC, not in JWKS)" } else { "" });
        }
        eprintln!("signing with kid={}", cfg.keys[cfg.signing].kid);
        for c in &cfg.clients {
            eprintln!("client {} tier={} scope={}", c.id, c.tier.as_deref().unwrap_or("-"), c.scope.as_deref().unwrap_or("-"));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let stats = Arc::new(IdpStats::default());
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, cfg, stats, rx));
        crate::upstream::wait_for_shutdown_signal().await;
        let _ = stop.send(true);
        let _ = server.await;
        Ok::<(), anyhow::Error>(())
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::simple_request;

    fn test_idp(opaque: bool) -> BackgroundIdp {
        BackgroundIdp::start("127.0.0.1:0".parse().unwrap(), |addr| {
            Ok(IdpConfig {
                issuer: format!("http://{addr}"),
                audience: "orders".into(),
                keys: vec![
                    SigningKey::generate(Algorithm::ES256, "k1").unwrap(),
                    SigningKey::from_secret(b"0123456789abcdef0123", Algorithm::HS256, "hs").unwrap(),
                ],
                signing: 0,
                clients: vec![Client::parse("app:s3cret:Gold:read write").unwrap()],
                token_ttl: Duration::from_secs(600),
                opaque,
            })
        })
        .unwrap()
    }

    fn form_headers(basic: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string())];
        if let Some(b) = basic {
            h.push(("Authorization".into(), format!("Basic {}", STANDARD.encode(b))));
        }
        h
    }

    async fn post(idp: &BackgroundIdp, path: &str, basic: Option<&str>, body: &str) -> (u16, Value) {
        let r = simple_request(idp.addr, "POST", path, &form_headers(basic), body.as_bytes(), Duration::from_secs(5)).await.unwrap();
        (r.status, serde_json::from_slice(&r.body).unwrap())
    }

    #[tokio::test]
    async fn discovery_jwks_token_and_introspection_work_together() {
        let idp = test_idp(false);
        let t = Duration::from_secs(5);
        let d = simple_request(idp.addr, "GET", "/.well-known/openid-configuration", &[], b"", t).await.unwrap();
        let d: Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(d["issuer"], format!("http://{}", idp.addr));
        assert_eq!(d["jwks_uri"], format!("http://{}/.well-known/jwks.json", idp.addr));
        let jwks = simple_request(idp.addr, "GET", "/.well-known/jwks.json", &[], b"", t).await.unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&jwks.body).unwrap();
        // The HMAC key is never published.
        assert_eq!(jwks.keys.len(), 1);

        let (status, tok) = post(&idp, "/token", Some("app:s3cret"), "grant_type=client_credentials").await;
        assert_eq!(status, 200, "{tok}");
        assert_eq!((tok["token_type"].as_str(), tok["expires_in"].as_u64()), (Some("Bearer"), Some(600)));
        let token = tok["access_token"].as_str().unwrap();
        // A gateway verifies it with the published JWKS.
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["orders"]);
        let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap().claims;
        assert_eq!(
            (claims["azp"].as_str(), claims["tier"].as_str(), claims["scope"].as_str()),
            (Some("app"), Some("Gold"), Some("read write"))
        );

        let (status, intro) = post(&idp, "/introspect", Some("app:s3cret"), &format!("token={token}&token_type_hint=access_token")).await;
        assert_eq!(status, 200);
        assert_eq!((intro["active"].as_bool(), intro["client_id"].as_str()), (Some(true), Some("app")));
        let (_, intro) = post(&idp, "/introspect", Some("app:s3cret"), "token=not-a-token").await;
        assert_eq!(intro, json!({"active": false}));

        let stats = simple_request(idp.addr, "GET", "/stats", &[], b"", t).await.unwrap();
        let stats: Value = serde_json::from_slice(&stats.body).unwrap();
        assert_eq!((stats["tokens_issued"].as_u64(), stats["introspections"].as_u64()), (Some(1), Some(2)));
    }

    #[tokio::test]
    async fn client_authentication_and_grant_errors_follow_rfc_6749() {
        let idp = test_idp(false);
        let (status, e) = post(&idp, "/token", Some("app:wrong"), "grant_type=client_credentials").await;
        assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));
        let (status, e) = post(&idp, "/token", Some("app:s3cret"), "grant_type=password").await;
        assert_eq!((status, e["error"].as_str()), (400, Some("unsupported_grant_type")));
        let (status, e) = post(&idp, "/token", Some("app:s3cret"), "grant_type=client_credentials&scope=admin").await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_scope")));
        // Form-based client authentication also works.
        let (status, _) = post(&idp, "/token", None, "grant_type=client_credentials&client_id=app&client_secret=s3cret").await;
        assert_eq!(status, 200);
        let (status, _) = post(&idp, "/introspect", None, "token=x").await;
        assert_eq!(status, 401);
    }

    #[tokio::test]
    async fn opaque_tokens_are_only_valid_through_introspection() {
        let idp = test_idp(true);
        let (_, tok) = post(&idp, "/token", Some("app:s3cret"), "grant_type=client_credentials&scope=read").await;
        let token = tok["access_token"].as_str().unwrap();
        assert!(!token.contains('.'), "not a JWT: {token}");
        let (_, intro) = post(&idp, "/introspect", Some("app:s3cret"), &format!("token={token}")).await;
        assert_eq!((intro["active"].as_bool(), intro["scope"].as_str()), (Some(true), Some("read")));
    }

    #[test]
    fn keys_load_from_a_directory_of_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(pkcs8.as_ref()));
        std::fs::write(dir.path().join("jwt_es256_priv.pem"), pem).unwrap();
        std::fs::write(dir.path().join("jwt_es256_pub.pem"), "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n").unwrap();
        std::fs::write(dir.path().join("hs256.secret"), "a-secret-of-sufficient-length\n").unwrap();
        std::fs::write(dir.path().join("README"), "ignored").unwrap();
        let keys = load_key_dir(dir.path(), Some("k1")).unwrap();
        let algs: Vec<Algorithm> = keys.iter().map(|k| k.alg).collect();
        assert_eq!(algs, vec![Algorithm::HS256, Algorithm::ES256]);
        assert!(keys.iter().all(|k| k.kid == "k1"));
        let empty = tempfile::tempdir().unwrap();
        assert!(load_key_dir(empty.path(), None).unwrap_err().to_string().contains("no private keys"));
    }

    #[test]
    fn forms_and_clients_parse() {
        let f = parse_form("a=1&b=x+y%21&c=&d");
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "x y!");
        assert_eq!(f["c"], "");
        assert_eq!(f["d"], "");
        assert_eq!(form_decode("%"), "%");
        assert_eq!(form_decode("%zz"), "%zz");
        assert!(Client::parse("nosecret").is_err());
        assert_eq!(Client::parse("a:b").unwrap().tier, None);
    }
}
