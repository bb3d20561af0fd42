//! Throttling spec → [`Throttling`] (the gateway-wide part, with the tiers) and
//! [`ApiThrottle`] per API. Every tier name is resolved to an index here, every regex and
//! CIDR block parsed, every counter key hashed: the request path only looks things up.

use super::spec::{ApiThrottlingSpec, LimitSpec, MatchSpec, TierSpec, UNAUTHENTICATED};
use super::{key_hash, ApiThrottle, Condition, CountBy, Limit, Matcher, Throttling, Tier};
use crate::config::{ApiSpec, GatewaySpec};
use crate::error::Errors;
use crate::state::Durable;
use http::HeaderName;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// The tiers every gateway knows (WSO2's defaults); `tiers:` may redefine them.
const BUILT_IN: [(&str, Option<(u64, u64)>); 5] = [
    ("Unlimited", None),
    ("Gold", Some((5000, 60_000))),
    ("Silver", Some((2000, 60_000))),
    ("Bronze", Some((1000, 60_000))),
    (UNAUTHENTICATED, Some((500, 60_000))),
];

/// The longest window a tier may have.
const MAX_WINDOW_MS: u64 = 31 * 86_400_000;

fn limit(spec: &LimitSpec, path: &str, errors: &mut Errors) -> Option<Limit> {
    let window_ms = u64::try_from(spec.per.0.as_millis()).unwrap_or(u64::MAX);
    let mut ok = true;
    if spec.requests == 0 {
        errors.push(format!("{path}.requests"), "must be at least 1 (use `unlimited: true` for no limit)");
        ok = false;
    }
    if window_ms == 0 || window_ms > MAX_WINDOW_MS {
        errors.push(format!("{path}.per"), "must be between 1ms and 31d");
        ok = false;
    }
    ok.then_some(Limit { requests: spec.requests, window_ms })
}

fn compile_tier(name: &str, spec: &TierSpec, path: &str, errors: &mut Errors) -> Tier {
    let name: Arc<str> = Arc::from(name);
    if spec.unlimited {
        if spec.requests.is_some() || spec.per.is_some() || spec.burst.is_some() {
            errors.push(path, "an unlimited tier has no `requests`, `per` or `burst`");
        }
        return Tier { name, quota: None, burst: None, enforce: true };
    }
    let quota = match (spec.requests, spec.per) {
        (Some(requests), Some(per)) => limit(&LimitSpec { requests, per }, path, errors),
        _ => {
            errors.push(path, "needs `requests` and `per` (or `unlimited: true`)");
            None
        }
    };
    let burst = spec.burst.as_ref().and_then(|b| limit(b, &format!("{path}.burst"), errors));
    if let (Some(q), Some(b)) = (quota, burst) {
        if b.window_ms >= q.window_ms || b.requests > q.requests {
            errors.push(format!("{path}.burst"), format!("must be a shorter window with at most the tier's {} requests", q.requests));
        }
    }
    Tier { name, quota, burst, enforce: spec.stop_on_quota_reach }
}

