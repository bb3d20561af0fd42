//! The config file's schema: serde "spec" types, exactly what an SRE writes.
//!
//! Every struct denies unknown fields, so a typo is an error with a did-you-mean instead of a
//! silently ignored setting. Defaults live here, next to the field they belong to, and are
//! the ones `docs/configuration.md` states. Specs are not used on the request path: the
//! compiler turns them into a [`crate::Snapshot`].

mod parse;
pub mod units;

pub use parse::{parse, parse_document, parse_value, Format};
pub use units::{ByteSize, HumanDuration};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole config document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub access_log: AccessLogSpec,
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerSpec>,
    #[serde(default)]
    pub admin: Option<AdminSpec>,
    /// Who may issue credentials: JWT issuers (more kinds later).
    #[serde(default)]
    pub key_managers: Vec<KeyManagerSpec>,
    /// Consumers: their client ids, API keys, subscriptions.
    #[serde(default)]
    pub applications: Vec<ApplicationSpec>,
    /// How the gateway signs the identity it forwards to backends (`auth.backend_jwt`).
    #[serde(default)]
    pub backend_jwt: Option<BackendJwtSpec>,
    #[serde(default)]
    pub apis: Vec<ApiSpec>,
}

/// A credential issuer, by `type`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyManagerSpec {
    /// Self-contained JWTs verified locally.
    Jwt(JwtKeyManagerSpec),
    /// Opaque tokens checked with the IdP (RFC 7662).
    Introspection(IntrospectionSpec),
}

impl KeyManagerSpec {
    pub fn name(&self) -> &str {
        match self {
            KeyManagerSpec::Jwt(j) => &j.name,
            KeyManagerSpec::Introspection(i) => &i.name,
        }
    }
}

/// An OAuth2 token introspection endpoint (RFC 7662).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSpec {
    pub name: String,
    /// The introspection endpoint (http or https).
    pub endpoint: String,
    /// The gateway's client id at the IdP (HTTP Basic, RFC 7662 §2.1).
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// Active tokens are cached until their `exp`, but never longer than this.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
    /// Inactive tokens are remembered this long.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl: HumanDuration,
    /// Longest wait for the IdP; past it the request gets 503.
    #[serde(default = "default_introspection_timeout")]
    pub timeout: HumanDuration,
    /// Which response members carry what.
    #[serde(default = "default_introspection_claims")]
    pub claims: ClaimNamesSpec,
}

fn default_negative_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_introspection_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn default_introspection_claims() -> ClaimNamesSpec {
    ClaimNamesSpec { application: "client_id".into(), user: default_user_claim(), scopes: default_scope_claim() }
}

/// A JWT issuer: keys (static and/or a JWKS file), an algorithm allow list, and the claims
/// that name the application, the user and the scopes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyManagerSpec {
    pub name: String,
    /// Compared exactly with the token's `iss`.
    pub issuer: String,
    /// The token's `aud` (string or array) must name one of these. Empty: `aud` not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Only these `alg` values are accepted (RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, EdDSA, HS256, HS384, HS512).
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub keys: Vec<StaticKeySpec>,
    /// A JWKS document on disk (RFC 7517), read whenever a changed config is compiled (an
    /// unchanged document is not recompiled: edit the config, or restart, to pick up a
    /// rotated file).
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// A JWKS URL (http or https), fetched in the background and kept across reloads.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// An OpenID Connect discovery document (`<issuer>/.well-known/openid-configuration`):
    /// its `issuer` must equal `issuer`, and its `jwks_uri` is fetched like `jwks_uri`.
    #[serde(default)]
    pub discovery: Option<String>,
    /// Longest time between JWKS fetches; a shorter `Cache-Control: max-age` wins.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: HumanDuration,
    /// Least time between fetches triggered by unknown `kid`s (and the floor for max-age).
    #[serde(default = "default_jwks_cooldown")]
    pub jwks_refetch_cooldown: HumanDuration,
    #[serde(default = "default_clock_skew")]
    pub clock_skew: HumanDuration,
    #[serde(default)]
    pub claims: ClaimNamesSpec,
    /// Longest token accepted, header and all.
    #[serde(default = "default_max_token")]
    pub max_token_size: ByteSize,
    /// Longest JOSE header accepted (its base64url form), 128B to 2KiB.
    #[serde(default = "default_max_header")]
    pub max_header_size: ByteSize,
    /// Verified tokens are cached until their `exp`, but never longer than this.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
}

