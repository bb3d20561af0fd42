//! Spec → [`Snapshot`]. Walks the whole spec and collects *every* error with its field path,
//! so one `gateway validate` run shows everything to fix. Expensive work happens here and
//! never on the request path: parsing patterns, building the route table, resolving target
//! addresses, reading CA files, encoding mock responses, resolving metric label sets.
//!
//! This file is the walk: the document, then each API and its resources, in config order.
//! Each policy's own compile step lives in its folder (`authn/compile.rs`,
//! `lifecycle/compile.rs`, `cors/compile.rs`, `upstream/compile.rs`, `mock/compile.rs`,
//! `route/compile.rs`) and reports its errors under the field path it is given.

use crate::authn::compile::{
    check_resource_auth, check_subscriptions, compile_api_auth, compile_applications, compile_backend_jwt, compile_key_managers,
    key_manager_index, KmRef,
};
use crate::config::{ApiSpec, AuthType, GatewaySpec};
use crate::cors::compile::compile_cors;
use crate::error::{ConfigError, Errors};
use crate::lifecycle::compile::compile_lifecycle;
use crate::metrics::ApiMetrics;
use crate::mock::compile::compile_mock;
use crate::route::compile::{compile_api_route, compile_resource_route};
use crate::route::{ResourceTable, RouteTable};
use crate::snapshot::{Api, ProcessSettings, Resource, Snapshot};
use crate::state::Durable;
use crate::throttle::compile::{compile_api_throttle, compile_throttling, tier_ref};
use crate::throttle::Throttling;
use crate::upstream::compile::compile_endpoint;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Compiles a parsed document. `durable` supplies state that survives reloads.
pub fn compile(spec: &GatewaySpec, durable: &Durable) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors = Errors::default();
    let mut warnings = Errors::default();
    check_process(spec, &mut errors);

    let claims = crate::throttle::compile::condition_claims(spec);
    let (key_managers, introspectors) = compile_key_managers(spec, durable, &claims, &mut errors, &mut warnings);
    let backend_jwt = compile_backend_jwt(spec, durable, &mut errors, &mut warnings);
    let applications = compile_applications(spec, &mut errors);
    let km_index = key_manager_index(spec);
    let throttling = compile_throttling(spec, durable, &mut errors);
    let mut patterns = crate::threat::compile::PatternCache::default();

    let mut routes = RouteTable::default();
    let mut apis = Vec::with_capacity(spec.apis.len());
    let mut names = HashSet::new();
    // The gateway-wide threat block is checked once here; each API's call reports its own.
    if spec.threat_protection.is_some() {
        crate::threat::compile::compile_threat(spec.threat_protection.as_ref(), None, "", true, &mut patterns, &mut errors, &mut warnings);
    }
    for (i, api_spec) in spec.apis.iter().enumerate() {
        let path = format!("apis[{i}]");
        if !names.insert(api_spec.name.as_str()) {
            errors.push(format!("{path}.name"), format!("`{}` is used by another API; names must be unique", api_spec.name));
        }
        let threat = crate::threat::compile::compile_threat(
            spec.threat_protection.as_ref(),
            api_spec.threat_protection.as_ref(),
            &path,
            false,
            &mut patterns,
            &mut errors,
            &mut warnings,
        );
        if let Some(mut api) = compile_api(api_spec, &path, durable, &km_index, &throttling, &mut errors) {
            api.threat = threat;
            if let Err(e) = routes.insert(&api.context, &api.version, api_spec.default_version, apis.len() as u32) {
                errors.push(format!("{path}.context"), e);
            }
            apis.push(api);
        }
    }

    check_subscriptions(spec, &names, &mut errors);
    if !errors.is_empty() {
        return Err(errors.0);
    }
    Ok(Snapshot {
        key_managers,
        introspectors,
        applications,
        backend_jwt,
        revision: 0,
        process: ProcessSettings {
            server: spec.server.clone(),
            listeners: spec.listeners.clone(),
            admin: spec.admin.clone(),
            access_log: spec.access_log.clone(),
            cache: spec.cache.clone(),
        },
        apis,
        routes,
        unrouted_metrics: ApiMetrics::new(Arc::from("-")),
        throttling,
        warnings: warnings.0,
    })
}