/// The gateway-wide part. `errors` get paths from the document root.
pub fn compile_throttling(spec: &GatewaySpec, durable: &Durable, errors: &mut Errors) -> Throttling {
    let mut tiers = Vec::new();
    let mut tier_index: HashMap<Arc<str>, u32> = HashMap::new();
    for (name, quota) in BUILT_IN {
        if spec.tiers.contains_key(name) {
            continue;
        }
        let quota = quota.map(|(requests, window_ms)| Limit { requests, window_ms });
        tier_index.insert(Arc::from(name), tiers.len() as u32);
        tiers.push(Tier { name: Arc::from(name), quota, burst: None, enforce: true });
    }
    for (name, tier) in &spec.tiers {
        let path = format!("tiers.{name}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(path.clone(), "a tier name is printable ASCII without spaces");
        }
        let tier = compile_tier(name, tier, &path, errors);
        tier_index.insert(tier.name.clone(), tiers.len() as u32);
        tiers.push(tier);
    }
    let known = |tier_index: &HashMap<Arc<str>, u32>| {
        let mut names: Vec<&str> = tier_index.keys().map(|k| &**k).collect();
        names.sort_unstable();
        names.join(", ")
    };
    let find = |name: &str, path: String, errors: &mut Errors| -> Option<u32> {
        let found = tier_index.get(name).copied();
        if found.is_none() {
            errors.push(path, format!("no tier is named `{name}` (tiers: {})", known(&tier_index)));
        }
        found
    };
    let t = &spec.throttling;
    let ip = t.ip.as_ref().and_then(|l| {
        if l.v4_prefix > 32 || l.v6_prefix > 128 {
            errors.push("throttling.ip", "v4_prefix is at most 32 and v6_prefix at most 128");
        }
        limit(&LimitSpec { requests: l.requests, per: l.per }, "throttling.ip", errors)
    });
    let ip_prefixes = t.ip.as_ref().map_or((32, 64), |l| (l.v4_prefix.min(32), l.v6_prefix.min(128)));
    let unauthenticated = find(&t.unauthenticated_tier, "throttling.unauthenticated_tier".into(), errors).unwrap_or(0);
    if t.trust_forwarded_for > 16 {
        errors.push("throttling.trust_forwarded_for", "at most 16 proxy hops");
    }
    if t.max_keys < 1000 {
        errors.push("throttling.max_keys", "must be at least 1000");
    }
    let mut deny_nets = Vec::new();
    for (i, s) in t.deny.ips.iter().enumerate() {
        match parse_net(s) {
            Some(n) => deny_nets.push(n),
            None => errors.push(format!("throttling.deny.ips[{i}]"), format!("`{s}` is not an IP address or CIDR block")),
        }
    }
    let app_ids: HashMap<&str, u32> = spec.applications.iter().enumerate().map(|(i, a)| (a.id.as_str(), i as u32)).collect();
    let mut deny_apps = HashSet::new();
    for (i, id) in t.deny.applications.iter().enumerate() {
        match app_ids.get(id.as_str()) {
            Some(&a) => {
                deny_apps.insert(a);
            }
            None => errors.push(format!("throttling.deny.applications[{i}]"), format!("no application has the id `{id}`")),
        }
    }
    let deny_users = t.deny.users.iter().map(|u| Box::from(u.as_str())).collect();
    // Applications: their own tier, and the tiers of their subscriptions (which the API must offer).
    let offered: HashMap<&str, &[String]> = spec.apis.iter().map(|a| (a.name.as_str(), a.tiers.as_slice())).collect();
    let mut app_tiers = Vec::with_capacity(spec.applications.len());
    let mut app_keys = Vec::with_capacity(spec.applications.len());
    for (a, app) in spec.applications.iter().enumerate() {
        app_tiers.push(app.tier.as_ref().and_then(|n| find(n, format!("applications[{a}].tier"), errors)));
        app_keys.push(key_hash(("application", app.id.as_str())));
        for (j, sub) in app.subscriptions.iter().enumerate() {
            let path = format!("applications[{a}].subscriptions[{j}].tier");
            if find(&sub.tier, path.clone(), errors).is_some() {
                if let Some(list) = offered.get(sub.api.as_str()).filter(|l| !l.is_empty()) {
                    if !list.contains(&sub.tier) {
                        errors.push(path, format!("the API `{}` offers {} only", sub.api, list.join(", ")));
                    }
                }
            }
        }
    }
    for (i, api) in spec.apis.iter().enumerate() {
        for (j, name) in api.tiers.iter().enumerate() {
            find(name, format!("apis[{i}].tiers[{j}]"), errors);
        }
    }
    Throttling {
        tiers,
        tier_index,
        ip,
        ip_prefixes,
        deny_nets,
        deny_apps,
        deny_users,
        trust_forwarded_for: t.trust_forwarded_for,
        unauthenticated,
        legacy_headers: t.legacy_headers,
        app_tiers,
        app_keys,
        store: durable.throttle_store(t.max_keys),
    }
}

