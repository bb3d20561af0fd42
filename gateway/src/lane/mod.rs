//! The HTTP/1 lane: the gateway's own connection loop for plain-HTTP listeners, one of the
//! gateway's two exchanges (the other is Pingora's proxy phases, `proxy.rs`).
//!
//! Why: bare Pingora reaches about 0.7× nginx's passthrough on one core (BENCHMARKS.md). Per
//! request, its HTTP/1 server side boxes a session, builds a `RequestHeader` (a header map
//! plus a case-preserving copy of every name), boxes the request and filter futures (several
//! KiB copied each time), serialises the response through another header map, and its pool
//! takes locks and spawns a task per returned connection. The lane parses the request head in
//! place with `httparse`, runs the same chain on a borrowed view of it, writes the upstream
//! head and the response head straight into reused buffers, and keeps upstream connections per
//! worker thread.
//!
//! What it serves (decided in one place, [`head::parse_head`], then by the resource's compiled
//! flag, `Resource::lane`): HTTP/1.1 requests in origin form without `Upgrade`,
//! `Transfer-Encoding` or `Expect`, with no body or a `Content-Length` body of at most
//! [`head::LANE_BODY_LIMIT`] (read whole before the request goes upstream), to a resource
//! whose API has only `http://` targets (or a mock). It answers malformed heads itself (400,
//! 431, 408). Everything else is handed, with the bytes already read, to Pingora's proxy app
//! for that one request (`HttpServerApp::process_new_http`), *before* the chain's commit, so
//! nothing is decided twice; the connection comes back to the lane afterwards. TLS
//! connections (and so HTTP/2) go to Pingora whole.
//!
//! | module | job |
//! |---|---|
//! | `mod.rs` | the connection loop: read a head, decide, serve or hand off, keep alive |
//! | `head` | the request head: found, parsed in place, checked; the policies' view of it |
//! | `exchange` | the upstream exchange: attempts, response head, body relay |
//! | `framing` | upstream response framing and the chunked decoder |
//! | `write` | the heads the lane writes (upstream request, client response, local replies) |
//! | `pool` | per-thread idle upstream connections, connect and resend rules |

mod exchange;
mod framing;
pub mod head;
pub mod pool;
mod write;

use crate::access_log::RequestFacts;
use crate::ctx::RequestCtx;
use crate::pipeline::{decide, Decision};
use crate::proxy::Gateway;
use crate::respond;
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use framing::UpHead;
use head::{head_end, parse_head, Head, Parsed, View, HEAD_LIMIT};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType};
use policies::cache::CacheStatus;
use policies::chain::Exchange;
use policies::{ProblemCode, Rejection, RequestHead};
use pool::PoolSettings;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

tokio::task_local! {
    /// A request the lane decided and hands to Pingora's proxy app (a cache miss, which
    /// pingora-cache serves): Pingora's `new_ctx` takes it, so the request is not decided
    /// (authenticated, counted) a second time.
    static DECIDED: std::cell::RefCell<Option<RequestCtx>>;
}

/// The decided request the lane handed over with this connection, if any (`proxy::new_ctx`).
pub fn take_decided() -> Option<RequestCtx> {
    DECIDED.try_with(|d| d.borrow_mut().take()).ok().flatten()
}

/// A cached body up to this size goes out in one write with its head.
const CACHED_BODY_INLINE: usize = 16 * 1024;

/// Pingora's default for each write of a response to an HTTP/1 client.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection's buffers are given back once they grew past this (a large response).
const BUF_KEEP: usize = 64 * 1024;

/// The service's app: the lane for plain-HTTP connections, Pingora's proxy app for the rest.
pub struct Lane {
    gateway: Gateway,
    proxy: Arc<HttpProxy<Gateway>>,
}

impl Lane {
    pub fn new(gateway: Gateway, proxy: HttpProxy<Gateway>) -> Self {
        Lane { gateway, proxy: Arc::new(proxy) }
    }
}

