//! The direct exchange: for the common request (HTTP/1.x, no body, no upgrade, to a
//! plain-HTTP target) the gateway talks to the upstream itself, from `request_filter`, over
//! idle connections kept per worker thread, instead of handing the request to Pingora's
//! proxy loop and connection pool.
//!
//! Why: per request, Pingora's pool wraps a returned connection in an `Arc<Mutex>`, makes a
//! `Notify` and a oneshot, and spawns an idle-watcher task; `proxy_h1` adds two mpsc
//! channels and a `try_join`. Measured side by side (BENCHMARKS.md), that is about 5 µs of
//! the 26 µs a request costs bare Pingora on one core. Here a connection goes back on a
//! per-thread stack: no lock, no task, and it stays on the thread (and so the tokio
//! reactor) that opened it.
//!
//! Everything else is the proxy path's: the same target choice and retries, the same
//! `upstream_request_filter`, `upstream_response_filter` and `response_filter`, the same
//! error answers (`fail_to_proxy`) and logging. Requests with a body, upgrades, HTTP/2
//! clients and TLS targets take Pingora's path, which also streams bodies both ways at once.
//!
//! Idle connections: at most [`MAX_IDLE`] per target and `server.upstream_keepalive_pool` in
//! all per worker thread, none older than the endpoint's `idle_timeout`. One that the
//! upstream closed is found and dropped when next taken (a non-blocking read sees EOF), or by
//! the sweep a thread makes about once a second when it returns a connection.
//!
//! Also as on the proxy path: the client is watched while the upstream works (a hang-up ends
//! the exchange), and only an idempotent request whose kept connection was found closed is
//! sent again.

use crate::admit::HOP_BY_HOP;
use crate::ctx::RequestCtx;
use crate::proxy::Gateway;
use crate::upstream::prepared;
use http::header;
use pingora::connectors::TransportConnector;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result, RetryType};
use policies::metrics::FAMILIES;
use policies::state::now_ms;
use policies::Snapshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Idle connections kept per target on each worker thread.
pub const MAX_IDLE: usize = 64;

/// The direct exchange's settings, made once at start-up.
pub struct Direct {
    pub(crate) connector: TransportConnector,
    /// Idle connections kept per target per thread (0: none).
    pub(crate) per_target: usize,
    /// Idle connections kept per thread, all targets (`server.upstream_keepalive_pool`).
    pub(crate) total: usize,
}

impl Direct {
    pub fn new(keepalive_pool: usize) -> Self {
        Direct { connector: TransportConnector::new(None), per_target: keepalive_pool.min(MAX_IDLE), total: keepalive_pool }
    }
}

struct Idle {
    stream: Stream,
    /// When it went idle plus the endpoint's `idle_timeout`.
    expires_ms: u64,
}

/// One worker thread's idle connections.
#[derive(Default)]
struct Pool {
    /// By the target's reuse key; newest last.
    by_target: HashMap<u64, Vec<Idle>>,
    /// Connections held, all targets together.
    total: usize,
    last_sweep_ms: u64,
}

thread_local! {
    static IDLE: RefCell<Pool> = RefCell::new(Pool::default());
}

/// How often a thread that returns connections looks through all it holds.
const SWEEP_EVERY_MS: u64 = 1_000;

/// A kept connection is usable when a non-blocking read finds nothing: not EOF, not data
/// (an upstream that sends before being asked is not speaking HTTP/1 to us).
/// (A `Pending` from tokio's cooperative budget also reads as open; a connection wrongly kept
/// that way fails on use and is retried on a fresh one.)
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(&mut **stream).poll_read(&mut cx, &mut buf).is_pending()
}

pub(crate) fn take(key: u64, now: u64) -> Option<Stream> {
    IDLE.with(|cell| {
        let mut pool = cell.borrow_mut();
        let pool = &mut *pool;
        let list = pool.by_target.get_mut(&key)?;
        while let Some(mut idle) = list.pop() {
            pool.total -= 1;
            if now < idle.expires_ms && still_open(&mut idle.stream) {
                return Some(idle.stream);
            }
        }
        None
    })
}

/// Keeps a connection for reuse: at most `per_target` per target and `total` in all on this
/// thread. About once a second the whole pool is checked, so connections of targets that
/// went quiet (or left the config) and connections the upstream closed do not linger.
pub(crate) fn put(key: u64, stream: Stream, now: u64, idle_timeout_ms: u64, per_target: usize, total: usize) {
    IDLE.with(|cell| {
        let mut pool = cell.borrow_mut();
        let pool = &mut *pool;
        if now.saturating_sub(pool.last_sweep_ms) >= SWEEP_EVERY_MS {
            pool.last_sweep_ms = now;
            pool.by_target.retain(|_, list| {
                list.retain_mut(|i| now < i.expires_ms && still_open(&mut i.stream));
                !list.is_empty()
            });
            pool.total = pool.by_target.values().map(Vec::len).sum();
        }
        if per_target == 0 || pool.total >= total {
            return;
        }
        let list = pool.by_target.entry(key).or_default();
        // The oldest goes when the stack is full or has outlived the idle timeout.
        if list.len() >= per_target || list.first().is_some_and(|i| now >= i.expires_ms) {
            list.remove(0);
            pool.total -= 1;
        }
        list.push(Idle { stream, expires_ms: now.saturating_add(idle_timeout_ms) });
        pool.total += 1;
    });
}

