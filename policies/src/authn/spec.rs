//! The authentication part of the config schema: credential issuers (`key_managers:`),
//! consumers (`applications:`), the backend JWT the gateway signs (`backend_jwt:`), and an
//! API's `auth:` with the auth type of its resources. Re-exported by [`crate::config`].

use crate::config::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::time::Duration;

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
    /// The application's own tier: all its requests, across APIs.
    #[serde(default)]
    pub tier: Option<String>,
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
