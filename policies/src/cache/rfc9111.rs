//! RFC 9111 as the gateway applies it, as pure functions over header values: may a response be
//! stored, for how long is it fresh, how long may it be served stale. Both exchanges (and
//! pingora-cache's hooks) ask these; nothing else in the gateway reads `Cache-Control`.
//!
//! The gateway is a shared cache (RFC 9111 §1): `private` responses are not stored,
//! `s-maxage` wins over `max-age`, and a request with `Authorization` is stored only for its
//! own consumer unless the response says `public`, `s-maxage` or `must-revalidate`
//! (§3.5), or the resource is configured `shared`.

use std::time::Duration;

/// The `Cache-Control` directives the cache acts on (RFC 9111 §5.2). Unknown directives are
/// ignored (§5.2.3); a malformed delta-seconds value is ignored too (the directive is treated
/// as absent), except that `max-age` and `s-maxage` with a malformed value make the response
/// stale (§4.2.1: "a cache ... SHOULD consider [it] stale").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// A malformed `max-age` or `s-maxage` was present.
    pub malformed_age: bool,
}

impl Directives {
    /// Parses every `Cache-Control` field value of a message (they combine, RFC 9110 §5.3).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Directives {
        let mut d = Directives::default();
        for value in values {
            for item in split_list(value) {
                let (name, arg) = match item.iter().position(|&b| b == b'=') {
                    Some(i) => (item[..i].trim_ascii(), Some(unquote(item[i + 1..].trim_ascii()))),
                    None => (item, None),
                };
                let seconds = || arg.and_then(delta_seconds);
                match name.to_ascii_lowercase().as_slice() {
                    b"no-store" => d.no_store = true,
                    // `no-cache="field"` and `private="field"` name fields not to reuse; the
                    // gateway treats them as the unqualified forms (stricter, never wrong).
                    b"no-cache" => d.no_cache = true,
                    b"private" => d.private = true,
                    b"public" => d.public = true,
                    b"must-revalidate" => d.must_revalidate = true,
                    b"proxy-revalidate" => d.proxy_revalidate = true,
                    b"max-age" => match seconds() {
                        Some(s) => d.max_age = Some(d.max_age.map_or(s, |m| m.min(s))),
                        None => d.malformed_age = true,
                    },
                    b"s-maxage" => match seconds() {
                        Some(s) => d.s_maxage = Some(d.s_maxage.map_or(s, |m| m.min(s))),
                        None => d.malformed_age = true,
                    },
                    b"stale-while-revalidate" => d.stale_while_revalidate = seconds().or(d.stale_while_revalidate),
                    b"stale-if-error" => d.stale_if_error = seconds().or(d.stale_if_error),
                    _ => {}
                }
            }
        }
        d
    }
}

/// The comma-separated items of a field value, trimmed, empty ones skipped; commas inside a
/// quoted string do not split.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let mut end = rest.len();
        for (i, &b) in rest.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = rest[..end].trim_ascii();
        rest = rest.get(end + 1..).unwrap_or(&[]);
        if !item.is_empty() {
            return Some(item);
        }
    })
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v)
}

/// delta-seconds (RFC 9111 §1.2.2): digits only; a value too large for the clock is the largest
/// one ("2147483648 ... or greater" is infinity, in effect).
fn delta_seconds(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(std::str::from_utf8(v).ok()?.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31))
}

/// Statuses a response may be stored with (RFC 9110 §15.1 "heuristically cacheable", less 206:
/// the cache stores whole responses only).
pub fn cacheable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501)
}

/// Why a response is not stored (the metric label and the `X-Cache: BYPASS` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    RequestNoStore,
    NoStore,
    Private,
    SetCookie,
    VaryStar,
    Authorization,
    /// Fresh for no time (`no-cache`, `max-age=0`, an `Expires` in the past) and no stale
    /// window to serve it in.
    StaleOnArrival,
}

impl NotStored {
    pub const fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::RequestNoStore => "request_no_store",
            NotStored::NoStore => "no_store",
            NotStored::Private => "private",
            NotStored::SetCookie => "set_cookie",
            NotStored::VaryStar => "vary_star",
            NotStored::Authorization => "authorization",
            NotStored::StaleOnArrival => "stale_on_arrival",
        }
    }
}

