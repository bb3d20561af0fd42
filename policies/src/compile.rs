//! Spec → [`Snapshot`]. Walks the whole spec and collects *every* error with its field path,
//! so one `gateway validate` run shows everything to fix. Expensive work happens here and
//! never on the request path: parsing patterns, building the route table, resolving target
//! addresses, reading CA files, encoding mock responses, resolving metric label sets.

use crate::authn::introspect::Introspector;
use crate::authn::jwt::{parse_algorithm, JwtVerifier, VerifyKey};
use crate::authn::{ApiAuth, Application, Applications, KeyManager};
use crate::config::{ApiSpec, AuthType, EndpointSpec, GatewaySpec, IntrospectionSpec, JwtKeyManagerSpec, KeyManagerSpec, LifecycleState};
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
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Compiles a parsed document. `durable` supplies state that survives reloads.
pub fn compile(spec: &GatewaySpec, durable: &Durable) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors = Errors::default();
    let mut warnings = Errors::default();
    check_process(spec, &mut errors);

    let (key_managers, introspectors) = compile_key_managers(spec, durable, &mut errors, &mut warnings);
    let backend_jwt = compile_backend_jwt(spec, durable, &mut errors, &mut warnings);
    let applications = compile_applications(spec, &mut errors);
    // Name → where the compiled key manager is. JWT key managers and introspectors are
    // numbered separately, in config order.
    let mut km_index: HashMap<&str, KmRef<'_>> = HashMap::new();
    let (mut jwt_n, mut intro_n) = (0u32, 0u32);
    for k in &spec.key_managers {
        let r = match k {
            KeyManagerSpec::Jwt(j) => {
                jwt_n += 1;
                KmRef::Jwt(jwt_n - 1, j.issuer.as_str())
            }
            KeyManagerSpec::Introspection(_) => {
                intro_n += 1;
                KmRef::Introspection(intro_n - 1)
            }
        };
        km_index.insert(k.name(), r);
    }

    let mut routes = RouteTable::default();
    let mut apis = Vec::with_capacity(spec.apis.len());
    let mut names = HashSet::new();
    for (i, api_spec) in spec.apis.iter().enumerate() {
        let path = format!("apis[{i}]");
        if !names.insert(api_spec.name.as_str()) {
            errors.push(format!("{path}.name"), format!("`{}` is used by another API; names must be unique", api_spec.name));
        }
        if let Some(api) = compile_api(api_spec, &path, durable, &km_index, &mut errors) {
            if let Err(e) = routes.insert(&api.context, &api.version, api_spec.default_version, apis.len() as u32) {
                errors.push(format!("{path}.context"), e);
            }
            apis.push(api);
        }
    }

    for (a, app) in spec.applications.iter().enumerate() {
        for (j, sub) in app.subscriptions.iter().enumerate() {
            if !names.contains(sub.api.as_str()) {
                errors.push(format!("applications[{a}].subscriptions[{j}].api"), format!("no API is named `{}`", sub.api));
            }
        }
    }
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
        },
        apis,
        routes,
        unrouted_metrics: ApiMetrics::new(Arc::from("-")),
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
        if d.0 < Duration::from_millis(100) {
            errors.push(format!("server.{field}"), "must be at least 100ms");
        }
    }
    if spec.server.max_request_body.0 == 0 {
        errors.push("server.max_request_body", "must be at least 1B (bodies are refused by resource methods, not here)");
    }
    if spec.access_log.buffer_size.0 < 512 || spec.access_log.buffer_size.0 > 64 << 20 {
        errors.push("access_log.buffer_size", "must be between 512B and 64MiB");
    }
    if spec.access_log.queue == 0 {
        errors.push("access_log.queue", "must be at least 1");
    }
}

