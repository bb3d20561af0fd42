//! The request chain: the one list of policies every request passes, in order, whichever
//! exchange serves it (the gateway's HTTP/1 lane or Pingora's proxy phases).
//!
//! A request is decided in two steps:
//!
//! - [`plan`] is pure and idempotent: it reads the request head, the snapshot and the caches
//!   and never spends anything (no quota, no network). Running it twice gives the same answer.
//! - `commit` (in the gateway, `pipeline.rs`) runs exactly once per request, on the exchange
//!   that serves it: the asynchronous step [`plan`] asked for (token introspection today;
//!   throttle reservations and Redis next), then [`complete`].
//!
//! The order, one list (DESIGN.md §2):
//!
//! | # | step | answer when it refuses |
//! |---|---|---|
//! | 0 | deny lists: the client address (`throttle::deny_ip`) | 403 `throttle.denied` |
//! | 1 | normalise the path (`route::normalize`) | 400 `request.bad_path` |
//! | 2 | route: context, version (`route::RouteTable`) | 404 |
//! | 3 | lifecycle state (`lifecycle`) | 404 / 503 |
//! | 4 | CORS preflight (`cors`): answered here | 403 |
//! | 5 | resource and verb (`route::ResourceTable`) | 404 / 405 with `Allow` |
//! | 6 | which exchange may serve it (`Resource::lane`, compiled): the lane hands off here | — |
//! | 6b | threat protection of the head: URI and header limits, regex over path, query and headers (`threat::head`) | 414 / 431 / 400 `threat.detected` |
//! | 7 | authentication and authorization from the caches (`authn`), then the application and user deny lists | 401 / 403 |
//! | 8 | commit: the asynchronous step (introspection), then [`complete`] | 401 / 403 / 503 |
//! | 9 | commit: the throttle reservation, all levels in one store call (`throttle`) | 429 `throttle.limited` |
//! | 10 | the body protectors, as the body arrives and before the upstream sees a byte of it ([`threat_policy`], `threat::body`) | 413 / 400 `threat.detected` |
//!
//! The lane stops at step 6 for a resource it may not serve, before authentication, so a
//! request it hands to Pingora is authenticated and throttled once, by Pingora.

use crate::authn::introspect::IntrospectionResult;
use crate::authn::{AuthStep, Principal};
use crate::cors::CorsHeaders;
use crate::route::normalize;
use crate::snapshot::{Action, Plan, Refusal, Snapshot};
use crate::threat::head::{Detection, ThreatPolicy};
use crate::throttle::{self, Quota};
use crate::verdict::{ProblemCode, Rejection};
use crate::RequestHead;
use std::borrow::Cow;

/// Which exchange asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// The gateway's own HTTP/1 loop (plain-HTTP listeners).
    Lane = 0,
    /// Pingora's proxy phases (TLS, HTTP/2, upgrades, chunked bodies, and what the lane hands off).
    Pingora = 1,
}

impl Exchange {
    /// The label value of `gateway_exchange_requests_total` and the access log's `exchange`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Exchange::Lane => "lane",
            Exchange::Pingora => "pingora",
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug)]
pub enum Planned {
    /// Every step the head and the caches can decide passed: commit finishes it.
    Commit(Pending),
    /// A CORS preflight, answered 204 with these headers.
    Preflight { api: u32, headers: CorsHeaders },
    /// Refused: answered with a problem.
    Refuse(Refusal),
    /// Only for [`Exchange::Lane`]: the resource is not the lane's to serve; hand the request to
    /// Pingora untouched (nothing was spent).
    HandOff,
}

/// A request that passed [`plan`], waiting for commit.
#[derive(Debug)]
pub struct Pending {
    pub admitted: Admitted,
    /// The asynchronous step commit runs before [`complete`]; `None`: nothing to wait for.
    pub step: Option<Step>,
}

/// The asynchronous steps commit may have to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask this introspector about the request's bearer token (RFC 7662).
    Introspect { introspector: u32 },
}