#[async_trait]
impl ServerApp for Lane {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if self.gateway.lane.is_none() || stream.get_ssl_digest().is_some() {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let client = stream.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let mut conn = Conn {
            stream,
            inbuf: BytesMut::with_capacity(4096),
            upbuf: BytesMut::with_capacity(4096),
            out: Vec::with_capacity(4096),
            client,
            shutdown: shutdown.clone(),
            written: false,
        };
        conn.serve(self).await;
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
}

/// Why an exchange ended without a complete response.
enum Failure {
    /// The client went away: nothing to answer.
    ClientGone,
    /// The upstream side failed (connect, write, read, timeout, bad response).
    Upstream(Box<Error>),
}

fn up_err(etype: ErrorType, context: &'static str, cause: Option<std::io::Error>) -> Failure {
    let e = match cause {
        Some(c) => Error::because(etype, context, c),
        None => Error::explain(etype, context),
    };
    Failure::Upstream(e.into_up())
}

fn bad_response(context: &'static str) -> Failure {
    up_err(ErrorType::InvalidHTTPHeader, context, None)
}

struct Conn {
    stream: Stream,
    /// Bytes read from the client and not yet consumed: the head being read, its body, and
    /// anything the client sent after it (a pipelined next request).
    inbuf: BytesMut,
    /// Bytes read from the upstream and not yet forwarded.
    upbuf: BytesMut,
    /// What goes out next (the upstream request head, or response bytes for the client).
    out: Vec<u8>,
    client: Option<IpAddr>,
    shutdown: ShutdownWatch,
    /// Whether any byte of the current response reached the client.
    written: bool,
}

/// What to do with the connection after a request.
enum Next {
    KeepAlive,
    Close,
}

/// How a request ended, for the log: the status sent (0: none) and body bytes.
struct Sent {
    status: u16,
    body: usize,
}

/// What reading a request (head and body) gave.
enum Read {
    /// A complete request the lane serves.
    Request,
    /// A complete head for Pingora (with whatever followed it in `inbuf`).
    HandOff,
    /// Answer this problem, then close.
    Refuse(ProblemCode, &'static str),
    /// The client closed or went silent between requests, or the server is shutting down.
    Gone,
}

impl Conn {
    async fn serve(&mut self, lane: &Arc<Lane>) {
        let gw = &lane.gateway;
        let Some(pool) = gw.lane.as_ref() else { return };
        let mut head = Head::new();
        let mut up_head = UpHead::new();
        loop {
            let next = match self.read_request(gw, &mut head).await {
                Read::Request => self.request(lane, pool, &head, &mut up_head).await,
                // Everything read so far is the request (and perhaps its body).
                Read::HandOff => match self.handoff(lane, self.inbuf.len(), None).await {
                    true => Next::KeepAlive,
                    false => return,
                },
                Read::Refuse(code, detail) => {
                    self.refuse_unread(gw, &head, code, detail).await;
                    Next::Close
                }
                Read::Gone => return,
            };
            if matches!(next, Next::Close) {
                let _ = self.stream.shutdown().await;
                return;
            }
            // A large response leaves large buffers: they go back rather than stay with an
            // idle keep-alive connection.
            if self.upbuf.capacity() > BUF_KEEP && self.upbuf.is_empty() {
                self.upbuf = BytesMut::with_capacity(4096);
            }
            if self.out.capacity() > BUF_KEEP {
                self.out = Vec::with_capacity(4096);
            }
            if self.inbuf.capacity() > BUF_KEEP && self.inbuf.is_empty() {
                self.inbuf = BytesMut::with_capacity(4096);
            }
        }
    }

