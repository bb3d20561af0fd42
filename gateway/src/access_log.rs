//! The JSON access log: one line per request, written by a dedicated thread so the request
//! path never blocks on I/O. Lines go through a bounded queue; when the writer falls behind,
//! new lines are dropped and counted (`gateway_access_log_dropped_total`) rather than
//! slowing traffic down. The query string is never logged: it often carries credentials.

use crate::ctx::RequestCtx;
use policies::config::AccessLogSpec;
use policies::metrics::FAMILIES;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
}

/// What the log says of the request itself, from whichever side served it.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub client: Option<IpAddr>,
    pub http: &'static str,
    /// Response body bytes written to the client.
    pub bytes_sent: usize,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    request_id: &'a str,
    client: Option<String>,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    http: &'static str,
    /// Which exchange served it: `lane` or `pingora`.
    exchange: &'static str,
    status: u16,
    api: Option<&'a str>,
    resource: Option<&'a str>,
    /// The calling application's id, when a credential named one (also when it was refused
    /// with 403: not subscribed, wrong domain, scope or credential type, blocked).
    application: Option<&'a str>,
    upstream: Option<&'a str>,
    attempts: u32,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    bytes_sent: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'static str>,
}

impl AccessLog {
    /// Starts the writer thread. `path` is `stdout`, `stderr` or a file (appended).
    pub fn start(spec: &AccessLogSpec) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match spec.path.as_str() {
            "stdout" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            file => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(file)?),
        };
        let (tx, rx) = sync_channel(spec.queue);
        let capacity = usize::try_from(spec.buffer_size.0).unwrap_or(64 * 1024);
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer(rx, out, capacity))?;
        Ok(AccessLog { tx })
    }

    pub fn record(&self, req: &RequestFacts<'_>, ctx: &RequestCtx, status: u16, elapsed: Duration) {
        let api = ctx.api();
        let resource = ctx.resource.and_then(|r| api?.resource(r)).map(|r| r.path.as_str());
        let line = Line {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            client: req.client.map(|a| a.to_string()),
            method: req.method,
            host: req.host,
            path: req.path,
            http: req.http,
            exchange: ctx.exchange.as_str(),
            status,
            api: api.map(|a| &*a.name),
            resource,
            application: ctx
                .principal()
                .and_then(|p| p.application)
                .or(ctx.refused_application)
                .and_then(|i| ctx.snapshot.applications.apps.get(i as usize))
                .map(|a| &*a.id),
            upstream: ctx.target().map(|t| t.url.as_str()),
            attempts: ctx.attempts,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            upstream_ms: ctx.upstream_elapsed.map(|d| d.as_secs_f64() * 1000.0),
            bytes_sent: req.bytes_sent,
            problem: ctx.problem.map(|p| p.as_str()),
        };
        let Ok(mut bytes) = serde_json::to_vec(&line) else { return };
        bytes.push(b'\n');
        match self.tx.try_send(bytes) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => FAMILIES.access_log_dropped.with_label_values(&["queue_full"]).inc(),
            Err(TrySendError::Disconnected(_)) => FAMILIES.access_log_dropped.with_label_values(&["writer_gone"]).inc(),
        }
    }
}

/// Writes lines as they come, flushing whenever the queue runs empty (so a quiet gateway's
/// log is current, and a busy one writes in large batches).
fn writer(rx: Receiver<Vec<u8>>, out: Box<dyn Write + Send>, capacity: usize) {
    let mut out = BufWriter::with_capacity(capacity, out);
    while let Ok(line) = rx.recv() {
        if out.write_all(&line).is_err() {
            FAMILIES.access_log_dropped.with_label_values(&["write_error"]).inc();
        }
        while let Ok(more) = rx.try_recv() {
            if out.write_all(&more).is_err() {
                FAMILIES.access_log_dropped.with_label_values(&["write_error"]).inc();
            }
        }
        let _ = out.flush();
    }
}
