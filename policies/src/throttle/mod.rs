//! Throttling: named tiers applied at subscription, application, API, resource and client
//! address level, with burst control, custom conditions and deny lists, consolidated so that
//! a request passes only when every limit that applies to it has room.
//!
//! - [`deny`] runs first in the chain (a denied address costs nothing more); a denied
//!   application or user is refused right after authentication.
//! - [`checks`] lists, purely, the limits a request is subject to, in the fixed order of
//!   [`Level`]. The chain's commit step hands the list to the [`store::CounterStore`] once,
//!   which counts the request in all of them or in none (check, then commit): a request
//!   refused by one level consumes nothing from any other, and refused requests never count.
//! - Counting is a sliding window per key ([`window`]): no span of a tier's window, aligned
//!   anywhere, admits more than its limit.
//!
//! See docs/throttling.md for the levels with worked examples.

pub mod compile;
pub mod spec;
pub mod store;
pub mod window;

use crate::authn::Principal;
use crate::request::RequestHead;
use crate::verdict::{ProblemCode, Rejection};
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use store::{Check, CounterStore, Key, Outcome, Standing};

/// The levels, in the order a request is checked (docs/throttling.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Level {
    Ip = 1,
    Api = 2,
    Resource = 3,
    Unauthenticated = 4,
    Subscription = 5,
    SubscriptionBurst = 6,
    Application = 7,
    ApplicationBurst = 8,
    Condition = 9,
}

impl Level {
    pub const ALL: [Level; 9] = [
        Level::Ip,
        Level::Api,
        Level::Resource,
        Level::Unauthenticated,
        Level::Subscription,
        Level::SubscriptionBurst,
        Level::Application,
        Level::ApplicationBurst,
        Level::Condition,
    ];

    /// The name in problems, metrics and docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Ip => "ip",
            Level::Api => "api",
            Level::Resource => "resource",
            Level::Unauthenticated => "unauthenticated",
            Level::Subscription => "subscription",
            Level::SubscriptionBurst => "subscription_burst",
            Level::Application => "application",
            Level::ApplicationBurst => "application_burst",
            Level::Condition => "condition",
        }
    }
}

/// `requests` per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u64,
    pub window_ms: u64,
}

impl Limit {
    /// `5000 per 1m`.
    pub fn describe(&self) -> String {
        format!("{} per {}", self.requests, human_window(self.window_ms))
    }
}

fn human_window(ms: u64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A compiled tier.
#[derive(Debug)]
pub struct Tier {
    pub name: Arc<str>,
    /// `None`: unlimited.
    pub quota: Option<Limit>,
    pub burst: Option<Limit>,
    /// `stop_on_quota_reach`.
    pub enforce: bool,
}

/// The gateway-wide throttling state of a snapshot.
pub struct Throttling {
    pub tiers: Vec<Tier>,
    pub tier_index: HashMap<Arc<str>, u32>,
    pub ip: Option<Limit>,
    /// The prefix lengths (v4, v6) the `ip` level counts by: 32 and 128 count each address.
    pub ip_prefixes: (u8, u8),
    pub deny_nets: Vec<IpNet>,
    /// Application indices (into `Applications::apps`) that are denied.
    pub deny_apps: HashSet<u32>,
    pub deny_users: HashSet<Box<str>>,
    pub trust_forwarded_for: u8,
    pub unauthenticated: u32,
    pub legacy_headers: bool,
    /// Per application index: its own tier, and the stable hash of its id.
    pub app_tiers: Vec<Option<u32>>,
    pub app_keys: Vec<u64>,
    /// Shared by every snapshot of the process (state::Durable): a reload keeps the counts.
    pub store: Arc<dyn CounterStore>,
}

impl std::fmt::Debug for Throttling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttling").field("tiers", &self.tiers).field("ip", &self.ip).finish_non_exhaustive()
    }
}

/// An API's compiled throttling.
#[derive(Debug, Default)]
pub struct ApiThrottle {
    /// The stable hash of the API's name.
    pub key: u64,
    pub api_tier: Option<u32>,
    pub conditions: Vec<Condition>,
}