    /// Reads one request: its head within `server.client_header_timeout` (counted from the
    /// first wait, so it is also the keep-alive idle timeout), then, for a head the lane
    /// serves, its whole body, each wait within `server.client_body_timeout`. The head's end
    /// is searched for only in new bytes, and the head is parsed once it is complete.
    async fn read_request(&mut self, gw: &Gateway, head: &mut Head) -> Read {
        let limits = &gw.limits;
        // The deadline is taken only if a head needs more than one wait (a clock read saved
        // on every request).
        let mut deadline: Option<Instant> = None;
        let mut scanned = 0;
        loop {
            match head_end(&self.inbuf, scanned) {
                Ok(_) => match parse_head(&self.inbuf, head, limits.max_body) {
                    Parsed::Lane => break,
                    Parsed::HandOff => return Read::HandOff,
                    Parsed::Refuse(code, detail) => return Read::Refuse(code, detail),
                    // Empty lines before the request line (RFC 9112 §2.2): keep reading.
                    Parsed::Partial => scanned = self.inbuf.len(),
                },
                Err(resume) => scanned = resume,
            }
            if self.inbuf.len() > HEAD_LIMIT {
                return Read::Refuse(ProblemCode::HeadTooLarge, "the request head is larger than the gateway reads");
            }
            let left = match deadline {
                None => {
                    deadline = Some(Instant::now() + limits.header_timeout);
                    limits.header_timeout
                }
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            let idle = self.inbuf.is_empty();
            if idle && *self.shutdown.borrow() {
                return Read::Gone;
            }
            match self.read_more(left, idle).await {
                Ok(true) => {}
                Ok(false) => return Read::Gone,
                Err(()) if idle => return Read::Gone,
                Err(()) => return Read::Refuse(ProblemCode::RequestTimeout, "the request head did not arrive in time"),
            }
        }
        let want = head.len + head.body_len();
        while self.inbuf.len() < want {
            match self.read_more(limits.body_timeout, false).await {
                Ok(true) => {}
                // A body shorter than its Content-Length never goes upstream.
                Ok(false) => return Read::Gone,
                Err(()) => return Read::Refuse(ProblemCode::RequestTimeout, "the request body did not arrive in time"),
            }
        }
        Read::Request
    }

    /// One read from the client into `inbuf`, within `left`. `Ok(false)`: the client closed
    /// (or failed), or the server started shutting down while the connection was idle;
    /// `Err(())`: the time ran out.
    async fn read_more(&mut self, left: Duration, idle: bool) -> Result<bool, ()> {
        if left.is_zero() {
            return Err(());
        }
        if self.inbuf.capacity() - self.inbuf.len() < 1024 {
            self.inbuf.reserve(4096);
        }
        let (stream, inbuf, shutdown) = (&mut self.stream, &mut self.inbuf, &mut self.shutdown);
        tokio::select! {
            biased;
            r = pingora_timeout::timeout(left, stream.read_buf(inbuf)) => match r {
                Ok(Ok(n)) => Ok(n > 0),
                Ok(Err(_)) => Ok(false),
                Err(_) => Err(()),
            },
            // An idle keep-alive connection closes when the server starts shutting down, as
            // Pingora's own sessions do.
            _ = shutdown.changed(), if idle => Ok(false),
        }
    }

    /// Hands the first `prefix` bytes read (a request, or its start) and the connection to
    /// Pingora's proxy app for one request, with the request's decision when the lane made
    /// it (`decided`). `true`: the connection came back for more.
    async fn handoff(&mut self, lane: &Arc<Lane>, prefix: usize, decided: Option<RequestCtx>) -> bool {
        let prefix = self.inbuf.split_to(prefix);
        // The stream is lent to Pingora's session; an empty stand-in holds its place meanwhile.
        let stream = std::mem::replace(&mut self.stream, Box::new(std::io::Cursor::new(Vec::<u8>::new())));
        let mut session = ServerSession::new_http1(stream);
        let keepalive = lane.gateway.limits.header_timeout.as_secs().max(1);
        session.set_keepalive(if *self.shutdown.borrow() { None } else { Some(keepalive) });
        if !prefix.is_empty() {
            session.set_pipelined_prefix(prefix);
        }
        let served = lane.proxy.process_new_http(session, &self.shutdown);
        let reused = match decided {
            Some(ctx) => DECIDED.scope(std::cell::RefCell::new(Some(ctx)), served).await,
            None => served.await,
        };
        match reused {
            Some(reused) => {
                // Only the stream is taken back. Its persistent settings could carry bytes
                // Pingora read ahead (a pipelined prefix), but Pingora's sessions keep
                // pipelining off, so there are none: it does not reuse a connection it
                // over-read on. Revisit if pingora-proxy ever turns pipelining on.
                self.stream = reused.consume().0;
                true
            }
            None => false,
        }
    }

    /// One request, its head (and body) complete at the start of `inbuf`.
    async fn request(&mut self, lane: &Arc<Lane>, pool: &PoolSettings, head: &Head, up_head: &mut UpHead) -> Next {
        let gw = &lane.gateway;
        let mut ctx = RequestCtx::new(gw.store.load(), Exchange::Lane);
        let close = head.close || *self.shutdown.borrow();
        let mut hit = None;
        let reply = {
            let view = View { head, buf: &self.inbuf, client: self.client };
            let decision = match decide(gw, &mut ctx, &view, view.path()).await {
                // Step 10: the body is here whole (at most `LANE_BODY_LIMIT`), so it is judged
                // before the upstream is chosen.
                Decision::Proxy => match body_verdict(&ctx, &view, self.inbuf.get(head.len..head.len + head.body_len())) {
                    Ok(()) => Decision::Proxy,
                    Err(rejection) => Decision::Reject(rejection),
                },
                d => d,
            };
            match decision {
                Decision::Proxy => match cache_lookup(gw, &ctx, &view) {
                    CacheLookup::NotCached => None,
                    CacheLookup::Hit(key, entry) => {
                        ctx.cache = Some(key);
                        hit = Some(entry);
                        None
                    }
                    // Misses, stale entries and fills are pingora-cache's: the request goes
                    // to Pingora already decided (and counted).
                    CacheLookup::ToPingora(key) => {
                        ctx.cache = Some(key);
                        ctx.exchange = Exchange::Pingora;
                        let whole = head.len + head.body_len();
                        return if self.handoff(lane, whole, Some(ctx)).await { Next::KeepAlive } else { Next::Close };
                    }
                },
                // Pingora serves it and decides it; the lane spent nothing on it.
                Decision::HandOff => {
                    let whole = head.len + head.body_len();
                    return if self.handoff(lane, whole, None).await { Next::KeepAlive } else { Next::Close };
                }
                decision => {
                    ctx.request_id = crate::request_id::for_request(view.header("x-request-id"));
                    Some(match decision {
                        Decision::Reject(rejection) => respond::rejection_reply(&mut ctx, &view, rejection),
                        Decision::Preflight(headers) => respond::preflight_reply(&ctx, &view, headers),
                        _ => respond::mock_reply(&mut ctx, &view),
                    })
                }
            }
        };
        self.written = false;
        let mut sent = Sent { status: 0, body: 0 };
        let result = match (reply, hit) {
            (Some(reply), _) => self.local_reply(&reply, head, close, &mut sent).await,
            (None, Some(entry)) => self.cached(&mut ctx, head, &entry, close, &mut sent).await,
            (None, None) => {
                ctx.request_id =
                    crate::request_id::for_request(View { head, buf: &self.inbuf, client: self.client }.header("x-request-id"));
                self.exchange(gw, pool, head, up_head, &mut ctx, close, &mut sent).await
            }
        };
        let next = match result {
            Ok(()) if close => Next::Close,
            Ok(()) => Next::KeepAlive,
            Err(Failure::ClientGone) => Next::Close,
            Err(Failure::Upstream(e)) => {
                // Once a byte of the response is out, the only signal left is to close.
                if !self.written {
                    if let (Some(code), detail) = crate::proxy::classify(&e) {
                        tracing::debug!(error = %e, "lane exchange failed");
                        sent.status = self.problem(&mut ctx, head, Rejection::new(code, detail)).await;
                    }
                }
                Next::Close
            }
        };
        self.log(gw, &ctx, head, &sent);
        self.inbuf.advance((head.len + head.body_len()).min(self.inbuf.len()));
        next
    }

    /// Answers a head the lane refused without serving it (malformed, too large, too slow,
    /// a body over the limit), then the connection closes.
    async fn refuse_unread(&mut self, gw: &Gateway, head: &Head, code: ProblemCode, detail: &'static str) {
        let mut ctx = RequestCtx::new(gw.store.load(), Exchange::Lane);
        ctx.request_id = crate::request_id::for_request(None);
        // Only what parsed may be logged: a head that did not parse has no method or path.
        let parsed =
            head.len > 0 && head.len <= self.inbuf.len() && !matches!(code, ProblemCode::RequestTimeout | ProblemCode::HeadTooLarge);
        let status = self.problem(&mut ctx, head, Rejection::new(code, detail)).await;
        let empty = Head::new();
        self.log(gw, &ctx, if parsed { head } else { &empty }, &Sent { status, body: 0 });
    }

    /// Writes a problem for `rejection` (closing the connection after it). Returns the status
    /// sent (0 when the client is gone).
    async fn problem(&mut self, ctx: &mut RequestCtx, head: &Head, rejection: Rejection) -> u16 {
        let reply = {
            let view = View { head, buf: &self.inbuf, client: self.client };
            respond::rejection_reply(ctx, &view, rejection)
        };
        let mut sent = Sent { status: 0, body: 0 };
        match self.local_reply(&reply, head, true, &mut sent).await {
            Ok(()) => sent.status,
            Err(_) => 0,
        }
    }

    /// Writes a fresh cached response (a hit).
    async fn cached(
        &mut self,
        ctx: &mut RequestCtx,
        head: &Head,
        entry: &crate::cache_storage::Entry,
        close: bool,
        sent: &mut Sent,
    ) -> Result<(), Failure> {
        ctx.cache_status = Some(CacheStatus::Hit);
        {
            let view = View { head, buf: &self.inbuf, client: self.client };
            ctx.request_id = crate::request_id::for_request(view.header("x-request-id"));
            write::cached_head(&mut self.out, entry, crate::cache::age(entry), ctx, &view, close);
        }
        if let Some(api) = ctx.api() {
            api.metrics.count_cache(CacheStatus::Hit);
        }
        sent.status = entry.head.status;
        let body = if head.method == http::Method::HEAD || matches!(entry.head.status, 204 | 304) { &[][..] } else { &entry.body[..] };
        sent.body = body.len();
        if body.len() <= CACHED_BODY_INLINE {
            self.out.extend_from_slice(body);
            return self.flush_out().await;
        }
        self.flush_out().await?;
        match pingora_timeout::timeout(CLIENT_WRITE_TIMEOUT, write_all(&mut self.stream, body)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Failure::ClientGone),
        }
    }

