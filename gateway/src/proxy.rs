//! `impl ProxyHttp for Gateway`: maps Pingora's phases to policy calls and nothing else.
//!
//! | phase | what happens |
//! |---|---|
//! | `new_ctx` | pin the snapshot (`Store::load`, one atomic increment), start the clock |
//! | `request_filter` | request id → normalise path → `Snapshot::plan` (route, lifecycle, CORS, verb) → mock / preflight / rejection answered by `respond`, or go on to proxy |
//! | (`direct::exchange`) | for HTTP/1 requests without a body to plain-HTTP targets: the phases below, run by the gateway over its own idle connections |
//! | `upstream_peer` | pick a healthy untried target of the API's endpoint; clone its prepared peer |
//! | `fail_to_connect` | passive health strike; retry on another target while retries remain (nothing was sent) |
//! | `upstream_request_filter` | path rewrite (strip context/version, target base path), `Host`, `X-Forwarded-*`, `X-Request-Id` |
//! | `upstream_response_filter` | upstream latency, passive health success |
//! | `response_filter` | `X-Request-Id`, deprecation headers, CORS response headers |
//! | `fail_to_proxy` | Pingora error → `ProblemCode` → problem+json via `respond` |
//! | `logging` | metrics and the access-log line, for every request including local replies |

use crate::access_log::AccessLog;
use crate::ctx::RequestCtx;
use crate::respond;
use crate::upstream::prepared;
use async_trait::async_trait;
use control_api::Store;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use policies::metrics::FAMILIES;
use policies::authn::introspect::IntrospectionResult;
use policies::authn::{bearer_token, AuthStep};
use policies::route::normalize;
use policies::snapshot::Action;
use policies::state::now_ms;
use policies::{ProblemCode, Rejection};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

// Header names added upstream and downstream are given to Pingora as static strings: its
// case-preserving header map then stores them without copying (a `HeaderName` of a
// non-standard header would be copied into a fresh buffer on every insert).
const X_REQUEST_ID_CASE: &str = "X-Request-Id";
const X_FORWARDED_FOR_CASE: &str = "X-Forwarded-For";
const X_FORWARDED_PROTO_CASE: &str = "X-Forwarded-Proto";
const X_FORWARDED_HOST_CASE: &str = "X-Forwarded-Host";

