//! Response caching, the pure part: the config ([`spec`]), its compiled form ([`CachePolicy`],
//! one per cached resource), RFC 9111's storing and freshness rules ([`rfc9111`]) and the
//! cache key ([`key`]). Both exchanges and pingora-cache's hooks ask these, so there is one
//! RFC 9111 implementation; the storage and the wiring are the gateway's (`cache.rs`,
//! `cache_storage.rs`).

pub mod compile;
pub mod key;
pub mod rfc9111;
pub mod spec;

use crate::chain::Admitted;
use crate::request::RequestHead;
use crate::snapshot::Snapshot;
use http::HeaderName;
use rfc9111::{Directives, NotStored};
use std::time::Duration;

/// A resource's compiled cache settings (the API's `cache:` merged with the resource's).
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub shared: bool,
    /// Sorted, lower case, no repeats.
    pub vary: Vec<HeaderName>,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub honor_request: bool,
    /// A digest of the settings above. It is part of every key, so an API whose cache settings
    /// change starts with fresh entries, and a reload that keeps them keeps its entries.
    pub fingerprint: u64,
}

/// What a request's own `Cache-Control` asks of the cache (when the policy honours it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Serve a fresh entry if there is one; fill on a miss.
    Normal,
    /// `no-cache`: do not serve a stored response; fetch, and store the answer.
    Refresh,
    /// `no-store`: neither look up nor store.
    Bypass,
}

/// How a response was served, for `X-Cache` and `gateway_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// A fresh entry.
    Hit,
    /// No entry: fetched (and stored if it may be).
    Miss,
    /// A stale entry served (while revalidating, or because the upstream failed).
    Stale,
    /// A stale entry refetched.
    Expired,
    /// Not looked up (`no-store` request, a purge, an uncacheable method).
    Bypass,
}

impl CacheStatus {
    pub const ALL: [CacheStatus; 5] = [CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Stale, CacheStatus::Expired, CacheStatus::Bypass];

    /// The `X-Cache` value.
    pub const fn header(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Expired => "expired",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// A cacheable request's key, decided once per request (after authentication, before the
/// lookup).
#[derive(Debug, Clone)]
pub struct RequestKey {
    /// The key's bytes ([`key::cache_key`]); the storage hashes them.
    pub primary: Vec<u8>,
    /// `api` NUL `path?canonical-query`: what a purge by API or by URL matches.
    pub tag: String,
    pub lookup: Lookup,
    /// The entry is per consumer (the request carried a credential and the resource is not
    /// `shared`).
    pub per_consumer: bool,
    /// The request carried a credential (`Authorization`, an API key, a principal).
    pub authorized: bool,
}

/// The cache settings of the admitted request's resource, if it has any and the method is
/// GET or HEAD.
pub fn policy_for<'s>(snapshot: &'s Snapshot, admitted: &Admitted, method: &http::Method) -> Option<&'s CachePolicy> {
    if !(method == http::Method::GET || method == http::Method::HEAD) {
        return None;
    }
    snapshot.api(admitted.plan.api)?.resource(admitted.plan.resource?)?.cache.as_deref()
}

/// The key of an admitted request to a cached resource (`None`: the resource is not cached or
/// the method is not GET/HEAD). `raw_path` is the request target's path; the normalised one
/// is used.
pub fn request_key(snapshot: &Snapshot, admitted: &Admitted, req: &dyn RequestHead, raw_path: &str) -> Option<RequestKey> {
    let policy = policy_for(snapshot, admitted, req.method())?;
    let api = snapshot.api(admitted.plan.api)?;
    let path = admitted.normalized_path.as_deref().unwrap_or(raw_path);
    let lookup = if policy.honor_request { request_lookup(req) } else { Lookup::Normal };

    let authorization = req.header("authorization");
    let api_key = api.auth.as_ref().and_then(|a| a.api_key_header.as_ref()).and_then(|h| req.header(h.as_str()));
    let principal = admitted.principal.as_ref();
    let authorized = principal.is_some() || authorization.is_some() || api_key.is_some();
    let per_consumer = authorized && !policy.shared;
    // The consumer: the application's id and the user, or, for a credential the gateway did
    // not check (an open API), the credential itself.
    let app = principal.and_then(|p| p.application).and_then(|i| snapshot.applications.apps.get(i as usize)).map(|a| a.id.as_bytes());
    let user = principal.and_then(|p| p.user.as_deref()).map(str::as_bytes);
    let consumer = per_consumer.then(|| match (app, user) {
        (None, None) => (&b""[..], authorization.or(api_key).unwrap_or(b"")),
        (app, user) => (app.unwrap_or(b""), user.unwrap_or(b"")),
    });

    let mut vary: smallvec::SmallVec<[key::VaryValue<'_>; 4]> = smallvec::SmallVec::new();
    for name in &policy.vary {
        vary.push((name.as_str(), req.header(name.as_str())));
    }
    let query = req.query();
    let primary = key::cache_key(&key::KeyParts {
        method: req.method(),
        host: req.header("host").unwrap_or(b""),
        api: &api.name,
        version: &api.version,
        settings: policy.fingerprint,
        path,
        query,
        vary: &vary,
        consumer,
    });
    Some(RequestKey { primary, tag: url_tag(&api.name, path, query), lookup, per_consumer, authorized })
}

/// What a purge by URL matches: the API, the normalised path and the query in the key's
/// canonical order.
pub fn url_tag(api: &str, path: &str, query: Option<&str>) -> String {
    let mut tag = String::with_capacity(api.len() + 1 + path.len() + query.map_or(0, |q| q.len() + 1));
    tag.push_str(api);
    tag.push('\0');
    tag.push_str(path);
    if let Some(q) = query {
        let mut params: Vec<&str> = q.split('&').filter(|s| !s.is_empty()).collect();
        params.sort_unstable();
        for (i, p) in params.iter().enumerate() {
            tag.push(if i == 0 { '?' } else { '&' });
            tag.push_str(p);
        }
    }
    tag
}

/// The tags of entries under an API: a purge by API matches those starting with this.
pub fn api_tag_prefix(api: &str) -> String {
    format!("{api}\0")
}

/// The request's own `Cache-Control` (and the HTTP/1.0 `Pragma: no-cache`, RFC 9111 §5.4).
fn request_lookup(req: &dyn RequestHead) -> Lookup {
    let Some(cc) = req.header("cache-control") else {
        return if req.header("pragma").is_some_and(|p| p.windows(8).any(|w| w.eq_ignore_ascii_case(b"no-cache"))) {
            Lookup::Refresh
        } else {
            Lookup::Normal
        };
    };
    let d = Directives::parse([cc]);
    if d.no_store {
        Lookup::Bypass
    } else if d.no_cache || d.max_age == Some(0) {
        Lookup::Refresh
    } else {
        Lookup::Normal
    }
}

/// How a storable response is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub fresh_for: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
}

