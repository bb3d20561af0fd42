//! The lane's upstream connections: idle ones kept per worker thread, and the connect and
//! resend rules of an attempt.
//!
//! Why its own pool rather than Pingora's: per request, Pingora's pool wraps a returned
//! connection in an `Arc<Mutex>`, makes a `Notify` and a oneshot, and spawns an idle-watcher
//! task. Measured side by side (BENCHMARKS.md), that was about 5 µs of the 26 µs a request
//! cost bare Pingora on one core. Here a connection goes back on a per-thread stack: no lock,
//! no task, and it stays on the thread (and so the tokio reactor) that opened it.
//!
//! Idle connections: at most [`MAX_IDLE`] per target and `server.upstream_keepalive_pool` in
//! all per worker thread, none older than the endpoint's `idle_timeout`. One that the
//! upstream closed is found and dropped when next taken (a non-blocking read sees EOF), or by
//! the sweep a thread makes about once a second when it returns a connection.
//!
//! The rules are Pingora's path's (`proxy.rs`): the same target choice, a connect failure
//! retried on another target while `retries` allow (nothing was sent), and only an idempotent
//! request whose kept connection was found closed sent again.

use crate::ctx::RequestCtx;
use crate::proxy::Gateway;
use crate::upstream::prepared;
use pingora::connectors::TransportConnector;
use pingora::protocols::Stream;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use policies::state::now_ms;
use policies::Snapshot;
use std::cell::RefCell;
use std::collections::HashMap;

/// Idle connections kept per target on each worker thread.
pub const MAX_IDLE: usize = 64;

/// The pool's settings, made once at start-up.
pub struct PoolSettings {
    pub(crate) connector: TransportConnector,
    /// Idle connections kept per target per thread (0: none).
    pub(crate) per_target: usize,
    /// Idle connections kept per thread, all targets (`server.upstream_keepalive_pool`).
    pub(crate) total: usize,
}

impl PoolSettings {
    pub fn new(keepalive_pool: usize) -> Self {
        PoolSettings { connector: TransportConnector::new(None), per_target: keepalive_pool.min(MAX_IDLE), total: keepalive_pool }
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

/// One attempt's target and connection.
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
    settings: &PoolSettings,
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
        match Box::pin(settings.connector.new_stream(&p.peer)).await {
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