pub struct Gateway {
    pub store: Arc<Store>,
    pub access_log: Option<AccessLog>,
    pub introspection: crate::introspect::IntrospectionClient,
    /// The direct exchange for plain requests (`server.upstream_fast_path`); `None`: every
    /// request takes Pingora's proxy path.
    pub direct: Option<crate::direct::Direct>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.store.load())
    }

    /// No downstream modules. Pingora's default installs a (disabled) response-compression
    /// module whose per-request context is allocated and called on every header and body
    /// chunk; the gateway does not compress, so it pays nothing for it.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = crate::request_id::for_request(session.req_header().headers.get(&X_REQUEST_ID));
        let req = session.req_header();
        let path = match normalize(req.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                respond::reject(session, ctx, Rejection::new(ProblemCode::BadPath, e.to_string())).await?;
                return Ok(true);
            }
        };
        let planned = ctx.snapshot.plan(req, &path);
        let owned_path = match path {
            Cow::Owned(p) => Some(p),
            Cow::Borrowed(_) => None,
        };
        match planned {
            Err(refusal) => {
                ctx.api = refusal.api;
                respond::reject(session, ctx, refusal.rejection).await?;
                Ok(true)
            }
            Ok(plan) => {
                ctx.api = Some(plan.api);
                ctx.resource = plan.resource;
                if !matches!(plan.action, Action::Preflight(_)) {
                    let now = unix_now();
                    let step = ctx.snapshot.authenticate(req, &plan, now);
                    let outcome = match step {
                        Ok(None) => Ok(None),
                        Ok(Some(AuthStep::Done(p))) => Ok(Some(p)),
                        Ok(Some(AuthStep::Introspect { introspector })) => {
                            // The one asynchronous step of authentication: ask the IdP.
                            let snapshot = ctx.snapshot.clone();
                            let token = bearer_token(session.req_header()).unwrap_or("").to_string();
                            let result = match snapshot.introspectors.get(introspector as usize) {
                                Some(intro) => self.introspection.introspect(intro, &token, now).await,
                                None => IntrospectionResult::Unavailable("introspector missing".into()),
                            };
                            snapshot.complete_introspection(session.req_header(), &plan, &result)
                        }
                        Err(r) => Err(r),
                    };
                    match outcome {
                        Ok(principal) => ctx.principal = principal,
                        Err(rejection) => {
                            ctx.refused_application = rejection.application;
                            respond::reject(session, ctx, rejection).await?;
                            return Ok(true);
                        }
                    }
                }
                match plan.action {
                    Action::Proxy => {
                        ctx.normalized_path = owned_path;
                        ctx.plan = Some(plan);
                        match &self.direct {
                            Some(direct) if crate::direct::eligible(session, ctx) => crate::direct::exchange(self, direct, session, ctx).await,
                            _ => Ok(false),
                        }
                    }
                    Action::Preflight(headers) => {
                        respond::preflight(session, ctx, headers).await?;
                        Ok(true)
                    }
                    Action::Mock => {
                        let snapshot = ctx.snapshot.clone();
                        let mock = plan
                            .resource
                            .and_then(|r| snapshot.api(plan.api)?.resource(r)?.mock.as_ref());
                        match mock {
                            Some(mock) => respond::mock(session, ctx, mock).await?,
                            None => respond::reject(session, ctx, Rejection::new(ProblemCode::Internal, "mock missing")).await?,
                        }
                        Ok(true)
                    }
                }
            }
        }
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
        // reused") says nothing about the target's health; a timeout on one does.
        let closed_kept = client_reused && matches!(e.retry, pingora::RetryType::ReusedOnly);
        if !closed_kept {
            self.strike(ctx, kind);
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
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
        let (Some(api), Some(plan), Some(target)) = (ctx.api(), ctx.plan.as_ref(), ctx.target()) else {
            return Ok(());
        };
        let endpoint_preserve_host = api.endpoint.as_ref().is_some_and(|e| e.preserve_host);

        // Path: the normalised one, minus context and version, under the target's base path.
        let full = ctx.normalized_path.as_deref().unwrap_or(up.uri.path());
        let rest = if api.strip_context { &full[plan.rest_start..] } else { full };
        // An API key sent as a query parameter is removed before forwarding (unless the API
        // forwards credentials), like the Authorization header below.
        let strip_query_key = api.auth.as_ref().filter(|a| !a.forward_credentials).and_then(|a| a.api_key_query.as_deref());
        let query_has_key = strip_query_key.is_some_and(|k| up.uri.query().is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(k))));
        let rewritten = ctx.normalized_path.is_some() || api.strip_context || !target.base_path.is_empty() || query_has_key;
        if rewritten {
            let mut p = String::with_capacity(target.base_path.len() + rest.len() + 1 + up.uri.query().map_or(0, |q| q.len() + 1));
            p.push_str(&target.base_path);
            if rest.is_empty() {
                p.push('/');
            } else {
                p.push_str(rest);
            }
            if let Some(q) = up.uri.query() {
                let mut first = true;
                for pair in q.split('&').filter(|pair| !query_has_key || pair.split('=').next() != strip_query_key) {
                    p.push(if first { '?' } else { '&' });
                    p.push_str(pair);
                    first = false;
                }
            }
            let uri = http::Uri::try_from(p).map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rewritten path", e))?;
            up.set_uri(uri);
        }

        let original_host = session.req_header().headers.get(header::HOST).cloned().or_else(|| {
            session.req_header().uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        if let Some(host) = &original_host {
            up.insert_header(X_FORWARDED_HOST_CASE, host.clone())?;
        }
        if !endpoint_preserve_host {
            up.insert_header(header::HOST, target.authority.clone())?;
        } else if let Some(host) = original_host {
            up.insert_header(header::HOST, host)?;
        }
        if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
            let mut xff = String::with_capacity(48);
            if let Some(prev) = up.headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                xff.push_str(prev);
                xff.push_str(", ");
            }
            let _ = std::fmt::Write::write_fmt(&mut xff, format_args!("{}", addr.ip()));
            up.insert_header(X_FORWARDED_FOR_CASE, xff)?;
        }
        if let Some(auth) = api.auth.as_ref().filter(|a| !a.forward_credentials) {
            up.remove_header(&header::AUTHORIZATION);
            if let Some(name) = &auth.api_key_header {
                up.remove_header(name);
            }
        }
        if let Some(bj) = &ctx.snapshot.backend_jwt {
            // Only the gateway may set this header: a client's copy never reaches a backend.
            up.remove_header(&bj.header);
            if let (Some(p), true) = (&ctx.principal, api.auth.as_ref().is_some_and(|a| a.backend_jwt)) {
                let app = p.application.and_then(|i| ctx.snapshot.applications.apps.get(i as usize)).map(|a| &a.id);
                if let Some(v) = bj.assertion(&api.name, app, p, unix_now()) {
                    up.insert_header(bj.header.clone(), v)?;
                }
            }
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        up.insert_header(X_FORWARDED_PROTO_CASE, HeaderValue::from_static(if tls { "https" } else { "http" }))?;
        up.insert_header(X_REQUEST_ID_CASE, ctx.request_id.clone())?;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(&self, _session: &mut Session, _resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent {
            let elapsed = sent.elapsed();
            ctx.upstream_elapsed = Some(elapsed);
            if let Some(api) = ctx.api() {
                api.metrics.observe_upstream(elapsed.as_secs_f64());
            }
        }
        if let Some(t) = ctx.target() {
            t.health.record_success();
        }
        Ok(())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        resp.insert_header(X_REQUEST_ID_CASE, ctx.request_id.clone())?;
        if let Some(api) = ctx.api() {
            for (name, value) in &api.lifecycle.headers {
                // The upstream may send its own Link headers (pagination): add ours beside them.
                if *name == header::LINK {
                    resp.append_header(name.clone(), value.clone())?;
                } else {
                    resp.insert_header(name.clone(), value.clone())?;
                }
            }
            // The gateway is the CORS authority for APIs with `cors:`: its headers replace the
            // upstream's, except Vary, which lists every reason the response varies.
            if let Some(cors) = &api.cors {
                for (name, value) in cors.response_headers(session.req_header()) {
                    if name == header::VARY {
                        resp.append_header(name, value)?;
                    } else {
                        resp.insert_header(name, value)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let (code, detail) = classify(e);
        let Some(code) = code else {
            // The client is gone: nothing to answer.
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        };
        let status = code.status().as_u16();
        // Answer only if nothing was sent yet; otherwise the response is already on its way.
        if session.response_written().is_none() {
            if let Err(write_err) = respond::reject(session, ctx, Rejection::new(code, detail)).await {
                tracing::debug!(error = %write_err, "could not send error response");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let metrics = ctx.api().map_or(&ctx.snapshot.unrouted_metrics, |a| &a.metrics);
        metrics.count(status);
        metrics.observe_duration(elapsed.as_secs_f64());
        if let Some(log) = &self.access_log {
            log.record(session, ctx, status, elapsed);
        }
    }
}

impl Gateway {
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

/// Seconds since the Unix epoch: the clock of token expiry checks.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Maps a Pingora error to the problem answered to the client; `None` when the client
/// connection is already dead.
fn classify(e: &Error) -> (Option<ProblemCode>, &'static str) {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(502) | ConnectNoRoute => (Some(ProblemCode::UpstreamUnavailable), "no upstream target could be reached"),
        HTTPStatus(504) => (Some(ProblemCode::UpstreamTimeout), "the upstream did not answer in time"),
        HTTPStatus(400) => (Some(ProblemCode::BadRequest), "the request could not be read"),
        HTTPStatus(_) => (Some(ProblemCode::Internal), "the gateway failed to handle the request"),
        ConnectTimedout | ConnectRefused | ConnectError | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert
        | SocketError | BindError => (Some(ProblemCode::UpstreamUnavailable), "no upstream target could be reached"),
        ReadTimedout | WriteTimedout => match e.esource() {
            ErrorSource::Downstream => (Some(ProblemCode::BadRequest), "the client was too slow"),
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
