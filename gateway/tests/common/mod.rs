//! Integration-test harness: the real `gateway` binary on loopback ports, real upstream
//! servers (hyper) in-process, real clients. Everything listens on 127.0.0.1 only.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A free loopback port, never handed out twice in this process (Sozu's port registry).
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct TestGateway {
    child: Child,
    env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub config_path: PathBuf,
}

impl TestGateway {
    /// Starts the gateway with `config`, in which `{port}` and `{admin}` are replaced by
    /// free ports. Waits until the admin API answers /readyz and the traffic port accepts.
    pub fn start(config: &str) -> TestGateway {
        Self::start_with(config, &[], "gateway.yaml")
    }

    /// Ports are picked before the process starts, so another process may take one first:
    /// then the start is retried with fresh ports.
    pub fn start_with(config: &str, env: &[(&str, &str)], file_name: &str) -> TestGateway {
        install_crypto();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let admin_port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let config_path = dir.path().join(file_name);
            let text = config.replace("{port}", &port.to_string()).replace("{admin}", &admin_port.to_string());
            std::fs::write(&config_path, text).unwrap();
            let child = spawn_gateway(dir.path(), &config_path, &env);
            let gw = TestGateway { child, env: env.clone(), dir, port, admin_port, config_path };
            match gw.try_wait_ready() {
                Ok(()) => return gw,
                Err(log) if attempt < 3 && log.contains("in use") => continue,
                Err(log) => panic!("gateway did not become ready; log:\n{log}"),
            }
        }
    }

    /// Stops the process and starts a new one on the same directory, file and ports.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_gateway(self.dir.path(), &self.config_path, &self.env);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        if let Err(log) = self.try_wait_ready() {
            panic!("gateway did not become ready; log:\n{log}");
        }
    }

    /// Waits for /readyz and the traffic port; on failure returns the process log.
    fn try_wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let admin_ok = raw_request(self.admin_port, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"));
            let traffic_ok = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if admin_ok && traffic_ok {
                return Ok(());
            }
            let log = self.log();
            if Instant::now() > deadline || log.contains("in use") {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a raw HTTP/1.1 request (for paths a client library would normalise).
    pub fn raw(&self, request: &str) -> String {
        raw_request(self.port, request).unwrap()
    }

    /// Rewrites the config file (atomically, as editors and ConfigMaps do).
    pub fn write_config(&self, config: &str) {
        let text = config.replace("{port}", &self.port.to_string()).replace("{admin}", &self.admin_port.to_string());
        let tmp = self.dir.path().join(".edit.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
    }
}

fn spawn_gateway(dir: &Path, config_path: &Path, env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("gateway.log")).unwrap();
    let access = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stdout.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("run").arg("--config").arg(config_path).stdin(Stdio::null()).stdout(access).stderr(log);
    cmd.env("GATEWAY_LOG", "info,pingora_core=error,pingora_proxy=error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Runs the gateway binary to completion (for commands and startup refusals), bounded.
pub fn run_gateway(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gateway {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection; returns the whole response text.
pub fn raw_request(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if response_complete(&out) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(head_end) = text.find("\r\n\r\n") else { return false };
    let head = text[..head_end].to_ascii_lowercase();
    if let Some(cl) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let n: usize = cl.trim().parse().unwrap_or(0);
        return bytes.len() >= head_end + 4 + n;
    }
    head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304")
}

/// A plain HTTP client (no proxy, no retries).
pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(15)).build().unwrap()
}

/// What an echo upstream saw.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echo {
    pub server: String,
    pub method: String,
    pub path: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
}

/// How an upstream answers.
#[derive(Clone)]
pub struct UpstreamBehavior {
    pub name: String,
    /// Status of `/health`.
    pub health_status: Arc<std::sync::atomic::AtomicU16>,
    pub delay: Duration,
}

/// An in-process HTTP/1.1 upstream that echoes every request as JSON.
pub struct TestUpstream {
    pub port: u16,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted (to see connection reuse).
    pub connections: Arc<AtomicUsize>,
    pub health_hits: Arc<AtomicUsize>,
    pub health_status: Arc<std::sync::atomic::AtomicU16>,
    task: tokio::task::JoinHandle<()>,
    kill: tokio::sync::watch::Sender<bool>,
}

impl TestUpstream {
    /// On an ephemeral port chosen by the kernel (no race with other processes).
    pub async fn start(name: &str) -> TestUpstream {
        Self::start_on(name, 0, Duration::ZERO).await
    }

    /// On `port` (0: ephemeral), for tests that restart an upstream where it was.
    pub async fn start_on(name: &str, port: u16, delay: Duration) -> TestUpstream {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let health_hits = Arc::new(AtomicUsize::new(0));
        let health_status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (h, hh, hs, n) = (hits.clone(), health_hits.clone(), health_status.clone(), name.to_string());
        let (kill, killed) = tokio::sync::watch::channel(false);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (h, hh, hs, n) = (h.clone(), hh.clone(), hs.clone(), n.clone());
                let mut killed = killed.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, hh, hs, n) = (h.clone(), hh.clone(), hs.clone(), n.clone());
                        async move { Ok::<_, hyper::Error>(echo(req, &n, &h, &hh, &hs, delay).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    // Stopping the upstream drops live keep-alive connections too.
                    tokio::select! {
                        _ = conn => {}
                        _ = killed.wait_for(|k| *k) => {}
                    }
                });
            }
        });
        TestUpstream { port, name: name.to_string(), hits, connections, health_hits, health_status, task, kill }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops like a killed process: the listener and every live connection close.
    pub fn stop(&self) {
        self.task.abort();
        let _ = self.kill.send(true);
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn echo(
    req: Request<Incoming>,
    name: &str,
    hits: &AtomicUsize,
    health_hits: &AtomicUsize,
    health_status: &std::sync::atomic::AtomicU16,
    delay: Duration,
) -> Response<Full<Bytes>> {
    if req.uri().path().ends_with("/health") {
        health_hits.fetch_add(1, Ordering::SeqCst);
        let status = health_status.load(Ordering::SeqCst);
        return Response::builder().status(status).body(Full::new(Bytes::from_static(b"health"))).unwrap();
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let method = req.method().to_string();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect::<std::collections::BTreeMap<_, _>>();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let json = serde_json::json!({
        "server": name, "method": method, "path": path, "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap()
}

/// Reads a file written by the gateway until `pred` holds (bounded).
pub fn wait_for(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub async fn wait_for_async(what: &str, timeout: Duration, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A throwaway CA and a `localhost` / 127.0.0.1 leaf certificate, as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gateway test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem, ca_pem) = (leaf.pem(), leaf_key.serialize_pem(), ca_cert.pem());
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        std::fs::write(&ca_path, &ca_pem).unwrap();
        TestPki { dir, ca_pem, cert_path, key_path, ca_path, cert_pem, key_pem }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        install_crypto();
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()).map(|c| c.unwrap()).collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// An HTTPS echo upstream (HTTP/1.1 over rustls).
pub async fn start_tls_upstream(name: &str, pki: &TestPki) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let name = name.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (acceptor, name) = (acceptor.clone(), name.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let hits = Arc::new(AtomicUsize::new(0));
                let hs = Arc::new(std::sync::atomic::AtomicU16::new(200));
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (name, hits, hs) = (name.clone(), hits.clone(), hs.clone());
                    async move { Ok::<_, hyper::Error>(echo(req, &name, &hits, &hits, &hs, Duration::ZERO).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    (port, task)
}

/// The `loadtest` binary beside the gateway's (same profile). `cargo test --workspace`
/// builds it; run alone, a test builds it first.
pub fn loadtest_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("loadtest");
    if !bin.exists() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "loadtest", "--bin", "loadtest"]).status().unwrap();
        assert!(status.success(), "cannot build loadtest");
    }
    bin
}

/// The project's test identity provider (`loadtest idp`) on an ephemeral loopback port.
pub struct Idp {
    child: Child,
    pub addr: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// `loadtest idp --listen 127.0.0.1:0 ARGS...`; returns once it prints its address.
    pub fn start(args: &[&str]) -> Idp {
        use std::io::BufRead;
        let mut child = Command::new(loadtest_bin())
            .args(["idp", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected idp output: {line}")).to_string();
        Idp { child, addr }
    }

    /// A client-credentials token for `id`.
    pub async fn issue_token(&self, id: &str, secret: &str) -> String {
        let r = client()
            .post(format!("http://{}/token", self.addr))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    }

    pub async fn stats(&self) -> serde_json::Value {
        client().get(format!("http://{}/stats", self.addr)).send().await.unwrap().json().await.unwrap()
    }
}

/// A counter or gauge from the admin listener's /metrics: `series` is the name with its labels
/// exactly as exposed (`gateway_request_decisions_total{exchange="lane"}`); 0 when absent.
pub async fn metric(gw: &TestGateway, series: &str) -> u64 {
    let text = client().get(gw.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Requests served by the HTTP/1 lane (`gateway_exchange_requests_total{exchange="lane"}`).
pub async fn lane_count(gw: &TestGateway) -> u64 {
    metric(gw, "gateway_exchange_requests_total{exchange=\"lane\"}").await
}

/// A client connection to the gateway's traffic port, with a 5 s read timeout.
pub fn connect(gw: &TestGateway) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads one response (head, then a Content-Length or chunked body) from `s`, leaving what
/// follows unread in `rest`. Returns (head in lower case, body). Interim (1xx) responses are
/// returned like any other: call again for the final one.
pub fn read_response(s: &mut TcpStream, rest: &mut Vec<u8>) -> (String, Vec<u8>) {
    read_response_to(s, rest, false)
}

/// [`read_response`] for a request whose method is HEAD when `head_request`: the final
/// response then has no body whatever its framing fields say.
pub fn read_response_to(s: &mut TcpStream, rest: &mut Vec<u8>, head_request: bool) -> (String, Vec<u8>) {
    try_read_response(s, rest, head_request).unwrap_or_else(|| panic!("connection closed; have {:?}", String::from_utf8_lossy(rest)))
}

/// [`read_response_to`], or None when the connection closes (or times out) first.
pub fn try_read_response(s: &mut TcpStream, rest: &mut Vec<u8>, head_request: bool) -> Option<(String, Vec<u8>)> {
    let mut buf = [0u8; 8192];
    let fill = |s: &mut TcpStream, rest: &mut Vec<u8>, buf: &mut [u8]| -> Option<()> {
        let n = s.read(buf).ok()?;
        (n > 0).then(|| rest.extend_from_slice(&buf[..n]))
    };
    let head_end = loop {
        if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(s, rest, &mut buf)?;
    };
    let head = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
    rest.drain(..head_end);
    let mut body = Vec::new();
    let bodiless = head_request && !head.starts_with("http/1.1 1");
    if bodiless || head.starts_with("http/1.1 1") || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304") {
        return Some((head, body));
    }
    if head.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(s, rest, &mut buf)?;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            rest.drain(..line_end + 2);
            while rest.len() < size + 2 {
                fill(s, rest, &mut buf)?;
            }
            body.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|v| v.trim().parse::<usize>().unwrap()) {
        while rest.len() < len {
            fill(s, rest, &mut buf)?;
        }
        body = rest.drain(..len).collect();
    }
    Some((head, body))
}

/// What a [`raw_upstream`] does with a request it has read.
pub enum Reply {
    /// Write these bytes (any framing, good or bad) and read the next request.
    Send(Vec<u8>),
    /// Wait, then write.
    After(Duration, Vec<u8>),
    /// Write these bytes, then close (a close-delimited body, or a last answer).
    SendAndClose(Vec<u8>),
    /// Close the connection without answering.
    Close,
}

/// A raw HTTP/1 upstream: the one test server that can answer with any bytes at all.
pub struct RawUpstream {
    pub port: u16,
    /// Requests read, over all connections.
    pub requests: Arc<AtomicUsize>,
}

impl RawUpstream {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts a [`RawUpstream`]. For the n-th request on a connection (from 0) with head `head`,
/// `script(n, head)` says what to do. A Content-Length request body is read and dropped;
/// pipelined requests are answered in order.
pub fn raw_upstream(script: impl Fn(usize, &[u8]) -> Reply + Send + Sync + 'static) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let (counter, script) = (counter.clone(), script.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                for n in 0.. {
                    let head_end = loop {
                        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    };
                    let head: Vec<u8> = got.drain(..head_end).collect();
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let body =
                        text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                    while got.len() < body {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    }
                    got.drain(..body);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (answer, close) = match script(n, &head) {
                        Reply::Close => return,
                        Reply::Send(bytes) => (bytes, false),
                        Reply::SendAndClose(bytes) => (bytes, true),
                        Reply::After(delay, bytes) => {
                            std::thread::sleep(delay);
                            (bytes, false)
                        }
                    };
                    if s.write_all(&answer).is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawUpstream { port, requests }
}

/// A [`raw_upstream`] that writes the same bytes for every request.
pub fn fixed_upstream(answer: &'static [u8]) -> RawUpstream {
    raw_upstream(move |_, _| Reply::Send(answer.to_vec()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The one token minter: a JWT signed with `key`, with `kid` in its header.
pub fn mint(alg: jsonwebtoken::Algorithm, kid: &str, key: &jsonwebtoken::EncodingKey, claims: &serde_json::Value) -> String {
    let header = jsonwebtoken::Header { kid: Some(kid.into()), ..jsonwebtoken::Header::new(alg) };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}
