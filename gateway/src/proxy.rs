//! `impl ProxyHttp for Gateway`: maps Pingora's phases to the pipeline and nothing else.
//! Plain HTTP/1.1 requests on plain-HTTP listeners never get here: the lane (`lane/`) serves
//! them with the same chain (`pipeline.rs`), and hands the rest to these phases before
//! deciding anything, so every request is decided once, by the exchange that serves it.
//!
//! | phase | what happens |
//! |---|---|
//! | `new_ctx` | pin the snapshot (`Store::load`, one atomic increment), start the clock |
//! | `request_filter` | request id → syntax (one `Host` on HTTP/1.1, `server.max_request_body`) → `pipeline::decide` (the chain, then commit) → mock / preflight / rejection answered by `respond`, or go on to proxy |
//! | `request_body_filter` | a body that grows past `server.max_request_body` is cut off (413) |
//! | `upstream_peer` | pick a healthy untried target of the API's endpoint; clone its prepared peer |
//! | `fail_to_connect` | passive health strike; retry on another target while retries remain (nothing was sent) |
//! | `error_while_proxy` | a health strike unless the client side failed or a kept connection was found closed |
//! | `upstream_request_filter` | origin form, path rewrite (strip context/version, target base path), `Host`, `X-Forwarded-*`, `X-Request-Id` |
//! | `upstream_response_filter` | upstream latency, passive health success |
//! | `response_filter` | `X-Request-Id`, deprecation headers, CORS response headers; no `Content-Length` on a 204 |
//! | `fail_to_proxy` | Pingora error → `ProblemCode` → problem+json via `respond` |
//! | `logging` | metrics and the access-log line, for every request including local replies |

use crate::access_log::{AccessLog, RequestFacts};
use crate::ctx::RequestCtx;
use crate::pipeline::{self, Combine, Decision};
use crate::respond;
use crate::upstream::prepared;
use async_trait::async_trait;
use control_api::Store;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, CachePhase, ForcedFreshness, HitHandler, HttpCache, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use policies::cache::{CacheStatus, Lookup};
use policies::chain::{self, Exchange};
use policies::metrics::{EXCHANGE_REQUESTS, FAMILIES};
use policies::state::now_ms;
use policies::threat::body::{BodyGate, BodyInspector, GateStep};
use policies::{ProblemCode, Rejection, RequestHead};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

// Header names added upstream and downstream are given to Pingora as static strings: its
// case-preserving header map then stores them without copying (a `HeaderName` of a
// non-standard header would be copied into a fresh buffer on every insert).
const X_REQUEST_ID_CASE: &str = "X-Request-Id";
const X_FORWARDED_FOR_CASE: &str = "X-Forwarded-For";
const X_FORWARDED_PROTO_CASE: &str = "X-Forwarded-Proto";
const X_FORWARDED_HOST_CASE: &str = "X-Forwarded-Host";
const X_CACHE_CASE: &str = "X-Cache";

/// How pingora-cache served a request, as `X-Cache` says it.
fn cache_status(cache: &HttpCache) -> CacheStatus {
    match cache.phase() {
        CachePhase::Hit => CacheStatus::Hit,
        CachePhase::Stale | CachePhase::StaleUpdating => CacheStatus::Stale,
        CachePhase::Expired | CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheStatus::Expired,
        CachePhase::Bypass => CacheStatus::Bypass,
        // A miss, stored or not (a response that may not be stored disables the cache).
        _ => CacheStatus::Miss,
    }
}

/// The gateway's shared state; cheap to clone (the HTTP/1 fast lane holds one beside
/// Pingora's proxy app).
#[derive(Clone)]
pub struct Gateway(Arc<GatewayState>);

