//! What the request-head policies read of a request: its method, its query, its header
//! fields (by name, or all of them in order), the client's address and whether the
//! connection is TLS.
//!
//! Three representations implement it: the gateway's borrowed view of a request head parsed
//! straight out of the connection buffer (the HTTP/1 lane, which builds no header map at
//! all), its view of a Pingora session (`Parts` plus the connection facts), and bare
//! `http::request::Parts` (what Pingora's `RequestHeader` derefs to; no connection facts:
//! for tests and benches).

use http::request::Parts;
use http::Method;
use std::net::IpAddr;
use std::ops::ControlFlow;

/// Hop-by-hop fields (RFC 9110 §7.6.1, and the usual unofficial ones): never forwarded, in
/// either direction, on any path, and so never something a cache key can vary on.
pub const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
];

/// What [`RequestHead::visit_fields`] calls for each field: (name, value); break to stop.
pub type FieldVisitor<'v> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'v;

pub trait RequestHead {
    fn method(&self) -> &Method;
    /// The query string, without the `?`.
    fn query(&self) -> Option<&str>;
    /// The first value of the header field `name` (given in lower case), as received.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Calls `f` with every header field (name as received, value), in the order received;
    /// stops early when `f` breaks. (A header map yields the values of one name together, in
    /// the order the names first appeared.)
    fn visit_fields(&self, f: &mut FieldVisitor<'_>) -> ControlFlow<()>;
    /// The client's IP address (the TCP peer), when known.
    fn client_addr(&self) -> Option<IpAddr>;
    /// Whether the client connection is TLS.
    fn is_tls(&self) -> bool;

    /// The first value of `name` as text, when it is visible ASCII (what
    /// `HeaderValue::to_str` accepts).
    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(visible_ascii)
    }
}

impl RequestHead for Parts {
    fn method(&self) -> &Method {
        &self.method
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    fn visit_fields(&self, f: &mut FieldVisitor<'_>) -> ControlFlow<()> {
        visit_header_map(&self.headers, f)
    }

    fn client_addr(&self) -> Option<IpAddr> {
        None
    }

    fn is_tls(&self) -> bool {
        false
    }
}

/// [`RequestHead::visit_fields`] over a header map.
pub fn visit_header_map(headers: &http::HeaderMap, f: &mut FieldVisitor<'_>) -> ControlFlow<()> {
    for (name, value) in headers {
        f(name.as_str().as_bytes(), value.as_bytes())?;
    }
    ControlFlow::Continue(())
}

/// A `Content-Length` value (RFC 9110 §8.6): one or more digits, nothing else (no sign, no
/// spaces, no list). `None`: malformed. Used for requests and responses on both exchanges.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Why a count of `Host` fields other than one is refused (RFC 9112 §3.2).
pub fn host_count_problem(hosts: usize) -> &'static str {
    if hosts == 0 {
        "an HTTP/1.1 request needs a Host field"
    } else {
        "the request has more than one Host field"
    }
}

/// Why a request's `Host` is refused (RFC 9112 §3.2: an HTTP/1.1 request has exactly one, and
/// RFC 9110 §7.2: it is `uri-host [ ":" port ]`). `None`: it is fine.
pub fn host_problem(value: &[u8]) -> Option<&'static str> {
    if value.is_empty() {
        return Some("the Host field is empty");
    }
    if value.contains(&b'@') {
        return Some("the Host field carries userinfo");
    }
    // An IPv6 literal is bracketed; the port, if any, follows the last `:` outside brackets.
    let port = match value.iter().rposition(|b| *b == b':') {
        Some(i) if !value[i..].contains(&b']') => Some(&value[i + 1..]),
        _ => None,
    };
    let host = match port {
        Some(p) => &value[..value.len() - p.len() - 1],
        None => value,
    };
    if host.is_empty() {
        return Some("the Host field has no host name");
    }
    if let Some(p) = port {
        if p.is_empty()
            || p.len() > 5
            || !p.iter().all(u8::is_ascii_digit)
            || std::str::from_utf8(p).ok().and_then(|p| p.parse::<u16>().ok()).is_none()
        {
            return Some("the Host field's port is not a number");
        }
    }
    let ok_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(b);
    if !host.iter().all(ok_byte) {
        return Some("the Host field is not a host name");
    }
    None
}

/// `v` as `&str` when every byte is visible ASCII or a tab, as `HeaderValue::to_str` requires.
pub fn visible_ascii(v: &[u8]) -> Option<&str> {
    // Without an early exit the loop vectorises: a 600-byte bearer token is checked on every
    // request.
    if v.iter().fold(true, |ok, &b| ok & ((b == b'\t') | (32..127).contains(&b))) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_answer_by_lower_case_name_and_first_value() {
        let (parts, ()) = http::Request::builder()
            .method("PUT")
            .uri("/a?x=1")
            .header("X-Thing", "one")
            .header("x-thing", "two")
            .header("bin", &b"caf\xc3\xa9"[..])
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(parts.method(), Method::PUT);
        assert_eq!(parts.query(), Some("x=1"));
        assert_eq!(parts.header("x-thing"), Some(&b"one"[..]));
        assert_eq!(parts.header_str("x-thing"), Some("one"));
        assert_eq!(parts.header("bin"), Some(&b"caf\xc3\xa9"[..]));
        assert_eq!(parts.header_str("bin"), None);
        assert_eq!(parts.header("missing"), None);
        let mut seen = Vec::new();
        let _ = parts.visit_fields(&mut |n, v| {
            seen.push((n.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        });
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], (b"x-thing".to_vec(), b"one".to_vec()));
        assert_eq!(seen[1], (b"x-thing".to_vec(), b"two".to_vec()));
    }

    #[test]
    fn host_fields_are_checked_for_shape_and_port() {
        for ok in ["localhost", "localhost:80", "127.0.0.1:8080", "[::1]", "[::1]:443", "api.example.com"] {
            assert_eq!(host_problem(ok.as_bytes()), None, "{ok}");
        }
        for bad in ["", "localhost:80abc", "localhost:", ":80", "a@b", "localhost:99999", "a b", "x/y", "[::1]:x"] {
            assert!(host_problem(bad.as_bytes()).is_some(), "{bad}");
        }
    }
}