/// An admitted request: what it is to be served by, and who is calling. Carried as a value
/// from the decision to the exchange that serves it.
#[derive(Debug)]
pub struct Admitted {
    pub plan: Plan,
    /// The normalised path, when it differs from the request's.
    pub normalized_path: Option<String>,
    /// Who is calling, when the resource required a credential.
    pub principal: Option<Principal>,
    /// The tightest throttling limit the request was counted in (for the `RateLimit` fields).
    pub quota: Option<Quota>,
}

impl Admitted {
    /// Whether the resource's mock answers (otherwise: proxy to the API's endpoint).
    pub fn is_mock(&self) -> bool {
        matches!(self.plan.action, Action::Mock)
    }
}

/// Steps 1–7 of the chain. `raw_path` is the request target's path; `now_unix` the clock of
/// token expiry checks.
pub fn plan(snapshot: &Snapshot, req: &dyn RequestHead, raw_path: &str, exchange: Exchange, now_unix: u64) -> Planned {
    let t = &snapshot.throttling;
    if !t.deny_nets.is_empty() {
        if let Some(rejection) = throttle::deny_ip(t, throttle::client_ip(req, t.trust_forwarded_for)) {
            return Planned::Refuse(Refusal { api: None, rejection });
        }
    }
    let path = match normalize(raw_path) {
        Ok(p) => p,
        Err(e) => return Planned::Refuse(Refusal { api: None, rejection: Rejection::new(ProblemCode::BadPath, e.to_string()) }),
    };
    let plan = match snapshot.route(req, &path) {
        Ok(plan) => plan,
        Err(refusal) => return Planned::Refuse(refusal),
    };
    let api = plan.api;
    let plan = match plan.action {
        Action::Preflight(headers) => return Planned::Preflight { api, headers },
        _ => plan,
    };
    if exchange == Exchange::Lane && !snapshot.lane_serves(&plan) {
        return Planned::HandOff;
    }
    // Threat protection of the head, on the exchange that serves the request (so a handed-off
    // request is counted once).
    if let Some(api) = snapshot.api(api) {
        if let Some(policy) = &api.threat {
            if let Some(found) = crate::threat::head::check_head(policy, req, raw_path) {
                if let Err(rejection) = threat_detected(api, policy, &found) {
                    return Planned::Refuse(Refusal { api: Some(plan.api), rejection });
                }
            }
        }
    }
    let normalized_path = match path {
        Cow::Owned(p) => Some(p),
        Cow::Borrowed(_) => None,
    };
    let (principal, step) = match snapshot.authenticate(req, &plan, now_unix) {
        Ok(None) => (None, None),
        Ok(Some(AuthStep::Done(p))) => (Some(p), None),
        Ok(Some(AuthStep::Introspect { introspector })) => (None, Some(Step::Introspect { introspector })),
        Err(rejection) => return Planned::Refuse(Refusal { api: Some(api), rejection }),
    };
    if let Some(rejection) = principal.as_ref().and_then(|p| throttle::deny_principal(t, p)) {
        return Planned::Refuse(Refusal { api: Some(api), rejection });
    }
    Planned::Commit(Pending { admitted: Admitted { plan, normalized_path, principal, quota: None }, step })
}

/// Step 8's end: finishes a pending request once its asynchronous step (if any) answered.
/// `introspection` is the introspector's answer for [`Step::Introspect`].
pub fn complete(
    snapshot: &Snapshot,
    req: &dyn RequestHead,
    pending: Pending,
    introspection: Option<&IntrospectionResult>,
) -> Result<Admitted, Refusal> {
    let Pending { mut admitted, step } = pending;
    let api = Some(admitted.plan.api);
    match (step, introspection) {
        (None, _) => Ok(admitted),
        (Some(Step::Introspect { .. }), Some(result)) => match snapshot.complete_introspection(req, &admitted.plan, result) {
            Ok(principal) => {
                if let Some(rejection) = principal.as_ref().and_then(|p| throttle::deny_principal(&snapshot.throttling, p)) {
                    return Err(Refusal { api, rejection });
                }
                admitted.principal = principal;
                Ok(admitted)
            }
            Err(rejection) => Err(Refusal { api, rejection }),
        },
        (Some(Step::Introspect { .. }), None) => {
            Err(Refusal { api, rejection: Rejection::new(ProblemCode::Internal, "introspection did not run") })
        }
    }
}