fn compile_api(spec: &ApiSpec, path: &str, durable: &Durable, km_index: &HashMap<&str, KmRef<'_>>, errors: &mut Errors) -> Option<Api> {
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

    let auth = spec.auth.as_ref().map(|a| {
        let (mut kms, mut intros) = (Vec::new(), Vec::new());
        for (k, name) in a.key_managers.iter().enumerate() {
            match km_index.get(name.as_str()) {
                Some(KmRef::Jwt(i, _)) => kms.push(*i),
                Some(KmRef::Introspection(i)) => intros.push(*i),
                None => errors.push(format!("{path}.auth.key_managers[{k}]"), format!("no key manager is named `{name}`")),
            }
        }
        if intros.len() > 1 {
            errors.push(
                format!("{path}.auth.key_managers"),
                "at most one introspection key manager per API (an opaque token names no issuer to choose by)",
            );
        }
        let (mut header, mut query) = (None, None);
        if let Some(src) = &a.api_keys {
            if src.header.is_none() && src.query.is_none() {
                errors.push(format!("{path}.auth.api_keys"), "name a `header` or a `query` parameter");
            }
            if let Some(h) = &src.header {
                match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(n) if n != http::header::AUTHORIZATION => header = Some(n),
                    _ => errors.push(format!("{path}.auth.api_keys.header"), format!("`{h}` is not a usable header name")),
                }
            }
            if let Some(q) = &src.query {
                if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                    errors.push(format!("{path}.auth.api_keys.query"), format!("`{q}` is not a usable query parameter name"));
                }
            }
            query = src.query.clone();
        }
        let mut issuers = HashSet::new();
        for (k, name) in a.key_managers.iter().enumerate() {
            if let Some(KmRef::Jwt(_, iss)) = km_index.get(name.as_str()) {
                if !issuers.insert(iss) {
                    errors.push(
                        format!("{path}.auth.key_managers[{k}]"),
                        format!("another key manager of this API has the issuer `{iss}`; the issuer must pick one"),
                    );
                }
            }
        }
        if kms.is_empty() && intros.is_empty() && a.api_keys.is_none() && a.key_managers.is_empty() {
            errors.push(format!("{path}.auth"), "accepts no credential: list key_managers or api_keys");
        }
        ApiAuth {
            key_managers: kms,
            introspectors: intros,
            api_key_header: header,
            api_key_query: query,
            require_subscription: a.require_subscription,
            forward_credentials: a.forward_credentials,
            backend_jwt: a.backend_jwt,
        }
    });

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
                if spec.auth.is_none() && r.auth.is_some() {
                    errors.push(format!("{rpath}.auth"), "needs `auth:` on the API");
                }
                if spec.auth.is_none() && !r.scopes.is_empty() {
                    errors.push(format!("{rpath}.scopes"), "needs `auth:` on the API");
                }
                if r.auth == Some(AuthType::None) && !r.scopes.is_empty() {
                    errors.push(format!("{rpath}.scopes"), "cannot be checked on an `auth: none` resource");
                }
                resources.push(Resource {
                    path: r.path.clone(),
                    methods,
                    var_names: p.vars,
                    mock,
                    auth_type: r.auth.unwrap_or(AuthType::Any),
                    scopes: r.scopes.clone(),
                    lane: false,
                });
            }
            Err(e) => errors.push(format!("{rpath}.path"), format!("`{}`: {e}", r.path)),
        }
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

/// Where a named key manager is compiled to.
enum KmRef<'a> {
    Jwt(u32, &'a str),
    Introspection(u32),
}