/// An address is a /32 (or /128) block.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A tier named by an API or resource (`path`: where the name is written).
pub fn tier_ref(t: &Throttling, name: &str, path: &str, errors: &mut Errors) -> Option<u32> {
    let found = t.tier_index.get(name).copied();
    if found.is_none() {
        errors.push(path, format!("no tier is named `{name}`"));
    }
    found
}

/// An API's `throttling:`.
pub fn compile_api_throttle(spec: &ApiSpec, path: &str, t: &Throttling, errors: &mut Errors) -> ApiThrottle {
    let key = key_hash(("api", spec.name.as_str()));
    let empty = ApiThrottlingSpec::default();
    let s = spec.throttling.as_ref().unwrap_or(&empty);
    let api_tier = s.api.as_ref().and_then(|n| tier_ref(t, n, &format!("{path}.throttling.api"), errors));
    let mut conditions = Vec::new();
    for (i, c) in s.conditions.iter().enumerate() {
        let cpath = format!("{path}.throttling.conditions[{i}]");
        let ip = c.when.ip.as_ref().and_then(|s| {
            let n = parse_net(s);
            if n.is_none() {
                errors.push(format!("{cpath}.when.ip"), format!("`{s}` is not an IP address or CIDR block"));
            }
            n
        });
        let mut headers = Vec::new();
        for (name, m) in &c.when.header {
            let at = format!("{cpath}.when.header.{name}");
            match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(h) => {
                    if let Some(m) = matcher(m, at, errors) {
                        headers.push((h, m));
                    }
                }
                Err(_) => errors.push(at, "not a header name"),
            }
        }
        let mut query = Vec::new();
        for (name, m) in &c.when.query {
            if let Some(m) = matcher(m, format!("{cpath}.when.query.{name}"), errors) {
                query.push((name.clone(), m));
            }
        }
        let mut claims = Vec::new();
        for (name, m) in &c.when.claim {
            if let Some(m) = matcher(m, format!("{cpath}.when.claim.{name}"), errors) {
                claims.push((name.clone(), m));
            }
        }
        if c.when.ip.is_none() && c.when.header.is_empty() && c.when.query.is_empty() && c.when.claim.is_empty() {
            errors.push(format!("{cpath}.when"), "name at least one of `ip`, `header`, `query` or `claim`");
        }
        let by = match c.limit.key.as_str() {
            "application" => Some(CountBy::Application),
            "user" => Some(CountBy::User),
            "ip" => Some(CountBy::Ip),
            other => match other.strip_prefix("header:").map(|h| HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes())) {
                Some(Ok(h)) => Some(CountBy::Header(h)),
                _ => {
                    errors.push(format!("{cpath}.limit.key"), format!("`{other}` is not application, user, ip or header:<name>"));
                    None
                }
            },
        };
        let lim = limit(&LimitSpec { requests: c.limit.requests, per: c.limit.per }, &format!("{cpath}.limit"), errors);
        if let (Some(by), Some(limit)) = (by, lim) {
            conditions.push(Condition { ip, headers, query, claims, invert: c.when.invert, limit, by, index: i as u32 });
        }
    }
    ApiThrottle { key, api_tier, conditions }
}

fn matcher(m: &MatchSpec, at: String, errors: &mut Errors) -> Option<Matcher> {
    match m {
        MatchSpec::Exact(v) => Some(Matcher::Exact(v.clone())),
        MatchSpec::Regex { regex } => match regex::RegexBuilder::new(regex).size_limit(1 << 20).build() {
            Ok(r) => Some(Matcher::Regex(r)),
            Err(e) => {
                errors.push(at, format!("not a valid regex: {e}"));
                None
            }
        },
    }
}

/// Every claim name a condition of any API matches on: the key managers keep these claims of
/// each verified token (and the token caches are keyed by the list, so a change refetches).
pub fn condition_claims(spec: &GatewaySpec) -> Arc<[Box<str>]> {
    let mut names: Vec<Box<str>> = spec
        .apis
        .iter()
        .filter_map(|a| a.throttling.as_ref())
        .flat_map(|t| t.conditions.iter())
        .flat_map(|c| c.when.claim.keys())
        .map(|k| Box::from(k.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names.into()
}