fn check_process(spec: &GatewaySpec, errors: &mut Errors) {
    if spec.server.threads == Some(0) {
        errors.push("server.threads", "must be at least 1 (leave it out for one per core)");
    }
    if spec.listeners.is_empty() {
        errors.push("listeners", "at least one listener is needed");
    }
    let mut seen = HashSet::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        match l.address.parse::<SocketAddr>() {
            Ok(a) => {
                if !seen.insert(a) {
                    errors.push(format!("listeners[{i}].address"), format!("{a} is listed twice"));
                }
            }
            Err(_) => errors.push(format!("listeners[{i}].address"), format!("`{}` is not ip:port", l.address)),
        }
        if let Some(tls) = &l.tls {
            for (field, file) in [("cert", &tls.cert), ("key", &tls.key)] {
                if std::fs::metadata(file).is_err() {
                    errors.push(format!("listeners[{i}].tls.{field}"), format!("cannot read `{file}`"));
                }
            }
        }
    }
    if let Some(admin) = &spec.admin {
        match admin.address.parse::<SocketAddr>() {
            Ok(a) => {
                if !a.ip().is_loopback() && admin.token_env.is_none() {
                    errors.push_err(
                        ConfigError::new("admin.token_env", format!("is required because the admin address {a} is not loopback"))
                            .with_hint("name an environment variable holding a long random token"),
                    );
                }
                if seen.contains(&a) {
                    errors.push("admin.address", format!("{a} is also a traffic listener"));
                }
            }
            Err(_) => errors.push("admin.address", format!("`{}` is not ip:port", admin.address)),
        }
        if admin.keep_revisions == 0 {
            errors.push("admin.keep_revisions", "must be at least 1");
        }
    }
    if spec.server.graceful_shutdown_timeout.0.subsec_nanos() != 0 || spec.server.graceful_shutdown_timeout.0.is_zero() {
        errors.push("server.graceful_shutdown_timeout", "must be a whole number of seconds, at least 1s");
    }
    for (field, d) in
        [("client_header_timeout", spec.server.client_header_timeout), ("client_body_timeout", spec.server.client_body_timeout)]
    {
        if d.0 < std::time::Duration::from_millis(100) {
            errors.push(format!("server.{field}"), "must be at least 100ms");
        }
    }
    if spec.server.max_request_body.0 == 0 {
        errors.push("server.max_request_body", "must be at least 1B (bodies are refused by resource methods, not here)");
    }
    if spec.access_log.buffer_size.0 < 512 || spec.access_log.buffer_size.0 > 64 << 20 {
        errors.push("access_log.buffer_size", "must be between 512B and 64MiB");
    }
    let flush = spec.access_log.flush_interval.0;
    if flush < Duration::from_millis(1) || flush > Duration::from_secs(60) {
        errors.push("access_log.flush_interval", "must be between 1ms and 60s");
    }
    crate::cache::compile::check_storage(&spec.cache, errors);
    if spec.access_log.queue == 0 {
        errors.push("access_log.queue", "must be at least 1");
    }
}

fn compile_api(
    spec: &ApiSpec,
    path: &str,
    durable: &Durable,
    km_index: &HashMap<&str, KmRef<'_>>,
    throttling: &Throttling,
    errors: &mut Errors,
) -> Option<Api> {
    let before = errors.0.len();
    if spec.name.is_empty() || !spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        errors.push(format!("{path}.name"), format!("`{}` must be non-empty and use letters, digits, - _ . only", spec.name));
    }
    let context = compile_api_route(spec, path, errors);
    let lifecycle = compile_lifecycle(spec, path, errors);
    let cors = spec.cors.as_ref().and_then(|c| compile_cors(c, path, errors));

    let endpoint = spec.endpoint.as_ref().and_then(|e| compile_endpoint(e, &format!("{path}.endpoint"), durable, errors));
    let auth = spec.auth.as_ref().map(|a| compile_api_auth(a, path, km_index, errors));
    let throttle = compile_api_throttle(spec, path, throttling, errors);

    let mut table = ResourceTable::default();
    let mut resources = Vec::with_capacity(spec.resources.len());
    if spec.resources.is_empty() {
        errors.push(format!("{path}.resources"), "an API needs at least one resource (use `/*` with methods [ANY] to forward everything)");
    }
    for (j, r) in spec.resources.iter().enumerate() {
        let rpath = format!("{path}.resources[{j}]");
        let mock = r.mock.as_ref().and_then(|m| compile_mock(m, &rpath, errors));
        if r.mock.is_none() && spec.endpoint.is_none() {
            errors.push_err(
                ConfigError::new(rpath.clone(), "has no mock and the API has no endpoint, so nothing could answer it")
                    .with_hint("add `endpoint:` to the API or `mock:` to the resource"),
            );
        }
        let Some((methods, var_names)) = compile_resource_route(&mut table, r, j as u32, &rpath, errors) else { continue };
        check_resource_auth(spec, r, &rpath, errors);
        resources.push(Resource {
            path: r.path.clone(),
            methods,
            var_names,
            mock,
            auth_type: r.auth.unwrap_or(AuthType::Any),
            scopes: r.scopes.clone(),
            throttle_tier: r.throttling.as_ref().and_then(|t| tier_ref(throttling, t, &format!("{rpath}.throttling"), errors)),
            lane: false,
            cache: crate::cache::compile::compile_policy(spec.cache.as_ref(), r.cache.as_ref(), path, &rpath, errors),
        });
    }

    if errors.0.len() > before {
        return None;
    }
    // The lane's flag: it serves mocks, and proxies only to plain-HTTP targets.
    let plain_targets = endpoint.as_ref().is_none_or(|e| e.targets.iter().all(|t| !t.tls));
    for r in &mut resources {
        r.lane = r.mock.is_some() || plain_targets;
    }
    let name: Arc<str> = Arc::from(spec.name.as_str());
    Some(Api {
        metrics: ApiMetrics::new(name.clone()),
        name,
        context: context.to_string(),
        version: spec.version.clone(),
        strip_context: spec.strip_context,
        lifecycle: lifecycle?,
        cors,
        auth,
        endpoint,
        throttle,
        threat: None,
        resources,
        table,
    })
}

#[cfg(test)]
mod tests;
