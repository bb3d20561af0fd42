//! The cache key: what makes two requests the same entry. Method (HEAD is served from GET's
//! entry), host, API and version, the normalised path, the query parameters in a canonical
//! order, the values of the `vary` headers, and for a per-consumer entry the consumer. Each part
//! is length-prefixed, so no two different requests frame to the same bytes.

/// A `vary` header's lower-case name and the request's value (`None`: absent).
pub type VaryValue<'a> = (&'a str, Option<&'a [u8]>);

/// The parts of a request the key is made of.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub method: &'a http::Method,
    /// `Host` (any case; compared in lower case).
    pub host: &'a [u8],
    pub api: &'a str,
    pub version: &'a str,
    /// The resource's cache settings' fingerprint (`CachePolicy::fingerprint`).
    pub settings: u64,
    /// The normalised path.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The configured `vary` headers and the response's `Vary` fields: (lower-case name, the
    /// request's value, `None` when absent). Sorted by name by the caller's compile step.
    pub vary: &'a [VaryValue<'a>],
    /// For a per-consumer entry: the application and the user, or (for an API that checks
    /// no credential) an empty application and the credential itself (`None`: shared).
    pub consumer: Option<(&'a [u8], &'a [u8])>,
}

fn push(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// The key's bytes (pingora-cache hashes them into its `CacheKey`).
pub fn cache_key(p: &KeyParts<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + p.path.len() + p.query.map_or(0, str::len));
    let method = if p.method == http::Method::HEAD { "GET" } else { p.method.as_str() };
    push(&mut out, method.as_bytes());
    push(&mut out, &p.host.to_ascii_lowercase());
    push(&mut out, p.api.as_bytes());
    push(&mut out, p.version.as_bytes());
    push(&mut out, &p.settings.to_le_bytes());
    push(&mut out, p.path.as_bytes());
    let mut params: Vec<&str> = p.query.map_or_else(Vec::new, |q| q.split('&').filter(|s| !s.is_empty()).collect());
    // Sorted as written (`name=value`, bytewise): `a=1&b=2` and `b=2&a=1` are one entry, and
    // so are `a=2&a=1` and `a=1&a=2` (most backends read a repeated name as a set; an API
    // whose backend does not should turn caching off for that resource).
    params.sort_unstable();
    push(&mut out, &(params.len() as u32).to_le_bytes());
    for param in params {
        push(&mut out, param.as_bytes());
    }
    push(&mut out, &(p.vary.len() as u32).to_le_bytes());
    for (name, value) in p.vary {
        push(&mut out, name.as_bytes());
        match value {
            Some(v) => push(&mut out, v.trim_ascii()),
            // Absent differs from empty.
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    match p.consumer {
        Some((application, user)) => {
            out.push(1);
            push(&mut out, application);
            push(&mut out, user);
        }
        None => out.push(0),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(query: Option<&'a str>, vary: &'a [(&'a str, Option<&'a [u8]>)], consumer: Option<(&'a [u8], &'a [u8])>) -> KeyParts<'a> {
        KeyParts {
            method: &http::Method::GET,
            host: b"Api.Example",
            api: "orders",
            version: "v1",
            settings: 7,
            path: "/menu",
            query,
            vary,
            consumer,
        }
    }

    #[test]
    fn the_same_request_in_other_words_is_the_same_entry() {
        let base = cache_key(&parts(Some("a=1&b=2"), &[], None));
        assert_eq!(cache_key(&parts(Some("b=2&a=1"), &[], None)), base, "query order");
        assert_eq!(cache_key(&parts(Some("&b=2&&a=1&"), &[], None)), base, "empty parameters");
        let head = KeyParts { method: &http::Method::HEAD, ..parts(Some("a=1&b=2"), &[], None) };
        assert_eq!(cache_key(&head), base, "HEAD is served from GET's entry");
        let host = KeyParts { host: b"api.example", ..parts(Some("a=1&b=2"), &[], None) };
        assert_eq!(cache_key(&host), base, "host case");
    }

    #[test]
    fn different_requests_are_different_entries() {
        let base = cache_key(&parts(None, &[], None));
        let others = [
            cache_key(&parts(Some("a=1"), &[], None)),
            cache_key(&parts(Some(""), &[("accept-language", Some(b"fr"))], None)),
            cache_key(&parts(None, &[("accept-language", None)], None)),
            cache_key(&parts(None, &[("accept-language", Some(b""))], None)),
            cache_key(&parts(None, &[], Some((b"app-1", b"alice")))),
            cache_key(&parts(None, &[], Some((b"app-1", b"bob")))),
            cache_key(&parts(None, &[], Some((b"app-2", b"alice")))),
            cache_key(&KeyParts { path: "/menu/", ..parts(None, &[], None) }),
            cache_key(&KeyParts { version: "v2", ..parts(None, &[], None) }),
            cache_key(&KeyParts { settings: 8, ..parts(None, &[], None) }),
        ];
        for (i, k) in others.iter().enumerate() {
            assert_ne!(*k, base, "{i}");
            for (j, l) in others.iter().enumerate().skip(i + 1) {
                assert_ne!(k, l, "{i} and {j}");
            }
        }
        // Framing: moving a byte from one part to the next is another key.
        let a = KeyParts { api: "ab", version: "c", ..parts(None, &[], None) };
        let b = KeyParts { api: "a", version: "bc", ..parts(None, &[], None) };
        assert_ne!(cache_key(&a), cache_key(&b));
        // Two applications never share a user's private entry.
        let x: (&[u8], &[u8]) = (b"app-1", b"u");
        let y: (&[u8], &[u8]) = (b"app-2", b"u");
        assert_ne!(cache_key(&parts(None, &[], Some(x))), cache_key(&parts(None, &[], Some(y))));
    }
}