/// The upstream request is HTTP/1.1 without the client's hop-by-hop fields (RFC 9110
/// §7.6.1), as Pingora's proxy path sends it.
fn strip_hop_by_hop(req: &mut pingora::http::RequestHeader) {
    req.set_version(http::Version::HTTP_11);
    // One pass over the names first: most requests carry none of them.
    if req.headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        for name in HOP_BY_HOP {
            req.remove_header(name);
        }
    }
}

/// Whether the request can take the direct exchange.
pub fn eligible(session: &Session, ctx: &RequestCtx) -> bool {
    if session.is_http2() || session.is_subrequest() {
        return false;
    }
    let h = &session.req_header().headers;
    let no_body = h.get(header::TRANSFER_ENCODING).is_none() && h.get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
    // A `Connection` header naming other headers (hop-by-hop fields to strip) is left to
    // Pingora's sanitizer; `keep-alive` and `close` are the everyday values.
    let connection_plain = h.get_all(header::CONNECTION).iter().all(|v| {
        v.as_bytes().split(|b| *b == b',').all(|t| {
            let t = t.trim_ascii();
            t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
        })
    });
    // Origin-form only (`GET /path`): an absolute-form target carries its own authority,
    // which Pingora's path reconciles with Host.
    let origin_form = session.req_header().uri.authority().is_none();
    let plain = no_body && origin_form && connection_plain && h.get(header::UPGRADE).is_none() && h.get(header::EXPECT).is_none();
    plain && plain_targets(ctx)
}

/// Whether every target of the request's API is plain HTTP (the fast path does no TLS).
pub fn plain_targets(ctx: &RequestCtx) -> bool {
    ctx.api().and_then(|a| a.endpoint.as_ref()).is_some_and(|e| e.targets.iter().all(|t| !t.tls))
}

/// One attempt's target and connection (the direct exchange's and the lane's).
pub(crate) struct Attempt<'s> {
    pub idx: usize,
    pub peer: &'s HttpPeer,
    pub key: u64,
    pub idle_timeout_ms: u64,
    pub stream: Stream,
    /// A kept connection (which the upstream may have closed meanwhile).
    pub reused: bool,
}

/// Picks the next healthy untried target (or `resend_to`, for the one resend, on a fresh
/// connection), records the attempt in `ctx`, and takes a kept connection or connects. A
/// failed connect is a health strike and moves on to another target while the endpoint's
/// retries allow: nothing reached the upstream, so that is safe even for POST (as
/// `fail_to_connect` on Pingora's path).
pub(crate) async fn connect<'s>(
    gw: &Gateway,
    direct: &Direct,
    snapshot: &'s Snapshot,
    ctx: &mut RequestCtx,
    mut resend_to: Option<usize>,
) -> Result<Attempt<'s>> {
    let endpoint = ctx
        .api
        .and_then(|i| snapshot.api(i))
        .and_then(|a| a.endpoint.as_ref())
        .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "API has no endpoint"))?;
    loop {
        let fresh_only = resend_to.is_some();
        let idx = match resend_to.take() {
            Some(i) => i,
            None => {
                endpoint.select(ctx.tried, now_ms()).ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "every target was tried"))?
            }
        };
        let p = endpoint
            .targets
            .get(idx)
            .and_then(prepared)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "target was not prepared"))?;
        let untried_left = ((ctx.tried | 1 << idx).count_ones() as usize) < endpoint.targets.len();
        if !fresh_only {
            ctx.tried |= 1 << idx;
            ctx.attempts += 1;
        }
        ctx.target = Some(idx);
        let attempt = |stream, reused| Attempt {
            idx,
            peer: &p.peer,
            key: p.reuse_key,
            idle_timeout_ms: endpoint.idle_timeout.as_millis() as u64,
            stream,
            reused,
        };
        if !fresh_only {
            if let Some(stream) = take(p.reuse_key, now_ms()) {
                return Ok(attempt(stream, true));
            }
        }
        // Boxed: the connect future (TCP and TLS states) is several KiB, and an unboxed one
        // would make every request's future that big (copied into its box each time).
        match Box::pin(direct.connector.new_stream(&p.peer)).await {
            Ok(stream) => return Ok(attempt(stream, false)),
            Err(e) => {
                gw.strike(ctx, "connect");
                if ctx.attempts <= endpoint.retries && untried_left {
                    continue;
                }
                return Err(e.more_context(format!("Peer: {}", p.peer)).into_up());
            }
        }
    }
}

