//! What the gateway does with a request, decided once from its head, for both ways a request
//! can come in: Pingora's proxy phases (`proxy.rs`) and the HTTP/1 fast lane (`lane.rs`).
//! Each caller then carries the decision out with its own writer, so the two cannot drift:
//!
//! - [`admit`]: normalise → route → lifecycle → CORS → verb → authentication and authorization;
//! - [`upstream_edits`]: what changes between the client's request head and the upstream's
//!   (path rewrite, `Host`, `X-Forwarded-*`, `X-Request-Id`, credentials stripped, backend JWT);
//! - [`response_edits`]: the headers the gateway sets on a proxied response.

use crate::ctx::RequestCtx;
use http::header::{self, HeaderName, HeaderValue};
use policies::authn::{AuthStep, Principal};
use policies::cors::CorsHeaders;
use policies::route::normalize;
use policies::snapshot::{Action, Plan};
use policies::{ProblemCode, Rejection, RequestHead};
use std::borrow::Cow;
use std::net::IpAddr;

/// Hop-by-hop fields (RFC 9110 §7.6.1, and the usual unofficial ones): never forwarded, in
/// either direction, on any path.
pub const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
];

/// Whether `name` (any case) is a hop-by-hop field.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// The decision on a request.
pub enum Admission {
    /// Proxy it: `ctx.plan` and `ctx.principal` are set.
    Proxy,
    /// Answer with a problem (counted and logged by whoever writes it).
    Reject(Rejection),
    /// A CORS preflight, answered 204 with these headers.
    Preflight(CorsHeaders),
    /// The resource's mock answers.
    Mock,
    /// The bearer token must be introspected first (the one asynchronous step): call the
    /// introspector, then [`after_introspection`].
    Introspect { plan: Plan, introspector: u32 },
}

/// Seconds since the Unix epoch: the clock of token expiry checks.
pub use policies::state::unix_now;

/// Decides what to do with a request whose target path is `raw_path`. Fills `ctx.api`,
/// `ctx.resource` and, for a refused credential, `ctx.refused_application`.
pub fn admit(ctx: &mut RequestCtx, req: &dyn RequestHead, raw_path: &str) -> Admission {
    let path = match normalize(raw_path) {
        Ok(p) => p,
        Err(e) => return Admission::Reject(Rejection::new(ProblemCode::BadPath, e.to_string())),
    };
    let plan = match ctx.snapshot.plan(req, &path) {
        Ok(plan) => plan,
        Err(refusal) => {
            ctx.api = refusal.api;
            return Admission::Reject(refusal.rejection);
        }
    };
    ctx.api = Some(plan.api);
    ctx.resource = plan.resource;
    if let Cow::Owned(p) = path {
        ctx.normalized_path = Some(p);
    }
    if matches!(plan.action, Action::Preflight(_)) {
        return carry_out(ctx, plan, None);
    }
    match ctx.snapshot.authenticate(req, &plan, unix_now()) {
        Ok(None) => carry_out(ctx, plan, None),
        Ok(Some(AuthStep::Done(p))) => carry_out(ctx, plan, Some(p)),
        Ok(Some(AuthStep::Introspect { introspector })) => Admission::Introspect { plan, introspector },
        Err(rejection) => refuse(ctx, rejection),
    }
}

/// Finishes [`Admission::Introspect`] once the introspector has answered.
pub fn after_introspection(
    ctx: &mut RequestCtx,
    req: &dyn RequestHead,
    plan: Plan,
    result: &policies::authn::introspect::IntrospectionResult,
) -> Admission {
    match ctx.snapshot.complete_introspection(req, &plan, result) {
        Ok(principal) => carry_out(ctx, plan, principal),
        Err(rejection) => refuse(ctx, rejection),
    }
}

fn refuse(ctx: &mut RequestCtx, rejection: Rejection) -> Admission {
    ctx.refused_application = rejection.application;
    Admission::Reject(rejection)
}

fn carry_out(ctx: &mut RequestCtx, mut plan: Plan, principal: Option<Principal>) -> Admission {
    ctx.principal = principal;
    match std::mem::replace(&mut plan.action, Action::Proxy) {
        Action::Proxy => {
            ctx.plan = Some(plan);
            Admission::Proxy
        }
        Action::Preflight(headers) => Admission::Preflight(headers),
        Action::Mock => Admission::Mock,
    }
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

/// The upstream edits for a request being proxied (`ctx.plan` and `ctx.target` set).
/// `path` and `query` are the client's; `authority`: the request target's authority (an
/// absolute-form request), used as the client's host when it sent no `Host`; `tls`: whether
/// the client came over TLS.
pub fn upstream_edits<'r>(
    ctx: &'r RequestCtx,
    req: &'r dyn RequestHead,
    path: &str,
    query: Option<&str>,
    authority: Option<&'r [u8]>,
    client_ip: Option<IpAddr>,
    tls: bool,
) -> Result<UpstreamEdits<'r>, &'static str> {
    let (Some(api), Some(plan), Some(target)) = (ctx.api(), ctx.plan.as_ref(), ctx.target()) else {
        return Err("the request has no planned target");
    };
    let auth = api.auth.as_ref().filter(|a| !a.forward_credentials);

    // Path: the normalised one, minus context and version, under the target's base path. An
    // API key sent as a query parameter is removed before forwarding (unless the API forwards
    // credentials), like the Authorization header.
    let full = ctx.normalized_path.as_deref().unwrap_or(path);
    let rest = if api.strip_context { full.get(plan.rest_start..).unwrap_or("") } else { full };
    let strip_query_key = auth.and_then(|a| a.api_key_query.as_deref());
    let query_has_key = strip_query_key.is_some_and(|k| query.is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(k))));
    let rewritten = ctx.normalized_path.is_some() || api.strip_context || !target.base_path.is_empty() || query_has_key;
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
        if let (Some(p), true) = (&ctx.principal, api.auth.as_ref().is_some_and(|a| a.backend_jwt)) {
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
        client_ip,
        proto: if tls { "https" } else { "http" },
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
}