fn default_clock_skew() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_jwks_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_jwks_cooldown() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_max_header() -> ByteSize {
    ByteSize(2048)
}
fn default_max_token() -> ByteSize {
    ByteSize(8 * 1024)
}
fn default_cache_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// Which claims carry what.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimNamesSpec {
    #[serde(default = "default_app_claim")]
    pub application: String,
    #[serde(default = "default_user_claim")]
    pub user: String,
    /// A space-separated string (RFC 8693 `scope`) or an array.
    #[serde(default = "default_scope_claim")]
    pub scopes: String,
}

impl Default for ClaimNamesSpec {
    fn default() -> Self {
        Self { application: default_app_claim(), user: default_user_claim(), scopes: default_scope_claim() }
    }
}

fn default_app_claim() -> String {
    "azp".into()
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}

/// A key configured by hand. It verifies the algorithms of its type (an HMAC secret: HS*;
/// a PEM key: what the key itself says, RSA → RS*/PS*, P-256 → ES256, P-384 → ES384,
/// Ed25519 → EdDSA) that the key manager's `algorithms` allows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticKeySpec {
    /// Matched against the token's `kid`; a key without one is tried for tokens without `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// Pins the key to this one algorithm (it must fit the key's type).
    #[serde(default)]
    pub alg: Option<String>,
    /// HMAC secret from this environment variable (HS*).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// HMAC secret from this file (HS*).
    #[serde(default)]
    pub secret_file: Option<String>,
    /// Public key in PEM (RS*, PS*, ES*, EdDSA).
    #[serde(default)]
    pub pem_file: Option<String>,
}

/// A consumer of APIs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    pub id: String,
    /// Matched against the token's application claim.
    #[serde(default)]
    pub client_ids: Vec<String>,
    #[serde(default)]
    pub api_keys: Vec<ApiKeySpec>,
    /// If set, requests must carry an `Origin` or `Referer` on one of these hosts
    /// (`app.example`, or `*.app.example` for subdomains).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// A blocked application is refused everywhere.
    #[serde(default)]
    pub blocked: bool,
}

/// An API key, stored only as its SHA-256 (hex).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// An API name.
    pub api: String,
    /// The throttling tier this subscription grants (carried for the throttling policy).
    pub tier: String,
}

/// The JWT the gateway mints for backends: who called, as the gateway established it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendJwtSpec {
    /// The `iss` of minted tokens.
    #[serde(default = "default_backend_issuer")]
    pub issuer: String,
    /// ES256, ES384, RS256..., EdDSA or HS256... Left out: HS256 for `secret_env`, the
    /// key's own algorithm for `pem_file` (RS256 for RSA), ES256 for a generated key.
    #[serde(default)]
    pub alg: Option<String>,
    /// Private key in PEM (PKCS#8 for EC and Ed25519; PKCS#1 or PKCS#8 for RSA). With
    /// neither this nor `secret_env`, the gateway generates an ES256 key at start-up and
    /// publishes its public half at the admin listener's `/.well-known/jwks.json`.
    #[serde(default)]
    pub pem_file: Option<String>,
    /// HMAC secret from this environment variable (HS*).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The header carrying the token. A client-sent header of this name is always removed.
    #[serde(default = "default_backend_header")]
    pub header: String,
    /// Lifetime of a minted token; it is reused for the same caller until half of it is left.
    #[serde(default = "default_backend_ttl")]
    pub ttl: HumanDuration,
    #[serde(default)]
    pub claims: BackendClaimsSpec,
}

impl Default for BackendJwtSpec {
    /// What `auth.backend_jwt: true` uses when the document has no `backend_jwt:` section.
    fn default() -> Self {
        BackendJwtSpec {
            issuer: default_backend_issuer(),
            alg: None,
            pem_file: None,
            secret_env: None,
            header: default_backend_header(),
            ttl: default_backend_ttl(),
            claims: BackendClaimsSpec::default(),
        }
    }
}

fn default_backend_issuer() -> String {
    "gateway".into()
}
fn default_backend_header() -> String {
    "X-JWT-Assertion".into()
}
fn default_backend_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// Claim names in the minted token.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendClaimsSpec {
    #[serde(default = "default_bc_application")]
    pub application: String,
    #[serde(default = "default_user_claim")]
    pub user: String,
    #[serde(default = "default_bc_tier")]
    pub tier: String,
    #[serde(default = "default_scope_claim")]
    pub scopes: String,
    #[serde(default = "default_bc_api")]
    pub api: String,
}

impl Default for BackendClaimsSpec {
    fn default() -> Self {
        Self {
            application: default_bc_application(),
            user: default_user_claim(),
            tier: default_bc_tier(),
            scopes: default_scope_claim(),
            api: default_bc_api(),
        }
    }
}

fn default_bc_application() -> String {
    "application".into()
}
fn default_bc_tier() -> String {
    "tier".into()
}
fn default_bc_api() -> String {
    "api".into()
}

