//! The compiled, immutable form of a config revision, and the request-head decision made on
//! it. A request loads one `Arc<Snapshot>` and keeps it to the end, so a reload never changes
//! a request midway.

use crate::authn::introspect::IntrospectionResult;
use crate::authn::{ApiAuth, Applications, AuthContext, AuthStep, KeyManager, Principal};
use crate::config::{AccessLogSpec, AdminSpec, AuthType, LifecycleState, ListenerSpec, ServerSpec};
use crate::cors::{Cors, CorsHeaders};
use crate::lifecycle::Lifecycle;
use crate::metrics::ApiMetrics;
use crate::mock::Mock;
use crate::request::RequestHead;
use crate::route::table::Bindings;
use crate::route::{MethodSet, ResourceMatch, ResourceTable, RouteTable};
use crate::upstream::Endpoint;
use crate::verdict::{ProblemCode, Rejection};
use http::HeaderValue;
use std::sync::Arc;

/// Settings that only a restart changes; a reload that alters them says so.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSettings {
    pub server: ServerSpec,
    pub listeners: Vec<ListenerSpec>,
    pub admin: Option<AdminSpec>,
    pub access_log: AccessLogSpec,
    pub cache: crate::cache::spec::CacheSpec,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Set by the store when the snapshot is swapped in.
    pub revision: u64,
    pub process: ProcessSettings,
    pub apis: Vec<Api>,
    pub routes: RouteTable,
    pub key_managers: Vec<KeyManager>,
    pub introspectors: Vec<crate::authn::introspect::Introspector>,
    pub applications: Applications,
    pub backend_jwt: Option<crate::authn::backend_jwt::BackendJwt>,
    /// Metrics of requests that matched no API.
    pub unrouted_metrics: ApiMetrics,
    /// Tiers, deny lists, the client-address rule and the counter store.
    pub throttling: crate::throttle::Throttling,
    /// Settings that are accepted but probably not what the author meant (a key no allowed
    /// algorithm can use, a generated signing key). Printed by `gateway validate`, logged on
    /// every apply and returned by the admin API; they never block a config.
    pub warnings: Vec<crate::error::ConfigError>,
}

#[derive(Debug)]
pub struct Api {
    pub name: Arc<str>,
    pub context: String,
    pub version: String,
    pub strip_context: bool,
    pub lifecycle: Lifecycle,
    pub cors: Option<Cors>,
    /// `None`: the API is open.
    pub auth: Option<ApiAuth>,
    pub endpoint: Option<Endpoint>,
    pub resources: Vec<Resource>,
    pub table: ResourceTable,
    pub metrics: ApiMetrics,
    pub throttle: crate::throttle::ApiThrottle,
    /// Request limits and the regex protector; `None`: none configured.
    pub threat: Option<crate::threat::head::ThreatPolicy>,
}

#[derive(Debug)]
pub struct Resource {
    /// The path as configured, for logs and the explain output.
    pub path: String,
    pub methods: MethodSet,
    pub var_names: Vec<String>,
    pub mock: Option<Mock>,
    pub auth_type: AuthType,
    pub scopes: Vec<String>,
    /// The resource's own tier (all consumers of this resource and verb).
    pub throttle_tier: Option<u32>,
    /// Whether the gateway's HTTP/1 lane may serve it (compiled): a mock, or an API whose
    /// targets are all plain `http://` (the lane speaks no TLS upstream). Otherwise the lane
    /// hands such requests to Pingora before authenticating them.
    pub lane: bool,
    /// The resource's cache settings; `None`: not cached.
    pub cache: Option<Arc<crate::cache::CachePolicy>>,
}

/// What to do with a request whose head passed every policy.
#[derive(Debug)]
pub enum Action {
    /// Forward to the API's endpoint.
    Proxy,
    /// Answer with the resource's mock.
    Mock,
    /// Answer a CORS preflight with 204 and these headers.
    Preflight(CorsHeaders),
}

/// The outcome of routing and the request-head policies.
#[derive(Debug)]
pub struct Plan {
    pub api: u32,
    /// `None` for preflights, which are answered per API.
    pub resource: Option<u32>,
    /// Where the path after context and version starts.
    pub rest_start: usize,
    pub bindings: Bindings,
    pub action: Action,
}

/// A rejection, with the API it happened in when routing got that far.
#[derive(Debug)]
pub struct Refusal {
    pub api: Option<u32>,
    pub rejection: Rejection,
}

