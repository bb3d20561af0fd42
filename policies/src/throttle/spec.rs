//! The throttling part of the config: `tiers`, the gateway-wide `throttling` block, an API's
//! `tiers` and `throttling`, a resource's `throttling`, an application's `tier`. Re-exported
//! by [`crate::config`].

use crate::config::HumanDuration;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A named tier (`tiers:` maps names to these): a request quota per window, or unlimited.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Nothing is counted.
    #[serde(default)]
    pub unlimited: bool,
    pub requests: Option<u64>,
    pub per: Option<HumanDuration>,
    /// A second, shorter limit inside the quota (subscription and application levels).
    #[serde(default)]
    pub burst: Option<LimitSpec>,
    /// `false`: requests over the quota pass and are counted (for billing) instead of 429.
    #[serde(default = "crate::config::yes")]
    pub stop_on_quota_reach: bool,
}

/// `requests` per `per`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub requests: u64,
    pub per: HumanDuration,
}

/// `throttling.ip`: `requests` per `per` for each client address, or for each network of the
/// given prefix lengths (`v4_prefix: 24` counts a /24 together).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpLimitSpec {
    pub requests: u64,
    pub per: HumanDuration,
    #[serde(default = "default_v4_prefix")]
    pub v4_prefix: u8,
    #[serde(default = "default_v6_prefix")]
    pub v6_prefix: u8,
}

fn default_v4_prefix() -> u8 {
    32
}
/// A /64 is what one IPv6 subscriber gets: counting per address would let one client rotate
/// through 2^64 of them.
fn default_v6_prefix() -> u8 {
    64
}

/// The gateway-wide `throttling:` block.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThrottlingSpec {
    /// Every client address (or network), gateway-wide.
    #[serde(default)]
    pub ip: Option<IpLimitSpec>,
    /// Refused with 403 before anything else is done.
    #[serde(default)]
    pub deny: DenySpec,
    /// How many proxies in front of the gateway append to `X-Forwarded-For`: the client is the
    /// address that many hops from the right (0: the peer address, the header is ignored).
    #[serde(default)]
    pub trust_forwarded_for: u8,
    /// The tier of requests to `auth: none` resources, counted per client address. Default:
    /// the built-in `Unauthenticated` tier, 500 requests per minute (WSO2's default).
    #[serde(default = "default_unauthenticated")]
    pub unauthenticated_tier: String,
    /// Also send `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
    #[serde(default)]
    pub legacy_headers: bool,
    /// Counters kept at most; beyond, new keys of a level share one counter.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

impl Default for ThrottlingSpec {
    fn default() -> Self {
        Self {
            ip: None,
            deny: DenySpec::default(),
            trust_forwarded_for: 0,
            unauthenticated_tier: default_unauthenticated(),
            legacy_headers: false,
            max_keys: default_max_keys(),
        }
    }
}

pub const UNAUTHENTICATED: &str = "Unauthenticated";

fn default_unauthenticated() -> String {
    UNAUTHENTICATED.into()
}
fn default_max_keys() -> usize {
    200_000
}

/// Deny lists.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DenySpec {
    /// Addresses or CIDR blocks.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Application ids.
    #[serde(default)]
    pub applications: Vec<String>,
    /// User names (the token's user claim).
    #[serde(default)]
    pub users: Vec<String>,
}

/// An API's `throttling:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiThrottlingSpec {
    /// The tier for all consumers of the API together.
    #[serde(default)]
    pub api: Option<String>,
    /// Custom policies: the first whose `when` matches applies its `limit`.
    #[serde(default)]
    pub conditions: Vec<ConditionSpec>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    pub when: WhenSpec,
    pub limit: ConditionLimitSpec,
}

/// What a condition matches; every part given must match (then `invert` flips the result).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    /// The client address: one address or a CIDR block.
    #[serde(default)]
    pub ip: Option<String>,
    /// Header fields by name.
    #[serde(default)]
    pub header: BTreeMap<String, MatchSpec>,
    /// Query parameters by name.
    #[serde(default)]
    pub query: BTreeMap<String, MatchSpec>,
    /// Claims of the request's token by name (string, number or boolean claims, as text).
    #[serde(default)]
    pub claim: BTreeMap<String, MatchSpec>,
    #[serde(default)]
    pub invert: bool,
}

/// An exact value (`x-batch: "true"`), or a regular expression (`x-batch: { regex: "^t" }`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MatchSpec {
    Exact(String),
    Regex { regex: String },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConditionLimitSpec {
    pub requests: u64,
    pub per: HumanDuration,
    /// What is counted separately: `application`, `user`, `ip`, or `header:<name>`.
    #[serde(default = "default_condition_key")]
    pub key: String,
}

fn default_condition_key() -> String {
    "ip".into()
}