/// Authentication of an API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// JWT issuers whose tokens this API accepts (names from `key_managers`).
    #[serde(default)]
    pub key_managers: Vec<String>,
    /// Accept API keys from this header or query parameter.
    #[serde(default)]
    pub api_keys: Option<ApiKeySourceSpec>,
    /// The caller's application must be subscribed to this API.
    #[serde(default)]
    pub require_subscription: bool,
    /// Send `Authorization` and the API key upstream (stripped by default).
    #[serde(default)]
    pub forward_credentials: bool,
    /// Forward a gateway-signed JWT naming the caller (needs top-level `backend_jwt`).
    #[serde(default)]
    pub backend_jwt: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySourceSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
}

/// Which credentials a resource accepts (WSO2's auth types).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// No credential needed.
    None,
    /// An application credential: an API key or a token without an end user.
    Application,
    /// A token on behalf of an end user.
    ApplicationUser,
    /// Any valid credential.
    #[default]
    Any,
}

fn default_listeners() -> Vec<ListenerSpec> {
    vec![ListenerSpec { address: "127.0.0.1:8080".into(), tls: None }]
}

/// Process-level settings. Changing them needs a restart; a reload reports that.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Worker threads of the data plane. Default: one per core.
    pub threads: Option<usize>,
    /// Let idle workers steal requests from busy ones. Off by default: with few cores,
    /// stealing costs more in cross-core wakeups than it gains (see BENCHMARKS.md).
    #[serde(default)]
    pub work_stealing: bool,
    /// Idle upstream connections kept for reuse, across all targets.
    #[serde(default = "default_keepalive_pool")]
    pub upstream_keepalive_pool: usize,
    /// How long a graceful stop (SIGTERM) waits for in-flight requests.
    #[serde(default = "default_grace")]
    pub graceful_shutdown_timeout: HumanDuration,
    /// Plain HTTP/1.1 requests on plain-HTTP listeners are served by the gateway's own HTTP/1
    /// lane (over per-thread idle upstream connections) instead of Pingora's proxy phases.
    #[serde(default = "yes")]
    pub upstream_fast_path: bool,
    /// The largest request body accepted (nginx's `client_max_body_size`): a larger declared
    /// `Content-Length` is answered 413 before any of the body is read, and a chunked body
    /// that grows past it is cut off with 413.
    #[serde(default = "default_max_request_body")]
    pub max_request_body: ByteSize,
    /// How long a client may take to send a request head (also the keep-alive idle timeout);
    /// a partial head is then answered 408.
    #[serde(default = "default_client_timeout")]
    pub client_header_timeout: HumanDuration,
    /// How long a client may pause while sending a request body; then 408 (or, once the
    /// upstream is receiving it, the connection closes).
    #[serde(default = "default_client_timeout")]
    pub client_body_timeout: HumanDuration,
}

/// The same defaults whether `server:` is absent or present but partial.
impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            threads: None,
            work_stealing: false,
            upstream_keepalive_pool: default_keepalive_pool(),
            graceful_shutdown_timeout: default_grace(),
            upstream_fast_path: true,
            max_request_body: default_max_request_body(),
            client_header_timeout: default_client_timeout(),
            client_body_timeout: default_client_timeout(),
        }
    }
}

fn default_max_request_body() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_client_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_keepalive_pool() -> usize {
    1024
}
fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// The JSON access log: one line per request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `stdout`, `stderr` or a file path (appended to).
    #[serde(default = "default_log_path")]
    pub path: String,
    /// Lines queued for the writer thread before new lines are dropped (and counted).
    #[serde(default = "default_log_queue")]
    pub queue: usize,
    /// Bytes the writer thread gathers before a write; it also flushes whenever the queue
    /// runs empty, so a quiet gateway's log is always current.
    #[serde(default = "default_log_buffer")]
    pub buffer_size: ByteSize,
}

impl Default for AccessLogSpec {
    fn default() -> Self {
        Self { enabled: true, path: default_log_path(), queue: default_log_queue(), buffer_size: default_log_buffer() }
    }
}

fn default_log_buffer() -> ByteSize {
    ByteSize(64 * 1024)
}

fn yes() -> bool {
    true
}
fn default_log_path() -> String {
    "stdout".into()
}
fn default_log_queue() -> usize {
    65_536
}

/// A data-plane listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// `ip:port`.
    pub address: String,
    #[serde(default)]
    pub tls: Option<ListenerTlsSpec>,
}

/// TLS on a listener (rustls). HTTP/2 is offered through ALPN unless `http2: false`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSpec {
    pub cert: String,
    pub key: String,
    #[serde(default = "yes")]
    pub http2: bool,
}

