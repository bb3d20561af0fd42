//! Spec → [`Snapshot`]. Walks the whole spec and collects *every* error with its field path,
//! so one `gateway validate` run shows everything to fix. Expensive work happens here and
//! never on the request path: parsing patterns, building the route table, resolving target
//! addresses, reading CA files, encoding mock responses, resolving metric label sets.

use crate::config::{ApiSpec, EndpointSpec, GatewaySpec, LifecycleState};
use crate::cors::Cors;
use crate::error::{ConfigError, Errors};
use crate::lifecycle::Lifecycle;
use crate::metrics::ApiMetrics;
use crate::mock::Mock;
use crate::route::table::ParsedPattern;
use crate::route::{normalize, MethodSet, ResourceTable, RouteTable};
use crate::snapshot::{Api, ProcessSettings, Resource, Snapshot};
use crate::state::Durable;
use crate::upstream::{Endpoint, HealthCheck, Target, MAX_TARGETS};
use http::HeaderValue;
use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Compiles a parsed document. `durable` supplies state that survives reloads.
pub fn compile(spec: &GatewaySpec, durable: &Durable) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors = Errors::default();
    check_process(spec, &mut errors);

    let mut routes = RouteTable::default();
    let mut apis = Vec::with_capacity(spec.apis.len());
    let mut names = HashSet::new();
    for (i, api_spec) in spec.apis.iter().enumerate() {
        let path = format!("apis[{i}]");
        if !names.insert(api_spec.name.as_str()) {
            errors.push(format!("{path}.name"), format!("`{}` is used by another API; names must be unique", api_spec.name));
        }
        if let Some(api) = compile_api(api_spec, &path, durable, &mut errors) {
            if let Err(e) = routes.insert(&api.context, &api.version, api_spec.default_version, apis.len() as u32) {
                errors.push(format!("{path}.context"), e);
            }
            apis.push(api);
        }
    }

    if !errors.is_empty() {
        return Err(errors.0);
    }
    Ok(Snapshot {
        revision: 0,
        process: ProcessSettings {
            server: spec.server.clone(),
            listeners: spec.listeners.clone(),
            admin: spec.admin.clone(),
            access_log: spec.access_log.clone(),
        },
        apis,
        routes,
        unrouted_metrics: ApiMetrics::new(Arc::from("-")),
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
    if spec.access_log.buffer_size.0 < 512 || spec.access_log.buffer_size.0 > 64 << 20 {
        errors.push("access_log.buffer_size", "must be between 512B and 64MiB");
    }
    if spec.access_log.queue == 0 {
        errors.push("access_log.queue", "must be at least 1");
    }
}

fn compile_api(spec: &ApiSpec, path: &str, durable: &Durable, errors: &mut Errors) -> Option<Api> {
    let before = errors.0.len();
    if spec.name.is_empty() || !spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        errors.push(format!("{path}.name"), format!("`{}` must be non-empty and use letters, digits, - _ . only", spec.name));
    }
    let context = spec.context.trim_end_matches('/');
    match normalize(context) {
        Ok(n) if n == context && context.len() > 1 && !context.contains(['%', '{', '}', '*']) => {}
        _ => errors.push(
            format!("{path}.context"),
            format!("`{}` must be an absolute path like /orders, without dot segments, escapes, templates or //", spec.context),
        ),
    }
    if spec.version.is_empty() || spec.version.contains(['/', '%', '?', '#']) {
        errors.push(format!("{path}.version"), format!("`{}` must be one non-empty path segment", spec.version));
    }

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

    let cors = spec.cors.as_ref().and_then(|c| match Cors::compile(c) {
        Ok(c) => Some(c),
        Err(errs) => {
            for (f, m) in errs {
                errors.push(format!("{path}.cors.{f}"), m);
            }
            None
        }
    });

    let endpoint = spec.endpoint.as_ref().and_then(|e| compile_endpoint(e, &format!("{path}.endpoint"), durable, errors));

    let mut table = ResourceTable::default();
    let mut resources = Vec::with_capacity(spec.resources.len());
    if spec.resources.is_empty() {
        errors.push(format!("{path}.resources"), "an API needs at least one resource (use `/*` with methods [ANY] to forward everything)");
    }
    for (j, r) in spec.resources.iter().enumerate() {
        let rpath = format!("{path}.resources[{j}]");
        let mut methods = MethodSet::EMPTY;
        if r.methods.is_empty() {
            errors.push(format!("{rpath}.methods"), "list at least one verb, or ANY");
        }
        for (k, m) in r.methods.iter().enumerate() {
            match MethodSet::parse(m) {
                Some(s) => methods = methods.union(s),
                None => errors.push(format!("{rpath}.methods[{k}]"), format!("`{m}` is not an HTTP method (GET, POST, ... or ANY)")),
            }
        }
        // A resource that serves GET also serves HEAD, as HTTP expects (RFC 9110 §9.3.2).
        if methods.contains(MethodSet::parse("GET").unwrap_or_default()) {
            methods = methods.union(MethodSet::parse("HEAD").unwrap_or_default());
        }
        let mock = r.mock.as_ref().and_then(|m| match Mock::compile(m) {
            Ok(m) => Some(m),
            Err(errs) => {
                for (f, msg) in errs {
                    errors.push(format!("{rpath}.mock.{f}"), msg);
                }
                None
            }
        });
        if r.mock.is_none() && spec.endpoint.is_none() {
            errors.push_err(
                ConfigError::new(rpath.clone(), "has no mock and the API has no endpoint, so nothing could answer it")
                    .with_hint("add `endpoint:` to the API or `mock:` to the resource"),
            );
        }
        match ParsedPattern::parse(&r.path) {
            Ok(p) => {
                if let Err(e) = table.insert(&p, methods, j as u32) {
                    errors.push(format!("{rpath}.path"), e);
                }
                resources.push(Resource { path: r.path.clone(), methods, var_names: p.vars, mock });
            }
            Err(e) => errors.push(format!("{rpath}.path"), format!("`{}`: {e}", r.path)),
        }
    }

    if errors.0.len() > before {
        return None;
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
        endpoint,
        resources,
        table,
    })
}