fn compile_key_managers(
    spec: &GatewaySpec,
    durable: &Durable,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> (Vec<KeyManager>, Vec<Introspector>) {
    let mut out = Vec::new();
    let mut intros = Vec::new();
    let mut names = HashSet::new();
    for (i, km) in spec.key_managers.iter().enumerate() {
        let path = format!("key_managers[{i}]");
        if !names.insert(km.name()) {
            errors.push(format!("{path}.name"), format!("`{}` is used by another key manager", km.name()));
        }
        match km {
            KeyManagerSpec::Jwt(j) => {
                if let Some(km) = compile_jwt(j, &path, durable, errors, warnings) {
                    out.push(km);
                }
            }
            KeyManagerSpec::Introspection(x) => {
                if let Some(intro) = compile_introspection(x, &path, durable, errors) {
                    intros.push(intro);
                }
            }
        }
    }
    (out, intros)
}

fn compile_introspection(spec: &IntrospectionSpec, path: &str, durable: &Durable, errors: &mut Errors) -> Option<Introspector> {
    let before = errors.0.len();
    let endpoint =
        spec.endpoint.parse::<http::Uri>().ok().filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if endpoint.is_none() {
        errors.push(format!("{path}.endpoint"), format!("`{}` is not an http(s) URL", spec.endpoint));
    }
    let secret = match std::env::var(&spec.client_secret_env) {
        Ok(s) if !s.is_empty() => Some(s),
        _ => {
            errors.push(format!("{path}.client_secret_env"), format!("the environment variable {} is not set", spec.client_secret_env));
            None
        }
    };
    if spec.timeout.0.is_zero() {
        errors.push(format!("{path}.timeout"), "must be greater than 0");
    }
    if errors.0.len() > before {
        return None;
    }
    // RFC 6749 §2.3.1: id and secret are form-encoded, then joined and base64-encoded.
    let form = |v: &str| -> String {
        v.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", form(&spec.client_id), form(secret.as_deref()?)));
    let authorization = HeaderValue::from_str(&format!("Basic {basic}")).ok()?;
    let mut fp = Sha256::new();
    fp.update(format!("{spec:?}"));
    fp.update(secret.as_deref()?.as_bytes());
    let fp = hex::encode(fp.finalize());
    Some(Introspector::new(
        endpoint?,
        authorization,
        spec.timeout.0.as_millis() as u64,
        spec.cache_ttl.0.as_secs().max(1),
        spec.negative_cache_ttl.0.as_secs(),
        durable.token_cache(&format!("{fp}+"), 100_000),
        durable.token_cache(&format!("{fp}-"), 100_000),
        &spec.claims,
    ))
}

fn compile_jwt(spec: &JwtKeyManagerSpec, path: &str, durable: &Durable, errors: &mut Errors, warnings: &mut Errors) -> Option<KeyManager> {
    let before = errors.0.len();
    let mut allowed = Vec::new();
    for (k, a) in spec.algorithms.iter().enumerate() {
        match parse_algorithm(a) {
            Some(alg) => allowed.push(alg),
            None => errors.push(format!("{path}.algorithms[{k}]"), format!("`{a}` is not a supported JWS algorithm")),
        }
    }
    if spec.algorithms.is_empty() {
        errors.push(format!("{path}.algorithms"), "list the accepted algorithms, e.g. [RS256, ES256]");
    }
    if spec.issuer.is_empty() {
        errors.push(format!("{path}.issuer"), "must not be empty");
    }
    // Everything that decides a verification goes into the cache fingerprint.
    let mut fingerprint = Sha256::new();
    // The whole spec (names of secrets, never their values) plus the key material below.
    fingerprint.update(format!("{spec:?}"));
    let mut keys = Vec::new();
    for (k, key) in spec.keys.iter().enumerate() {
        let kpath = format!("{path}.keys[{k}]");
        if let Some(vk) = compile_static_key(key, &kpath, &allowed, &mut fingerprint, errors, warnings) {
            keys.push(vk);
        }
    }
    if let Some(file) = &spec.jwks_file {
        match std::fs::read(file).map_err(|e| e.to_string()).and_then(|b| {
            fingerprint.update(&b);
            serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&b).map_err(|e| e.to_string())
        }) {
            Ok(set) => keys.extend(crate::authn::jwks::keys_from_set(&set, &allowed)),
            Err(e) => errors.push(format!("{path}.jwks_file"), format!("cannot load `{file}`: {e}")),
        }
    }
    if spec.jwks_uri.is_some() && spec.discovery.is_some() {
        errors.push(format!("{path}.discovery"), "give jwks_uri or discovery, not both");
    }
    let remote_uri = spec.jwks_uri.as_ref().map(|u| ("jwks_uri", u)).or(spec.discovery.as_ref().map(|u| ("discovery", u)));
    let remote = match remote_uri {
        None => None,
        Some((field, uri)) => {
            let ok = uri.parse::<http::Uri>().ok().filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if ok.is_none() {
                errors.push(format!("{path}.{field}"), format!("`{uri}` is not an http(s) URL"));
            }
            if spec.jwks_refresh.0 < Duration::from_secs(1) {
                errors.push(format!("{path}.jwks_refresh"), "must be at least 1s");
            }
            fingerprint.update(uri.as_bytes());
            Some(crate::authn::RemoteJwks {
                source: durable.jwks_source(uri, (field == "discovery").then_some(spec.issuer.as_str()), &allowed),
                refresh_ms: spec.jwks_refresh.0.as_millis() as u64,
                cooldown_ms: spec.jwks_refetch_cooldown.0.as_millis() as u64,
            })
        }
    };
    if keys.is_empty() && remote.is_none() && errors.0.len() == before {
        errors.push(format!("{path}.keys"), "no usable key: add keys, a jwks_file, a jwks_uri or discovery");
    }
    if spec.max_header_size.0 < 128 || spec.max_header_size.0 > crate::authn::jwt::MAX_HEADER as u64 {
        errors.push(format!("{path}.max_header_size"), "must be between 128B and 2KiB");
    }
    if spec.max_token_size.0 < 256 || spec.max_token_size.0 > 64 * 1024 {
        errors.push(format!("{path}.max_token_size"), "must be between 256B and 64KiB");
    }
    if errors.0.len() > before {
        return None;
    }
    let cache = durable.token_cache(&hex::encode(fingerprint.finalize()), 100_000);
    let verifier = JwtVerifier::new(
        spec.issuer.clone(),
        spec.audiences.clone(),
        allowed,
        keys,
        spec.clock_skew.0.as_secs(),
        spec.max_token_size.0 as usize,
        spec.claims.application.clone(),
        spec.claims.user.clone(),
        spec.claims.scopes.clone(),
    );
    let verifier = verifier.with_max_header(spec.max_header_size.0 as usize);
    let verifier = match &remote {
        Some(r) => verifier.with_remote(r.source.clone(), r.cooldown_ms),
        None => verifier,
    };
    Some(KeyManager { name: Arc::from(spec.name.as_str()), verifier, cache, cache_ttl: spec.cache_ttl.0.as_secs().max(1), remote })
}

/// One static key. Its algorithms are the ones its type can serve (an HMAC secret: HS*; a
/// PEM key: read from the key itself), narrowed to `alg` when pinned and to the key
/// manager's allow list. A key left with no algorithm is accepted but inert, with a warning:
/// the allow list is the authority on what a token may use.
fn compile_static_key(
    key: &crate::config::StaticKeySpec,
    kpath: &str,
    allowed: &[Algorithm],
    fingerprint: &mut Sha256,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<VerifyKey> {
    let pinned = match &key.alg {
        None => None,
        Some(a) => match parse_algorithm(a) {
            Some(alg) => Some(alg),
            None => {
                errors.push(format!("{kpath}.alg"), format!("`{a}` is not a supported JWS algorithm"));
                return None;
            }
        },
    };
    let sources = [key.secret_env.is_some(), key.secret_file.is_some(), key.pem_file.is_some()].iter().filter(|b| **b).count();
    if sources != 1 {
        errors.push(kpath, "give exactly one of secret_env, secret_file, pem_file");
        return None;
    }
    let material: Result<Vec<u8>, String> = if let Some(var) = &key.secret_env {
        std::env::var(var).map(String::into_bytes).map_err(|_| format!("the environment variable {var} is not set"))
    } else if let Some(f) = key.secret_file.as_ref().or(key.pem_file.as_ref()) {
        std::fs::read(f).map_err(|e| format!("cannot read `{f}`: {e}"))
    } else {
        Err("no key material".into())
    };
    let material = material.map_err(|e| errors.push(kpath, e)).ok()?;
    const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    let (family, kind): (&[Algorithm], _) = if key.pem_file.is_none() {
        if material.len() < 32 {
            errors.push(kpath, "an HMAC secret must be at least 32 bytes");
            return None;
        }
        (HMAC, None)
    } else {
        if material.windows(11).any(|w| w == b"PRIVATE KEY") {
            errors.push(format!("{kpath}.pem_file"), "holds a private key; give the public key (a gateway never needs the signing key)");
            return None;
        }
        let kind = crate::authn::keys::parse_pem(&material)
            .and_then(|pem| crate::authn::keys::key_kind(&pem))
            .map_err(|e| errors.push(format!("{kpath}.pem_file"), e))
            .ok()?;
        (kind.algorithms(), Some(kind))
    };
    let what = kind.map_or("an HMAC secret", |k| k.describe());
    if let Some(p) = pinned {
        if !family.contains(&p) {
            let fix = if kind.is_none() {
                "HMAC secrets verify HS256, HS384 or HS512"
            } else {
                "give the algorithm of this key, or leave `alg` out"
            };
            errors.push_err(ConfigError::new(format!("{kpath}.alg"), format!("{p:?} cannot be used with {what}")).with_hint(fix));
            return None;
        }
    }
    let algorithms: Vec<Algorithm> = match pinned {
        Some(p) => vec![p],
        None => family.to_vec(),
    };
    let usable: Vec<Algorithm> = algorithms.iter().copied().filter(|a| allowed.contains(a)).collect();
    fingerprint.update(&material);
    let decoded = match kind {
        None => Ok(DecodingKey::from_secret(&material)),
        Some(crate::authn::keys::KeyKind::EcP256 | crate::authn::keys::KeyKind::EcP384) => DecodingKey::from_ec_pem(&material),
        Some(crate::authn::keys::KeyKind::Ed25519) => DecodingKey::from_ed_pem(&material),
        Some(crate::authn::keys::KeyKind::Rsa) => DecodingKey::from_rsa_pem(&material),
    };
    let decoded = decoded.map_err(|e| errors.push(format!("{kpath}.pem_file"), format!("not a usable public key: {e}"))).ok()?;
    if usable.is_empty() {
        let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
        warnings.push_err(
            ConfigError::new(
                kpath,
                match names.len() {
                    1 => format!("{what} for {}, which `algorithms` does not allow: tokens signed with it are rejected", names[0]),
                    _ => format!("{what} for {}, none of which `algorithms` allows: tokens signed with it are rejected", names.join("/")),
                },
            )
            .with_hint(format!("add {} to algorithms to accept them, or remove the key", names[0])),
        );
        return None;
    }
    VerifyKey::new(key.kid.clone(), usable, decoded)
}

/// The key that signs backend JWTs: the top-level `backend_jwt:` section, or its defaults
/// when an API asks for a backend JWT and the document has none. Without a configured key the
/// process's generated ES256 key signs, and a warning says so.
fn compile_backend_jwt(
    spec: &GatewaySpec,
    durable: &Durable,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<crate::authn::backend_jwt::BackendJwt> {
    use crate::authn::keys::{self, KeyKind};
    let defaults;
    let b = match &spec.backend_jwt {
        Some(b) => b,
        None if spec.apis.iter().any(|a| a.auth.as_ref().is_some_and(|x| x.backend_jwt)) => {
            defaults = crate::config::BackendJwtSpec::default();
            &defaults
        }
        None => return None,
    };
    let before = errors.0.len();
    let header = HeaderName::from_bytes(b.header.as_bytes())
        .map_err(|_| errors.push("backend_jwt.header", format!("`{}` is not a header name", b.header)))
        .ok();
    let pinned = match &b.alg {
        None => None,
        Some(a) => match parse_algorithm(a) {
            Some(alg) => Some(alg),
            None => {
                errors.push("backend_jwt.alg", format!("`{a}` is not a supported JWS algorithm"));
                return None;
            }
        },
    };
    let hmac = |a: Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    // (algorithm, signing key, public JWK).
    let signer: Option<(Algorithm, jsonwebtoken::EncodingKey, Option<serde_json::Value>)> = match (&b.secret_env, &b.pem_file) {
        (Some(_), Some(_)) => {
            errors.push("backend_jwt", "give secret_env or pem_file, not both");
            None
        }
        (Some(var), None) => {
            let alg = pinned.unwrap_or(Algorithm::HS256);
            match std::env::var(var) {
                _ if !hmac(alg) => {
                    errors.push(
                        "backend_jwt.alg",
                        format!("{alg:?} needs a private key in pem_file; secret_env is for HS256, HS384 or HS512"),
                    );
                    None
                }
                Ok(s) if s.len() >= 32 => Some((alg, jsonwebtoken::EncodingKey::from_secret(s.as_bytes()), None)),
                Ok(_) => {
                    errors.push("backend_jwt.secret_env", "an HMAC secret must be at least 32 bytes");
                    None
                }
                Err(_) => {
                    errors.push("backend_jwt.secret_env", format!("the environment variable {var} is not set"));
                    None
                }
            }
        }
        (None, Some(file)) => {
            let loaded = std::fs::read(file).map_err(|e| format!("cannot read `{file}`: {e}")).and_then(|pem_bytes| {
                let pem = keys::parse_pem(&pem_bytes)?;
                let kind = keys::key_kind(&pem)?;
                let alg = pinned.unwrap_or(kind.algorithms()[0]);
                if !kind.algorithms().contains(&alg) {
                    return Err(format!("{} cannot sign {alg:?}", kind.describe()));
                }
                let key = match kind {
                    KeyKind::EcP256 | KeyKind::EcP384 => jsonwebtoken::EncodingKey::from_ec_pem(&pem_bytes),
                    KeyKind::Ed25519 => jsonwebtoken::EncodingKey::from_ed_pem(&pem_bytes),
                    KeyKind::Rsa => jsonwebtoken::EncodingKey::from_rsa_pem(&pem_bytes),
                }
                .map_err(|e| format!("not a usable private key: {e}"))?;
                let jwk = keys::public_jwk(alg, &pem.der).map_err(|e| format!("not a usable private key: {e}"))?;
                Ok((alg, key, Some(jwk)))
            });
            loaded.map_err(|e| errors.push("backend_jwt.pem_file", e)).ok()
        }
        (None, None) => match pinned {
            Some(a) if a != Algorithm::ES256 => {
                errors.push("backend_jwt.alg", format!("a generated key is ES256; for {a:?} configure pem_file or secret_env"));
                None
            }
            _ => match durable
                .generated_signing_key()
                .and_then(|der| Ok((jsonwebtoken::EncodingKey::from_ec_der(&der), keys::public_jwk(Algorithm::ES256, &der)?)))
            {
                Ok((key, jwk)) => {
                    warnings.push_err(
                        ConfigError::new(
                            "backend_jwt",
                            format!(
                                "no signing key is configured: backend JWTs are signed with an ES256 key generated at start-up (kid {}), \
                                 published at the admin listener's /.well-known/jwks.json; each restart and each gateway node has its own",
                                jwk["kid"].as_str().unwrap_or("?")
                            ),
                        )
                        .with_hint("configure backend_jwt.pem_file for a key that backends can pin"),
                    );
                    Some((Algorithm::ES256, key, Some(jwk)))
                }
                Err(e) => {
                    errors.push("backend_jwt", format!("cannot generate a signing key: {e}"));
                    None
                }
            },
        },
    };
    if b.ttl.0.as_secs() < 2 {
        errors.push("backend_jwt.ttl", "must be at least 2s");
    }
    if errors.0.len() > before {
        return None;
    }
    let (alg, key, jwk) = signer?;
    Some(crate::authn::backend_jwt::BackendJwt::new(header?, b.issuer.clone(), alg, key, jwk, b.ttl.0.as_secs(), b.claims.clone()))
}

fn compile_applications(spec: &GatewaySpec, errors: &mut Errors) -> Applications {
    let mut out = Applications::default();
    let mut ids = HashSet::new();
    for (i, app) in spec.applications.iter().enumerate() {
        let path = format!("applications[{i}]");
        if !ids.insert(app.id.as_str()) {
            errors.push(format!("{path}.id"), format!("`{}` is used by another application", app.id));
        }
        let idx = out.apps.len() as u32;
        for (j, c) in app.client_ids.iter().enumerate() {
            if out.by_client_id.insert(c.clone(), idx).is_some() {
                errors.push(format!("{path}.client_ids[{j}]"), format!("`{c}` belongs to another application too"));
            }
        }
        for (j, k) in app.api_keys.iter().enumerate() {
            match hex::decode(&k.sha256).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(d) => {
                    if out.by_key_digest.insert(d, idx).is_some() {
                        errors.push(format!("{path}.api_keys[{j}].sha256"), "this key belongs to another application too");
                    }
                }
                None => errors.push(format!("{path}.api_keys[{j}].sha256"), "must be 64 hex digits (the SHA-256 of the key)"),
            }
        }
        let mut domains = Vec::new();
        for (j, d) in app.allowed_domains.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            let host_ok = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            match d.strip_prefix("*.") {
                Some(rest) if host_ok(rest) => domains.push(format!(".{rest}")),
                None if host_ok(&d) => domains.push(d),
                _ => {
                    errors.push(format!("{path}.allowed_domains[{j}]"), format!("`{d}` is not a host name (app.example or *.app.example)"))
                }
            }
        }
        out.apps.push(Application {
            id: Arc::from(app.id.as_str()),
            blocked: app.blocked,
            allowed_domains: domains,
            subscriptions: app.subscriptions.iter().map(|s| (s.api.clone(), Arc::from(s.tier.as_str()))).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
