//! The lane's upstream exchange: one attempt after another until a response head arrives
//! (the same target choice, retries and health strikes as Pingora's path, `pool.rs`), then
//! the response relayed to the client as it comes, re-framed where needed.

use super::framing::{chunk, parse_up_head, Dechunk, Framing, UpHead, UP_HEAD_LIMIT};
use super::head::{Head, View, HEAD_LIMIT};
use super::pool::{connect, put, resend_after, PoolSettings};
use super::write::{response_head, upstream_head};
use super::{bad_response, up_err, write_all, Conn, Failure, Sent, CLIENT_WRITE_TIMEOUT};
use crate::ctx::RequestCtx;
use crate::pipeline::upstream_edits;
use crate::proxy::Gateway;
use bytes::Buf;
use http::Method;
use pingora::protocols::Stream;
use pingora::ErrorType;
use policies::state::now_ms;
use policies::RequestHead;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// What forwarding an interim response needs of the request.
pub(super) struct Interim<'a> {
    head: &'a Head,
    ctx: &'a RequestCtx,
    close: bool,
}

impl Conn {
    /// Proxies the request (its head at the start of `inbuf`, its body, if any, after it),
    /// filling `sent` as the response goes out.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange(
        &mut self,
        gw: &Gateway,
        pool: &PoolSettings,
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
            let attempt = connect(gw, pool, &snapshot, ctx, resend_to.take()).await.map_err(Failure::Upstream)?;
            let (mut up, peer, reused) = (attempt.stream, attempt.peer, attempt.reused);
            let read_timeout = peer.options.read_timeout.unwrap_or(CLIENT_WRITE_TIMEOUT);
            let write_timeout = peer.options.write_timeout.unwrap_or(CLIENT_WRITE_TIMEOUT);

            {
                let view = View { head, buf: &self.inbuf, client: self.client };
                let edits = upstream_edits(ctx, &view, view.path(), view.query(), None)
                    .map_err(|why| up_err(ErrorType::InternalError, why, None))?;
                upstream_head(&mut self.out, &view, &edits, &ctx.request_id);
                // The body was read whole before the decision: head and body go in one write.
                if let Some(body) = self.inbuf.get(head.len..head.len + head.body_len()) {
                    self.out.extend_from_slice(body);
                }
            }
            let sent_at = Instant::now();
            ctx.upstream_sent = Some(sent_at);
            self.upbuf.clear();
            let result = match pingora_timeout::timeout(write_timeout, write_all(&mut up, &self.out)).await {
                Ok(Ok(())) => {
                    self.out.clear();
                    self.read_up_head(&mut up, up_head, sent_at, read_timeout, Interim { head, ctx, close }).await
                }
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
                        && !self.written
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

        // The response head for the client, then the body.
        {
            let view = View { head, buf: &self.inbuf, client: self.client };
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
            put(key, up, now_ms(), idle_timeout_ms, pool.per_target, pool.total);
        }
        Ok(())
    }

    /// Reads the upstream's final response head into `upbuf` and `up_head`, watching the
    /// client meanwhile: one that hangs up ends the exchange. Interim heads (1xx) are
    /// forwarded to the client as they come, but for `100 Continue`: the lane read the whole
    /// body before it sent the request, so the upstream's go-ahead is for the lane alone.
    pub(super) async fn read_up_head(
        &mut self,
        up: &mut Stream,
        up_head: &mut UpHead,
        sent_at: Instant,
        read_timeout: Duration,
        req: Interim<'_>,
    ) -> Result<(), Failure> {
        let head_request = req.head.method == Method::HEAD;
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
                    if up_head.status != 100 {
                        let view = View { head: req.head, buf: &self.inbuf, client: self.client };
                        response_head(&mut self.out, &self.upbuf, up_head, req.ctx, &view, req.close);
                        self.flush_out().await?;
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
    pub(super) async fn forward_body(
        &mut self,
        up: &mut Stream,
        framing: Framing,
        read_timeout: Duration,
        sent: &mut usize,
    ) -> Result<bool, Failure> {
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

    pub(super) async fn read_up(&mut self, up: &mut Stream, read_timeout: Duration) -> Result<usize, Failure> {
        if self.upbuf.capacity() - self.upbuf.len() < 4096 {
            self.upbuf.reserve(16 * 1024);
        }
        match pingora_timeout::timeout(read_timeout, up.read_buf(&mut self.upbuf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(up_err(ErrorType::ReadError, "reading the response body", Some(e))),
            Err(_) => Err(up_err(ErrorType::ReadTimedout, "reading the response body", None)),
        }
    }

    /// Writes `out` to the client (nothing when empty), within [`CLIENT_WRITE_TIMEOUT`].
    pub(super) async fn flush_out(&mut self) -> Result<(), Failure> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.written = true;
        let r = pingora_timeout::timeout(CLIENT_WRITE_TIMEOUT, write_all(&mut self.stream, &self.out)).await;
        self.out.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(Failure::ClientGone),
        }
    }
}