/// The control (admin) API listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    pub address: String,
    /// Environment variable holding the bearer token. Required when `address` is not loopback.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Where revisions are kept. Default: `.revisions/` beside the config file.
    #[serde(default)]
    pub revisions_dir: Option<String>,
    /// How many revisions are kept on disk for rollback.
    #[serde(default = "default_keep_revisions")]
    pub keep_revisions: usize,
}

fn default_keep_revisions() -> usize {
    20
}

/// One API: a context, a version, a lifecycle state, an endpoint and its resources.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// Unique name; metrics and logs use it.
    pub name: String,
    /// Path prefix, e.g. `/orders`. One or more segments.
    pub context: String,
    pub version: String,
    /// Also route `/{context}/...` (without the version) to this API.
    #[serde(default)]
    pub default_version: bool,
    #[serde(default)]
    pub state: LifecycleState,
    /// Remove the context and version from the path sent upstream.
    #[serde(default = "yes")]
    pub strip_context: bool,
    #[serde(default)]
    pub deprecation: Option<DeprecationSpec>,
    #[serde(default)]
    pub endpoint: Option<EndpointSpec>,
    #[serde(default)]
    pub cors: Option<CorsSpec>,
    /// Authentication; without it the API is open.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
}

/// WSO2-style API lifecycle.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    Created,
    Prototyped,
    #[default]
    Published,
    Deprecated,
    Retired,
    Blocked,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Prototyped => "prototyped",
            Self::Published => "published",
            Self::Deprecated => "deprecated",
            Self::Retired => "retired",
            Self::Blocked => "blocked",
        }
    }
}

/// Headers sent by a deprecated API (RFC 9745 `Deprecation`, RFC 8594 `Sunset`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeprecationSpec {
    /// RFC 3339 time the API was deprecated, e.g. `2026-06-01T00:00:00Z`.
    #[serde(default)]
    pub since: Option<String>,
    /// RFC 3339 time the API will stop answering.
    #[serde(default)]
    pub sunset: Option<String>,
    /// A page explaining the deprecation (sent as `Link: <...>; rel="deprecation"`).
    #[serde(default)]
    pub link: Option<String>,
}

/// Where proxied requests go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default)]
    pub strategy: Strategy,
    pub targets: Vec<TargetSpec>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    #[serde(default = "default_read_timeout")]
    pub write_timeout: HumanDuration,
    /// How long an idle pooled connection to a target is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Extra attempts on another target, made only when connecting failed (nothing was sent).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Send the client's `Host` upstream instead of the target's.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub passive_health: PassiveHealthSpec,
    #[serde(default)]
    pub tls: UpstreamTlsSpec,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_retries() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Weighted round robin over healthy targets.
    #[default]
    RoundRobin,
    /// The first healthy target in the listed order.
    Failover,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// `http://host:port[/base]` or `https://...`.
    pub url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Active health checks: an HTTP GET to each target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_connect_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    #[serde(default = "default_healthy_after")]
    pub healthy_after: u32,
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_health_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_unhealthy_after() -> u32 {
    3
}
fn default_healthy_after() -> u32 {
    2
}

/// Passive ejection: a target that fails this many requests in a row (connect errors,
/// timeouts, broken responses) is taken out of rotation for `eject_for`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthSpec {
    /// 0 turns passive ejection off.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "default_eject_for")]
    pub eject_for: HumanDuration,
}

impl Default for PassiveHealthSpec {
    fn default() -> Self {
        Self { consecutive_failures: default_consecutive_failures(), eject_for: default_eject_for() }
    }
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_eject_for() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// TLS towards `https://` targets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// Verify the target's certificate chain and name. Turning this off is for labs only.
    #[serde(default = "yes")]
    pub verify: bool,
    /// PEM bundle of CAs to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Server name to send and verify; default: the target URL's host.
    #[serde(default)]
    pub sni: Option<String>,
}

impl Default for UpstreamTlsSpec {
    fn default() -> Self {
        Self { verify: true, ca_file: None, sni: None }
    }
}

/// CORS for an API (the Fetch standard's CORS protocol).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Exact origins (`https://app.example`) or `*`.
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

/// A resource: a path pattern and the verbs it accepts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Exact (`/menu`), URI template (`/order/{id}`) or URL mapping (`/admin/*`).
    pub path: String,
    /// HTTP verbs, or `ANY`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Answer from the gateway instead of an upstream.
    #[serde(default)]
    pub mock: Option<MockSpec>,
    /// Credentials this resource accepts when the API has `auth` (default: any).
    #[serde(default)]
    pub auth: Option<AuthType>,
    /// Every one of these must be among the credential's scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_methods() -> Vec<String> {
    vec!["ANY".into()]
}

/// A canned response.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MockSpec {
    #[serde(default = "default_mock_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn default_mock_status() -> u16 {
    200
}
