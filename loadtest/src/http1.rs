//! HTTP/1.1 on the wire: request serialisation and an incremental response parser.
//!
//! The load generator writes requests as pre-built bytes and reads responses with this parser
//! instead of going through a general-purpose client. That is the reason it can keep up with
//! `wrk` on one core: per request it does one `write`, one or two `read`s and no allocation.
//! A general client (hyper's `SendRequest`) adds a channel hop and a task wake-up per request.
//!
//! The parser only needs to find where a response ends, so it keeps the status and counts the
//! body without storing it (unless asked to, for the small control requests of `bench` and the
//! tests). It implements the message-length rules of RFC 9112 section 6.3:
//! 1. responses to HEAD, `1xx`, `204` and `304` have no body (`1xx` heads are skipped);
//! 2. `Transfer-Encoding` ending in `chunked` is chunked (trailers are read and dropped);
//! 3. otherwise `Content-Length` (several different values are an error);
//! 4. otherwise the body runs until the server closes the connection.

use std::fmt;

/// The most header lines a response may carry before it counts as malformed.
const MAX_HEADERS: usize = 64;

/// Why a response could not be parsed. The engine counts these as `protocol` errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The status line or a header line is not valid HTTP/1.x.
    BadHead(String),
    /// `Content-Length` is not a number, or two values disagree.
    BadContentLength,
    /// A chunk-size line or the bytes around a chunk are malformed.
    BadChunk,
    /// `101 Switching Protocols`: the load tool does not speak upgraded protocols.
    Upgrade,
    /// The response head did not fit in the read buffer.
    HeadTooLarge,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadHead(why) => write!(f, "malformed response head: {why}"),
            ProtocolError::BadContentLength => f.write_str("invalid Content-Length"),
            ProtocolError::BadChunk => f.write_str("malformed chunked body"),
            ProtocolError::Upgrade => f.write_str("unexpected 101 Switching Protocols"),
            ProtocolError::HeadTooLarge => f.write_str("response head larger than the read buffer"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Checks a header name: an RFC 9110 token (no spaces, separators or control characters).
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a header value: visible ASCII, spaces and tabs only; above all no CR or LF, which
/// would let a value inject extra header lines.
pub fn valid_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// Serialises one request into `out` (which is cleared first).
///
/// `Host` is added unless `headers` has one, and `Content-Length` is added when there is a body
/// or the method usually carries one (POST, PUT, PATCH), so the server never waits for a body
/// that will not come. Callers validate header names and values beforehand.
pub fn write_request(out: &mut Vec<u8>, method: &str, path: &str, host: &str, headers: &[(String, String)], body: &[u8]) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Where the parser is inside one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    Chunked(Chunk),
    UntilEof,
    Done,
}

/// Position inside a chunked body (RFC 9112 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Inside a chunk extension (`;name=value`), skipped up to the line end.
    Ext {
        value: u64,
    },
    /// After the CR that ends a size line.
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// After the CR of the final empty line.
    EndLf,
}

/// An incremental parser for one HTTP/1.x response.
///
/// Feed it the bytes read from the socket with [`ResponseParser::feed`]; it returns how many it
/// used and [`ResponseParser::is_done`] turns true at the end of the message. Bytes after the
/// end (a pipelined next response) are left unconsumed. When the socket reports end of file,
/// call [`ResponseParser::finish_at_eof`]: only a close-delimited body may end that way.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    head_request: bool,
    state: State,
    status: u16,
    keep_alive: bool,
    body_len: u64,
    capture: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
    capture_headers: bool,
}

impl ResponseParser {
    /// A parser for the response to a request; `head_request` is true for HEAD, whose response
    /// has headers describing a body that is never sent.
    pub fn new(head_request: bool) -> Self {
        ResponseParser {
            head_request,
            state: State::Head,
            status: 0,
            keep_alive: true,
            body_len: 0,
            capture: None,
            headers: Vec::new(),
            capture_headers: false,
        }
    }

    /// Like [`ResponseParser::new`], but keeps the headers and up to `limit` bytes of the body
    /// (for control requests such as readiness checks and tests; the load path never does this).
    pub fn capturing(head_request: bool, limit: usize) -> Self {
        let mut p = Self::new(head_request);
        p.capture = Some(Vec::with_capacity(limit.min(64 * 1024)));
        p.capture_headers = true;
        p
    }

    /// Resets the parser for the next response on the same connection.
    pub fn reset(&mut self, head_request: bool) {
        self.head_request = head_request;
        self.state = State::Head;
        self.status = 0;
        self.keep_alive = true;
        self.body_len = 0;
        if let Some(c) = self.capture.as_mut() {
            c.clear();
        }
        self.headers.clear();
    }

    /// The final status code (0 until the head has been parsed).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the connection may carry another request after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Body bytes seen so far (after chunked decoding).
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// True once the whole response has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The captured body, if the parser was made with [`ResponseParser::capturing`].
    pub fn body(&self) -> &[u8] {
        self.capture.as_deref().unwrap_or(&[])
    }