fn compile_endpoint(spec: &EndpointSpec, path: &str, durable: &Durable, errors: &mut Errors) -> Option<Endpoint> {
    let before = errors.0.len();
    if spec.targets.is_empty() {
        errors.push(format!("{path}.targets"), "list at least one target");
    }
    if spec.retries as usize >= MAX_TARGETS {
        errors.push(format!("{path}.retries"), format!("must be below {MAX_TARGETS}"));
    }
    if spec.targets.len() > MAX_TARGETS {
        errors.push(format!("{path}.targets"), format!("at most {MAX_TARGETS} targets per endpoint"));
    }
    for (field, d) in [
        ("connect_timeout", spec.connect_timeout),
        ("read_timeout", spec.read_timeout),
        ("write_timeout", spec.write_timeout),
        ("idle_timeout", spec.idle_timeout),
    ] {
        if d.0.is_zero() {
            errors.push(format!("{path}.{field}"), "must be greater than 0");
        }
    }
    let ca_pem: Option<Arc<[u8]>> = match &spec.tls.ca_file {
        None => None,
        Some(file) => match std::fs::read(file) {
            Ok(bytes) if bytes.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(Arc::from(bytes)),
            Ok(_) => {
                errors.push(format!("{path}.tls.ca_file"), format!("`{file}` holds no PEM certificate"));
                None
            }
            Err(e) => {
                errors.push(format!("{path}.tls.ca_file"), format!("cannot read `{file}`: {e}"));
                None
            }
        },
    };
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in spec.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{i}]");
        if t.weight == 0 || t.weight > 1000 {
            errors.push(format!("{tpath}.weight"), "must be between 1 and 1000");
        }
        if !seen.insert(t.url.as_str()) {
            errors.push(format!("{tpath}.url"), format!("`{}` is listed twice", t.url));
        }
        match parse_target(&t.url, spec, ca_pem.clone(), durable) {
            Ok(target) => targets.push((target, t.weight.clamp(1, 1000))),
            Err(e) => errors.push(format!("{tpath}.url"), e),
        }
    }
    let health_check = spec.health_check.as_ref().map(|h| {
        if !h.path.starts_with('/') {
            errors.push(format!("{path}.health_check.path"), "must start with '/'");
        }
        if h.interval.0 < Duration::from_millis(100) {
            errors.push(format!("{path}.health_check.interval"), "must be at least 100ms");
        }
        if h.timeout.0.is_zero() {
            errors.push(format!("{path}.health_check.timeout"), "must be greater than 0");
        }
        if h.unhealthy_after == 0 || h.healthy_after == 0 {
            errors.push(format!("{path}.health_check"), "unhealthy_after and healthy_after must be at least 1");
        }
        HealthCheck {
            path: h.path.clone(),
            interval: h.interval.0,
            timeout: h.timeout.0,
            unhealthy_after: h.unhealthy_after,
            healthy_after: h.healthy_after,
        }
    });
    if errors.0.len() > before {
        return None;
    }
    Some(Endpoint::new(
        spec.strategy,
        targets,
        [spec.connect_timeout.0, spec.read_timeout.0, spec.write_timeout.0, spec.idle_timeout.0],
        spec.retries,
        spec.preserve_host,
        health_check,
        spec.passive_health.consecutive_failures,
        spec.passive_health.eject_for.0.as_millis() as u64,
    ))
}

/// `http://host:port/base` → a resolved [`Target`]. Names are resolved here, at reload time,
/// never per request.
fn parse_target(url: &str, spec: &EndpointSpec, ca_pem: Option<Arc<[u8]>>, durable: &Durable) -> Result<Target, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{url}`: the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{url}`: credentials in target URLs are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}`: a target URL cannot have a query"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("`{url}`: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("`{url}`: {host} resolves to no address"))?;
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Target {
        url: url.to_string(),
        addr,
        tls,
        sni: spec.tls.sni.clone().unwrap_or_else(|| host.to_string()),
        verify: spec.tls.verify,
        ca_pem,
        authority: HeaderValue::from_str(authority.as_str()).map_err(|_| format!("`{url}`: bad host"))?,
        base_path,
        health: durable.target_health(url),
        data_plane: OnceLock::new(),
    })
}

#[cfg(test)]
mod tests;
