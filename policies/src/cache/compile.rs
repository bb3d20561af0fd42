//! `cache:` → [`CachePolicy`]: the API's block and the resource's merged key by key, checked
//! once per snapshot.

use super::spec::{CachePolicySpec, CacheSpec, RequestCacheControl};
use super::CachePolicy;
use crate::error::Errors;
use http::HeaderName;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Checks the top-level `cache:` (the storage).
pub fn check_storage(spec: &CacheSpec, errors: &mut Errors) {
    if spec.max_memory.0 < 64 * 1024 {
        errors.push("cache.max_memory", "must be at least 64KiB");
    }
    if spec.max_object_size.0 == 0 || spec.max_object_size.0 > spec.max_memory.0 {
        errors.push("cache.max_object_size", "must be more than 0 and at most cache.max_memory");
    }
    if spec.lock_timeout.0.is_zero() || spec.lock_timeout.0 > Duration::from_secs(60) {
        errors.push("cache.lock_timeout", "must be between 1ms and 60s");
    }
}

/// A resource's cache settings: `api` is the API's `cache:`, `resource` the resource's (each
/// key of which overrides the API's). `None`: the resource is not cached. Errors are reported
/// under `api_path.cache` or `resource_path.cache`.
pub fn compile_policy(
    api: Option<&CachePolicySpec>,
    resource: Option<&CachePolicySpec>,
    api_path: &str,
    resource_path: &str,
    errors: &mut Errors,
) -> Option<Arc<CachePolicy>> {
    if api.is_none() && resource.is_none() {
        return None;
    }
    let pick = |f: fn(&CachePolicySpec) -> bool| if resource.is_some_and(f) { resource_path } else { api_path };
    let (a, r) = (api.cloned().unwrap_or_default(), resource.cloned().unwrap_or_default());
    if !r.enabled.or(a.enabled).unwrap_or(true) {
        return None;
    }
    let ttl = r.ttl.or(a.ttl).map_or(DEFAULT_TTL, |t| t.0);
    if ttl.is_zero() {
        errors.push(format!("{}.cache.ttl", pick(|s| s.ttl.is_some())), "must be more than 0 (use `enabled: false` to turn caching off)");
    }
    let vary_path = format!("{}.cache.vary", pick(|s| s.vary.is_some()));
    let mut vary = Vec::new();
    for (i, name) in r.vary.as_ref().or(a.vary.as_ref()).into_iter().flatten().enumerate() {
        match HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(h) if crate::request::HOP_BY_HOP.contains(&h.as_str()) => errors
                .push(format!("{vary_path}[{i}]"), format!("`{name}` is a hop-by-hop field, never forwarded; a key cannot vary on it")),
            Ok(h) => vary.push(h),
            Err(_) => errors.push(format!("{vary_path}[{i}]"), format!("`{name}` is not a valid header field name")),
        }
    }
    vary.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    vary.dedup();
    let mut policy = CachePolicy {
        ttl,
        shared: r.shared.or(a.shared).unwrap_or(false),
        vary,
        stale_while_revalidate: r.stale_while_revalidate.or(a.stale_while_revalidate).map_or(Duration::ZERO, |d| d.0),
        stale_if_error: r.stale_if_error.or(a.stale_if_error).map_or(Duration::ZERO, |d| d.0),
        honor_request: r.request_cache_control.or(a.request_cache_control).unwrap_or(RequestCacheControl::Honor)
            == RequestCacheControl::Honor,
        fingerprint: 0,
    };
    policy.fingerprint = fingerprint(&policy);
    Some(Arc::new(policy))
}

fn fingerprint(p: &CachePolicy) -> u64 {
    // SipHash with fixed keys: the same settings give the same value in every process.
    let mut h = std::hash::DefaultHasher::new();
    p.ttl.hash(&mut h);
    p.shared.hash(&mut h);
    for v in &p.vary {
        v.as_str().hash(&mut h);
    }
    p.stale_while_revalidate.hash(&mut h);
    p.stale_if_error.hash(&mut h);
    p.honor_request.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn spec(yaml: &str) -> CachePolicySpec {
        crate::config::parse_value(yaml.as_bytes(), crate::config::Format::Yaml).unwrap()
    }

    #[test]
    fn the_resource_overrides_the_api_key_by_key() {
        let mut errors = Errors::default();
        let api = spec("{ ttl: 60s, shared: false, vary: [Accept-Language] }");
        let res = spec("{ ttl: 5m, shared: true, stale_while_revalidate: 30s }");
        let p = compile_policy(Some(&api), Some(&res), "apis[0]", "apis[0].resources[0]", &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(p.ttl, Duration::from_secs(300));
        assert!(p.shared && p.honor_request);
        assert_eq!(p.vary, vec![HeaderName::from_static("accept-language")]);
        assert_eq!(p.stale_while_revalidate, Duration::from_secs(30));
        let only_api = compile_policy(Some(&api), None, "apis[0]", "apis[0].resources[1]", &mut errors).unwrap();
        assert_eq!(only_api.ttl, Duration::from_secs(60));
        assert_ne!(only_api.fingerprint, p.fingerprint);
        let again = compile_policy(Some(&api), None, "apis[0]", "apis[0].resources[1]", &mut errors).unwrap();
        assert_eq!(again.fingerprint, only_api.fingerprint, "the same settings, the same fingerprint");
        let off = spec("{ enabled: false }");
        assert!(compile_policy(Some(&api), Some(&off), "apis[0]", "apis[0].resources[2]", &mut errors).is_none());
        assert!(compile_policy(None, None, "apis[0]", "apis[0].resources[2]", &mut errors).is_none());
        let defaults = compile_policy(None, Some(&CachePolicySpec::default()), "a", "r", &mut errors).unwrap();
        assert_eq!((defaults.ttl, defaults.shared, defaults.stale_if_error), (DEFAULT_TTL, false, Duration::ZERO));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let mut errors = Errors::default();
        let api = spec("{ vary: [accept, 'bad name', connection] }");
        let res = CachePolicySpec { ttl: Some(HumanDuration(Duration::ZERO)), ..CachePolicySpec::default() };
        compile_policy(Some(&api), Some(&res), "apis[1]", "apis[1].resources[0]", &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["apis[1].resources[0].cache.ttl", "apis[1].cache.vary[1]", "apis[1].cache.vary[2]"]);
        let mut errors = Errors::default();
        check_storage(
            &crate::config::parse_value(b"{ max_memory: 1KiB, max_object_size: 2KiB, lock_timeout: 0s }", crate::config::Format::Yaml)
                .unwrap(),
            &mut errors,
        );
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["cache.max_memory", "cache.max_object_size", "cache.lock_timeout"]);
    }
}