/// A custom condition.
#[derive(Debug)]
pub struct Condition {
    pub ip: Option<IpNet>,
    pub headers: Vec<(HeaderName, Matcher)>,
    pub query: Vec<(String, Matcher)>,
    pub claims: Vec<(String, Matcher)>,
    pub invert: bool,
    pub limit: Limit,
    pub by: CountBy,
    /// Position in the API's list, part of its counters' key.
    pub index: u32,
}

#[derive(Debug)]
pub enum Matcher {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == value,
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

/// What a condition counts separately. A request without the key (no application, no user,
/// no such header) is counted by its client address: never unlimited.
#[derive(Debug)]
pub enum CountBy {
    Application,
    User,
    Ip,
    Header(HeaderName),
}

/// The process's keyed hash for counter keys: keyed once per process with random keys
/// (values a client chooses, like a header, cannot be picked to collide with someone else's
/// counter), stable across reloads. aHash: a few ns for these short keys, where SipHash
/// took a quarter of the whole decision.
fn hasher() -> &'static ahash::RandomState {
    static H: OnceLock<ahash::RandomState> = OnceLock::new();
    H.get_or_init(ahash::RandomState::new)
}

/// The key hash of `parts`; never 0 (the overflow key).
pub fn key_hash(parts: impl Hash) -> u64 {
    hasher().hash_one(parts).max(1)
}

