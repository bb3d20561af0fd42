//! What the lane writes: the upstream request head, the client's response head, and the
//! head of a reply the gateway makes itself. Field spellings match what Pingora's path
//! writes, so both exchanges send the same bytes.

use super::framing::{Framing, UpHead};
use super::head::View;
use crate::ctx::RequestCtx;
use crate::pipeline::{is_hop_by_hop, response_edits, Combine, UpstreamEdits};
use crate::respond::LocalReply;
use std::time::Duration;

/// The spelling Pingora writes for a field given as a `HeaderName`: title case for the few
/// it knows (`pingora_http::case_header_name`), lower case otherwise; `X-Request-Id` as the
/// gateway spells it everywhere. Both ways in then send the same bytes.
pub(super) fn titled(name: &http::HeaderName) -> &str {
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

pub(super) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The upstream request head: the client's head without hop-by-hop fields, with the edits.
pub(super) fn upstream_head(out: &mut Vec<u8>, view: &View<'_>, edits: &UpstreamEdits<'_>, request_id: &http::HeaderValue) {
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
        // The framing is the lane's to write (below), once.
        if !is_hop_by_hop(name) && !edits.drops(name) && !name.eq_ignore_ascii_case(b"content-length") {
            field(out, name, value);
        }
    }
    if let Some(n) = view.head.length {
        let _ = std::io::Write::write_fmt(out, format_args!("Content-Length: {n}\r\n"));
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

/// The client's response head from the upstream's: hop-by-hop fields (and any the upstream's
/// `Connection` names) dropped, the gateway's headers set, the framing the lane sends. An
/// interim (1xx) head is forwarded the same way, less framing, `Date` and `Connection`, as
/// Pingora's path forwards it (RFC 9110 §15.2: a proxy forwards 1xx responses).
pub(super) fn response_head(out: &mut Vec<u8>, buf: &[u8], h: &UpHead, ctx: &RequestCtx, view: &View<'_>, close: bool) {
    let interim = h.status < 200;
    // The gateway's headers, gathered first: those it inserts replace the upstream's. (On
    // the stack for up to eight: lifecycle, CORS and rate-limit fields.)
    let mut ours: smallvec::SmallVec<[(http::HeaderName, http::HeaderValue, Combine); 8]> = smallvec::SmallVec::new();
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
    if interim {
        out.extend_from_slice(b"\r\n");
        return;
    }
    match h.framing {
        Framing::Length(n) => {
            let _ = std::io::Write::write_fmt(out, format_args!("Content-Length: {n}\r\n"));
        }
        Framing::Chunked | Framing::Close => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        // A HEAD or 304 answer keeps the upstream's Content-Length as information (once); a
        // 204 has none (RFC 9110 §8.6), nor does a 1xx.
        Framing::None => {
            if let (Some(n), true) = (h.length, h.status >= 200 && h.status != 204) {
                let _ = std::io::Write::write_fmt(out, format_args!("Content-Length: {n}\r\n"));
            }
        }
    }
    date_and_connection(out, close);
    out.extend_from_slice(b"\r\n");
}

/// `Date` (the gateway's clock, as Pingora's HTTP/1 server and nginx send it, replacing the
/// upstream's) and `Connection`, which end every response head.
pub(super) fn date_and_connection(out: &mut Vec<u8>, close: bool) {
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

/// The head of a reply the gateway makes itself ([`LocalReply`]), then its body unless the
/// request was a HEAD. Returns the body bytes written.
pub(super) fn local_reply(out: &mut Vec<u8>, reply: &LocalReply, head_request: bool, close: bool) -> usize {
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
    if head_request {
        return 0;
    }
    out.extend_from_slice(&reply.body);
    reply.body.len()
}

/// The head of a response served from the cache (a fresh hit): the stored head (less framing,
/// `Date`, `Age` and what the gateway replaces), the gateway's headers, `Age`, `X-Cache: HIT`
/// and the stored body's length; the same fields Pingora's path sends for a hit.
pub(super) fn cached_head(
    out: &mut Vec<u8>,
    entry: &crate::cache_storage::Entry,
    age: u64,
    ctx: &RequestCtx,
    view: &View<'_>,
    close: bool,
) {
    let mut ours: smallvec::SmallVec<[(http::HeaderName, http::HeaderValue, Combine); 8]> = smallvec::SmallVec::new();
    response_edits(ctx, view, |n, v, c| ours.push((n.clone(), v.clone(), c)));
    let head = &entry.head;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let _ = std::io::Write::write_fmt(out, format_args!("{} ", head.status));
    out.extend_from_slice(http::StatusCode::from_u16(head.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    use http::header;
    for (name, value) in &head.fields {
        let skip = matches!(*name, header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::DATE | header::AGE)
            || name == "x-request-id"
            || name == "x-cache"
            || is_hop_by_hop(name.as_str().as_bytes())
            || ours.iter().any(|(n, _, c)| *c == Combine::Insert && n == name);
        if !skip {
            field(out, titled(name).as_bytes(), value.as_bytes());
        }
    }
    field(out, b"X-Request-Id", ctx.request_id.as_bytes());
    for (n, v, _) in &ours {
        field(out, titled(n).as_bytes(), v.as_bytes());
    }
    let _ = std::io::Write::write_fmt(out, format_args!("Age: {age}\r\n"));
    field(out, b"X-Cache", b"HIT");
    if head.status != 204 && head.status != 304 {
        let _ = std::io::Write::write_fmt(out, format_args!("Content-Length: {}\r\n", entry.body.len()));
    }
    date_and_connection(out, close);
    out.extend_from_slice(b"\r\n");
}