pub struct GatewayState {
    pub store: Arc<Store>,
    pub access_log: Option<AccessLog>,
    pub introspection: crate::introspect::IntrospectionClient,
    /// The HTTP/1 lane's upstream connection pool (`server.upstream_fast_path`); `None`: the
    /// lane is off and every request takes Pingora's proxy phases.
    pub lane: Option<crate::lane::pool::PoolSettings>,
    pub limits: RequestLimits,
    /// The response cache (one storage for both exchanges).
    pub cache: crate::cache::ResponseCache,
}

/// Request limits that hold on every exchange (`server.*`; a restart changes them).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_body: u64,
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
}

impl RequestLimits {
    pub fn from_spec(server: &policies::config::ServerSpec) -> Self {
        RequestLimits {
            max_body: server.max_request_body.0,
            header_timeout: server.client_header_timeout.0,
            body_timeout: server.client_body_timeout.0,
        }
    }
}

impl Gateway {
    pub fn new(state: GatewayState) -> Self {
        Gateway(Arc::new(state))
    }
}

impl std::ops::Deref for Gateway {
    type Target = GatewayState;
    fn deref(&self) -> &GatewayState {
        &self.0
    }
}

/// A Pingora session's request as the policies read it: the head, the client's address and
/// whether the connection is TLS.
pub(crate) struct PingoraHead<'s> {
    parts: &'s Parts,
    client: Option<IpAddr>,
    tls: bool,
}

pub(crate) fn head(session: &Session) -> PingoraHead<'_> {
    PingoraHead {
        parts: session.req_header(),
        client: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
    }
}

impl RequestHead for PingoraHead<'_> {
    fn method(&self) -> &http::Method {
        &self.parts.method
    }

    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.parts.headers.get(name).map(|v| v.as_bytes())
    }

    fn visit_fields(&self, f: &mut policies::request::FieldVisitor<'_>) -> ControlFlow<()> {
        policies::request::visit_header_map(&self.parts.headers, f)
    }

    fn client_addr(&self) -> Option<IpAddr> {
        self.client
    }

    fn is_tls(&self) -> bool {
        self.tls
    }
}

/// The declared body length, when the request has a `Content-Length` (`Err`: a malformed or
/// conflicting one, which Pingora's reader refuses as well).
fn declared_length(req: &Parts) -> Result<Option<u64>, ()> {
    let mut length = None;
    for v in req.headers.get_all(header::CONTENT_LENGTH) {
        match (policies::request::parse_content_length(v.as_bytes()), length) {
            (Some(n), None) => length = Some(n),
            (Some(n), Some(m)) if n == m => {}
            _ => return Err(()),
        }
    }
    Ok(length)
}