/// Step 9, the last of commit, part one (pure): the throttling limits the admitted request
/// is subject to. The gateway's commit hands them to the counter store once (awaiting it,
/// for a remote store), then calls [`settle`].
pub fn throttle_checks(snapshot: &Snapshot, req: &dyn RequestHead, admitted: &Admitted) -> throttle::Checks {
    let t = &snapshot.throttling;
    let Some(api) = snapshot.api(admitted.plan.api) else { return throttle::Checks::default() };
    let resource = admitted.plan.resource.map(|r| (r, api.resource(r).and_then(|r| r.throttle_tier)));
    let client = throttle::client_ip(req, t.trust_forwarded_for);
    throttle::checks(t, &api.throttle, resource, req.method(), admitted.principal.as_ref(), api.auth.is_some(), req, client)
}

/// Step 9, part two: the store's outcome. Counted in every level: the request goes on with
/// its tightest quota (for the `RateLimit` fields). Refused (429): it was counted nowhere.
pub fn settle(
    snapshot: &Snapshot,
    admitted: &mut Admitted,
    checks: &throttle::Checks,
    outcome: throttle::store::Outcome,
) -> Result<(), Refusal> {
    let t = &snapshot.throttling;
    let Some(api) = snapshot.api(admitted.plan.api) else { return Ok(()) };
    match throttle::settle(t, checks, outcome) {
        Ok(quota) => {
            if let Some(q) = quota.as_ref().filter(|q| q.standing.over) {
                crate::metrics::FAMILIES.over_quota.with_label_values(&[&*api.name, q.level.as_str(), &q.policy]).inc();
            }
            admitted.quota = quota;
            Ok(())
        }
        Err(throttled) => {
            crate::metrics::FAMILIES.throttled.with_label_values(&[&*api.name, throttled.level.as_str(), &throttled.policy]).inc();
            let mut rejection = throttled.rejection(t.legacy_headers);
            rejection.application = admitted.principal.as_ref().and_then(|p| p.application);
            Err(Refusal { api: Some(admitted.plan.api), rejection })
        }
    }
}

/// A threat protector's finding on a request of `api`: counted, and in enforce mode the
/// rejection to answer; in monitor mode logged and let through (`Ok`).
pub fn threat_detected(api: &crate::snapshot::Api, policy: &ThreatPolicy, found: &Detection) -> Result<(), Rejection> {
    let action = if policy.enforce { "blocked" } else { "logged" };
    crate::metrics::FAMILIES.threats.with_label_values(&[&*api.name, found.protector, &found.rule, action]).inc();
    if policy.enforce {
        return Err(found.rejection());
    }
    tracing::warn!(api = %api.name, protector = found.protector, rule = %found.rule, location = found.location, "threat detected (monitor mode: let through)");
    Ok(())
}

/// Step 10 (after commit, before the upstream sees a byte of the body): the admitted request's
/// API's threat protection, whose `threat::body::BodyInspector` the exchange feeds the body as it
/// arrives, holding it back while the inspector says so; each finding goes through
/// [`body_finding`]. `None`: the API has no threat protection.
pub fn threat_policy<'s>(snapshot: &'s Snapshot, admitted: &Admitted) -> Option<&'s ThreatPolicy> {
    snapshot.api(admitted.plan.api)?.threat.as_ref()
}

/// A body finding of the admitted request's API (see [`threat_detected`]): `Err` to refuse it.
pub fn body_finding(snapshot: &Snapshot, admitted: &Admitted, found: &Detection) -> Result<(), Rejection> {
    let Some(api) = snapshot.api(admitted.plan.api) else { return Ok(()) };
    let Some(policy) = &api.threat else { return Ok(()) };
    threat_detected(api, policy, found)
}