/// Whether an upstream response to a cacheable request may be stored, and for how long
/// (RFC 9111 §3 and §4.2, with the resource's settings). `now` is seconds since the epoch.
pub fn keep_response(
    policy: &CachePolicy,
    key: &RequestKey,
    method: &http::Method,
    status: u16,
    headers: &http::HeaderMap,
    now: u64,
) -> Result<Keep, NotStored> {
    let response = Directives::parse(headers.get_all(http::header::CACHE_CONTROL).iter().map(|v| v.as_bytes()));
    let request = match key.lookup {
        Lookup::Bypass => Directives { no_store: true, ..Directives::default() },
        _ => Directives::default(),
    };
    let vary_star = headers.get_all(http::header::VARY).iter().any(|v| v.as_bytes().split(|&b| b == b',').any(|n| n.trim_ascii() == b"*"));
    let exchange = rfc9111::Exchange {
        method,
        status,
        request: &request,
        response: &response,
        set_cookie: headers.contains_key(http::header::SET_COOKIE),
        vary_star,
        authorized_shared: key.authorized && !key.per_consumer,
    };
    rfc9111::storable(&exchange, !key.per_consumer)?;
    let date = |name| headers.get(name).map(|v| v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok()));
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // An unparsable Expires is the past (§5.3).
    let expires = date(http::header::EXPIRES).map(|t| t.map_or(0, secs));
    let date = date(http::header::DATE).flatten().map(secs);
    let fresh_for = rfc9111::freshness_lifetime(&response, expires, date, now, policy.ttl);
    let (stale_while_revalidate, stale_if_error) = rfc9111::stale_windows(&response, policy.stale_while_revalidate, policy.stale_if_error);
    if fresh_for.is_zero() && stale_if_error.is_zero() {
        // Stale on arrival with nothing to serve it for: storing it would only cost memory.
        return Err(NotStored::StaleOnArrival);
    }
    Ok(Keep { fresh_for, stale_while_revalidate, stale_if_error })
}

/// What the control API's purges act on (the gateway's storage implements it).
pub trait Purge: Send + Sync {
    /// Removes every entry; returns how many.
    fn purge_all(&self) -> usize;
    /// Removes the entries whose tag starts with `prefix` ([`api_tag_prefix`]), or equals
    /// `exact` ([`url_tag`]); returns how many.
    fn purge_tagged(&self, prefix: Option<&str>, exact: Option<&str>) -> usize;
}

/// The tag a purge by URL (`/context/version/path?query`, as a client sends it) removes, on
/// the current snapshot's routes. `Err`: why the URL names no cached API.
pub fn purge_url_tag(snapshot: &Snapshot, url: &str) -> Result<String, String> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    if !path.starts_with('/') {
        return Err("`url` must be a path starting with `/` (the API's context, version and resource)".into());
    }
    let normalized = crate::route::normalize(path).map_err(|e| e.to_string())?;
    let Some(route) = snapshot.routes.lookup(&normalized) else {
        return Err(format!("no API serves `{path}`"));
    };
    let api = snapshot.api(route.api).ok_or_else(|| "no API serves it".to_string())?;
    Ok(url_tag(&api.name, &normalized, query))
}
