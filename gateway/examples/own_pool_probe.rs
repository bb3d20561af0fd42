//! A measurement probe, not a product: bare Pingora (as `bare_pingora.rs`) but the upstream
//! exchange is done in `request_filter`, over a per-thread stack of idle upstream streams,
//! instead of by Pingora's proxy loop and connection pool. The side-by-side bench compares
//! the two to size what the pool's per-request idle-watcher task and `proxy_h1`'s channels
//! cost, before any of it is built into the gateway.
//!
//! Only what the bench sends is handled: HTTP/1.1 requests without a body, to one plain-HTTP
//! upstream.
//!
//! `cargo run --release -p gateway --example own_pool_probe -- 127.0.0.1:18099 127.0.0.1:18080`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use futures_util::FutureExt;
use pingora::connectors::TransportConnector;
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use std::cell::RefCell;
use tokio::io::AsyncReadExt;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

thread_local! {
    /// Idle upstream streams of this worker thread (no work stealing: a task stays on its
    /// thread, so no lock and no `Send` bound on the way in or out).
    static IDLE: RefCell<Vec<Stream>> = const { RefCell::new(Vec::new()) };
}

struct Probe {
    peer: HttpPeer,
    connector: TransportConnector,
}

/// A pooled stream is usable when a non-blocking read finds nothing (not EOF, not data).
fn still_open(stream: &mut Stream) -> bool {
    let mut buf = [0u8; 1];
    tokio::task::unconstrained(stream.read(&mut buf)).now_or_never().is_none()
}

impl Probe {
    async fn exchange(&self, session: &mut Session) -> Result<()> {
        let pooled = IDLE.with(|p| p.borrow_mut().pop()).and_then(|mut s| still_open(&mut s).then_some(s));
        let stream = match pooled {
            Some(s) => s,
            None => self.connector.new_stream(&self.peer).await?,
        };
        let mut up = UpstreamSession::new(stream);
        up.write_request_header(Box::new(session.req_header().clone())).await?;
        let resp = up.read_resp_header_parts().await?;
        session.write_response_header(resp, false).await?;
        while let Some(chunk) = up.read_body_bytes().await? {
            session.write_response_body(Some(chunk), false).await?;
        }
        session.write_response_body(None, true).await?;
        // Keep-alive is off until the response's own headers are taken into account.
        up.respect_keepalive();
        if let Some(stream) = up.reuse().await {
            IDLE.with(|p| p.borrow_mut().push(stream));
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Probe {
    type CTX = ();
    fn new_ctx(&self) {}
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if let Err(e) = self.exchange(session).await {
            let _ = session.respond_error(502).await;
            return Err(e);
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18099".into());
    let upstream: std::net::SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:18080".into()).parse().expect("upstream ip:port");
    let conf = ServerConf { threads: 1, work_stealing: false, grace_period_seconds: Some(0), ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let probe = Probe { peer: HttpPeer::new(upstream, false, String::new()), connector: TransportConnector::new(None) };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, probe);
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