/// What the storing decision needs to know about an exchange.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a http::Method,
    pub status: u16,
    pub request: &'a Directives,
    pub response: &'a Directives,
    /// The response has a `Set-Cookie` field.
    pub set_cookie: bool,
    /// The response's `Vary` lists `*`.
    pub vary_star: bool,
    /// The request carried `Authorization` (or an API key) and the entry is to be shared.
    pub authorized_shared: bool,
}

/// May this response be stored (RFC 9111 §3)? For a shared entry, `Set-Cookie` forbids it (one
/// consumer's cookie must never reach another); a per-consumer entry may keep it.
pub fn storable(x: &Exchange<'_>, shared: bool) -> Result<(), NotStored> {
    if !(x.method == http::Method::GET || x.method == http::Method::HEAD) {
        return Err(NotStored::Method);
    }
    if !cacheable_status(x.status) {
        return Err(NotStored::Status);
    }
    if x.request.no_store {
        return Err(NotStored::RequestNoStore);
    }
    if x.response.no_store {
        return Err(NotStored::NoStore);
    }
    if x.response.private {
        return Err(NotStored::Private);
    }
    if x.vary_star {
        return Err(NotStored::VaryStar);
    }
    if shared && x.set_cookie {
        return Err(NotStored::SetCookie);
    }
    // §3.5: a shared cache stores a response to an authorized request only when the
    // response says it may.
    if shared && x.authorized_shared && !(x.response.public || x.response.s_maxage.is_some() || x.response.must_revalidate) {
        return Err(NotStored::Authorization);
    }
    Ok(())
}

/// How long a stored response is fresh (RFC 9111 §4.2.1): `s-maxage`, else `max-age`, else
/// `Expires` minus `Date`, else the configured TTL (the gateway's heuristic, §4.2.2). A
/// `no-cache` response, or a malformed age, is stored stale: it is revalidated on every use.
/// `expires` and `date` are seconds since the epoch (`None`: absent; an unparsable `Expires`
/// is passed as `Some(0)`, which is the past, as §5.3 says).
pub fn freshness_lifetime(d: &Directives, expires: Option<u64>, date: Option<u64>, now: u64, configured: Duration) -> Duration {
    if d.no_cache || d.malformed_age {
        return Duration::ZERO;
    }
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Duration::from_secs(s);
    }
    if let Some(expires) = expires {
        return Duration::from_secs(expires.saturating_sub(date.unwrap_or(now)));
    }
    configured
}

