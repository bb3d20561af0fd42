//! The HTTP/1 fast lane: the gateway's own connection loop for plain-HTTP listeners.
//!
//! Why: with the direct exchange (`direct.rs`) the gateway cost what bare Pingora costs, and
//! bare Pingora reaches about 0.7× nginx's passthrough on one core (BENCHMARKS.md). What was
//! left was Pingora's HTTP/1 server side: per request it boxes a session, builds a
//! `RequestHeader` (a header map plus a case-preserving copy of every name), boxes the
//! request and filter futures (several KiB copied each time), and serialises the response
//! through another header map. The lane parses the request head in place with `httparse`,
//! runs the same policies on a borrowed view of it ([`RequestHead`]), writes the upstream
//! head and the response head straight into reused buffers, and keeps connections per worker
//! thread (the direct exchange's pool).
//!
//! What it takes: HTTP/1.1 requests in origin form without a body, `Upgrade` or `Expect`.
//! Their decision ([`admit`]) is carried out here when it is "proxy" to an API whose targets
//! are all `http://`, or a reply of the gateway's own (a problem, a mock, a preflight: the
//! same [`respond::LocalReply`] Pingora's path writes; deciding once matters, since a refused
//! token may have cost a signature check). Everything else is handed, with the bytes already
//! read, to Pingora's proxy app for that one request (`HttpServerApp::process_new_http`),
//! which answers it exactly as before (introspection, TLS targets, bodies, WebSockets,
//! HTTP/1.0, malformed requests); the connection comes back to the lane afterwards. TLS
//! connections (and so HTTP/2) go to Pingora whole.
//!
//! The rules are the proxy path's: the same target choice, retries and health strikes, the
//! same upstream head edits and response headers ([`admit`]), the same problem answers, the
//! same metrics and access log line; hop-by-hop fields are dropped both ways (RFC 9110
//! §7.6.1) and a close-delimited upstream body is re-framed as chunked.

use crate::access_log::RequestFacts;
use crate::admit::{admit, is_hop_by_hop, response_edits, upstream_edits, Admission, Combine, UpstreamEdits};
use crate::ctx::RequestCtx;
use crate::direct::{connect, put, resend_after, Direct};
use crate::proxy::Gateway;
use crate::respond;
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use http::Method;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType};
use policies::metrics::FAMILIES;
use policies::state::now_ms;
use policies::RequestHead;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request head larger than this (or with more fields than [`MAX_HEADERS`]) goes to
/// Pingora, whose own limits then apply.
const HEAD_LIMIT: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// An upstream response head may be as large as Pingora accepts (`v1/common.rs`).
const UP_HEAD_LIMIT: usize = 1024 * 1024;
const UP_MAX_HEADERS: usize = 256;
/// Pingora's defaults for HTTP/1 clients: 60 s to receive a request head (also between
/// keep-alive requests), and the same for each write of a response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
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
        let direct = match &self.gateway.direct {
            Some(d) if stream.get_ssl_digest().is_none() => d,
            _ => return ServerApp::process_new(&self.proxy, stream, shutdown).await,
        };
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
        conn.serve(self, direct).await;
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
}

/// A range of a buffer.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span { start: start as u32, end: (start + part.len()) as u32 }
    }

    fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(b"")
    }
}

/// A request head parsed in place: where its parts are in the input buffer. One per
/// connection, reused.
struct Head {
    len: usize,
    method: Method,
    path: Span,
    query: Option<Span>,
    fields: [(Span, Span); MAX_HEADERS],
    count: usize,
    /// The client asked to close after this response.
    close: bool,
}

impl Head {
    fn new() -> Box<Head> {
        Box::new(Head {
            len: 0,
            method: Method::GET,
            path: Span::default(),
            query: None,
            fields: [(Span::default(), Span::default()); MAX_HEADERS],
            count: 0,
            close: false,
        })
    }
}

/// What the policies see of a lane request.
struct View<'a> {
    head: &'a Head,
    buf: &'a [u8],
}

impl View<'_> {
    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.fields[..self.head.count].iter().map(|(n, v)| (n.get(self.buf), v.get(self.buf)))
    }

    fn path(&self) -> &str {
        // The target was checked to be ASCII when parsed.
        std::str::from_utf8(self.head.path.get(self.buf)).unwrap_or("")
    }
}

impl RequestHead for View<'_> {
    fn method(&self) -> &Method {
        &self.head.method
    }

    fn query(&self) -> Option<&str> {
        self.head.query.and_then(|q| std::str::from_utf8(q.get(self.buf)).ok())
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }
}