impl Snapshot {
    /// Steps 2–5 of the chain (`chain.rs`): route → lifecycle → CORS preflight → resource and
    /// verb. `path` must be normalised.
    pub fn route(&self, req: &dyn RequestHead, path: &str) -> Result<Plan, Refusal> {
        let Some(route) = self.routes.lookup(path) else {
            return Err(Refusal { api: None, rejection: Rejection::new(ProblemCode::RouteNotFound, "no API serves this path") });
        };
        let api_idx = route.api;
        let refuse = |rejection| Refusal { api: Some(api_idx), rejection };
        let Some(api) = self.apis.get(api_idx as usize) else {
            return Err(refuse(Rejection::new(ProblemCode::Internal, "route table out of step with the API list")));
        };
        if let std::ops::ControlFlow::Break(r) = api.lifecycle.check() {
            return Err(refuse(r));
        }
        let rest = &path[route.rest_start..];
        if let Some(cors) = &api.cors {
            if Cors::is_preflight(req) && api.table.matches_path(rest) {
                return match cors.preflight(req) {
                    Ok(headers) => Ok(Plan {
                        api: api_idx,
                        resource: None,
                        rest_start: route.rest_start,
                        bindings: Bindings::new(),
                        action: Action::Preflight(headers),
                    }),
                    Err(r) => Err(refuse(r)),
                };
            }
        }
        match api.table.find(rest, route.rest_start, MethodSet::bit(req.method())) {
            ResourceMatch::Found { resource, bindings } => {
                let has_mock = api.resources.get(resource as usize).is_some_and(|r| r.mock.is_some());
                Ok(Plan {
                    api: api_idx,
                    resource: Some(resource),
                    rest_start: route.rest_start,
                    bindings,
                    action: if has_mock { Action::Mock } else { Action::Proxy },
                })
            }
            ResourceMatch::MethodNotAllowed(allowed) => {
                let mut r = Rejection::new(ProblemCode::MethodNotAllowed, format!("this resource accepts {allowed}"));
                if let Ok(v) = HeaderValue::from_str(&allowed.allow_header()) {
                    r = r.with_header(http::header::ALLOW, v);
                }
                Err(refuse(r))
            }
            ResourceMatch::NotFound => Err(refuse(Rejection::new(ProblemCode::RouteNotFound, "no resource of this API matches the path"))),
        }
    }

    /// Whether the HTTP/1 lane may serve a planned request (the resource's compiled flag).
    pub fn lane_serves(&self, plan: &Plan) -> bool {
        match plan.resource {
            Some(r) => self.api(plan.api).and_then(|a| a.resource(r)).is_some_and(|r| r.lane),
            None => true,
        }
    }

    /// Authenticates and authorizes a planned request. `Ok(None)`: no credential needed
    /// (open API, `auth: none` resource, prototyped API, or a preflight).
    pub fn authenticate(&self, req: &dyn RequestHead, plan: &Plan, now_unix: u64) -> Result<Option<AuthStep>, Rejection> {
        match self.auth_context(plan) {
            Some(cx) => crate::authn::authenticate(&cx, req, now_unix).map(Some),
            None => Ok(None),
        }
    }

    /// Finishes an authentication that needed introspection (see [`AuthStep::Introspect`]).
    pub fn complete_introspection(
        &self,
        req: &dyn RequestHead,
        plan: &Plan,
        result: &IntrospectionResult,
    ) -> Result<Option<Principal>, Rejection> {
        match self.auth_context(plan) {
            Some(cx) => crate::authn::complete_introspection(&cx, req, result).map(Some),
            None => Ok(None),
        }
    }

    /// The authentication settings for a planned request; `None` when it needs none.
    fn auth_context(&self, plan: &Plan) -> Option<AuthContext<'_>> {
        let api = self.api(plan.api)?;
        let (Some(auth), Some(resource)) = (&api.auth, plan.resource.and_then(|r| api.resource(r))) else {
            return None;
        };
        if resource.auth_type == AuthType::None || api.lifecycle.state == LifecycleState::Prototyped {
            return None;
        }
        Some(AuthContext {
            api_name: &api.name,
            auth,
            key_managers: &self.key_managers,
            introspectors: &self.introspectors,
            applications: &self.applications,
            auth_type: resource.auth_type,
            scopes: &resource.scopes,
        })
    }

    pub fn api(&self, idx: u32) -> Option<&Api> {
        self.apis.get(idx as usize)
    }

    pub fn api_by_name(&self, name: &str) -> Option<&Api> {
        self.apis.iter().find(|a| &*a.name == name)
    }
}

impl Api {
    pub fn resource(&self, idx: u32) -> Option<&Resource> {
        self.resources.get(idx as usize)
    }
}
