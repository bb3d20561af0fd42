//! CORS spec → [`Cors`]: origins, methods and headers are checked once, and the header
//! values the policy sends are encoded once.

use super::spec::CorsSpec;
use super::Cors;
use crate::error::Errors;
use crate::route::MethodSet;
use http::header::{HeaderName, HeaderValue};

impl Cors {
    /// Errors are `(field, message)` relative to the `cors` key.
    pub fn compile(spec: &CorsSpec) -> Result<Cors, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut any_origin = false;
        let mut origins = Vec::new();
        if spec.allow_origins.is_empty() {
            errors.push(("allow_origins".into(), "list at least one origin, or \"*\"".into()));
        }
        for (i, o) in spec.allow_origins.iter().enumerate() {
            if o == "*" {
                any_origin = true;
            } else if is_origin(o) {
                origins.push(o.to_ascii_lowercase().into_boxed_str());
            } else {
                errors.push((format!("allow_origins[{i}]"), format!("`{o}` is not an origin (scheme://host[:port], no path)")));
            }
        }
        if any_origin && spec.allow_credentials {
            errors.push((
                "allow_credentials".into(),
                "cannot be true with allow_origins \"*\" (the Fetch standard forbids it); list the origins".into(),
            ));
        }
        let mut methods = MethodSet::EMPTY;
        let names: Vec<String> =
            if spec.allow_methods.is_empty() { vec!["GET".into(), "HEAD".into(), "POST".into()] } else { spec.allow_methods.clone() };
        for (i, m) in names.iter().enumerate() {
            match MethodSet::parse(m) {
                Some(s) => methods = methods.union(s),
                None => errors.push((format!("allow_methods[{i}]"), format!("`{m}` is not an HTTP method"))),
            }
        }
        let mut headers = Vec::new();
        let mut any_header = false;
        for (i, h) in spec.allow_headers.iter().enumerate() {
            if h == "*" {
                any_header = true;
            } else if HeaderName::from_bytes(h.as_bytes()).is_ok() {
                headers.push(h.to_ascii_lowercase().into_boxed_str());
            } else {
                errors.push((format!("allow_headers[{i}]"), format!("`{h}` is not a header name")));
            }
        }
        for (i, h) in spec.expose_headers.iter().enumerate() {
            if HeaderName::from_bytes(h.as_bytes()).is_err() {
                errors.push((format!("expose_headers[{i}]"), format!("`{h}` is not a header name")));
            }
        }
        if spec.max_age.is_some_and(|d| d.0.subsec_nanos() != 0) {
            errors.push(("max_age".into(), "must be a whole number of seconds (browsers cache preflights in seconds)".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let value = |s: String| HeaderValue::from_str(&s).ok();
        Ok(Cors {
            any_origin,
            origins,
            methods,
            methods_value: value(methods.to_string()).unwrap_or(HeaderValue::from_static("GET")),
            headers,
            any_header,
            expose_value: if spec.expose_headers.is_empty() { None } else { value(spec.expose_headers.join(", ")) },
            credentials: spec.allow_credentials,
            max_age_value: spec.max_age.and_then(|d| value(d.0.as_secs().to_string())),
        })
    }
}

fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', ' ', '@'])
}

/// An API's `cors:` (at `path`, the API's field path).
pub(crate) fn compile_cors(c: &CorsSpec, path: &str, errors: &mut Errors) -> Option<Cors> {
    match Cors::compile(c) {
        Ok(c) => Some(c),
        Err(errs) => {
            for (f, m) in errs {
                errors.push(format!("{path}.cors.{f}"), m);
            }
            None
        }
    }
}
