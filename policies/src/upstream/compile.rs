//! Endpoint spec → [`Endpoint`]: targets parsed and resolved, CA files read, health-check
//! settings checked, all at reload time and never per request.

use super::spec::EndpointSpec;
use super::{Endpoint, HealthCheck, Target, MAX_TARGETS};
use crate::error::Errors;
use crate::state::Durable;
use http::HeaderValue;
use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) fn compile_endpoint(spec: &EndpointSpec, path: &str, durable: &Durable, errors: &mut Errors) -> Option<Endpoint> {
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