/// Request-target bytes the lane forwards as they are: RFC 3986 path and query characters.
/// Anything else (quotes, braces, `#`, non-ASCII …) is left to Pingora's stricter parser.
fn target_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

enum Parsed {
    /// A head the lane takes, now in the connection's [`Head`].
    Lane,
    /// Not a complete head yet.
    Partial,
    /// Not for the lane: Pingora reads it (and answers a malformed one).
    Pingora,
}

/// Parses the head at the start of `buf` into `head` and decides whether the lane can take it.
fn parse_head(buf: &[u8], head: &mut Head) -> Parsed {
    // Uninitialised: zeroing 64 (or 256) fields on every parse showed in profiles.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return if buf.len() > HEAD_LIMIT { Parsed::Pingora } else { Parsed::Partial },
        Err(_) => return Parsed::Pingora,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else { return Parsed::Pingora };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parsed::Pingora };
    if method == Method::CONNECT || !target.starts_with('/') || !target.bytes().all(target_byte_ok) {
        return Parsed::Pingora;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    head.len = len;
    head.method = method;
    head.path = Span::of(buf, path.as_bytes());
    head.query = query.map(|q| Span::of(buf, q.as_bytes()));
    head.count = req.headers.len();
    head.close = false;
    let mut hosts = 0;
    for (slot, h) in head.fields.iter_mut().zip(req.headers.iter()) {
        *slot = (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value));
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if h.value != b"0" {
                return Parsed::Pingora;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::Pingora;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            // Userinfo in Host is refused by Pingora's authority checks (400).
            if h.value.contains(&b'@') {
                return Parsed::Pingora;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            // `keep-alive` and `close` are the everyday values; one naming other fields (to be
            // stripped) is left to Pingora's sanitizer.
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    return Parsed::Pingora;
                }
            }
        }
    }
    // HTTP/1.1 needs exactly one Host (RFC 9112 §3.2); Pingora answers the others.
    if hosts != 1 {
        return Parsed::Pingora;
    }
    Parsed::Lane
}

/// How the upstream frames its response body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// The upstream's response head, parsed in place in `upbuf`. One per connection, reused.
struct UpHead {
    len: usize,
    status: u16,
    reason: Span,
    /// Grown to the largest head seen on the connection (up to [`UP_MAX_HEADERS`]).
    fields: Vec<(Span, Span)>,
    framing: Framing,
    /// The upstream connection can carry another request once the body is read.
    reusable: bool,
}

impl UpHead {
    fn new() -> Box<UpHead> {
        Box::new(UpHead { len: 0, status: 0, reason: Span::default(), fields: Vec::new(), framing: Framing::None, reusable: false })
    }

