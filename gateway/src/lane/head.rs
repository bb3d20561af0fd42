//! The client's request head as the lane reads it: found in the input buffer in one linear
//! pass, parsed in place once it is complete, and checked in this one place for what the lane
//! serves. A malformed head is answered by the lane itself (it read it, so it answers: no
//! other reader gets it with a fresh timer).

use policies::{ProblemCode, RequestHead};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::ops::ControlFlow;

/// The largest request head the lane reads; larger gets 431.
pub(super) const HEAD_LIMIT: usize = 64 * 1024;
/// The most header fields a request may have (Pingora's limit too); more gets 431.
const MAX_HEADERS: usize = 256;
/// Request bodies up to this size are read whole by the lane before the request goes
/// upstream (so body checks can run first, and a client that stops halfway never reaches the
/// upstream). Larger declared bodies stream through Pingora's path.
pub(super) const LANE_BODY_LIMIT: u64 = 64 * 1024;

/// A range of a buffer.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part` lies in `base`; an empty span when it is not inside it (httparse may
    /// hand back a static empty slice, such as a missing reason phrase).
    pub fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if start <= base.len() && end <= base.len() && end <= u32::MAX as usize => {
                Span { start: start as u32, end: end as u32 }
            }
            _ => Span::default(),
        }
    }

    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or(b"")
    }
}

/// A request head parsed in place: where its parts are in the input buffer. One per
/// connection, reused.
pub(super) struct Head {
    /// The head's length in bytes; the body (if any) follows.
    pub len: usize,
    pub method: http::Method,
    pub path: Span,
    pub query: Option<Span>,
    /// Grown to the largest head seen on the connection.
    pub fields: Vec<(Span, Span)>,
    /// The declared body length (`Content-Length`), identical duplicates folded.
    pub length: Option<u64>,
    /// The client asked to close after this response.
    pub close: bool,
}

impl Head {
    pub fn new() -> Box<Head> {
        Box::new(Head {
            len: 0,
            method: http::Method::GET,
            path: Span::default(),
            query: None,
            fields: Vec::new(),
            length: None,
            close: false,
        })
    }

    /// The body's length (0 without one).
    pub fn body_len(&self) -> usize {
        self.length.unwrap_or(0) as usize
    }
}

/// What the policies see of a lane request.
pub(super) struct View<'a> {
    pub head: &'a Head,
    pub buf: &'a [u8],
    pub client: Option<IpAddr>,
}

impl View<'_> {
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.fields.iter().map(|(n, v)| (n.get(self.buf), v.get(self.buf)))
    }

    pub fn path(&self) -> &str {
        // The target was checked to be ASCII when parsed.
        std::str::from_utf8(self.head.path.get(self.buf)).unwrap_or("")
    }
}

impl RequestHead for View<'_> {
    fn method(&self) -> &http::Method {
        &self.head.method
    }

    fn query(&self) -> Option<&str> {
        self.head.query.and_then(|q| std::str::from_utf8(q.get(self.buf)).ok())
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    fn visit_fields(&self, f: &mut policies::request::FieldVisitor<'_>) -> ControlFlow<()> {
        for (name, value) in self.fields() {
            f(name, value)?;
        }
        ControlFlow::Continue(())
    }

    fn client_addr(&self) -> Option<IpAddr> {
        self.client
    }

    fn is_tls(&self) -> bool {
        // The lane serves plain-HTTP listeners only.
        false
    }
}

/// Request-target bytes the lane forwards as they are: RFC 3986 path and query characters.
/// Anything else (quotes, braces, `#`, non-ASCII …) is left to Pingora's stricter parser.
fn target_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Where the head that starts `buf` ends (just past its empty line), searching from `from`
/// (what an earlier call already looked at, so a head arriving in pieces is scanned once).
/// `Err(resume)`: not there yet; call again from `resume` when more bytes arrived.
pub(super) fn head_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut i = from;
    while let Some(off) = buf.get(i..).and_then(|rest| rest.iter().position(|b| *b == b'\n')) {
        let nl = i + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Ok(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Ok(nl + 3),
            // The line ending may be cut: look at this newline again when more arrives.
            (None, _) | (Some(b'\r'), None) => return Err(nl),
            _ => i = nl + 1,
        }
    }
    Err(buf.len())
}

