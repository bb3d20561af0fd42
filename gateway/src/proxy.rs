//! `impl ProxyHttp for Gateway`: maps Pingora's phases to policy calls and nothing else.
//! Plain HTTP/1 requests on plain-HTTP listeners never get here: the lane (`lane.rs`) serves
//! them with the same decisions (`admit.rs`), and hands everything else to these phases.
//!
//! | phase | what happens |
//! |---|---|
//! | `new_ctx` | pin the snapshot (`Store::load`, one atomic increment), start the clock |
//! | `request_filter` | request id → `admit` (normalise path, route, lifecycle, CORS, verb, authentication) → mock / preflight / rejection answered by `respond`, or go on to proxy |
//! | (`direct::exchange`) | for HTTP/1 requests without a body to plain-HTTP targets: the phases below, run by the gateway over its own idle connections |
//! | `upstream_peer` | pick a healthy untried target of the API's endpoint; clone its prepared peer |
//! | `fail_to_connect` | passive health strike; retry on another target while retries remain (nothing was sent) |
//! | `upstream_request_filter` | path rewrite (strip context/version, target base path), `Host`, `X-Forwarded-*`, `X-Request-Id` |
//! | `upstream_response_filter` | upstream latency, passive health success |
//! | `response_filter` | `X-Request-Id`, deprecation headers, CORS response headers |
//! | `fail_to_proxy` | Pingora error → `ProblemCode` → problem+json via `respond` |
//! | `logging` | metrics and the access-log line, for every request including local replies |

use crate::access_log::{AccessLog, RequestFacts};
use crate::admit::{self, admit, after_introspection, unix_now, Admission, Combine};
use crate::ctx::RequestCtx;
use crate::respond;
use crate::upstream::prepared;
use async_trait::async_trait;
use control_api::Store;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use policies::authn::bearer_token;
use policies::authn::introspect::IntrospectionResult;
use policies::metrics::FAMILIES;
use policies::state::now_ms;
use policies::{ProblemCode, Rejection};
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

/// The gateway's shared state; cheap to clone (the HTTP/1 fast lane holds one beside
/// Pingora's proxy app).
#[derive(Clone)]
pub struct Gateway(Arc<GatewayState>);

pub struct GatewayState {
    pub store: Arc<Store>,
    pub access_log: Option<AccessLog>,
    pub introspection: crate::introspect::IntrospectionClient,
    /// The direct exchange for plain requests (`server.upstream_fast_path`); `None`: every
    /// request takes Pingora's proxy path.
    pub direct: Option<crate::direct::Direct>,
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

/// The request head as the policies read it.
pub(crate) fn head(session: &Session) -> &Parts {
    session.req_header()
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
        ctx.request_id = crate::request_id::for_request(session.req_header().headers.get(&X_REQUEST_ID).map(HeaderValue::as_bytes));
        let mut admission = admit(ctx, head(session), session.req_header().uri.path());
        if let Admission::Introspect { plan, introspector } = admission {
            // The one asynchronous step of authentication: ask the IdP.
            let snapshot = ctx.snapshot.clone();
            let token = bearer_token(head(session)).unwrap_or("").to_string();
            let result = match snapshot.introspectors.get(introspector as usize) {
                Some(intro) => self.introspection.introspect(intro, &token, unix_now()).await,
                None => IntrospectionResult::Unavailable("introspector missing".into()),
            };
            admission = after_introspection(ctx, head(session), plan, &result);
        }
        match admission {
            Admission::Proxy => match &self.direct {
                Some(direct) if crate::direct::eligible(session, ctx) => crate::direct::exchange(self, direct, session, ctx).await,
                _ => Ok(false),
            },
            Admission::Reject(rejection) => {
                respond::reject(session, ctx, rejection).await?;
                Ok(true)
            }
            Admission::Preflight(headers) => {
                respond::preflight(session, ctx, headers).await?;
                Ok(true)
            }
            Admission::Mock => {
                respond::mock(session, ctx).await?;
                Ok(true)
            }
            // Introspection happened above; a second round is never asked for.
            Admission::Introspect { .. } => {
                respond::reject(session, ctx, Rejection::new(ProblemCode::Internal, "introspection did not finish")).await?;
                Ok(true)
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
        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let req = session.req_header();
        let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
        let edits = match admit::upstream_edits(ctx, head(session), up.uri.path(), up.uri.query(), authority, client_ip, tls) {
            Ok(e) => e,
            // Nothing planned (cannot happen for a proxied request): forward as is.
            Err(_) => return Ok(()),
        };
        if let Some(target) = &edits.target {
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
        up.insert_header(X_FORWARDED_PROTO_CASE, HeaderValue::from_static(edits.proto))?;
        up.insert_header(X_REQUEST_ID_CASE, ctx.request_id.clone())?;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(&self, _session: &mut Session, _resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        ctx.upstream_answered();
        Ok(())
    }

    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        resp.insert_header(X_REQUEST_ID_CASE, ctx.request_id.clone())?;
        let mut result = Ok(());
        admit::response_edits(ctx, head(session), |name, value, how| {
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

impl Gateway {
    /// Counts and logs a finished request (every request, local replies included).
    pub(crate) fn finish<'a>(&self, ctx: &'a RequestCtx, status: u16, facts: impl FnOnce() -> RequestFacts<'a>) {
        let elapsed = ctx.started.elapsed();
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
        HTTPStatus(_) => (Some(ProblemCode::Internal), "the gateway failed to handle the request"),
        ConnectTimedout | ConnectRefused | ConnectError | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | SocketError
        | BindError => (Some(ProblemCode::UpstreamUnavailable), "no upstream target could be reached"),
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
