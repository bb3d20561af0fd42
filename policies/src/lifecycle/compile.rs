//! Lifecycle spec → [`Lifecycle`]: the deprecation headers are checked and encoded once.

use super::spec::{DeprecationSpec, LifecycleState};
use super::Lifecycle;
use crate::config::ApiSpec;
use crate::error::Errors;
use http::{HeaderName, HeaderValue};

impl Lifecycle {
    /// Builds the lifecycle policy; errors name the bad `deprecation` field.
    pub fn compile(state: LifecycleState, dep: Option<&DeprecationSpec>) -> Result<Lifecycle, Vec<(&'static str, String)>> {
        let mut headers = Vec::new();
        let mut errors = Vec::new();
        if state == LifecycleState::Deprecated {
            let dep = dep.cloned().unwrap_or(DeprecationSpec { since: None, sunset: None, link: None });
            let deprecation = match dep.since.as_deref().map(humantime::parse_rfc3339_weak) {
                None => Some(HeaderValue::from_static("true")),
                Some(Ok(t)) => {
                    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    HeaderValue::from_str(&format!("@{secs}")).ok()
                }
                Some(Err(e)) => {
                    errors.push(("since", format!("not an RFC 3339 time ({e}); write e.g. 2026-06-01T00:00:00Z")));
                    None
                }
            };
            if let Some(v) = deprecation {
                headers.push((HeaderName::from_static("deprecation"), v));
            }
            if let Some(sunset) = dep.sunset.as_deref() {
                match humantime::parse_rfc3339_weak(sunset) {
                    Ok(t) => {
                        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
                            headers.push((HeaderName::from_static("sunset"), v));
                        }
                    }
                    Err(e) => errors.push(("sunset", format!("not an RFC 3339 time ({e}); write e.g. 2027-01-01T00:00:00Z"))),
                }
            }
            if let Some(link) = dep.link.as_deref() {
                match HeaderValue::from_str(&format!("<{link}>; rel=\"deprecation\"; type=\"text/html\"")) {
                    Ok(v) if !link.contains(['<', '>', ' ']) => headers.push((http::header::LINK, v)),
                    _ => errors.push(("link", "not a valid URL".to_string())),
                }
            }
        }
        if errors.is_empty() {
            Ok(Lifecycle { state, headers })
        } else {
            Err(errors)
        }
    }
}

/// The lifecycle part of an API (at `path`, the API's field path): `state` and `deprecation`.
pub(crate) fn compile_lifecycle(spec: &ApiSpec, path: &str, errors: &mut Errors) -> Option<Lifecycle> {
    let lifecycle = match Lifecycle::compile(spec.state, spec.deprecation.as_ref()) {
        Ok(l) => Some(l),
        Err(errs) => {
            for (f, m) in errs {
                errors.push(format!("{path}.deprecation.{f}"), m);
            }
            None
        }
    };
    if spec.deprecation.is_some() && spec.state != LifecycleState::Deprecated {
        errors.push(format!("{path}.deprecation"), "only applies to APIs in state `deprecated`");
    }
    lifecycle
}