/// How long after it went stale a response may still be served while it is revalidated
/// (`stale-while-revalidate`) and when the upstream fails (`stale-if-error`), each bounded by
/// the configured maximum. `must-revalidate` and `proxy-revalidate` (and `s-maxage`, which
/// implies the latter for a shared cache, §5.2.2.10) forbid both.
pub fn stale_windows(d: &Directives, configured_swr: Duration, configured_sie: Duration) -> (Duration, Duration) {
    if d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let bound = |v: Option<u64>, max: Duration| v.map_or(max, |s| Duration::from_secs(s).min(max));
    (bound(d.stale_while_revalidate, configured_swr), bound(d.stale_if_error, configured_sie))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &str) -> Directives {
        Directives::parse([v.as_bytes()])
    }

    #[test]
    fn directives_parse_as_the_rfc_says() {
        let d = cc("public, max-age=60, s-maxage=\"30\", stale-while-revalidate=10, X-Unknown=1");
        assert!(d.public && !d.private && !d.no_store);
        assert_eq!((d.max_age, d.s_maxage, d.stale_while_revalidate), (Some(60), Some(30), Some(10)));
        let d = Directives::parse([&b"no-cache=\"set-cookie, x\", MAX-AGE=5"[..], b"max-age=3"]);
        assert!(d.no_cache);
        assert_eq!(d.max_age, Some(3), "the lowest of repeated values");
        let d = cc("max-age=abc");
        assert!(d.malformed_age && d.max_age.is_none());
        assert_eq!(cc("max-age=99999999999999999999").max_age, Some(1 << 31));
        assert!(cc(",, ,private,").private);
        assert_eq!(cc(""), Directives::default());
    }

    fn exchange<'a>(req: &'a Directives, resp: &'a Directives) -> Exchange<'a> {
        Exchange {
            method: &http::Method::GET,
            status: 200,
            request: req,
            response: resp,
            set_cookie: false,
            vary_star: false,
            authorized_shared: false,
        }
    }

    #[test]
    fn what_may_be_stored() {
        let none = Directives::default();
        assert_eq!(storable(&exchange(&none, &none), true), Ok(()));
        let post = Exchange { method: &http::Method::POST, ..exchange(&none, &none) };
        assert_eq!(storable(&post, true), Err(NotStored::Method));
        assert_eq!(storable(&Exchange { status: 206, ..exchange(&none, &none) }, true), Err(NotStored::Status));
        assert_eq!(storable(&Exchange { status: 500, ..exchange(&none, &none) }, true), Err(NotStored::Status));
        assert_eq!(storable(&exchange(&cc("no-store"), &none), true), Err(NotStored::RequestNoStore));
        assert_eq!(storable(&exchange(&none, &cc("no-store")), true), Err(NotStored::NoStore));
        assert_eq!(storable(&exchange(&none, &cc("private")), false), Err(NotStored::Private));
        assert_eq!(storable(&Exchange { vary_star: true, ..exchange(&none, &none) }, true), Err(NotStored::VaryStar));
        // Set-Cookie: never shared, but a consumer's own entry may keep it.
        let cookie = Exchange { set_cookie: true, ..exchange(&none, &none) };
        assert_eq!(storable(&cookie, true), Err(NotStored::SetCookie));
        assert_eq!(storable(&cookie, false), Ok(()));
        // An authorized request: shared only when the response allows it.
        let auth = Exchange { authorized_shared: true, ..exchange(&none, &none) };
        assert_eq!(storable(&auth, true), Err(NotStored::Authorization));
        assert_eq!(storable(&auth, false), Ok(()));
        for allow in ["public", "s-maxage=5", "must-revalidate"] {
            let d = cc(allow);
            assert_eq!(storable(&Exchange { response: &d, ..auth }, true), Ok(()), "{allow}");
        }
    }

    #[test]
    fn freshness_comes_from_s_maxage_max_age_expires_then_the_configured_ttl() {
        let ttl = Duration::from_secs(60);
        assert_eq!(freshness_lifetime(&cc("max-age=10, s-maxage=5"), None, None, 100, ttl), Duration::from_secs(5));
        assert_eq!(freshness_lifetime(&cc("max-age=10"), Some(1000), None, 100, ttl), Duration::from_secs(10));
        assert_eq!(freshness_lifetime(&cc(""), Some(130), Some(100), 110, ttl), Duration::from_secs(30));
        assert_eq!(freshness_lifetime(&cc(""), Some(130), None, 110, ttl), Duration::from_secs(20));
        assert_eq!(freshness_lifetime(&cc(""), Some(0), None, 110, ttl), Duration::ZERO, "an invalid Expires is the past");
        assert_eq!(freshness_lifetime(&cc(""), None, None, 110, ttl), ttl);
        assert_eq!(freshness_lifetime(&cc("no-cache, max-age=10"), None, None, 0, ttl), Duration::ZERO);
        assert_eq!(freshness_lifetime(&cc("max-age=x"), None, None, 0, ttl), Duration::ZERO);
    }

    #[test]
    fn stale_windows_are_bounded_and_revalidation_directives_forbid_them() {
        let (swr, sie) = (Duration::from_secs(30), Duration::from_secs(300));
        assert_eq!(stale_windows(&cc(""), swr, sie), (swr, sie));
        assert_eq!(stale_windows(&cc("stale-while-revalidate=10, stale-if-error=1000"), swr, sie), (Duration::from_secs(10), sie));
        for strict in ["must-revalidate", "proxy-revalidate", "s-maxage=1"] {
            assert_eq!(stale_windows(&cc(strict), swr, sie), (Duration::ZERO, Duration::ZERO), "{strict}");
        }
    }
}
