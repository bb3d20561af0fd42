//! API lifecycle states (WSO2's model): which states serve and what they add.
//!
//! | state | answer |
//! |---|---|
//! | published | serves |
//! | deprecated | serves, with `Deprecation` (RFC 9745), and `Sunset` (RFC 8594) / `Link` when configured |
//! | prototyped | serves (later: without authentication), usually from mocks |
//! | blocked | 503 `lifecycle.blocked` |
//! | created, retired | 404 `lifecycle.not_available`, worded like an unknown route so it reveals nothing |
//!
//! `spec.rs` is the `state:`/`deprecation:` schema, `compile.rs` builds the deprecation
//! headers once, and this file answers requests.

pub(crate) mod compile;
pub(crate) mod spec;

use crate::verdict::{reject, ProblemCode, Verdict};
use http::{HeaderName, HeaderValue};
use spec::LifecycleState;
use std::ops::ControlFlow;

#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub state: LifecycleState,
    /// Added to every response of a deprecated API.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Lifecycle {
    /// Whether the API answers at all in its current state.
    pub fn check(&self) -> Verdict {
        match self.state {
            LifecycleState::Published | LifecycleState::Deprecated | LifecycleState::Prototyped => ControlFlow::Continue(()),
            LifecycleState::Blocked => reject(ProblemCode::ApiBlocked, "this API is blocked by its publisher"),
            LifecycleState::Created | LifecycleState::Retired => reject(ProblemCode::ApiNotAvailable, "no API serves this path"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::spec::DeprecationSpec;
    use super::*;

    #[test]
    fn states_answer_as_documented() {
        let serve = [LifecycleState::Published, LifecycleState::Deprecated, LifecycleState::Prototyped];
        for s in serve {
            assert!(Lifecycle::compile(s, None).unwrap().check().is_continue());
        }
        let code = |s| match Lifecycle::compile(s, None).unwrap().check() {
            ControlFlow::Break(r) => r.code,
            ControlFlow::Continue(()) => panic!("served"),
        };
        assert_eq!(code(LifecycleState::Blocked), ProblemCode::ApiBlocked);
        assert_eq!(code(LifecycleState::Retired), ProblemCode::ApiNotAvailable);
        assert_eq!(code(LifecycleState::Created), ProblemCode::ApiNotAvailable);
    }

    #[test]
    fn deprecation_headers() {
        let dep = DeprecationSpec {
            since: Some("2026-01-01T00:00:00Z".into()),
            sunset: Some("2027-01-01T00:00:00Z".into()),
            link: Some("https://docs.example/deprecation".into()),
        };
        let l = Lifecycle::compile(LifecycleState::Deprecated, Some(&dep)).unwrap();
        let get = |n: &str| l.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(get("deprecation").as_deref(), Some("@1767225600"));
        assert_eq!(get("sunset").as_deref(), Some("Fri, 01 Jan 2027 00:00:00 GMT"));
        assert_eq!(get("link").as_deref(), Some("<https://docs.example/deprecation>; rel=\"deprecation\"; type=\"text/html\""));
        let plain = Lifecycle::compile(LifecycleState::Deprecated, None).unwrap();
        assert_eq!(plain.headers[0].1, "true");
        let bad = DeprecationSpec { since: Some("yesterday".into()), sunset: None, link: None };
        assert_eq!(Lifecycle::compile(LifecycleState::Deprecated, Some(&bad)).unwrap_err()[0].0, "since");
    }
}
