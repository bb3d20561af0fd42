//! The JSON access log: one line per request, written by a dedicated thread so the request
//! path never blocks on I/O. Lines go through a bounded queue; when the writer falls behind,
//! new lines are dropped and counted (`gateway_access_log_dropped_total`) rather than
//! slowing traffic down. The query string is never logged: it often carries credentials.

use crate::ctx::RequestCtx;
use policies::config::AccessLogSpec;
use policies::metrics::FAMILIES;
use serde::{Serialize, Serializer};
use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

/// The handle workers log through. Lines gather in one shared buffer; the writer thread takes
/// the whole buffer every `flush_interval`, or as soon as it holds `buffer_size` bytes. A
/// worker only appends (a copy under a lock held for no I/O and no await) and wakes the
/// writer once per full buffer, never per line: per-line wake-ups and writes cost about
/// 20 µs a request on a shared core (BENCHMARKS.md, "The access log's cost").
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The destination, locked by whoever writes (the writer thread, or [`AccessLog::flush`]
    /// at exit) before it takes the pending lines, so batches are written in order.
    out: Mutex<Box<dyn Write + Send>>,
    /// Signalled when the buffer fills (and on nothing else).
    full: Condvar,
    /// Lines that may wait before new ones are dropped.
    max_lines: usize,
    /// Bytes that make the buffer full.
    wake_at: usize,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
}

thread_local! {
    /// Each worker's scratch buffer for serialising one line outside the lock.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
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

/// RFC 3339 with milliseconds, serialised straight from the clock (no String per line).
struct Timestamp(SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts: Timestamp,
    request_id: &'a str,
    client: Option<IpAddr>,
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
        let wake_at = usize::try_from(spec.buffer_size.0).unwrap_or(64 * 1024);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending { bytes: Vec::with_capacity(wake_at), lines: 0 }),
            out: Mutex::new(out),
            full: Condvar::new(),
            max_lines: spec.queue,
            wake_at,
        });
        let interval = spec.flush_interval.0;
        let writer_side = shared.clone();
        std::thread::Builder::new().name("access-log".into()).spawn(move || writer(&writer_side, interval))?;
        Ok(AccessLog { shared })
    }

    /// Writes every pending line now, from the calling thread: the last thing the process
    /// does before it exits, so a graceful stop loses no line.
    pub fn flush(&self) {
        let mut spare = Vec::new();
        write_pending(&self.shared, &mut spare);
    }

    pub fn record(&self, req: &RequestFacts<'_>, ctx: &RequestCtx, status: u16, elapsed: Duration) {
        let api = ctx.api();
        let resource = ctx.resource.and_then(|r| api?.resource(r)).map(|r| r.path.as_str());
        let line = Line {
            ts: Timestamp(SystemTime::now()),
            request_id: ctx.request_id.to_str().unwrap_or(""),
            client: req.client,
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
            duration_ms: elapsed.as_micros() as f64 / 1000.0,
            upstream_ms: ctx.upstream_elapsed.map(|d| d.as_micros() as f64 / 1000.0),
            bytes_sent: req.bytes_sent,
            problem: ctx.problem.map(|p| p.as_str()),
        };
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            if serde_json::to_writer(&mut *scratch, &line).is_err() {
                return;
            }
            scratch.push(b'\n');
            self.append(scratch);
        });
    }

    fn append(&self, line: &[u8]) {
        let Ok(mut pending) = self.shared.pending.lock() else {
            FAMILIES.access_log_dropped.with_label_values(&["writer_gone"]).inc();
            return;
        };
        if pending.lines >= self.shared.max_lines {
            drop(pending);
            FAMILIES.access_log_dropped.with_label_values(&["queue_full"]).inc();
            return;
        }
        let was_below = pending.bytes.len() < self.shared.wake_at;
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
        let now_full = was_below && pending.bytes.len() >= self.shared.wake_at;
        drop(pending);
        if now_full {
            self.shared.full.notify_one();
        }
    }
}

/// Takes the gathered lines when the buffer is full or `interval` has passed, and writes
/// them with the pending lock released; the emptied buffer is kept for the next round.
fn writer(shared: &Shared, interval: Duration) {
    let mut spare = Vec::with_capacity(shared.wake_at);
    loop {
        let Ok(pending) = shared.pending.lock() else { return };
        // Wait (without holding `out`) until a worker says the buffer is full, or the
        // interval passes.
        let Ok((pending, _)) = shared.full.wait_timeout_while(pending, interval, |p| p.bytes.len() < shared.wake_at) else {
            return;
        };
        let any = pending.lines > 0;
        drop(pending);
        if any && !write_pending(shared, &mut spare) {
            return;
        }
    }
}

/// Locks the destination, takes the pending lines (swapping in `spare`), and writes them.
/// False when a lock is poisoned (a writer panicked): the log is then off.
fn write_pending(shared: &Shared, spare: &mut Vec<u8>) -> bool {
    let Ok(mut out) = shared.out.lock() else { return false };
    let Ok(mut pending) = shared.pending.lock() else { return false };
    std::mem::swap(&mut pending.bytes, spare);
    let lines = std::mem::take(&mut pending.lines);
    drop(pending);
    if lines > 0 && out.write_all(spare).and_then(|()| out.flush()).is_err() {
        FAMILIES.access_log_dropped.with_label_values(&["write_error"]).inc_by(lines as u64);
    }
    spare.clear();
    true
}