    /// The captured headers (only with [`ResponseParser::capturing`]).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Handles end of file from the server. A close-delimited body ends here; any other state
    /// means the response was cut short, which the caller reports as a reset.
    pub fn finish_at_eof(&mut self) -> bool {
        if self.state == State::UntilEof {
            self.state = State::Done;
            self.keep_alive = false;
        }
        self.state == State::Done
    }

    /// Consumes bytes of the response from `data` and returns how many were used.
    ///
    /// Returns `Ok(0)` when more bytes are needed to make progress (an incomplete head).
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, ProtocolError> {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match self.state {
                State::Done => break,
                State::Head => match self.parse_head(rest)? {
                    Some(n) => used += n,
                    None => break,
                },
                State::Fixed(remaining) => {
                    let take = remaining.min(rest.len() as u64) as usize;
                    self.take_body(&rest[..take]);
                    used += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 { State::Done } else { State::Fixed(left) };
                }
                State::UntilEof => {
                    self.take_body(rest);
                    used += rest.len();
                }
                State::Chunked(chunk) => {
                    let n = self.feed_chunked(chunk, rest)?;
                    used += n;
                }
            }
        }
        Ok(used)
    }

    fn take_body(&mut self, bytes: &[u8]) {
        self.body_len += bytes.len() as u64;
        if let Some(c) = self.capture.as_mut() {
            let room = c.capacity().saturating_sub(c.len());
            c.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    /// Parses a head at the start of `data`; `None` means it is not complete yet.
    fn parse_head(&mut self, data: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let head_len = match resp.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ProtocolError::BadHead(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        let version = resp.version.unwrap_or(1);
        if status == 101 {
            return Err(ProtocolError::Upgrade);
        }
        if (100..200).contains(&status) {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some(head_len));
        }
        let mut keep_alive = version == 1;
        let mut chunked = false;
        let mut content_length: Option<u64> = None;
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(h.value).map_err(|_| ProtocolError::BadContentLength)?;
                let n: u64 = text.trim().parse().map_err(|_| ProtocolError::BadContentLength)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(ProtocolError::BadContentLength);
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only the last coding decides the framing (RFC 9112 section 6.3, rule 4).
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                        keep_alive = true;
                    }
                }
            }
            if self.capture_headers {
                self.headers.push((name.to_string(), String::from_utf8_lossy(h.value).into_owned()));
            }
        }
        self.status = status;
        self.keep_alive = keep_alive;
        self.state = if self.head_request || status == 204 || status == 304 {
            State::Done
        } else if chunked {
            State::Chunked(Chunk::Size { value: 0, digits: 0 })
        } else if let Some(n) = content_length {
            if n == 0 {
                State::Done
            } else {
                State::Fixed(n)
            }
        } else {
            self.keep_alive = false;
            State::UntilEof
        };
        Ok(Some(head_len))
    }

    /// Runs the chunked-body state machine over `data` and returns the bytes used.
    fn feed_chunked(&mut self, mut chunk: Chunk, data: &[u8]) -> Result<usize, ProtocolError> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            chunk = match chunk {
                Chunk::Size { value, digits } => match hex_value(b) {
                    Some(d) => {
                        if digits >= 15 {
                            return Err(ProtocolError::BadChunk);
                        }
                        Chunk::Size { value: value * 16 + u64::from(d), digits: digits + 1 }
                    }
                    None if digits == 0 => return Err(ProtocolError::BadChunk),
                    None => match b {
                        b';' | b' ' | b'\t' => Chunk::Ext { value },
                        b'\r' => Chunk::SizeLf { value },
                        b'\n' => after_size(value),
                        _ => return Err(ProtocolError::BadChunk),
                    },
                },
                Chunk::Ext { value } => match b {
                    b'\r' => Chunk::SizeLf { value },
                    b'\n' => after_size(value),
                    _ => Chunk::Ext { value },
                },
                Chunk::SizeLf { value } => match b {
                    b'\n' => after_size(value),
                    _ => return Err(ProtocolError::BadChunk),
                },
                Chunk::Data(remaining) => {
                    let take = remaining.min((data.len() - i) as u64) as usize;
                    self.take_body(&data[i..i + take]);
                    i += take;
                    let left = remaining - take as u64;
                    chunk = if left == 0 { Chunk::DataCr } else { Chunk::Data(left) };
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size { value: 0, digits: 0 },
                    _ => return Err(ProtocolError::BadChunk),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size { value: 0, digits: 0 },
                    _ => return Err(ProtocolError::BadChunk),
                },
                Chunk::TrailerLineStart => match b {
                    b'\r' => Chunk::EndLf,
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerLine => match b {
                    b'\n' => Chunk::TrailerLineStart,
                    _ => Chunk::TrailerLine,
                },
                Chunk::EndLf => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    _ => return Err(ProtocolError::BadChunk),
                },
            };
            i += 1;
        }
        self.state = State::Chunked(chunk);
        Ok(i)
    }
}