/// The client's address: the peer, or the address `trust` hops from the right of
/// `X-Forwarded-For` (all its fields in order) when the gateway sits behind that many
/// proxies. A chain shorter than `trust` gives its first address; an unparsable one, the peer.
pub fn client_ip(req: &dyn RequestHead, trust: u8) -> Option<IpAddr> {
    let peer = req.client_addr();
    if trust == 0 {
        return peer;
    }
    // The last 16 entries (enough for any real proxy chain), and the first.
    let mut chain: [Option<IpAddr>; 16] = [None; 16];
    let mut first: Option<IpAddr> = None;
    let mut n = 0usize;
    let _ = req.visit_fields(&mut |name, value| {
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            for part in value.split(|&b| b == b',') {
                let ip = std::str::from_utf8(part.trim_ascii()).ok().and_then(|s| s.parse().ok());
                if n == 0 {
                    first = ip;
                }
                chain[n % 16] = ip;
                n += 1;
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    if n == 0 {
        return peer;
    }
    let trust = usize::from(trust);
    let ip = if trust > n { first } else { chain[(n - trust) % 16] };
    ip.or(peer)
}

/// Step 0 of the chain: a denied client address is refused before anything else.
pub fn deny_ip(t: &Throttling, client: Option<IpAddr>) -> Option<Rejection> {
    let ip = client?;
    t.deny_nets
        .iter()
        .any(|n| n.contains(&ip))
        .then(|| Rejection::new(ProblemCode::ThrottleDenied, "requests from this address are denied"))
}

/// After authentication: a denied application or user is refused.
pub fn deny_principal(t: &Throttling, p: &Principal) -> Option<Rejection> {
    if p.application.is_some_and(|a| t.deny_apps.contains(&a)) {
        let mut r = Rejection::new(ProblemCode::ThrottleDenied, "this application is denied");
        r.application = p.application;
        return Some(r);
    }
    if p.user.as_deref().is_some_and(|u| t.deny_users.contains(u)) {
        return Some(Rejection::new(ProblemCode::ThrottleDenied, "this user is denied"));
    }
    None
}

/// The most checks a request can have: one per level.
pub const MAX_CHECKS: usize = Level::ALL.len();

/// The limits one request is subject to, in level order, on the stack.
#[derive(Debug, Default)]
pub struct Checks {
    pub checks: [Option<(Check, Level, u32)>; MAX_CHECKS],
    pub len: usize,
}

impl Checks {
    fn push(&mut self, level: Level, tier: u32, key: u64, limit: Limit, enforce: bool) {
        if self.len < MAX_CHECKS {
            let check = Check { key: Key { level: level as u8, hash: key }, limit: limit.requests, window_ms: limit.window_ms, enforce };
            self.checks[self.len] = Some((check, level, tier));
            self.len += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A tier index for a condition's own limit (it has no tier).
pub const NO_TIER: u32 = u32::MAX;

/// What one request was decided to, for its response headers and metrics.
#[derive(Debug, Clone)]
pub struct Quota {
    pub level: Level,
    /// The tier's name, or `condition` for a custom limit.
    pub policy: Arc<str>,
    pub window_ms: u64,
    pub standing: Standing,
}

/// Everything a request to `api`'s resource is subject to.
#[allow(clippy::too_many_arguments)]
pub fn checks(
    t: &Throttling,
    api: &ApiThrottle,
    resource: Option<(u32, Option<u32>)>,
    method: &http::Method,
    principal: Option<&Principal>,
    authenticated_api: bool,
    req: &dyn RequestHead,
    client: Option<IpAddr>,
) -> Checks {
    let mut out = Checks::default();
    if let (Some(limit), Some(ip)) = (t.ip, client) {
        out.push(Level::Ip, NO_TIER, key_hash(network(ip, t.ip_prefixes)), limit, true);
    }
    let tier = |i: u32| t.tiers.get(i as usize);
    if let Some((i, q)) = api.api_tier.and_then(|i| Some((i, tier(i)?.quota?))) {
        out.push(Level::Api, i, api.key, q, tier(i).is_none_or(|t| t.enforce));
    }
    if let Some((resource, Some(i))) = resource {
        if let Some(q) = tier(i).and_then(|t| t.quota) {
            let k = key_hash((api.key, resource, method.as_str()));
            out.push(Level::Resource, i, k, q, tier(i).is_none_or(|t| t.enforce));
        }
    }
    match principal {
        None if authenticated_api => {
            let i = t.unauthenticated;
            if let (Some(q), Some(k)) = (tier(i).and_then(|t| t.quota), client.map(key_hash)) {
                out.push(Level::Unauthenticated, i, k, q, tier(i).is_none_or(|t| t.enforce));
            }
        }
        None => {}
        Some(p) => {
            let app = p.application.and_then(|a| Some((a, *t.app_keys.get(a as usize)?)));
            if let (Some((_, app_key)), Some(i)) = (app, p.tier.as_deref().and_then(|n| t.tier_index.get(n)).copied()) {
                if let Some(tr) = tier(i) {
                    let k = (app_key ^ api.key.rotate_left(17)).max(1);
                    if let Some(q) = tr.quota {
                        out.push(Level::Subscription, i, k, q, tr.enforce);
                    }
                    if let (Some(b), Some(_)) = (tr.burst, tr.quota) {
                        out.push(Level::SubscriptionBurst, i, k, b, true);
                    }
                }
            }
            if let Some((a, app_key)) = app {
                if let Some(i) = t.app_tiers.get(a as usize).copied().flatten() {
                    if let Some(tr) = tier(i) {
                        if let Some(q) = tr.quota {
                            out.push(Level::Application, i, app_key, q, tr.enforce);
                            if let Some(b) = tr.burst {
                                out.push(Level::ApplicationBurst, i, app_key, b, true);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(c) = api.conditions.iter().find(|c| condition_matches(c, req, client, principal)) {
        let by_ip = || client.map(|ip| key_hash((api.key, c.index, 0u8, ip)));
        let k = match &c.by {
            CountBy::Application => principal.and_then(|p| p.application).map(|a| key_hash((api.key, c.index, 1u8, a))).or_else(by_ip),
            CountBy::User => principal.and_then(|p| p.user.as_deref()).map(|u| key_hash((api.key, c.index, 2u8, u))).or_else(by_ip),
            CountBy::Ip => by_ip(),
            CountBy::Header(h) => req.header(h.as_str()).map(|v| key_hash((api.key, c.index, 3u8, v))).or_else(by_ip),
        };
        // No address either (a test harness without a peer): all such requests share one.
        let k = k.unwrap_or_else(|| key_hash((api.key, c.index)));
        out.push(Level::Condition, NO_TIER, k, c.limit, true);
    }
    out
}

/// The network of `ip` at the level's prefix lengths (the address itself at 32 / 128).
fn network(ip: IpAddr, (v4, v6): (u8, u8)) -> IpAddr {
    match ip {
        IpAddr::V4(a) if v4 < 32 => {
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & (u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0))))
        }
        IpAddr::V6(a) if v6 < 128 => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & (u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0))))
        }
        other => other,
    }
}

fn condition_matches(c: &Condition, req: &dyn RequestHead, client: Option<IpAddr>, principal: Option<&Principal>) -> bool {
    let ip_ok = c.ip.is_none_or(|net| client.is_some_and(|ip| net.contains(&ip)));
    let headers_ok =
        c.headers.iter().all(|(name, m)| req.header(name.as_str()).and_then(|v| std::str::from_utf8(v).ok()).is_some_and(|v| m.matches(v)));
    let query_ok = c.query.iter().all(|(name, m)| query_value(req.query(), name).is_some_and(|v| m.matches(&v)));
    // A request without a token (or without the claim) does not match a claim condition.
    let claims_ok = c
        .claims
        .iter()
        .all(|(name, m)| principal.and_then(|p| p.claims.iter().find(|(n, _)| **n == **name)).is_some_and(|(_, v)| m.matches(v)));
    (ip_ok && headers_ok && query_ok && claims_ok) != c.invert
}

/// A query parameter's first value, percent- and `+`-decoded.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

impl Checks {
    /// The checks as the store takes them (on the stack).
    pub fn for_store(&self) -> StoreChecks {
        let mut list = [Check { key: Key { level: 0, hash: 0 }, limit: 0, window_ms: 1, enforce: false }; MAX_CHECKS];
        for (slot, c) in list.iter_mut().zip(self.checks.iter().flatten()) {
            *slot = c.0;
        }
        StoreChecks { list, len: self.len }
    }
}

/// [`Checks`] without their levels and tiers: what goes to the store.
pub struct StoreChecks {
    list: [Check; MAX_CHECKS],
    len: usize,
}

impl StoreChecks {
    pub fn as_slice(&self) -> &[Check] {
        &self.list[..self.len]
    }
}

/// The decision in one synchronous call, for a store that answers at once (benches, tests);
/// the chain's commit step awaits [`CounterStore::acquire`] and calls [`settle`] instead. A
/// store that would have to wait is treated as refusing (fail closed).
pub fn acquire(t: &Throttling, checks: &Checks, now_ms: u64) -> Result<Option<Quota>, Throttled> {
    let list = checks.for_store();
    let outcome = match t.store.acquire(now_ms, list.as_slice()) {
        store::Acquire::Ready(o) => o,
        store::Acquire::Pending(_) => Outcome::Refused { index: 0, limit: 0, retry_after_ms: 1000 },
    };
    settle(t, checks, outcome)
}

/// What the store's outcome means for the request: its tightest quota, or the refusal.
pub fn settle(t: &Throttling, checks: &Checks, outcome: Outcome) -> Result<Option<Quota>, Throttled> {
    if checks.is_empty() {
        return Ok(None);
    }
    let meta = |i: usize| checks.checks.get(i).copied().flatten();
    let policy = |level: Level, tier: u32| -> Arc<str> {
        match t.tiers.get(tier as usize) {
            Some(tr) => tr.name.clone(),
            None => Arc::from(level.as_str()),
        }
    };
    match outcome {
        Outcome::Admitted { tightest, over_quota } => Ok(tightest.and_then(|(i, standing)| {
            let (c, level, tier) = meta(i)?;
            Some(Quota { level, policy: policy(level, tier), window_ms: c.window_ms, standing: Standing { over: over_quota, ..standing } })
        })),
        Outcome::Refused { index, limit, retry_after_ms } => {
            let fallback = Check { key: Key { level: 0, hash: 0 }, limit, window_ms: 1000, enforce: true };
            let (c, level, tier) = meta(index).unwrap_or((fallback, Level::Api, NO_TIER));
            Err(Throttled { level, policy: policy(level, tier), limit: Limit { requests: limit, window_ms: c.window_ms }, retry_after_ms })
        }
    }
}

/// A request a level refused.
#[derive(Debug, Clone)]
pub struct Throttled {
    pub level: Level,
    pub policy: Arc<str>,
    pub limit: Limit,
    pub retry_after_ms: u64,
}

impl Throttled {
    /// The 429 with `Retry-After` and the rate-limit fields of the limit that bound it.
    pub fn rejection(&self, legacy: bool) -> Rejection {
        let detail = format!("the {} limit ({}: {}) is used up", self.level.as_str(), self.policy, self.limit.describe());
        let retry = self.retry_after_ms.div_ceil(1000).max(1);
        let mut r = Rejection::new(ProblemCode::Throttled, detail);
        r.names = Some(crate::verdict::ProblemNames::Throttle { level: self.level.as_str(), tier: self.policy.clone() });
        r = r.with_header(http::header::RETRY_AFTER, HeaderValue::from(retry));
        let standing = Standing { limit: self.limit.requests, remaining: 0, reset_ms: self.retry_after_ms, over: false };
        for (name, value) in rate_limit_fields(&self.policy, self.limit.window_ms, &standing, legacy) {
            r = r.with_header(name, value);
        }
        r
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and with
/// `legacy` the `X-RateLimit-*` trio, for a request's tightest limit. Written on every
/// counted request: the values are formatted on the stack, one allocation each.
pub fn rate_limit_fields(policy: &str, window_ms: u64, s: &Standing, legacy: bool) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
    static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
    static X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    static X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    static X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    let window_s = window_ms.div_ceil(1000).max(1);
    // A slot's requests count up to 1 % past the window; the fields never say more than `w`.
    let reset_s = s.reset_ms.min(window_ms).div_ceil(1000);
    let value = |args: std::fmt::Arguments<'_>| {
        let mut buf = [0u8; 192];
        let mut w = &mut buf[..];
        let _ = std::io::Write::write_fmt(&mut w, args);
        let left = w.len();
        HeaderValue::from_bytes(&buf[..buf.len() - left]).unwrap_or(HeaderValue::from_static(""))
    };
    let name = SfString(policy);
    let mut out: [Option<(HeaderName, HeaderValue)>; 5] = Default::default();
    out[0] = Some((POLICY.clone(), value(format_args!("{name};q={};w={window_s}", s.limit))));
    out[1] = Some((RATELIMIT.clone(), value(format_args!("{name};r={};t={reset_s}", s.remaining))));
    if legacy {
        out[2] = Some((X_LIMIT.clone(), HeaderValue::from(s.limit)));
        out[3] = Some((X_REMAINING.clone(), HeaderValue::from(s.remaining)));
        out[4] = Some((X_RESET.clone(), HeaderValue::from(reset_s)));
    }
    out.into_iter().flatten()
}

/// A structured-field string (RFC 9651) of the text: quoted, with `"` and `\` escaped and
/// anything outside printable ASCII left out.
struct SfString<'a>(&'a str);

impl std::fmt::Display for SfString<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        f.write_char('"')?;
        for c in self.0.chars().filter(|c| (' '..='~').contains(c)) {
            if c == '"' || c == '\\' {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_level_counts_a_network_at_its_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network(ip("198.51.100.77"), (24, 128)), ip("198.51.100.0"));
        assert_eq!(network(ip("198.51.100.77"), (32, 128)), ip("198.51.100.77"));
        assert_eq!(network(ip("198.51.100.77"), (0, 128)), ip("0.0.0.0"));
        assert_eq!(network(ip("2001:db8:1:2:3:4:5:6"), (32, 64)), ip("2001:db8:1:2::"));
        assert_eq!(network(ip("2001:db8::1"), (24, 128)), ip("2001:db8::1"));
    }

    #[test]
    fn the_rate_limit_fields_quote_the_tier_name() {
        let s = Standing { limit: 10, remaining: 3, reset_ms: 60_500, over: false };
        let fields: Vec<(String, String)> =
            rate_limit_fields("Go\"ld\\", 60_000, &s, true).map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string())).collect();
        assert_eq!(
            fields,
            [
                ("ratelimit-policy", "\"Go\\\"ld\\\\\";q=10;w=60"),
                ("ratelimit", "\"Go\\\"ld\\\\\";r=3;t=60"),
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "60"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }
}