/// After an attempt failed once the request was sent: `true` to send it once more, on a new
/// connection to the same target (an idempotent request whose kept connection the upstream
/// had closed, so nothing was answered). Otherwise the failure is final and, unless it was
/// such a closed kept connection, a passive-health strike.
pub(crate) fn resend_after(gw: &Gateway, ctx: &RequestCtx, e: &Error, closed_kept: bool, idempotent: bool, resent: &mut bool) -> bool {
    if closed_kept && idempotent && !*resent {
        *resent = true;
        return true;
    }
    if !closed_kept {
        let timeout = matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout);
        gw.strike(ctx, if timeout { "timeout" } else { "error" });
    }
    false
}

/// Proxies the request. `Ok(true)`: a response was sent. An `Err` goes to Pingora's error
/// handling, which calls `fail_to_proxy` (the problem answer, if nothing was sent yet) and
/// `logging`, exactly as on the proxy path.
///
/// Retries follow the proxy path (`fail_to_connect`, `error_while_proxy`): a failed connect
/// moves to another target while `retries` allow (nothing was sent); once the request is
/// sent, a failure is final, except that an idempotent request whose kept connection turns
/// out to be closed (the upstream closed it as it was taken) is sent once more, on a new
/// connection to the same target, without a health strike.
pub async fn exchange(gw: &Gateway, direct: &Direct, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let idempotent = session.req_header().method.is_idempotent();
    // Set for the one resend after a closed kept connection: the target to use again.
    let mut resend_to: Option<usize> = None;
    let mut resent = false;
    // Targets are borrowed from the snapshot while `ctx` records the attempts.
    let snapshot = Arc::clone(&ctx.snapshot);
    let (mut up, mut resp, key, idle_timeout_ms) = loop {
        let attempt = connect(gw, direct, &snapshot, ctx, resend_to.take()).await?;
        let (stream, peer, reused) = (attempt.stream, attempt.peer, attempt.reused);
        let mut up = UpstreamSession::new_with_options(stream, peer);
        up.read_timeout = peer.options.read_timeout;
        up.write_timeout = peer.options.write_timeout;
        let mut req = Box::new(session.req_header().clone());
        strip_hop_by_hop(&mut req);
        gw.upstream_request_filter(session, &mut req, ctx).await?;
        let sent = async {
            up.write_request_header(req).await?;
            let mut resp = up.read_resp_header_parts().await?;
            // Interim responses (100, 103 Early Hints) are dropped; the final one follows.
            // A 101 to a request that asked for no upgrade is a broken upstream.
            while resp.status.is_informational() {
                if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(Error::explain(ErrorType::InvalidHTTPHeader, "101 to a request without Upgrade"));
                }
                resp = up.read_resp_header_parts().await?;
            }
            Ok::<_, Box<Error>>(resp)
        };
        // While the upstream works, watch the client: one that hangs up ends the exchange
        // (and frees the upstream connection), as on Pingora's proxy path.
        let sent = {
            tokio::pin!(sent);
            tokio::select! {
                biased;
                r = &mut sent => r,
                gone = session.read_body_or_idle(true) => match gone {
                    Err(e) => return Err(e.into_down()),
                    // Bytes of a pipelined next request: leave them, wait for the answer.
                    Ok(_) => sent.await,
                },
            }
        };
        match sent {
            Ok(resp) => break (up, resp, attempt.key, attempt.idle_timeout_ms),
            Err(e) => {
                // Pingora marks "closed before any response byte" on a reused connection.
                let closed_kept = reused && matches!(e.retry, RetryType::ReusedOnly);
                if resend_after(gw, ctx, &e, closed_kept, idempotent, &mut resent) {
                    resend_to = Some(attempt.idx);
                    continue;
                }
                return Err(e.more_context(format!("Peer: {peer}")).into_up());
            }
        }
    };
    FAMILIES.upstream_fast_path.inc();

    // A close-delimited body (no length, no chunking) is re-framed as chunked, so the client
    // connection can stay open (as Pingora's proxy path does).
    let no_body = session.req_header().method == http::Method::HEAD || matches!(resp.status.as_u16(), 204 | 304);
    if !no_body && resp.headers.get(header::TRANSFER_ENCODING).is_none() && resp.headers.get(header::CONTENT_LENGTH).is_none() {
        resp.set_version(http::Version::HTTP_11);
        resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    }
    gw.upstream_response_filter(session, &mut resp, ctx).await?;
    gw.response_filter(session, &mut resp, ctx).await?;
    session.write_response_header(resp, false).await.map_err(|e| e.into_down())?;
    loop {
        match up.read_body_bytes().await {
            Ok(Some(chunk)) => session.write_response_body(Some(chunk), false).await.map_err(|e| e.into_down())?,
            Ok(None) => break,
            Err(e) => {
                let timeout = matches!(e.etype(), ErrorType::ReadTimedout);
                gw.strike(ctx, if timeout { "timeout" } else { "error" });
                return Err(e.into_up());
            }
        }
    }
    session.write_response_body(None, true).await.map_err(|e| e.into_down())?;
    // Keep-alive is off until the response's own headers are taken into account.
    up.respect_keepalive();
    if let Some(stream) = up.reuse().await {
        put(key, stream, now_ms(), idle_timeout_ms, direct.per_target, direct.total);
    }
    Ok(true)
}
