//! The request pipeline as both exchanges run it: the HTTP/1 lane (`lane/`) and Pingora's
//! proxy phases (`proxy.rs`). The chain itself (its order, its pure `plan`) is
//! `policies::chain`; this module adds what needs the gateway's services, so the two
//! exchanges cannot drift:
//!
//! - [`decide`]: the chain's `plan`, then [`commit`] (the asynchronous step, exactly once per
//!   request, on the exchange that serves it);
//! - [`upstream_edits`]: what changes between the client's request head and the upstream's
//!   (path rewrite, `Host`, `X-Forwarded-*`, `X-Request-Id`, credentials stripped, backend JWT);
//! - [`response_edits`]: the headers the gateway sets on a proxied response.

use crate::ctx::RequestCtx;
use crate::proxy::Gateway;
use http::header::{self, HeaderName, HeaderValue};
use policies::authn::bearer_token;
use policies::authn::introspect::IntrospectionResult;
use policies::chain::{self, Admitted, Pending, Planned, Step};
use policies::cors::CorsHeaders;
use policies::metrics::DECISIONS;
use policies::snapshot::Refusal;
use policies::throttle::store::Acquire;
use policies::{Rejection, RequestHead};
use std::net::IpAddr;

/// Hop-by-hop fields: never forwarded, in either direction, on any path.
pub use policies::request::HOP_BY_HOP;

/// Whether `name` (any case) is a hop-by-hop field.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// The decision on a request.
pub enum Decision {
    /// Proxy it: `ctx.admitted` holds the plan and the principal.
    Proxy,
    /// The resource's mock answers (`ctx.admitted` is set).
    Mock,
    /// Answer with a problem (counted and logged by whoever writes it).
    Reject(Rejection),
    /// A CORS preflight, answered 204 with these headers.
    Preflight(CorsHeaders),
    /// Only on the lane: Pingora serves this request; nothing was decided or spent.
    HandOff,
}

/// Seconds since the Unix epoch: the clock of token expiry checks.
pub use policies::state::unix_now;

/// Decides a request whose target path is `raw_path`: the chain's `plan`, then [`commit`].
/// Records the API and resource in `ctx` (for the log and the replies) and, for an admitted
/// request, the [`Admitted`] value.
pub async fn decide(gw: &Gateway, ctx: &mut RequestCtx, req: &(dyn RequestHead + Sync), raw_path: &str) -> Decision {
    let exchange = ctx.exchange;
    match chain::plan(&ctx.snapshot, req, raw_path, exchange, unix_now()) {
        Planned::HandOff => Decision::HandOff,
        Planned::Preflight { api, headers } => {
            ctx.api = Some(api);
            DECISIONS.get(exchange).inc();
            Decision::Preflight(headers)
        }
        Planned::Refuse(refusal) => {
            DECISIONS.get(exchange).inc();
            refuse(ctx, refusal)
        }
        Planned::Commit(pending) => {
            ctx.api = Some(pending.admitted.plan.api);
            ctx.resource = pending.admitted.plan.resource;
            match commit(gw, ctx, req, pending).await {
                Ok(admitted) => {
                    let mock = admitted.is_mock();
                    ctx.admitted = Some(admitted);
                    if mock {
                        Decision::Mock
                    } else {
                        Decision::Proxy
                    }
                }
                Err(refusal) => refuse(ctx, refusal),
            }
        }
    }
}

