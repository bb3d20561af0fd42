//! `loadtest upstream`: a fast, minimal HTTP/1.1 origin for benchmarks.
//!
//! It answers every path with a fixed body prepared once at start-up (a `Bytes` clone per
//! response, no formatting), so that in a proxy benchmark the time goes to the proxy, not to
//! the origin. hyper's HTTP/1 server does the parsing: an origin must accept whatever a
//! gateway sends (chunked bodies, `Expect: 100-continue`, pipelining), and hyper already gets
//! all of that right. Routes:
//!
//! * `/health` → `200 ok` (readiness checks);
//! * `/status/NNN[/...]` → status NNN with the usual body (to test expected statuses, e.g. 429);
//! * anything else → `200` with a JSON body of `--body-size` bytes, after `--delay`.
//!
//! Request bodies are drained and discarded frame by frame, never buffered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the upstream answers with.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub body_size: usize,
    pub delay: Duration,
}

/// Counters, readable while the server runs (tests compare them with the client's counts).
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Requests answered, `/health` excluded.
    pub requests: AtomicU64,
    pub health_checks: AtomicU64,
    pub connections: AtomicU64,
}

/// A JSON body of exactly `size` bytes (`{"ok":true,"pad":"xxx"}`), or filler when too small
/// for that.
pub fn make_body(size: usize) -> Bytes {
    const FRAME: &str = r#"{"ok":true,"pad":""}"#;
    if size < FRAME.len() {
        return Bytes::from(vec![b'x'; size]);
    }
    let pad = "x".repeat(size - FRAME.len());
    Bytes::from(format!(r#"{{"ok":true,"pad":"{pad}"}}"#))
}

struct State {
    body: Bytes,
    delay: Duration,
    stats: Arc<UpstreamStats>,
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/health" {
        state.stats.health_checks.fetch_add(1, Ordering::Relaxed);
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    // Drain the request body so the connection can be reused, without keeping it.
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let mut resp = Response::new(Full::new(state.body.clone()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Serves `listener` until `shutdown` turns true. Connections in progress are closed with it.
pub async fn serve(
    listener: TcpListener,
    cfg: UpstreamConfig,
    stats: Arc<UpstreamStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let state = Arc::new(State { body: make_body(cfg.body_size), delay: cfg.delay, stats });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true).pipeline_flush(true);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.stats.connections.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        let builder = builder.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
        });
    }
    Ok(())
}

/// An upstream on its own runtime thread, stopped when dropped (for tests and embedding).
pub struct BackgroundUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<UpstreamStats>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundUpstream {
    /// Binds `listen` (port 0 for an ephemeral port) and serves on `threads` worker threads.
    pub fn start(listen: SocketAddr, cfg: UpstreamConfig, threads: usize) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).thread_name("upstream").enable_all().build()?;
        // Bind with std so this works from inside another runtime (tests are often async).
        let std_listener = std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let stats = Arc::new(UpstreamStats::default());
        let (stop, rx) = watch::channel(false);
        let s = stats.clone();
        let thread = std::thread::Builder::new().name("upstream-main".into()).spawn(move || {
            let _ = rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener)?;
                serve(listener, cfg, s, rx).await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(BackgroundUpstream { addr, stats, stop, thread: Some(thread) })
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }
}

impl Drop for BackgroundUpstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `loadtest upstream`: serves until Ctrl-C or SIGTERM, printing the address first.
pub fn run(args: crate::cli::UpstreamArgs) -> Result<()> {
    crate::target::check_listen(args.listen, args.allow_remote)?;
    let threads = args.threads.unwrap_or_else(crate::cli::available_cpus);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        // One line on stdout, flushed: scripts and `loadtest bench` read the port from it.
        println!("listening on {addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let stats = Arc::new(UpstreamStats::default());
        let (stop, rx) = watch::channel(false);
        let cfg = UpstreamConfig { body_size: args.body_size, delay: args.delay };
        let server = tokio::spawn(serve(listener, cfg, stats.clone(), rx));
        wait_for_shutdown_signal().await;
        let _ = stop.send(true);
        let _ = server.await;
        eprintln!(
            "upstream: {} requests, {} health checks, {} connections",
            stats.requests.load(Ordering::Relaxed),
            stats.health_checks.load(Ordering::Relaxed),
            stats.connections.load(Ordering::Relaxed)
        );
        Ok::<(), anyhow::Error>(())
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::simple_request;

    #[test]
    fn body_has_the_requested_size_and_is_json_when_it_fits() {
        for size in [0, 5, 20, 64, 1000] {
            let b = make_body(size);
            assert_eq!(b.len(), size);
            if size >= 20 {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["ok"], true);
            }
        }
    }

    #[tokio::test]
    async fn serves_health_status_and_body_routes() {
        let up =
            BackgroundUpstream::start("127.0.0.1:0".parse().unwrap(), UpstreamConfig { body_size: 64, delay: Duration::ZERO }, 1).unwrap();
        let t = Duration::from_secs(5);
        let r = simple_request(up.addr, "GET", "/health", &[], b"", t).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
        let r = simple_request(up.addr, "POST", "/anything", &[], b"some body", t).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, 64));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let r = simple_request(up.addr, "GET", "/status/429/x", &[], b"", t).await.unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(up.requests(), 2);
        assert_eq!(up.stats.health_checks.load(Ordering::Relaxed), 1);
    }
}