/// What the request's syntax alone refuses, before the chain runs: a missing, repeated or
/// malformed `Host` on HTTP/1.1 (RFC 9112 §3.2), a body declared larger than the limit.
fn syntax_problem(session: &Session, limits: &RequestLimits) -> Option<Rejection> {
    let req = session.req_header();
    if !session.is_http2() && req.version == http::Version::HTTP_11 {
        let mut hosts = req.headers.get_all(header::HOST).iter();
        let why = match (hosts.next(), hosts.next()) {
            (Some(h), None) => policies::request::host_problem(h.as_bytes()),
            (None, _) => Some(policies::request::host_count_problem(0)),
            (Some(_), Some(_)) => Some(policies::request::host_count_problem(2)),
        };
        if let Some(why) = why {
            return Some(Rejection::new(ProblemCode::BadRequest, why));
        }
    }
    match declared_length(req) {
        Err(()) => Some(Rejection::new(ProblemCode::BadRequest, "the Content-Length field is malformed")),
        Ok(Some(n)) if n > limits.max_body => {
            Some(Rejection::new(ProblemCode::BodyTooLarge, "the request body is larger than the gateway accepts"))
        }
        Ok(_) => None,
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        // A request the lane decided and handed over (a cache miss) comes with its decision.
        crate::lane::take_decided().unwrap_or_else(|| RequestCtx::new(self.store.load(), Exchange::Pingora))
    }

    /// No downstream modules. Pingora's default installs a (disabled) response-compression
    /// module whose per-request context is allocated and called on every header and body
    /// chunk; the gateway does not compress, so it pays nothing for it.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = crate::request_id::for_request(session.req_header().headers.get(&X_REQUEST_ID).map(HeaderValue::as_bytes));
        session.set_read_timeout(Some(self.limits.body_timeout));
        // Pingora's own HTTP/1 sessions serve pipelined requests in order, as the lane does.
        // (Not on sessions the lane handed over: it takes back only the stream, so bytes
        // Pingora read ahead would be lost; with pipelining off Pingora closes instead.)
        if self.lane.is_none() || session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
            session.as_downstream_mut().set_pipelining_enabled(true);
        }
        if let Some(rejection) = syntax_problem(session, &self.limits) {
            // A request this malformed ends its connection, on both exchanges.
            session.set_keepalive(None);
            respond::reject(session, ctx, rejection).await?;
            return Ok(true);
        }
        let path = session.req_header().uri.path();
        let decision = if ctx.admitted.is_some() {
            // Decided on the lane (which set its cache key too).
            Decision::Proxy
        } else {
            ctx.background = session.subrequest_ctx.is_some();
            let decision = pipeline::decide(self, ctx, &head(session), path).await;
            if let (Decision::Proxy, Some(admitted)) = (&decision, ctx.admitted.as_ref()) {
                ctx.cache = policies::cache::request_key(&ctx.snapshot, admitted, &head(session), path).map(Box::new);
            }
            decision
        };
        match decision {
            Decision::Proxy => match self.body_before_connect(session, ctx).await? {
                None => Ok(false),
                Some(rejection) => {
                    respond::reject(session, ctx, rejection).await?;
                    Ok(true)
                }
            },
            Decision::Reject(rejection) => {
                respond::reject(session, ctx, rejection).await?;
                Ok(true)
            }
            Decision::Preflight(headers) => {
                respond::preflight(session, ctx, headers).await?;
                Ok(true)
            }
            Decision::Mock => {
                respond::mock(session, ctx).await?;
                Ok(true)
            }
            // Only the lane is ever told to hand off.
            Decision::HandOff => {
                respond::reject(session, ctx, Rejection::new(ProblemCode::Internal, "the request was handed off twice")).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // A declared length was checked in `request_filter`; a chunked body is counted here.
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > self.limits.max_body {
                return Err(Error::explain(ErrorType::HTTPStatus(413), "the request body grew past server.max_request_body"));
            }
        }
        // Step 10 for a body not read before connecting: held back until its verdict, so no
        // byte of a refused body reaches the upstream (which has seen only the head; the
        // upstream request is aborted).
        let RequestCtx { snapshot, admitted, body_gate, body_refusal, .. } = ctx;
        let (Some(gate), Some(admitted)) = (body_gate.as_mut(), admitted.as_ref()) else { return Ok(()) };
        let Some(policy) = chain::threat_policy(snapshot, admitted) else { return Ok(()) };
        match gate.push(policy, body.take().unwrap_or_default(), end_of_stream) {
            GateStep::Hold => *body = Some(bytes::Bytes::new()),
            GateStep::Forward(b) => *body = (!b.is_empty() || !end_of_stream).then_some(b),
            GateStep::Found(found) => match chain::body_finding(snapshot, admitted, &found) {
                Ok(()) => *body = Some(gate.let_through()),
                Err(rejection) => {
                    let status = rejection.code.status().as_u16();
                    *body_refusal = Some(rejection);
                    return Err(Error::explain(ErrorType::HTTPStatus(status), "a threat protector refused the request body"));
                }
            },
        }
        Ok(())
    }

    /// A request to a cached resource: pingora-cache on, with the process's storage and lock.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(key) = ctx.cache.as_deref() else { return Ok(()) };
        if key.lookup == Lookup::Bypass {
            ctx.cache_status = Some(CacheStatus::Bypass);
            return Ok(());
        }
        self.cache.enable(&mut session.cache);
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        match ctx.cache.as_deref() {
            Some(key) => Ok(crate::cache::pingora_key(key)),
            None => Err(Error::explain(ErrorType::InternalError, "the cache is on without a key")),
        }
    }

    /// A request's `Cache-Control: no-cache` (when honoured): fetch, even over a fresh entry.
    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        _meta: &CacheMeta,
        _hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(ctx.cache.as_deref().filter(|k| k.lookup == Lookup::Refresh).map(|_| ForcedFreshness::ForceMiss))
    }

    /// RFC 9111's storing and freshness rules (`policies::cache::keep_response`).
    fn response_cache_filter(&self, session: &Session, resp: &ResponseHeader, ctx: &mut RequestCtx) -> Result<RespCacheable> {
        let method = &session.req_header().method;
        let policy = ctx.admitted.as_ref().and_then(|a| policies::cache::policy_for(&ctx.snapshot, a, method));
        let (Some(key), Some(policy)) = (ctx.cache.as_deref(), policy) else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom("not a cached resource")));
        };
        match policies::cache::keep_response(policy, key, method, resp.status.as_u16(), &resp.headers, pipeline::unix_now()) {
            Ok(keep) => Ok(RespCacheable::Cacheable(crate::cache::meta_for(resp, &keep))),
            Err(why) => {
                if let Some(api) = ctx.api() {
                    FAMILIES.cache_not_stored.with_label_values(&[&*api.name, why.as_str()]).inc();
                }
                Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(why.as_str())))
            }
        }
    }

    /// The response's `Vary`: each variant is its own entry.
    fn cache_vary_filter(&self, meta: &CacheMeta, _ctx: &mut RequestCtx, req: &RequestHeader) -> Option<HashBinary> {
        crate::cache::variance(&crate::cache::vary_names(meta.headers()), |n| req.headers.get(n).map(HeaderValue::as_bytes))
    }

    /// A stale entry is served while it is refreshed (`None`: within its
    /// `stale-while-revalidate`, which pingora-cache checks) or when the upstream failed
    /// (within `stale-if-error`), but not for a client-side failure.
    fn should_serve_stale(&self, _session: &mut Session, _ctx: &mut RequestCtx, error: Option<&Error>) -> bool {
        error.is_none_or(|e| !matches!(e.esource(), ErrorSource::Downstream))
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(endpoint) = ctx.api().and_then(|a| a.endpoint.as_ref()) else {
            return Err(Error::explain(ErrorType::HTTPStatus(502), "API has no endpoint"));
        };
        let Some(idx) = endpoint.select(ctx.tried, now_ms()) else {
            return Err(Error::explain(ErrorType::ConnectNoRoute, "every target was tried"));
        };
        let Some(p) = endpoint.targets.get(idx).and_then(prepared) else {
            return Err(Error::explain(ErrorType::InternalError, "target was not prepared"));
        };
        let peer = Box::new(p.peer.clone());
        ctx.tried |= 1 << idx;
        ctx.attempts += 1;
        ctx.target = Some(idx);
        Ok(peer)
    }

    fn fail_to_connect(&self, _session: &mut Session, _peer: &HttpPeer, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
        self.strike(ctx, "connect");
        if let Some(endpoint) = ctx.api().and_then(|a| a.endpoint.as_ref()) {
            let untried_left = (ctx.tried.count_ones() as usize) < endpoint.targets.len();
            // Nothing reached the upstream, so another target is safe even for POST.
            e.set_retry(ctx.attempts <= endpoint.retries && untried_left);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let kind = if matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout) { "timeout" } else { "error" };
        // A pooled connection the upstream had closed (Pingora marks the error "retry if
        // reused") says nothing about the target's health; a timeout on one does. Neither
        // does a client that went away or stalled mid-request (a downstream error, or our own
        // body limit).
        let closed_kept = client_reused && matches!(e.retry, pingora::RetryType::ReusedOnly);
        let client_side =
            matches!(e.esource(), ErrorSource::Downstream) || matches!(e.etype(), ErrorType::HTTPStatus(413)) || ctx.body_refusal.is_some();
        if !closed_kept && !client_side {
            self.strike(ctx, kind);
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() || ctx.body_refusal.is_some() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if client_reused && e.retry() {
            // Pingora retries a request that failed on a stale pooled connection with a fresh
            // one; the same target stays eligible and the attempt does not count.
            if let Some(t) = ctx.target {
                ctx.tried &= !(1u64 << t);
            }
            ctx.attempts = ctx.attempts.saturating_sub(1);
        }
        e
    }

    async fn upstream_request_filter(&self, session: &mut Session, up: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<()> {
        let req = session.req_header();
        let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
        let view = head(session);
        let edits = match pipeline::upstream_edits(ctx, &view, up.uri.path(), up.uri.query(), authority) {
            Ok(e) => e,
            // Nothing planned (cannot happen for a proxied request): refuse rather than guess.
            Err(why) => return Err(Error::explain(ErrorType::InternalError, why)),
        };
        // The upstream always gets origin form: an absolute-form target (`GET http://h/x`) is
        // never forwarded as such.
        let target = match &edits.target {
            Some(t) => Some(t.clone()),
            None if up.uri.authority().is_some() => Some(up.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()),
            None => None,
        };
        if let Some(target) = target {
            let uri =
                http::Uri::try_from(target.as_str()).map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rewritten path", e))?;
            up.set_uri(uri);
        }
        for name in edits.remove.iter().flatten() {
            up.remove_header(*name);
        }
        up.remove_header(X_FORWARDED_HOST_CASE);
        if let Some(host) = edits.forwarded_host.and_then(|h| HeaderValue::from_bytes(h).ok()) {
            up.insert_header(X_FORWARDED_HOST_CASE, host)?;
        }
        if let Some(host) = edits.host.clone() {
            up.insert_header(header::HOST, host)?;
        }
        if edits.client_ip.is_some() {
            let mut xff = Vec::with_capacity(48);
            edits.forwarded_for(&mut xff);
            if let Ok(v) = HeaderValue::from_bytes(&xff) {
                up.insert_header(X_FORWARDED_FOR_CASE, v)?;
            }
        }
        if let Some((name, value)) = edits.backend_jwt {
            up.insert_header(name, value)?;
        }
        // The gateway answered `Expect: 100-continue` itself when it read the body first.
        if ctx.body_preread {
            up.remove_header(&header::EXPECT);
        }
        up.insert_header(X_FORWARDED_PROTO_CASE, HeaderValue::from_static(edits.proto))?;
        up.insert_header(X_REQUEST_ID_CASE, ctx.request_id.clone())?;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        ctx.upstream_answered();
        // The framing the lane refuses (RFC 9112 §6.3) is refused here too: a transfer coding
        // other than chunked is an upstream error; equal repeated Content-Length fields are
        // forwarded once (Pingora itself refuses unequal ones).
        if resp.headers.get_all(header::TRANSFER_ENCODING).iter().any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")) {
            return Err(Error::explain(ErrorType::InvalidHTTPHeader, "the upstream used a transfer coding other than chunked").into_up());
        }
        let mut lengths = resp.headers.get_all(header::CONTENT_LENGTH).iter();
        if let (Some(first), Some(_)) = (lengths.next(), lengths.next()) {
            let first = first.clone();
            resp.insert_header(header::CONTENT_LENGTH, first)?;
        }
        Ok(())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        resp.insert_header(X_REQUEST_ID_CASE, ctx.request_id.clone())?;
        if ctx.cache.is_some() && !ctx.background {
            let status = *ctx.cache_status.get_or_insert_with(|| cache_status(&session.cache));
            resp.insert_header(X_CACHE_CASE, status.header())?;
            if let Some(api) = ctx.api() {
                api.metrics.count_cache(status);
                if session.cache.lock_duration().is_some() {
                    FAMILIES.cache_lock_waits.with_label_values(&[&*api.name]).inc();
                }
            }
        }
        // A 204 has no content, so no Content-Length either (RFC 9110 §8.6).
        if resp.status == http::StatusCode::NO_CONTENT {
            resp.remove_header(&header::CONTENT_LENGTH);
        }
        let mut result = Ok(());
        pipeline::response_edits(ctx, &head(session), |name, value, how| {
            let r = match how {
                Combine::Insert => resp.insert_header(name.clone(), value.clone()),
                Combine::Append => resp.append_header(name.clone(), value.clone()).map(|_| ()),
            };
            if r.is_err() {
                result = r;
            }
        });
        result
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        // A body a protector refused mid-way: its problem, and the connection closes (the
        // rest of the body was not read).
        if let Some(rejection) = ctx.body_refusal.take() {
            let status = rejection.code.status().as_u16();
            if session.response_written().is_none() {
                session.set_keepalive(None);
                if let Err(write_err) = respond::reject(session, ctx, rejection).await {
                    tracing::debug!(error = %write_err, "could not send error response");
                }
            }
            return FailToProxy { error_code: status, can_reuse_downstream: false };
        }
        let (code, detail) = classify(e);
        let Some(code) = code else {
            // The client is gone: nothing to answer.
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        };
        let status = code.status().as_u16();
        // Answer only if nothing was sent yet; otherwise the response is already on its way.
        // The connection closes after it, as the lane's does.
        if session.response_written().is_none() {
            session.set_keepalive(None);
            if let Err(write_err) = respond::reject(session, ctx, Rejection::new(code, detail)).await {
                tracing::debug!(error = %write_err, "could not send error response");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.finish(ctx, status, || {
            let req = session.req_header();
            RequestFacts {
                method: req.method.as_str(),
                host: req
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| req.uri.authority().map(|a| a.as_str()))
                    .unwrap_or(""),
                path: req.uri.path(),
                client: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
                http: if session.is_http2() { "2" } else { "1.1" },
                bytes_sent: session.body_bytes_sent(),
            }
        });
    }
}

/// The largest declared body read whole before connecting: what Pingora's retry buffer holds
/// (it replays the bytes to the upstream once connected). A larger or chunked body is held back
/// chunk by chunk in `request_body_filter` instead.
const PREREAD_LIMIT: u64 = 64 * 1024;

impl Gateway {
    /// Step 10 for a request with a body its API's threat protection inspects: when the body
    /// is small enough (a declared length up to [`PREREAD_LIMIT`]) it is read and judged here,
    /// before any upstream is chosen, so the upstream never sees a refused request. Otherwise
    /// the body gate goes to `request_body_filter`. `Some`: the refusal to answer.
    async fn body_before_connect(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Option<Rejection>> {
        let RequestCtx { snapshot, admitted, body_gate, body_preread, .. } = ctx;
        let Some(admitted) = admitted.as_ref() else { return Ok(None) };
        let Some(policy) = chain::threat_policy(snapshot, admitted) else { return Ok(None) };
        if session.as_mut().is_body_empty() {
            return Ok(None);
        }
        let content_type = session.req_header().headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
        let mut gate = BodyGate::new(BodyInspector::new(policy, content_type));
        let small = declared_length(session.req_header()).ok().flatten().is_some_and(|n| n <= PREREAD_LIMIT);
        if !(gate.holds() && small) {
            *body_gate = Some(gate);
            return Ok(None);
        }
        // The client may be waiting for a 100 before it sends the body.
        let expects = session.req_header().headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects && !session.is_http2() {
            session.as_downstream_mut().write_response_header(Box::new(ResponseHeader::build(100, Some(0))?)).await?;
        }
        session.as_mut().enable_retry_buffering();
        *body_preread = true;
        loop {
            // A read that fails or times out is the client's doing (408, not 504).
            let chunk = session.as_mut().read_request_body().await.map_err(|e| e.into_down())?;
            let end = chunk.is_none() || session.as_mut().is_body_done();
            match gate.push(policy, chunk.unwrap_or_default(), end) {
                // The bytes are in the retry buffer, which Pingora sends once connected.
                GateStep::Hold | GateStep::Forward(_) => {}
                GateStep::Found(found) => match chain::body_finding(snapshot, admitted, &found) {
                    Ok(()) => {
                        gate.let_through();
                    }
                    Err(rejection) => {
                        if !session.as_mut().is_body_done() {
                            session.set_keepalive(None);
                        }
                        return Ok(Some(rejection));
                    }
                },
            }
            if end {
                return Ok(None);
            }
        }
    }

    /// Counts and logs a finished request (every request, local replies included).
    pub(crate) fn finish<'a>(&self, ctx: &'a RequestCtx, status: u16, facts: impl FnOnce() -> RequestFacts<'a>) {
        let elapsed = ctx.started.elapsed();
        EXCHANGE_REQUESTS.get(ctx.exchange).inc();
        let metrics = ctx.api().map_or(&ctx.snapshot.unrouted_metrics, |a| &a.metrics);
        metrics.count(status);
        metrics.observe_duration(elapsed.as_secs_f64());
        if let Some(log) = &self.access_log {
            log.record(&facts(), ctx, status, elapsed);
        }
    }

    /// A failed attempt on the current target: passive-health strike and a metric.
    pub(crate) fn strike(&self, ctx: &RequestCtx, kind: &str) {
        let (Some(api), Some(target)) = (ctx.api(), ctx.target()) else { return };
        FAMILIES.upstream_failures.with_label_values(&[&api.name, kind]).inc();
        if let Some(endpoint) = &api.endpoint {
            if target.health.record_failure(now_ms(), endpoint.passive_failures, endpoint.eject_for_ms) {
                tracing::warn!(target = %target.url, "upstream target ejected after consecutive failures");
            }
        }
    }
}

/// Maps a Pingora error to the problem answered to the client; `None` when the client
/// connection is already dead.
pub(crate) fn classify(e: &Error) -> (Option<ProblemCode>, &'static str) {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(502) | ConnectNoRoute => (Some(ProblemCode::UpstreamUnavailable), "no upstream target could be reached"),
        HTTPStatus(504) => (Some(ProblemCode::UpstreamTimeout), "the upstream did not answer in time"),
        HTTPStatus(400) => (Some(ProblemCode::BadRequest), "the request could not be read"),
        HTTPStatus(413) => (Some(ProblemCode::BodyTooLarge), "the request body is larger than the gateway accepts"),
        HTTPStatus(_) => (Some(ProblemCode::Internal), "the gateway failed to handle the request"),
        ConnectTimedout | ConnectRefused | ConnectError | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | SocketError
        | BindError => (Some(ProblemCode::UpstreamUnavailable), "no upstream target could be reached"),
        ReadTimedout | WriteTimedout => match e.esource() {
            ErrorSource::Downstream => (Some(ProblemCode::RequestTimeout), "the client was too slow"),
            _ => (Some(ProblemCode::UpstreamTimeout), "the upstream did not answer in time"),
        },
        _ => match e.esource() {
            ErrorSource::Upstream => (Some(ProblemCode::UpstreamError), "the upstream broke the exchange"),
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => (None, ""),
                _ => (Some(ProblemCode::BadRequest), "the request could not be read"),
            },
            ErrorSource::Internal | ErrorSource::Unset => (Some(ProblemCode::Internal), "the gateway failed to handle the request"),
        },
    }
}
