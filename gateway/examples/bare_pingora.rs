//! The bare framework, for benchmarks: a minimal Pingora `ProxyHttp` that forwards every
//! request to one upstream, with the gateway's server settings (one thread, no work
//! stealing, no downstream modules). Measured beside the gateway in the same bench run, it
//! shows what our routing, policies, metrics and logging cost on top of Pingora itself.
//!
//! `cargo run --release -p gateway --example bare_pingora -- 127.0.0.1:18098 127.0.0.1:18080`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18098".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:18080".into()).parse().expect("upstream ip:port");
    let conf = ServerConf { threads: 1, work_stealing: false, grace_period_seconds: Some(0), ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
