//! CORS (the Fetch standard's CORS protocol) per API.
//!
//! Preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered by
//! the gateway, before any credential is asked for: browsers never send credentials on a
//! preflight. A preflight from a disallowed origin, or asking for a disallowed method or
//! header, gets 403 with a problem body saying which. On actual requests the gateway adds
//! `Access-Control-Allow-Origin` (and friends) when the origin is allowed, and nothing
//! otherwise: the browser then blocks the response, and non-browser clients are unaffected.
//!
//! `spec.rs` is the `cors:` schema, `compile.rs` checks it and encodes the header values once,
//! and this file answers requests.

pub(crate) mod compile;
pub(crate) mod spec;

use crate::request::RequestHead;
use crate::route::MethodSet;
use crate::verdict::{ProblemCode, Rejection};
use http::header::{self, HeaderName, HeaderValue};

pub type CorsHeaders = Vec<(HeaderName, HeaderValue)>;

#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<Box<str>>,
    methods: MethodSet,
    methods_value: HeaderValue,
    /// Lower-cased allowed request headers; `*` allows any.
    headers: Vec<Box<str>>,
    any_header: bool,
    expose_value: Option<HeaderValue>,
    credentials: bool,
    max_age_value: Option<HeaderValue>,
}

const VARY_PREFLIGHT: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

impl Cors {
    /// A CORS preflight: `OPTIONS` with both `Origin` and `Access-Control-Request-Method`.
    pub fn is_preflight(req: &dyn RequestHead) -> bool {
        *req.method() == http::Method::OPTIONS && req.header("origin").is_some() && req.header("access-control-request-method").is_some()
    }

    fn origin_allowed(&self, origin: &[u8]) -> bool {
        if self.any_origin {
            return true;
        }
        let Some(o) = crate::request::visible_ascii(origin) else { return false };
        self.origins.iter().any(|a| a.eq_ignore_ascii_case(o))
    }

    /// `*`, or the request's own (allowed, so well-formed) origin.
    fn allow_origin_value(&self, origin: &[u8]) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            HeaderValue::from_bytes(origin).unwrap_or(HeaderValue::from_static("null"))
        }
    }

    /// Answers a preflight: the headers of a 204, or a rejection saying what is not allowed.
    pub fn preflight(&self, req: &dyn RequestHead) -> Result<CorsHeaders, Rejection> {
        let vary = (header::VARY, HeaderValue::from_static(VARY_PREFLIGHT));
        let origin = req.header("origin").unwrap_or(b"");
        if !self.origin_allowed(origin) {
            return Err(Rejection::new(ProblemCode::CorsOriginNotAllowed, "this origin may not call this API from a browser")
                .with_header(vary.0, vary.1));
        }
        let method_ok = req
            .header_str("access-control-request-method")
            .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .and_then(|m| MethodSet::bit(&m))
            .is_some_and(|bit| self.methods.contains(bit));
        if !method_ok {
            return Err(Rejection::new(
                ProblemCode::CorsMethodNotAllowed,
                format!("the requested method is not allowed; allowed: {}", self.methods),
            )
            .with_header(vary.0, vary.1));
        }
        let requested = req.header("access-control-request-headers");
        if let Some(list) = requested {
            let ok = self.any_header
                || crate::request::visible_ascii(list).is_some_and(|list| {
                    list.split(',').map(str::trim).filter(|h| !h.is_empty()).all(|h| self.headers.iter().any(|a| a.eq_ignore_ascii_case(h)))
                });
            if !ok {
                return Err(
                    Rejection::new(ProblemCode::CorsHeadersNotAllowed, "a requested header is not allowed").with_header(vary.0, vary.1)
                );
            }
        }
        let mut out = CorsHeaders::new();
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin)));
        out.push((header::ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone()));
        if let Some(list) = requested.and_then(|l| HeaderValue::from_bytes(l).ok()) {
            // Echoing the (checked) request list is what the Fetch standard expects.
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, list));
        }
        if self.credentials {
            out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        if let Some(age) = &self.max_age_value {
            out.push((header::ACCESS_CONTROL_MAX_AGE, age.clone()));
        }
        out.push(vary);
        Ok(out)
    }

    /// Headers for an actual (non-preflight) response, when the request has an allowed
    /// `Origin`. Empty otherwise.
    pub fn response_headers(&self, req: &dyn RequestHead) -> CorsHeaders {
        let mut out = CorsHeaders::new();
        let Some(origin) = req.header("origin") else { return out };
        if !self.origin_allowed(origin) {
            return out;
        }
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin)));
        if self.credentials {
            out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        if let Some(expose) = &self.expose_value {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()));
        }
        if !self.any_origin || self.credentials {
            out.push((header::VARY, HeaderValue::from_static("Origin")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::spec::CorsSpec;
    use super::*;
    use crate::config::HumanDuration;
    use http::request::Parts;

    fn spec() -> CorsSpec {
        CorsSpec {
            allow_origins: vec!["https://app.example".into()],
            allow_methods: vec!["GET".into(), "PUT".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: Some(HumanDuration(std::time::Duration::from_secs(600))),
        }
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn preflight_allowed() {
        let c = Cors::compile(&spec()).unwrap();
        let p = req(
            "OPTIONS",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "Content-Type, Authorization"),
            ],
        );
        assert!(Cors::is_preflight(&p));
        let h = c.preflight(&p).unwrap();
        let get = |n: HeaderName| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(get(header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(), Some("https://app.example"));
        assert_eq!(get(header::ACCESS_CONTROL_ALLOW_METHODS).as_deref(), Some("GET, PUT"));
        assert_eq!(get(header::ACCESS_CONTROL_ALLOW_HEADERS).as_deref(), Some("Content-Type, Authorization"));
        assert_eq!(get(header::ACCESS_CONTROL_MAX_AGE).as_deref(), Some("600"));
    }

    #[test]
    fn preflight_refusals_say_why() {
        let c = Cors::compile(&spec()).unwrap();
        let bad_origin = req("OPTIONS", &[("origin", "https://evil.example"), ("access-control-request-method", "GET")]);
        assert_eq!(c.preflight(&bad_origin).unwrap_err().code, ProblemCode::CorsOriginNotAllowed);
        let bad_method = req("OPTIONS", &[("origin", "https://app.example"), ("access-control-request-method", "DELETE")]);
        assert_eq!(c.preflight(&bad_method).unwrap_err().code, ProblemCode::CorsMethodNotAllowed);
        let bad_header = req(
            "OPTIONS",
            &[("origin", "https://app.example"), ("access-control-request-method", "GET"), ("access-control-request-headers", "x-evil")],
        );
        assert_eq!(c.preflight(&bad_header).unwrap_err().code, ProblemCode::CorsHeadersNotAllowed);
    }

    #[test]
    fn actual_request_headers_only_for_allowed_origins() {
        let c = Cors::compile(&spec()).unwrap();
        assert_eq!(c.response_headers(&req("GET", &[("origin", "https://app.example")])).len(), 2);
        assert!(c.response_headers(&req("GET", &[("origin", "https://evil.example")])).is_empty());
        assert!(c.response_headers(&req("GET", &[])).is_empty());
    }

    #[test]
    fn wildcard_with_credentials_is_a_config_error() {
        let mut s = spec();
        s.allow_origins = vec!["*".into()];
        s.allow_credentials = true;
        assert_eq!(Cors::compile(&s).unwrap_err()[0].0, "allow_credentials");
        s.allow_origins = vec!["https://a.example/path".into()];
        s.allow_credentials = false;
        assert_eq!(Cors::compile(&s).unwrap_err()[0].0, "allow_origins[0]");
    }
}
