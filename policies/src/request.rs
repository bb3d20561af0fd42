//! What the request-head policies read of a request: its method, its query and its header
//! fields, by name.
//!
//! Two representations implement it: `http::request::Parts` (what Pingora's `RequestHeader`
//! derefs to), and the gateway's borrowed view of a request head parsed straight out of the
//! connection buffer (the HTTP/1 fast lane, which builds no header map at all).

use http::request::Parts;
use http::Method;

pub trait RequestHead {
    fn method(&self) -> &Method;
    /// The query string, without the `?`.
    fn query(&self) -> Option<&str>;
    /// The first value of the header field `name` (given in lower case), as received.
    fn header(&self, name: &str) -> Option<&[u8]>;

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
    }
}