    /// Writes a reply the gateway made itself ([`respond::LocalReply`]).
    async fn local_reply(&mut self, reply: &respond::LocalReply, head: &Head, close: bool, sent: &mut Sent) -> Result<(), Failure> {
        sent.body = write::local_reply(&mut self.out, reply, head.method == http::Method::HEAD, close);
        sent.status = reply.status.as_u16();
        self.flush_out().await
    }

    /// Counts and logs a request the lane answered.
    fn log(&self, gw: &Gateway, ctx: &RequestCtx, head: &Head, sent: &Sent) {
        let view = View { head, buf: &self.inbuf, client: self.client };
        gw.finish(ctx, sent.status, || RequestFacts {
            method: if head.len > 0 { head.method.as_str() } else { "" },
            host: view.header("host").and_then(|h| std::str::from_utf8(h).ok()).unwrap_or(""),
            path: view.path(),
            client: self.client,
            http: "1.1",
            bytes_sent: sent.body,
        });
    }
}

/// What the cache says about an admitted request the lane would proxy.
enum CacheLookup {
    /// Its resource is not cached: the lane proxies it.
    NotCached,
    /// A fresh entry: the lane serves it.
    Hit(Box<policies::cache::RequestKey>, Arc<crate::cache_storage::Entry>),
    /// Anything else (a miss, a stale entry, `no-cache`, a conditional or range request):
    /// pingora-cache's.
    ToPingora(Box<policies::cache::RequestKey>),
}

fn cache_lookup(gw: &Gateway, ctx: &RequestCtx, view: &View<'_>) -> CacheLookup {
    let Some(admitted) = ctx.admitted.as_ref() else { return CacheLookup::NotCached };
    let Some(key) = policies::cache::request_key(&ctx.snapshot, admitted, view, view.path()) else { return CacheLookup::NotCached };
    let key = Box::new(key);
    // 304s and ranges are made by pingora-cache from the entry.
    let conditional = ["if-none-match", "if-modified-since", "range", "if-range"].iter().any(|h| view.header(h).is_some());
    if key.lookup != policies::cache::Lookup::Normal || conditional {
        return CacheLookup::ToPingora(key);
    }
    match gw.cache.fresh(&key, view) {
        Some(entry) => CacheLookup::Hit(key, entry),
        None => CacheLookup::ToPingora(key),
    }
}

/// The body protectors' verdict on an admitted request's whole body (`Err`: refuse it).
fn body_verdict(ctx: &RequestCtx, view: &View<'_>, body: Option<&[u8]>) -> Result<(), Rejection> {
    let (Some(admitted), Some(body)) = (ctx.admitted.as_ref(), body.filter(|b| !b.is_empty())) else { return Ok(()) };
    let Some(policy) = policies::chain::threat_policy(&ctx.snapshot, admitted) else { return Ok(()) };
    match policies::threat::body::BodyInspector::check_whole(policy, view.header("content-type"), body) {
        Ok(()) => Ok(()),
        Err(found) => policies::chain::body_finding(&ctx.snapshot, admitted, &found),
    }
}

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
