//! The config file's schema: serde "spec" types, exactly what an SRE writes.
//!
//! This module holds the document root ([`GatewaySpec`]), the API and resource aggregates
//! ([`ApiSpec`], [`ResourceSpec`]) and the process settings (server, listeners, admin,
//! access log). Each policy keeps its own spec types in its folder, next to its compile step
//! and its evaluation, and they are re-exported here, so `config::Xxx` names every type of
//! the schema:
//!
//! | section | spec types in |
//! |---|---|
//! | `key_managers`, `applications`, `backend_jwt`, `apis[].auth`, `resources[].auth` | [`crate::authn`] (`authn/spec.rs`) |
//! | `apis[].state`, `apis[].deprecation` | [`crate::lifecycle`] (`lifecycle/spec.rs`) |
//! | `apis[].endpoint` | [`crate::upstream`] (`upstream/spec.rs`) |
//! | `apis[].cors` | [`crate::cors`] (`cors/spec.rs`) |
//! | `resources[].mock` | [`crate::mock`] (`mock/spec.rs`) |
//!
//! Every struct denies unknown fields, so a typo is an error with a did-you-mean instead of a
//! silently ignored setting. Defaults live next to the field they belong to, and are the ones
//! `docs/configuration.md` states. Specs are not used on the request path: the compiler turns
//! them into a [`crate::Snapshot`].

mod parse;
pub mod units;

pub use crate::authn::spec::{
    ApiKeySourceSpec, ApiKeySpec, ApplicationSpec, AuthSpec, AuthType, BackendClaimsSpec, BackendJwtSpec, ClaimNamesSpec,
    IntrospectionSpec, JwtKeyManagerSpec, KeyManagerSpec, StaticKeySpec, SubscriptionSpec,
};
pub use crate::cache::spec::{CachePolicySpec, CacheSpec, RequestCacheControl};
pub use crate::cors::spec::CorsSpec;
pub use crate::lifecycle::spec::{DeprecationSpec, LifecycleState};
pub use crate::mock::spec::MockSpec;
pub use crate::threat::spec::{
    DtdSpec, JsonSpec, PatternSpec, PatternsSpec, RegexSpec, ScanTarget, ThreatLimitsSpec, ThreatMode, ThreatSpec, XmlSpec,
};
pub use crate::throttle::spec::{
    ApiThrottlingSpec, ConditionLimitSpec, ConditionSpec, DenySpec, IpLimitSpec, LimitSpec, MatchSpec, ThrottlingSpec, TierSpec, WhenSpec,
};
pub use crate::upstream::spec::{EndpointSpec, HealthCheckSpec, PassiveHealthSpec, Strategy, TargetSpec, UpstreamTlsSpec};
pub use parse::{parse, parse_document, parse_value, Format};
pub use units::{ByteSize, HumanDuration, Length};

use serde::Deserialize;
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
    /// Named throttling tiers (besides the built-in Unlimited, Gold, Silver, Bronze and
    /// Unauthenticated, which these may redefine).
    #[serde(default)]
    pub tiers: std::collections::BTreeMap<String, TierSpec>,
    #[serde(default)]
    pub throttling: ThrottlingSpec,
    /// Request limits and the regex protector (gateway-wide; an API may override any part).
    #[serde(default)]
    pub threat_protection: Option<ThreatSpec>,
    /// How the gateway signs the identity it forwards to backends (`auth.backend_jwt`).
    #[serde(default)]
    pub backend_jwt: Option<BackendJwtSpec>,
    /// The response cache's storage (`cache/spec.rs`).
    #[serde(default)]
    pub cache: CacheSpec,
    #[serde(default)]
    pub apis: Vec<ApiSpec>,
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
    /// Lines waiting for the writer thread before new lines are dropped (and counted).
    #[serde(default = "default_log_queue")]
    pub queue: usize,
    /// Bytes gathered before the writer thread is woken to write them.
    #[serde(default = "default_log_buffer")]
    pub buffer_size: ByteSize,
    /// The longest a line waits before it is written, however quiet the gateway is (nginx's
    /// `access_log ... flush=`). Workers never wake the writer for a single line: that
    /// wake-up and its write(2) cost more than the rest of a proxied request.
    #[serde(default = "default_log_flush")]
    pub flush_interval: HumanDuration,
}

impl Default for AccessLogSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            path: default_log_path(),
            queue: default_log_queue(),
            buffer_size: default_log_buffer(),
            flush_interval: default_log_flush(),
        }
    }
}

fn default_log_flush() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

fn default_log_buffer() -> ByteSize {
    ByteSize(64 * 1024)
}

pub(crate) fn yes() -> bool {
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
    /// The tiers this API offers to subscriptions (empty: any tier).
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub throttling: Option<ApiThrottlingSpec>,
    #[serde(default)]
    pub threat_protection: Option<ThreatSpec>,
    /// Response caching for the API's GET and HEAD resources (`cache/spec.rs`).
    #[serde(default)]
    pub cache: Option<CachePolicySpec>,
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
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
    /// A tier for this resource and verb, all consumers together.
    #[serde(default)]
    pub throttling: Option<String>,
    /// The resource's cache settings, each overriding the API's.
    #[serde(default)]
    pub cache: Option<CachePolicySpec>,
}

fn default_methods() -> Vec<String> {
    vec!["ANY".into()]
}