    fn fields<'b>(&'b self, buf: &'b [u8]) -> impl Iterator<Item = (&'b [u8], &'b [u8])> {
        self.fields.iter().map(move |(n, v)| (n.get(buf), v.get(buf)))
    }

    /// Whether the upstream's `Connection` header names the field `name` (to be dropped,
    /// RFC 9110 §7.6.1).
    fn nominated(&self, buf: &[u8], name: &[u8]) -> bool {
        self.fields(buf)
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .any(|(_, v)| v.split(|b| *b == b',').map(<[u8]>::trim_ascii).any(|t| t.eq_ignore_ascii_case(name)))
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
    /// Bytes read from the client and not yet consumed: the head being read, and anything the
    /// client sent after it (a pipelined next request).
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

/// How a proxied request ended, for the log: the status sent (0: none) and body bytes.
struct Sent {
    status: u16,
    body: usize,
}

impl Conn {
    async fn serve(&mut self, lane: &Arc<Lane>, direct: &Direct) {
        let mut head = Head::new();
        let mut up_head = UpHead::new();
        loop {
            match self.read_head(&mut head).await {
                Some(Parsed::Lane) => {}
                Some(Parsed::Pingora) => {
                    // Everything read so far is the request (and perhaps its body).
                    let all = self.inbuf.len();
                    if self.handoff(lane, all).await {
                        continue;
                    }
                    return;
                }
                Some(Parsed::Partial) | None => return,
            }
            let next = self.request(lane, direct, &head, &mut up_head).await;
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

    /// Reads until a request head is complete. `None`: the client closed, failed or was
    /// silent for [`CLIENT_TIMEOUT`], or the server is shutting down while the connection is
    /// idle.
    async fn read_head(&mut self, head: &mut Head) -> Option<Parsed> {
        // The deadline is taken only if a head needs more than one wait (a clock read saved
        // on every request).
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.inbuf.is_empty() {
                match parse_head(&self.inbuf, head) {
                    Parsed::Partial => {}
                    done => return Some(done),
                }
            }
            let left = match deadline {
                None => {
                    deadline = Some(Instant::now() + CLIENT_TIMEOUT);
                    CLIENT_TIMEOUT
                }
                Some(d) => d.checked_duration_since(Instant::now())?,
            };
            if self.inbuf.capacity() - self.inbuf.len() < 1024 {
                self.inbuf.reserve(4096);
            }
            let idle = self.inbuf.is_empty();
            if idle && *self.shutdown.borrow() {
                return None;
            }
            let (stream, inbuf, shutdown) = (&mut self.stream, &mut self.inbuf, &mut self.shutdown);
            tokio::select! {
                biased;
                r = pingora_timeout::timeout(left, stream.read_buf(inbuf)) => match r {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return None,
                },
                // An idle keep-alive connection closes when the server starts shutting down,
                // as Pingora's own sessions do.
                _ = shutdown.changed(), if idle => return None,
            }
        }
    }

    /// Hands the first `prefix` bytes read (a request, or its start) and the connection to
    /// Pingora's proxy app for one request. `true`: the connection came back for more.
    async fn handoff(&mut self, lane: &Arc<Lane>, prefix: usize) -> bool {
        let prefix = self.inbuf.split_to(prefix);
        // The stream is lent to Pingora's session; an empty stand-in holds its place meanwhile.
        let stream = std::mem::replace(&mut self.stream, Box::new(std::io::Cursor::new(Vec::<u8>::new())));
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(if *self.shutdown.borrow() { None } else { Some(CLIENT_TIMEOUT.as_secs()) });
        if !prefix.is_empty() {
            session.set_pipelined_prefix(prefix);
        }
        match lane.proxy.process_new_http(session, &self.shutdown).await {
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

    /// One request with a complete head at the start of `inbuf`.
    async fn request(&mut self, lane: &Arc<Lane>, direct: &Direct, head: &Head, up_head: &mut UpHead) -> Next {
        let gw = &lane.gateway;
        let mut ctx = RequestCtx::new(gw.store.load());
        let close = head.close || *self.shutdown.borrow();
        let reply = {
            let view = View { head, buf: &self.inbuf };
            ctx.request_id = crate::request_id::for_request(view.header("x-request-id"));
            let path = view.path();
            match admit(&mut ctx, &view, path) {
                Admission::Proxy if crate::direct::plain_targets(&ctx) => None,
                Admission::Reject(rejection) => Some(respond::rejection_reply(&mut ctx, &view, rejection)),
                Admission::Preflight(headers) => Some(respond::preflight_reply(&ctx, &view, headers)),
                Admission::Mock => Some(respond::mock_reply(&mut ctx, &view)),
                // Introspection (an IdP call) and targets over TLS: Pingora's path, which
                // decides again. The head has no body, so the bytes after it (a pipelined
                // request) stay here.
                Admission::Introspect { .. } | Admission::Proxy => {
                    return if self.handoff(lane, head.len).await { Next::KeepAlive } else { Next::Close };
                }
            }
        };
        self.written = false;
        let mut sent = Sent { status: 0, body: 0 };
        let result = match reply {
            Some(reply) => self.local_reply(reply, head, close, &mut sent).await,
            None => self.exchange(gw, direct, head, up_head, &mut ctx, close, &mut sent).await,
        };
        let next = match result {
            Ok(()) if close => Next::Close,
            Ok(()) => Next::KeepAlive,
            Err(Failure::ClientGone) => Next::Close,
            Err(Failure::Upstream(e)) => {
                // Once a byte of the response is out, the only signal left is to close.
                if !self.written {
                    sent.status = self.problem(&mut ctx, head, &e).await;
                }
                Next::Close
            }
        };
        let view = View { head, buf: &self.inbuf };
        gw.finish(&ctx, sent.status, || RequestFacts {
            method: head.method.as_str(),
            host: view.header("host").and_then(|h| std::str::from_utf8(h).ok()).unwrap_or(""),
            path: view.path(),
            client: self.client,
            http: "1.1",
            bytes_sent: sent.body,
        });
        self.inbuf.advance(head.len.min(self.inbuf.len()));
        next
    }

    /// Answers a failed exchange with the proxy path's problem (`fail_to_proxy`), then the
    /// connection closes. Returns the status sent (0 when the client is gone).
    async fn problem(&mut self, ctx: &mut RequestCtx, head: &Head, e: &Error) -> u16 {
        let (Some(code), detail) = crate::proxy::classify(e) else { return 0 };
        tracing::debug!(error = %e, "fast lane exchange failed");
        let reply = {
            let view = View { head, buf: &self.inbuf };
            respond::rejection_reply(ctx, &view, policies::Rejection::new(code, detail))
        };
        let mut sent = Sent { status: 0, body: 0 };
        match self.local_reply(reply, head, true, &mut sent).await {
            Ok(()) => sent.status,
            Err(_) => 0,
        }
    }

    /// Writes a reply the gateway made itself ([`respond::LocalReply`]).
    async fn local_reply(&mut self, reply: respond::LocalReply, head: &Head, close: bool, sent: &mut Sent) -> Result<(), Failure> {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(reply.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(reply.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &reply.headers {
            field(out, titled(name).as_bytes(), value.as_bytes());
        }
        date_and_connection(out, close);
        out.extend_from_slice(b"\r\n");
        if head.method != Method::HEAD {
            out.extend_from_slice(&reply.body);
            sent.body = reply.body.len();
        }
        sent.status = reply.status.as_u16();
        self.flush_out().await
    }

    /// Proxies the request, filling `sent` as the response goes out.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &mut self,
        gw: &Gateway,
        direct: &Direct,
        head: &Head,
        up_head: &mut UpHead,
        ctx: &mut RequestCtx,
        close: bool,
        sent: &mut Sent,
    ) -> Result<(), Failure> {
        let idempotent = head.method.is_idempotent();
        let mut resend_to: Option<usize> = None;
        let mut resent = false;
        // Targets are borrowed from the snapshot while `ctx` records the attempts.
        let snapshot = Arc::clone(&ctx.snapshot);
        let (mut up, key, idle_timeout_ms, read_timeout) = loop {
            let attempt = connect(gw, direct, &snapshot, ctx, resend_to.take()).await.map_err(Failure::Upstream)?;
            let (mut up, peer, reused) = (attempt.stream, attempt.peer, attempt.reused);
            let read_timeout = peer.options.read_timeout.unwrap_or(CLIENT_TIMEOUT);
            let write_timeout = peer.options.write_timeout.unwrap_or(CLIENT_TIMEOUT);

            {
                let view = View { head, buf: &self.inbuf };
                let edits = upstream_edits(ctx, &view, view.path(), view.query(), None, self.client, false)
                    .map_err(|why| up_err(ErrorType::InternalError, why, None))?;
                upstream_head(&mut self.out, &view, &edits, &ctx.request_id);
            }
            let sent_at = Instant::now();
            ctx.upstream_sent = Some(sent_at);
            self.upbuf.clear();
            let result = match pingora_timeout::timeout(write_timeout, write_all(&mut up, &self.out)).await {
                Ok(Ok(())) => self.read_up_head(&mut up, up_head, sent_at, read_timeout, head.method == Method::HEAD).await,
                Ok(Err(e)) => Err(up_err(ErrorType::WriteError, "writing the request upstream", Some(e))),
                Err(_) => Err(up_err(ErrorType::WriteTimedout, "writing the request upstream", None)),
            };
            self.out.clear();
            match result {
                Ok(()) => break (up, attempt.key, attempt.idle_timeout_ms, read_timeout),
                Err(Failure::ClientGone) => return Err(Failure::ClientGone),
                Err(Failure::Upstream(e)) => {
                    // A kept connection the upstream had closed before answering anything.
                    let closed_kept = reused
                        && self.upbuf.is_empty()
                        && matches!(e.etype(), ErrorType::ConnectionClosed | ErrorType::WriteError | ErrorType::ReadError);
                    if resend_after(gw, ctx, &e, closed_kept, idempotent, &mut resent) {
                        resend_to = Some(attempt.idx);
                        continue;
                    }
                    return Err(Failure::Upstream(e.more_context(format!("Peer: {peer}"))));
                }
            }
        };
        ctx.upstream_answered();
        FAMILIES.upstream_fast_path.inc();

        // The response head for the client, then the body.
        {
            let view = View { head, buf: &self.inbuf };
            response_head(&mut self.out, &self.upbuf, up_head, ctx, &view, close);
        }
        sent.status = up_head.status;
        self.upbuf.advance(up_head.len);
        let up_clean = match self.forward_body(&mut up, up_head.framing, read_timeout, &mut sent.body).await {
            Ok(clean) => clean,
            Err(e) => {
                if let Failure::Upstream(e) = &e {
                    let timeout = matches!(e.etype(), ErrorType::ReadTimedout);
                    gw.strike(ctx, if timeout { "timeout" } else { "error" });
                }
                return Err(e);
            }
        };
        if up_head.reusable && up_clean {
            put(key, up, now_ms(), idle_timeout_ms, direct.per_target, direct.total);
        }
        Ok(())
    }

    /// Reads the upstream's final response head into `upbuf` and `up_head` (interim 1xx
    /// heads are read and dropped), watching the client meanwhile: one that hangs up ends the
    /// exchange.
    async fn read_up_head(
        &mut self,
        up: &mut Stream,
        up_head: &mut UpHead,
        sent_at: Instant,
        read_timeout: Duration,
        head_request: bool,
    ) -> Result<(), Failure> {
        // Counted from when the request went out; the first wait takes the whole timeout
        // without reading the clock again.
        let deadline = sent_at + read_timeout;
        let mut first_wait = true;
        let mut watch_client = true;
        loop {
            if !self.upbuf.is_empty() {
                if parse_up_head(&self.upbuf, up_head, head_request)? {
                    if up_head.status == 101 {
                        return Err(bad_response("101 to a request without Upgrade"));
                    }
                    if up_head.status >= 200 {
                        return Ok(());
                    }
                    self.upbuf.advance(up_head.len);
                    continue;
                }
                if self.upbuf.len() > UP_HEAD_LIMIT {
                    return Err(bad_response("response head too large"));
                }
            }
            let left = if first_wait {
                first_wait = false;
                read_timeout
            } else {
                match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return Err(up_err(ErrorType::ReadTimedout, "reading the response head", None)),
                }
            };
            if self.upbuf.capacity() - self.upbuf.len() < 1024 {
                self.upbuf.reserve(4096);
            }
            let (upbuf, inbuf, client) = (&mut self.upbuf, &mut self.inbuf, &mut self.stream);
            tokio::select! {
                biased;
                r = pingora_timeout::timeout(left, up.read_buf(upbuf)) => match r {
                    Ok(Ok(0)) => return Err(up_err(ErrorType::ConnectionClosed, "the upstream closed before answering", None)),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(up_err(ErrorType::ReadError, "reading the response head", Some(e))),
                    Err(_) => return Err(up_err(ErrorType::ReadTimedout, "reading the response head", None)),
                },
                r = client.read_buf(inbuf), if watch_client => match r {
                    Ok(0) | Err(_) => return Err(Failure::ClientGone),
                    // A pipelined next request: kept for later (up to the head limit).
                    Ok(_) => watch_client = inbuf.len() < HEAD_LIMIT,
                },
            }
        }
    }

    /// Sends `out` (the response head) and the body: `Ok(whether the upstream connection
    /// ended cleanly with the body)`. What is in hand goes out before each wait for the
    /// upstream, so a slow or streamed body reaches the client as it comes.
    async fn forward_body(&mut self, up: &mut Stream, framing: Framing, read_timeout: Duration, sent: &mut usize) -> Result<bool, Failure> {
        match framing {
            Framing::None => {
                self.flush_out().await?;
                Ok(self.upbuf.is_empty())
            }
            Framing::Length(total) => {
                let mut left = total;
                loop {
                    let n = (self.upbuf.len() as u64).min(left) as usize;
                    self.out.extend_from_slice(&self.upbuf[..n]);
                    self.upbuf.advance(n);
                    left -= n as u64;
                    *sent += n;
                    self.flush_out().await?;
                    if left == 0 {
                        return Ok(self.upbuf.is_empty());
                    }
                    if self.read_up(up, read_timeout).await? == 0 {
                        return Err(up_err(ErrorType::ConnectionClosed, "the upstream closed mid-body", None));
                    }
                }
            }
            Framing::Close => loop {
                if !self.upbuf.is_empty() {
                    chunk(&mut self.out, &self.upbuf);
                    *sent += self.upbuf.len();
                    self.upbuf.clear();
                }
                self.flush_out().await?;
                if self.read_up(up, read_timeout).await? == 0 {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                    self.flush_out().await?;
                    return Ok(false);
                }
            },
            Framing::Chunked => {
                let mut dechunk = Dechunk::default();
                loop {
                    *sent += dechunk.run(&mut self.upbuf, &mut self.out).map_err(bad_response)?;
                    self.flush_out().await?;
                    if dechunk.done() {
                        return Ok(self.upbuf.is_empty());
                    }
                    if self.read_up(up, read_timeout).await? == 0 {
                        return Err(up_err(ErrorType::ConnectionClosed, "the upstream closed mid-body", None));
                    }
                }
            }
        }
    }

    async fn read_up(&mut self, up: &mut Stream, read_timeout: Duration) -> Result<usize, Failure> {
        if self.upbuf.capacity() - self.upbuf.len() < 4096 {
            self.upbuf.reserve(16 * 1024);
        }
        match pingora_timeout::timeout(read_timeout, up.read_buf(&mut self.upbuf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(up_err(ErrorType::ReadError, "reading the response body", Some(e))),
            Err(_) => Err(up_err(ErrorType::ReadTimedout, "reading the response body", None)),
        }
    }

    /// Writes `out` to the client (nothing when empty), within [`CLIENT_TIMEOUT`].
    async fn flush_out(&mut self) -> Result<(), Failure> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.written = true;
        let r = pingora_timeout::timeout(CLIENT_TIMEOUT, write_all(&mut self.stream, &self.out)).await;
        self.out.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(Failure::ClientGone),
        }
    }
}

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The spelling Pingora writes for a field given as a `HeaderName`: title case for the few
/// it knows (`pingora_http::case_header_name`), lower case otherwise; `X-Request-Id` as the
/// gateway spells it everywhere. Both ways in then send the same bytes.
fn titled(name: &http::HeaderName) -> &str {
    use http::header;
    match *name {
        header::CACHE_CONTROL => "Cache-Control",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_LENGTH => "Content-Length",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::SET_COOKIE => "Set-Cookie",
        header::DATE => "Date",
        header::SERVER => "Server",
        header::AGE => "Age",
        header::ACCEPT_RANGES => "Accept-Ranges",
        _ if name == "x-request-id" => "X-Request-Id",
        _ => name.as_str(),
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The upstream request head: the client's head without hop-by-hop fields, with the edits.
fn upstream_head(out: &mut Vec<u8>, view: &View<'_>, edits: &UpstreamEdits<'_>, request_id: &http::HeaderValue) {
    out.clear();
    out.extend_from_slice(view.head.method.as_str().as_bytes());
    out.push(b' ');
    match &edits.target {
        Some(t) => out.extend_from_slice(t.as_bytes()),
        None => {
            out.extend_from_slice(view.head.path.get(view.buf));
            if let Some(q) = view.head.query {
                out.push(b'?');
                out.extend_from_slice(q.get(view.buf));
            }
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in view.fields() {
        if !is_hop_by_hop(name) && !edits.drops(name) {
            field(out, name, value);
        }
    }
    match &edits.host {
        Some(h) => field(out, b"Host", h.as_bytes()),
        None => {
            if let Some(h) = edits.forwarded_host {
                field(out, b"Host", h);
            }
        }
    }
    if let Some(h) = edits.forwarded_host {
        field(out, b"X-Forwarded-Host", h);
    }
    if edits.forwarded_for_prev.is_some() || edits.client_ip.is_some() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        edits.forwarded_for(out);
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, value)) = &edits.backend_jwt {
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    field(out, b"X-Forwarded-Proto", edits.proto.as_bytes());
    field(out, b"X-Request-Id", request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Parses the upstream's response head at the start of `buf` into `h`; `Ok(false)`: not
/// complete yet. Pingora's leniencies for responses apply (spaces before the colon, folded
/// lines); its limits too (256 fields; the caller bounds the size).
fn parse_up_head(buf: &[u8], h: &mut UpHead, head_request: bool) -> Result<bool, Failure> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; UP_MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response_with_uninit_headers(&mut resp, buf, &mut fields);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(false),
        Err(_) => return Err(bad_response("the upstream sent a malformed response head")),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err(bad_response("the upstream sent a malformed response head"));
    };
    if status < 100 {
        return Err(bad_response("the upstream sent a status below 100"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = version == 0;
    h.fields.clear();
    for f in resp.headers.iter() {
        h.fields.push((Span::of(buf, f.name.as_bytes()), Span::of(buf, f.value)));
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(f.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Err(bad_response("the upstream sent an invalid Content-Length")),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !f.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(bad_response("the upstream used a transfer coding other than chunked"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in f.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                    close = false;
                }
            }
        }
    }
    h.len = len;
    h.status = status;
    h.reason = Span::of(buf, resp.reason.unwrap_or("").as_bytes());
    h.framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // Both Content-Length and chunked: chunked wins, but such an upstream connection is not
    // trusted with another request (RFC 9112 §6.3).
    h.reusable = !close && h.framing != Framing::Close && !(chunked && length.is_some());
    Ok(true)
}

/// The client's response head from the upstream's: hop-by-hop fields (and any the upstream's
/// `Connection` names) dropped, the gateway's headers set, the framing the lane sends.
fn response_head(out: &mut Vec<u8>, buf: &[u8], h: &UpHead, ctx: &RequestCtx, view: &View<'_>, close: bool) {
    // The gateway's headers, gathered first: those it inserts replace the upstream's. (No
    // allocation unless the API has lifecycle or CORS headers.)
    let mut ours: Vec<(http::HeaderName, http::HeaderValue, Combine)> = Vec::new();
    response_edits(ctx, view, |n, v, c| ours.push((n.clone(), v.clone(), c)));
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let _ = std::io::Write::write_fmt(out, format_args!("{} ", h.status));
    let reason = h.reason.get(buf);
    if reason.is_empty() {
        out.extend_from_slice(http::StatusCode::from_u16(h.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").as_bytes());
    } else {
        out.extend_from_slice(reason);
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in h.fields(buf) {
        // The framing fields are the lane's to write (below), whatever `Connection` says.
        let framing = name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding");
        if framing {
            // A HEAD, 204 or 304 answer keeps the upstream's Content-Length as information.
            if h.framing == Framing::None && name.eq_ignore_ascii_case(b"content-length") {
                field(out, name, value);
            }
            continue;
        }
        let replaced = name.eq_ignore_ascii_case(b"x-request-id")
            || name.eq_ignore_ascii_case(b"date")
            || ours.iter().any(|(n, _, c)| *c == Combine::Insert && n.as_str().as_bytes().eq_ignore_ascii_case(name));
        if is_hop_by_hop(name) || replaced || h.nominated(buf, name) {
            continue;
        }
        if value.iter().any(|b| matches!(b, b'\r' | b'\n')) {
            // A folded line (obs-fold) is forwarded unfolded (RFC 9112 §5.2).
            let unfolded: Vec<u8> = value.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
            field(out, name, &unfolded);
        } else {
            field(out, name, value);
        }
    }
    field(out, b"X-Request-Id", ctx.request_id.as_bytes());
    for (n, v, _) in &ours {
        field(out, titled(n).as_bytes(), v.as_bytes());
    }
    match h.framing {
        Framing::Length(n) => {
            let _ = std::io::Write::write_fmt(out, format_args!("Content-Length: {n}\r\n"));
        }
        Framing::Chunked | Framing::Close => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None => {}
    }
    date_and_connection(out, close);
    out.extend_from_slice(b"\r\n");
}

/// `Date` (the gateway's clock, as Pingora's HTTP/1 server and nginx send it, replacing the
/// upstream's) and `Connection`, which end every response head.
fn date_and_connection(out: &mut Vec<u8>, close: bool) {
    thread_local! {
        /// The formatted date and the second it is for: formatted once per second per thread.
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = policies::state::unix_now();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now || d.1.is_empty() {
            *d = (now, httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(now)));
        }
        field(out, b"Date", d.1.as_bytes());
    });
    out.extend_from_slice(if close { b"Connection: close\r\n" } else { b"Connection: keep-alive\r\n" });
}

/// Appends `data` as one chunk.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = std::io::Write::write_fmt(out, format_args!("{:x}\r\n", data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Decodes a chunked body (RFC 9112 §7.1) and writes it re-chunked: extensions and
/// trailer fields are dropped, as on Pingora's path.
#[derive(Default)]
struct Dechunk {
    state: ChunkState,
}

#[derive(Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Longest chunk-size line and trailer section accepted.
const CHUNK_LINE_LIMIT: usize = 4096;

impl Dechunk {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes what it can of `buf`; returns the data bytes written to `out`.
    fn run(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<usize, &'static str> {
        let mut data = 0;
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        return if buf.len() > CHUNK_LINE_LIMIT { Err("chunk size line too long") } else { Ok(data) };
                    };
                    let line = &buf[..end];
                    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                    let rest = &line[digits..];
                    if digits == 0 || digits > 15 || !(rest.is_empty() || matches!(rest[0], b';' | b' ' | b'\t')) {
                        return Err("malformed chunk size");
                    }
                    let size = std::str::from_utf8(&line[..digits])
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or("malformed chunk size")?;
                    buf.advance(end + 2);
                    self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(data);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    chunk(out, &buf[..n]);
                    buf.advance(n);
                    data += n;
                    self.state = if left == n as u64 { ChunkState::DataEnd } else { ChunkState::Data(left - n as u64) };
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(data);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        return if buf.len() > CHUNK_LINE_LIMIT { Err("trailer field too long") } else { Ok(data) };
                    };
                    buf.advance(end + 2);
                    if end == 0 {
                        out.extend_from_slice(b"0\r\n\r\n");
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(data),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk_all(input: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), &'static str> {
        let mut d = Dechunk::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut n = 0;
        for piece in input {
            buf.extend_from_slice(piece);
            n += d.run(&mut buf, &mut out)?;
        }
        Ok((out, n, d.done()))
    }

    #[test]
    fn dechunk_reframes_across_reads_and_drops_extensions_and_trailers() {
        let (out, n, done) = dechunk_all(&[b"5;ext=1\r\nhel", b"lo\r\n3\r", b"\nabc\r\n0\r\nX-T: 1\r\n", b"\r\n"]).unwrap();
        assert_eq!(out, b"3\r\nhel\r\n2\r\nlo\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(n, 8);
        assert!(done);
    }

    #[test]
    fn dechunk_rejects_bad_framing() {
        assert!(dechunk_all(&[b"zz\r\n"]).is_err());
        assert!(dechunk_all(&[b"3\r\nabcX\r\n"]).is_err());
        assert!(dechunk_all(&[b"-1\r\n"]).is_err());
        assert!(dechunk_all(&[b"1234567890abcdef0\r\n"]).is_err());
        assert!(dechunk_all(&[&[b'1'; 5000][..]]).is_err());
        let (_, _, done) = dechunk_all(&[b"3\r\nabc\r\n"]).unwrap();
        assert!(!done);
    }

    #[test]
    fn heads_the_lane_leaves_to_pingora() {
        let mut head = Head::new();
        let mut lane = |raw: &str| matches!(parse_head(raw.as_bytes(), &mut head), Parsed::Lane);
        assert!(lane("GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"));
        assert!(lane("GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.0\r\nHost: x\r\n\r\n"));
        assert!(!lane("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
        assert!(!lane("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close, x-secret\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.1\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"));
        assert!(!lane("GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!lane("GET /a{b} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!lane("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!lane("GARBAGE\r\n\r\n"));
        assert!(!lane("GET /a HTTP/1.1\r\nHost: user@x\r\n\r\n"));
        assert!(matches!(parse_head(b"GET /a HTTP/1.1\r\nHost: x\r\n", &mut head), Parsed::Partial));
        let mut big = b"GET /a HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        big.resize(HEAD_LIMIT + 10, b'a');
        assert!(matches!(parse_head(&big, &mut head), Parsed::Pingora));
    }

    #[test]
    fn upstream_framing() {
        let mut h = UpHead::new();
        let mut f = |raw: &str, head: bool| match parse_up_head(raw.as_bytes(), &mut h, head) {
            Ok(true) => Some((h.framing, h.reusable)),
            _ => None,
        };
        assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false), Some((Framing::Length(5), true)));
        assert_eq!(f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true), Some((Framing::None, true)));
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n", false), Some((Framing::Close, false)));
        assert_eq!(f("HTTP/1.1 204 No Content\r\n\r\n", false), Some((Framing::None, true)));
        assert_eq!(f("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false), Some((Framing::Length(1), false)));
        assert_eq!(f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false), Some((Framing::Length(1), false)));
        assert_eq!(f("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false), Some((Framing::Length(1), true)));
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).is_none());
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", false).is_none());
        assert!(f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).is_none());
        assert_eq!(f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false), Some((Framing::Chunked, false)));
        assert!(f("HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", false).is_none());
        assert_eq!(f("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length : 1\r\n\r\n", false), Some((Framing::Length(1), true)));
        assert!(matches!(parse_up_head(b"HTTP/1.1 200 OK\r\n", &mut UpHead::new(), false), Ok(false)));
    }
}
