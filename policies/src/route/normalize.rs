//! Path normalisation before routing (RFC 3986 §6.2.2 and §5.2.4).
//!
//! The gateway matches and forwards the *normalised* path, so the resource a request is
//! authorised for is the resource the upstream serves: `/orders/v1/menu/../admin/x`,
//! `/orders/v1/%2e%2e/admin` and `//orders///v1/admin` all become the path they really name
//! before any policy looks at them.
//!
//! - Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; other escapes
//!   are kept, with their hex digits upper-cased.
//! - Repeated slashes collapse; `.` and `..` segments are removed (`..` stops at the root).
//! - Refused outright: an encoded slash or backslash (`%2F`, `%5C`), because upstreams disagree
//!   on whether it separates segments; a raw backslash (some servers treat it as `/`); an
//!   encoded NUL; a malformed escape; a dot-segment with parameters (`..;x`, `.;`), which
//!   servlet containers and others resolve as `..` after a gateway matched it as a name
//!   (`/public/..;/admin` reaching `/admin`).

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path contains an encoded slash or backslash")]
    EncodedSlash,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains an encoded NUL")]
    Nul,
    #[error("the path contains a malformed percent-escape")]
    BadEscape,
    #[error("the path contains a dot-segment with parameters (such as `..;`)")]
    DotSegmentParams,
}

/// Whether `seg` is `.` or `..` followed by `;` parameters.
fn dot_with_params(seg: &[u8]) -> bool {
    seg.starts_with(b".;") || seg.starts_with(b"..;")
}

/// Normalises `path` (without the query). Borrows when the path is already normal, which is
/// the common case, so most requests allocate nothing here.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, NormalizeError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(NormalizeError::NotAbsolute);
    }
    if is_normal(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    slow(bytes).map(Cow::Owned)
}

/// True when nothing needs rewriting: no escapes, no empty or dot segments.
fn is_normal(bytes: &[u8]) -> Result<bool, NormalizeError> {
    let mut seg_start = 1;
    for i in 1..=bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            Some(b'%') => return Ok(false),
            Some(b'\\') => return Err(NormalizeError::Backslash),
            Some(b'/') | None => {
                let seg = &bytes[seg_start..i];
                // An empty segment is only fine at the very end ("/a/" keeps its slash).
                if (seg.is_empty() && b.is_some()) || seg == b"." || seg == b".." {
                    return Ok(false);
                }
                if dot_with_params(seg) {
                    return Err(NormalizeError::DotSegmentParams);
                }
                seg_start = i + 1;
            }
            _ => {}
        }
    }
    Ok(true)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn slow(bytes: &[u8]) -> Result<String, NormalizeError> {
    // 1. Decode what may be decoded, segment by segment (an encoded '/' is refused, so
    //    splitting on '/' afterwards is exact).
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (h, l) = match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(NormalizeError::BadEscape),
                };
                let v = h << 4 | l;
                match v {
                    b'/' | b'\\' => return Err(NormalizeError::EncodedSlash),
                    0 => return Err(NormalizeError::Nul),
                    v if is_unreserved(v) => decoded.push(v),
                    _ => {
                        decoded.push(b'%');
                        decoded.push(b"0123456789ABCDEF"[usize::from(h)]);
                        decoded.push(b"0123456789ABCDEF"[usize::from(l)]);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(NormalizeError::Backslash),
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }

    // 2. Remove empty and dot segments.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        if dot_with_params(seg) {
            return Err(NormalizeError::DotSegmentParams);
        }
        trailing_slash = false;
        match seg {
            b"" => trailing_slash = true,
            b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }

    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    // Only ASCII bytes were added or removed, and the input was a &str.
    String::from_utf8(out).map_err(|_| NormalizeError::BadEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, NormalizeError> {
        normalize(p).map(|c| c.into_owned())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize("/orders/v1/menu"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/orders/v1/menu/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(n("/orders/v1/menu/../admin/x").unwrap(), "/orders/v1/admin/x");
        assert_eq!(n("/orders/v1/./menu").unwrap(), "/orders/v1/menu");
        assert_eq!(n("//orders///v1//menu").unwrap(), "/orders/v1/menu");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/..").unwrap(), "/");
    }

    #[test]
    fn encoded_dots_are_decoded_before_dot_removal() {
        assert_eq!(n("/orders/v1/menu/%2e%2e/admin").unwrap(), "/orders/v1/admin");
        assert_eq!(n("/orders/v1/menu/%2E%2e/admin").unwrap(), "/orders/v1/admin");
        assert_eq!(n("/orders/v1/menu/.%2e/admin").unwrap(), "/orders/v1/admin");
        assert_eq!(n("/%6Frders").unwrap(), "/orders");
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for p in ["/orders/v1/public/..;/admin/users", "/a/.;x/b", "/a/..;", "/a/%2e%2e;x/b", "/a/%2E;/b"] {
            assert_eq!(n(p), Err(NormalizeError::DotSegmentParams), "{p}");
        }
        // Parameters on an ordinary segment, and dots inside names, are fine.
        assert_eq!(n("/a/b;v=1/c").unwrap(), "/a/b;v=1/c");
        assert_eq!(n("/a/...;x/c").unwrap(), "/a/...;x/c");
    }

    #[test]
    fn reserved_escapes_are_kept_uppercased() {
        assert_eq!(n("/a/b%3fc").unwrap(), "/a/b%3Fc");
        assert_eq!(n("/a/%20b").unwrap(), "/a/%20b");
    }

    #[test]
    fn dangerous_inputs_are_refused() {
        assert_eq!(n("/a%2fb"), Err(NormalizeError::EncodedSlash));
        assert_eq!(n("/a%2Fb"), Err(NormalizeError::EncodedSlash));
        assert_eq!(n("/a%5cb"), Err(NormalizeError::EncodedSlash));
        assert_eq!(n("/a\\..\\b"), Err(NormalizeError::Backslash));
        assert_eq!(n("/a%00b"), Err(NormalizeError::Nul));
        assert_eq!(n("/a%zzb"), Err(NormalizeError::BadEscape));
        assert_eq!(n("/a%2"), Err(NormalizeError::BadEscape));
        assert_eq!(n("a/b"), Err(NormalizeError::NotAbsolute));
    }

    #[test]
    fn double_encoding_is_not_decoded_twice() {
        // %252e is "%2e" after one decode: it must stay an opaque escape, not become "."
        assert_eq!(n("/a/%252e%252e/b").unwrap(), "/a/%252e%252e/b");
    }
}
