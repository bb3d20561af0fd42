//! Upstream response framing: the response head parsed in place, how its body is delimited
//! (RFC 9112 §6.3), and the chunked decoder that re-frames a body for the client.

use super::head::Span;
use super::{bad_response, Failure};
use bytes::{Buf, BytesMut};
use std::mem::MaybeUninit;

/// An upstream response head may be as large as Pingora accepts (`v1/common.rs`).
pub(super) const UP_HEAD_LIMIT: usize = 1024 * 1024;
const UP_MAX_HEADERS: usize = 256;

/// How the upstream frames its response body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// The upstream's response head, parsed in place in `upbuf`. One per connection, reused.
pub(super) struct UpHead {
    pub len: usize,
    pub status: u16,
    pub reason: Span,
    /// Grown to the largest head seen on the connection (up to [`UP_MAX_HEADERS`]).
    pub fields: Vec<(Span, Span)>,
    /// The upstream's `Content-Length` (identical duplicates folded into one).
    pub length: Option<u64>,
    pub framing: Framing,
    /// The upstream connection can carry another request once the body is read.
    pub reusable: bool,
}

impl UpHead {
    pub fn new() -> Box<UpHead> {
        Box::new(UpHead {
            len: 0,
            status: 0,
            reason: Span::default(),
            fields: Vec::new(),
            length: None,
            framing: Framing::None,
            reusable: false,
        })
    }

    pub fn fields<'b>(&'b self, buf: &'b [u8]) -> impl Iterator<Item = (&'b [u8], &'b [u8])> {
        self.fields.iter().map(move |(n, v)| (n.get(buf), v.get(buf)))
    }

    /// Whether the upstream's `Connection` header names the field `name` (to be dropped,
    /// RFC 9110 §7.6.1).
    pub fn nominated(&self, buf: &[u8], name: &[u8]) -> bool {
        self.fields(buf)
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .any(|(_, v)| v.split(|b| *b == b',').map(<[u8]>::trim_ascii).any(|t| t.eq_ignore_ascii_case(name)))
    }
}

/// Parses the upstream's response head at the start of `buf` into `h`; `Ok(false)`: not
/// complete yet. Pingora's leniencies for responses apply (spaces before the colon, folded
/// lines); its limits too (256 fields; the caller bounds the size).
pub(super) fn parse_up_head(buf: &[u8], h: &mut UpHead, head_request: bool) -> Result<bool, Failure> {
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
            match (policies::request::parse_content_length(f.value), length) {
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
    // No reason phrase (`HTTP/1.1 200`) is an empty span: the writer supplies the standard one.
    h.reason = resp.reason.map_or(Span::default(), |r| Span::of(buf, r.as_bytes()));
    h.length = length;
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
    // trusted with another request (RFC 9112 §6.3); nor is an HTTP/1.0 response that claims
    // a transfer coding (RFC 9112 §6.1: its framing is faulty).
    h.reusable = !close && h.framing != Framing::Close && !(chunked && (length.is_some() || version == 0));
    Ok(true)
}

/// Appends `data` as one chunk.
pub(super) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = std::io::Write::write_fmt(out, format_args!("{:x}\r\n", data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Decodes a chunked body (RFC 9112 §7.1) and writes it re-chunked: extensions and
/// trailer fields are dropped, as on Pingora's path.
#[derive(Default)]
pub(super) struct Dechunk {
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
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes what it can of `buf`; returns the data bytes written to `out`.
    pub fn run(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<usize, &'static str> {
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
        // HTTP/1.0 with a transfer coding: read as chunked, never pooled.
        assert_eq!(
            f("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", false),
            Some((Framing::Chunked, false))
        );
        // No reason phrase: no panic, an empty reason, identical lengths folded.
        assert_eq!(f("HTTP/1.1 200\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", false), Some((Framing::Length(2), true)));
        assert_eq!(h.reason.get(b"").len(), 0);
        assert_eq!(h.length, Some(2));
    }
}