fn after_size(value: u64) -> Chunk {
    if value == 0 {
        Chunk::TrailerLineStart
    } else {
        Chunk::Data(value)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` split at `split` and returns the parser and the bytes it used.
    fn parse_split(wire: &[u8], split: usize, head: bool) -> (ResponseParser, usize) {
        let mut p = ResponseParser::capturing(head, 1 << 20);
        let mut buf: Vec<u8> = Vec::new();
        let mut used_total = 0;
        for part in [&wire[..split], &wire[split..]] {
            buf.extend_from_slice(part);
            let used = p.feed(&buf).unwrap();
            buf.drain(..used);
            used_total += used;
        }
        (p, used_total)
    }

    #[test]
    fn content_length_body_at_every_split_point() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        for split in 0..=wire.len() {
            let (p, used) = parse_split(wire, split, false);
            assert!(p.is_done(), "split {split}");
            assert_eq!(used, wire.len());
            assert_eq!(p.status(), 200);
            assert_eq!(p.body(), b"hello");
            assert!(p.keep_alive());
        }
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers_at_every_split_point() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
        for split in 0..=wire.len() {
            let (p, used) = parse_split(wire, split, false);
            assert!(p.is_done(), "split {split}");
            assert_eq!(used, wire.len(), "split {split}");
            assert_eq!(p.body(), b"helloabcdefghijklmnopqrstuvwxyz");
        }
    }

    #[test]
    fn pipelined_bytes_after_the_response_are_left_alone() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n";
        let mut p = ResponseParser::new(false);
        let used = p.feed(wire).unwrap();
        assert!(p.is_done());
        assert_eq!(&wire[used..], b"HTTP/1.1 204 No Content\r\n\r\n");
        p.reset(false);
        assert_eq!(p.feed(&wire[used..]).unwrap(), wire.len() - used);
        assert_eq!(p.status(), 204);
        assert!(p.is_done());
    }

    #[test]
    fn no_body_for_head_204_304_and_interim_responses_are_skipped() {
        let mut p = ResponseParser::new(true);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").unwrap();
        assert!(p.is_done());
        for status in ["204 No Content", "304 Not Modified"] {
            let mut p = ResponseParser::new(false);
            let wire = format!("HTTP/1.1 {status}\r\nContent-Length: 100\r\n\r\n");
            p.feed(wire.as_bytes()).unwrap();
            assert!(p.is_done(), "{status}");
        }
        let mut p = ResponseParser::new(false);
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(p.feed(wire).unwrap(), wire.len());
        assert_eq!(p.status(), 429);
        assert!(p.is_done());
    }

    #[test]
    fn close_delimited_body_ends_at_eof_and_disables_keep_alive() {
        let mut p = ResponseParser::new(false);
        p.feed(b"HTTP/1.1 200 OK\r\n\r\npartial body").unwrap();
        assert!(!p.is_done());
        assert!(p.finish_at_eof());
        assert!(!p.keep_alive());
        assert_eq!(p.body_len(), 12);
    }

    #[test]
    fn eof_inside_a_sized_body_is_not_a_complete_response() {
        let mut p = ResponseParser::new(false);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").unwrap();
        assert!(!p.finish_at_eof());
    }

    #[test]
    fn connection_header_rules_for_http_1_0_and_1_1() {
        let mut p = ResponseParser::new(false);
        p.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!p.keep_alive());
        let mut p = ResponseParser::new(false);
        p.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!p.keep_alive());
        let mut p = ResponseParser::new(false);
        p.feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(p.keep_alive());
    }

    #[test]
    fn malformed_responses_are_protocol_errors() {
        let cases: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ];
        for wire in cases {
            let mut p = ResponseParser::new(false);
            assert!(p.feed(wire).is_err(), "{}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn request_serialisation_adds_host_and_content_length() {
        let mut out = Vec::new();
        write_request(&mut out, "GET", "/x?a=1", "127.0.0.1:9000", &[], b"");
        assert_eq!(out, b"GET /x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n");
        let headers = vec![("Host".to_string(), "api.test".to_string()), ("X-K".into(), "v".into())];
        write_request(&mut out, "POST", "/p", "ignored", &headers, b"{}");
        assert_eq!(out, b"POST /p HTTP/1.1\r\nHost: api.test\r\nX-K: v\r\nContent-Length: 2\r\n\r\n{}");
        write_request(&mut out, "PUT", "/p", "h", &[], b"");
        assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn header_validation_rejects_injection() {
        assert!(valid_header_name("X-Api-Key"));
        assert!(!valid_header_name("X Api"));
        assert!(!valid_header_name(""));
        assert!(valid_header_value("Bearer abc.def"));
        assert!(!valid_header_value("a\r\nX-Injected: 1"));
    }
}