/// What [`parse_head`] found.
#[derive(Debug)]
pub(super) enum Parsed {
    /// A head the lane serves, now in the connection's [`Head`]; its body (`Head::length`
    /// bytes, at most [`LANE_BODY_LIMIT`]) follows it.
    Lane,
    /// Not a complete head yet.
    Partial,
    /// A well-formed head the lane does not serve (HTTP/1.0, absolute form, upgrades, chunked
    /// or large bodies, `Expect`, fields naming hop-by-hop fields): Pingora serves it.
    HandOff,
    /// Answered by the lane with this problem; the connection then closes.
    Refuse(ProblemCode, &'static str),
}

/// Parses the complete head at the start of `buf` into `head` and decides who serves it.
/// `max_body`: `server.max_request_body`.
pub(super) fn parse_head(buf: &[u8], head: &mut Head, max_body: u64) -> Parsed {
    // Uninitialised: zeroing 256 fields on every parse would show in profiles.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    // Nothing of an earlier request may survive a refusal (the log reads what is here).
    head.len = 0;
    head.fields.clear();
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refuse(ProblemCode::HeadTooLarge, "the request has too many header fields"),
        Err(_) => return Parsed::Refuse(ProblemCode::BadRequest, "the request head is not valid HTTP/1.1"),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Refuse(ProblemCode::BadRequest, "the request head is not valid HTTP/1.1");
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return Parsed::Refuse(ProblemCode::BadRequest, "the request method is not a token");
    };
    head.len = len;
    head.method = method;
    head.length = None;
    head.close = false;
    let mut hosts = 0;
    let mut hand_off = version != 1 || head.method == http::Method::CONNECT;
    for h in req.headers.iter() {
        head.fields.push((Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (policies::request::parse_content_length(h.value), head.length) {
                (Some(n), None) => head.length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    return Parsed::Refuse(ProblemCode::BadRequest, "the Content-Length field is malformed or repeated with another value")
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            hand_off = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if let Some(why) = policies::request::host_problem(h.value) {
                return Parsed::Refuse(ProblemCode::BadRequest, why);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            // `keep-alive` and `close` are the everyday values; one naming other fields (to be
            // stripped) is left to Pingora's sanitizer.
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    hand_off = true;
                }
            }
        }
    }
    // HTTP/1.1 needs exactly one Host (RFC 9112 §3.2), even with an absolute-form target.
    if version == 1 && hosts != 1 {
        return Parsed::Refuse(ProblemCode::BadRequest, policies::request::host_count_problem(hosts));
    }
    // Refused before a byte of the body is read (and before any `100 Continue`).
    if head.length.is_some_and(|n| n > max_body) {
        return Parsed::Refuse(ProblemCode::BodyTooLarge, "the request body is larger than the gateway accepts");
    }
    if hand_off || !target.starts_with('/') || !target.bytes().all(target_byte_ok) || head.length.is_some_and(|n| n > LANE_BODY_LIMIT) {
        return Parsed::HandOff;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    head.path = Span::of(buf, path.as_bytes());
    head.query = query.map(|q| Span::of(buf, q.as_bytes()));
    Parsed::Lane
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_serves_which_head() {
        let mut head = Head::new();
        let mut parse = |raw: &str| parse_head(raw.as_bytes(), &mut head, 1 << 20);
        let lane = |p: Parsed| matches!(p, Parsed::Lane);
        let hand_off = |p: Parsed| matches!(p, Parsed::HandOff);
        let refused = |p: Parsed, code: ProblemCode| matches!(p, Parsed::Refuse(c, _) if c == code);
        assert!(lane(parse("GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")));
        assert!(lane(parse("GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")));
        assert!(lane(parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")));
        assert!(lane(parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")));
        assert!(hand_off(parse("GET /a HTTP/1.0\r\nHost: x\r\n\r\n")));
        assert!(hand_off(parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")));
        assert!(hand_off(parse("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")));
        assert!(hand_off(parse("GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")));
        assert!(hand_off(parse("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close, x-secret\r\n\r\n")));
        assert!(hand_off(parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")));
        assert!(hand_off(parse("GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert!(hand_off(parse("GET /a{b} HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert!(hand_off(parse("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert!(refused(parse("GET /a HTTP/1.1\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("GET /a HTTP/1.1\r\nHost:\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("GET /a HTTP/1.1\r\nHost: localhost:80abc\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("GET /a HTTP/1.1\r\nHost: user@x\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("GARBAGE\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n"), ProblemCode::BadRequest));
        assert!(refused(
            parse("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n"),
            ProblemCode::BodyTooLarge
        ));
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(refused(parse(&format!("GET /a HTTP/1.1\r\nHost: x\r\n{many}\r\n")), ProblemCode::HeadTooLarge));
        assert!(matches!(parse("GET /a HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial));
    }

    #[test]
    fn the_end_of_a_head_is_found_in_one_pass_across_reads() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", 0), Ok(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nrest", 0), Ok(24));
        // Cut inside the final CRLF CRLF: resumes at the newline it could not judge yet.
        let whole = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut from = 0;
        for cut in 1..whole.len() {
            match head_end(&whole[..cut], from) {
                Ok(_) => panic!("found an end in a prefix of {cut} bytes"),
                Err(resume) => {
                    assert!(resume >= from && resume <= cut);
                    from = resume;
                }
            }
        }
        assert_eq!(head_end(whole, from), Ok(whole.len()));
    }
}