/// The chain's last step, run exactly once per admitted request by the exchange that serves
/// it: the asynchronous step the plan asked for (token introspection, single-flight per
/// token), then `chain::complete`.
pub async fn commit(gw: &Gateway, ctx: &RequestCtx, req: &(dyn RequestHead + Sync), pending: Pending) -> Result<Admitted, Refusal> {
    DECISIONS.get(ctx.exchange).inc();
    let introspection = match pending.step {
        None => None,
        Some(Step::Introspect { introspector }) => {
            let token = bearer_token(req).unwrap_or("");
            Some(match ctx.snapshot.introspectors.get(introspector as usize) {
                // Boxed: the call's future is large and rare; unboxed it would grow every
                // request's future.
                Some(intro) => Box::pin(gw.introspection.introspect(intro, token, unix_now())).await,
                None => IntrospectionResult::Unavailable("introspector missing".into()),
            })
        }
    };
    let mut admitted = chain::complete(&ctx.snapshot, req, pending, introspection.as_ref())?;
    // The throttle reservation: every level in one store call.
    let checks = chain::throttle_checks(&ctx.snapshot, req, &admitted);
    // A background refresh of a stale entry is the gateway's own request: the client's was
    // counted already.
    if !checks.is_empty() && !ctx.background {
        let list = checks.for_store();
        let outcome = match ctx.snapshot.throttling.store.acquire(policies::state::now_ms(), list.as_slice()) {
            Acquire::Ready(outcome) => outcome,
            // A remote store (Redis): one round trip, awaited here.
            Acquire::Pending(round_trip) => round_trip.await,
        };
        chain::settle(&ctx.snapshot, &mut admitted, &checks, outcome)?;
    }
    Ok(admitted)
}

fn refuse(ctx: &mut RequestCtx, refusal: Refusal) -> Decision {
    ctx.api = refusal.api.or(ctx.api);
    ctx.refused_application = refusal.rejection.application;
    Decision::Reject(refusal.rejection)
}

/// What the upstream request head changes against the client's.
pub struct UpstreamEdits<'r> {
    /// The request target to send (path and query) when it differs from the client's.
    pub target: Option<String>,
    /// `Host` to send.
    pub host: Option<HeaderValue>,
    /// `X-Forwarded-Host`: the client's `Host`.
    pub forwarded_host: Option<&'r [u8]>,
    /// `X-Forwarded-For`: the client's first value (a chain), then the client's address.
    pub forwarded_for_prev: Option<&'r [u8]>,
    pub client_ip: Option<IpAddr>,
    /// `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// Header fields removed (lower case): credentials and any client copy of the backend JWT
    /// header. Unused slots are `None`.
    pub remove: [Option<&'r str>; 3],
    /// The backend JWT header and its value.
    pub backend_jwt: Option<(HeaderName, HeaderValue)>,
}

impl UpstreamEdits<'_> {
    /// Whether the client header `name` (lower case) is replaced or removed, so its own
    /// copy must not be forwarded.
    pub fn drops(&self, name: &[u8]) -> bool {
        const SET: [&str; 5] = ["host", "x-forwarded-host", "x-forwarded-for", "x-forwarded-proto", "x-request-id"];
        SET.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(name))
            || self.remove.iter().flatten().any(|s| s.as_bytes().eq_ignore_ascii_case(name))
            || self.backend_jwt.as_ref().is_some_and(|(h, _)| h.as_str().as_bytes().eq_ignore_ascii_case(name))
    }

    /// `X-Forwarded-For`'s value.
    pub fn forwarded_for(&self, out: &mut Vec<u8>) {
        if let Some(prev) = self.forwarded_for_prev {
            out.extend_from_slice(prev);
            if self.client_ip.is_some() {
                out.extend_from_slice(b", ");
            }
        }
        if let Some(ip) = self.client_ip {
            let _ = std::io::Write::write_fmt(out, format_args!("{ip}"));
        }
    }
}

/// The upstream edits for a request being proxied (`ctx.admitted` and `ctx.target` set).
/// `path` and `query` are the client's; `authority`: the request target's authority (an
/// absolute-form request), used as the client's host when it sent no `Host`. The client's
/// address and whether it came over TLS come from the request view.
pub fn upstream_edits<'r>(
    ctx: &'r RequestCtx,
    req: &'r dyn RequestHead,
    path: &str,
    query: Option<&str>,
    authority: Option<&'r [u8]>,
) -> Result<UpstreamEdits<'r>, &'static str> {
    let (Some(api), Some(admitted), Some(target)) = (ctx.api(), ctx.admitted.as_ref(), ctx.target()) else {
        return Err("the request has no planned target");
    };
    let plan = &admitted.plan;
    let auth = api.auth.as_ref().filter(|a| !a.forward_credentials);

    // Path: the normalised one, minus context and version, under the target's base path. An
    // API key sent as a query parameter is removed before forwarding (unless the API forwards
    // credentials), like the Authorization header.
    let full = admitted.normalized_path.as_deref().unwrap_or(path);
    let rest = if api.strip_context { full.get(plan.rest_start..).unwrap_or("") } else { full };
    let strip_query_key = auth.and_then(|a| a.api_key_query.as_deref());
    let query_has_key = strip_query_key.is_some_and(|k| query.is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(k))));
    let rewritten = admitted.normalized_path.is_some() || api.strip_context || !target.base_path.is_empty() || query_has_key;
    let target_path = rewritten.then(|| {
        let mut p = String::with_capacity(target.base_path.len() + rest.len() + 1 + query.map_or(0, |q| q.len() + 1));
        p.push_str(&target.base_path);
        if rest.is_empty() {
            p.push('/');
        } else {
            p.push_str(rest);
        }
        if let Some(q) = query {
            let mut first = true;
            for pair in q.split('&').filter(|pair| !query_has_key || pair.split('=').next() != strip_query_key) {
                p.push(if first { '?' } else { '&' });
                p.push_str(pair);
                first = false;
            }
        }
        p
    });

    let original_host = req.header("host").or(authority);
    let preserve_host = api.endpoint.as_ref().is_some_and(|e| e.preserve_host);
    let host = if !preserve_host { Some(target.authority.clone()) } else { original_host.and_then(|h| HeaderValue::from_bytes(h).ok()) };
    let mut remove = [None; 3];
    if let Some(auth) = auth {
        remove[0] = Some(header::AUTHORIZATION.as_str());
        remove[1] = auth.api_key_header.as_ref().map(HeaderName::as_str);
    }
    let mut backend_jwt = None;
    if let Some(bj) = &ctx.snapshot.backend_jwt {
        // Only the gateway may set this header: a client's copy never reaches a backend.
        remove[2] = Some(bj.header.as_str());
        if let (Some(p), true) = (&admitted.principal, api.auth.as_ref().is_some_and(|a| a.backend_jwt)) {
            let app = p.application.and_then(|i| ctx.snapshot.applications.apps.get(i as usize)).map(|a| &a.id);
            if let Some(v) = bj.assertion(&api.name, app, p, unix_now()) {
                backend_jwt = Some((bj.header.clone(), v));
            }
        }
    }
    Ok(UpstreamEdits {
        target: target_path,
        host,
        forwarded_host: original_host,
        forwarded_for_prev: req.header("x-forwarded-for"),
        client_ip: req.client_addr(),
        proto: if req.is_tls() { "https" } else { "http" },
        remove,
        backend_jwt,
    })
}

/// How a gateway header combines with the upstream's fields of the same name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Replaces them.
    Insert,
    /// Goes beside them (`Link`, `Vary`).
    Append,
}

/// The headers the gateway sets on a proxied response, besides `X-Request-Id` (always
/// inserted): the lifecycle's (`Deprecation`, `Sunset`, `Link`) and CORS's.
pub fn response_edits(ctx: &RequestCtx, req: &dyn RequestHead, mut f: impl FnMut(&HeaderName, &HeaderValue, Combine)) {
    let Some(api) = ctx.api() else { return };
    for (name, value) in &api.lifecycle.headers {
        // The upstream may send its own Link headers (pagination): ours go beside them.
        f(name, value, if *name == header::LINK { Combine::Append } else { Combine::Insert });
    }
    // The gateway is the CORS authority for APIs with `cors:`: its headers replace the
    // upstream's, except Vary, which lists every reason the response varies.
    if let Some(cors) = &api.cors {
        for (name, value) in cors.response_headers(req) {
            f(&name, &value, if name == header::VARY { Combine::Append } else { Combine::Insert });
        }
    }
    // The remaining quota of the tightest limit the request was counted in.
    if let Some(q) = ctx.admitted.as_ref().and_then(|a| a.quota.as_ref()) {
        let legacy = ctx.snapshot.throttling.legacy_headers;
        for (name, value) in policies::throttle::rate_limit_fields(&q.policy, q.window_ms, &q.standing, legacy) {
            f(&name, &value, Combine::Insert);
        }
    }
}
