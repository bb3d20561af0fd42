//! `threat_protection` spec → [`ThreatPolicy`] per API: the gateway-wide block, with an API's
//! block overriding any part of it. Pattern sets are compiled once and shared by every API
//! that uses the same set.

use super::head::ThreatPolicy;
use super::regex::{RegexProtector, BUILT_IN};
use super::spec::{PatternsSpec, ScanTarget, ThreatMode, ThreatSpec};
use crate::error::Errors;
use std::collections::HashMap;
use std::sync::Arc;

const DEFAULT_URI: u64 = 8 * 1024;
const DEFAULT_HEADERS_SIZE: u64 = 16 * 1024;
const DEFAULT_HEADERS: u32 = 100;

/// Compiled pattern sets, by their (name, pattern) list.
#[derive(Default)]
pub struct PatternCache(HashMap<Vec<(String, String)>, Arc<RegexProtector>>);

/// The policy for one API. `gateway`: the top-level block (`None`: absent); `api`: the API's
/// (at `path`). `None` when neither exists: the API has no threat protection.
pub fn compile_threat(
    gateway: Option<&ThreatSpec>,
    api: Option<&ThreatSpec>,
    path: &str,
    cache: &mut PatternCache,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<ThreatPolicy> {
    if gateway.is_none() && api.is_none() {
        return None;
    }
    let pick = |f: &dyn Fn(&ThreatSpec) -> Option<u64>| api.and_then(f).or_else(|| gateway.and_then(f));
    let mode = api.and_then(|s| s.mode).or_else(|| gateway.and_then(|s| s.mode)).unwrap_or(ThreatMode::Enforce);
    let max_uri_length = pick(&|s| s.limits.as_ref()?.max_uri_length.map(|b| b.0)).unwrap_or(DEFAULT_URI);
    let max_header_size = pick(&|s| s.limits.as_ref()?.max_header_size.map(|b| b.0)).unwrap_or(DEFAULT_HEADERS_SIZE);
    let max_headers = pick(&|s| s.limits.as_ref()?.max_headers.map(u64::from)).unwrap_or(u64::from(DEFAULT_HEADERS));
    let where_ = if api.is_some_and(|s| s.limits.is_some()) {
        format!("{path}.threat_protection.limits")
    } else {
        "threat_protection.limits".into()
    };
    if max_uri_length < 64 {
        errors.push(format!("{where_}.max_uri_length"), "must be at least 64B");
    }
    if max_header_size < 256 {
        errors.push(format!("{where_}.max_header_size"), "must be at least 256B");
    }
    if max_headers == 0 {
        errors.push(format!("{where_}.max_headers"), "must be at least 1");
    }
    // The regex part: the API's patterns replace the gateway's, its `add` adds to them.
    fn regex_spec(s: Option<&ThreatSpec>) -> Option<&super::spec::RegexSpec> {
        s.and_then(|s| s.regex.as_ref())
    }
    let (patterns, at) = match (regex_spec(api).and_then(|r| r.patterns.as_ref()), regex_spec(gateway).and_then(|r| r.patterns.as_ref())) {
        (Some(p), _) => (Some(p), format!("{path}.threat_protection.regex.patterns")),
        (None, Some(p)) => (Some(p), "threat_protection.regex.patterns".into()),
        (None, None) => (None, String::new()),
    };
    let mut list: Vec<(String, String)> = match patterns {
        None => BUILT_IN.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect(),
        Some(PatternsSpec::Named(n)) if n == "default" => BUILT_IN.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect(),
        Some(PatternsSpec::Named(n)) if n == "none" => Vec::new(),
        Some(PatternsSpec::Named(n)) => {
            errors.push(at.clone(), format!("`{n}` is not `default`, `none` or a list of {{ name, pattern }}"));
            Vec::new()
        }
        Some(PatternsSpec::List(l)) => l.iter().map(|p| (p.name.clone(), p.pattern.clone())).collect(),
    };
    for s in [gateway, api].into_iter().flatten() {
        if let Some(r) = &s.regex {
            list.extend(r.add.iter().map(|p| (p.name.clone(), p.pattern.clone())));
        }
    }
    let scan = regex_spec(api).and_then(|r| r.scan.clone()).or_else(|| regex_spec(gateway).and_then(|r| r.scan.clone()));
    let scan = scan.unwrap_or_else(|| vec![ScanTarget::Path, ScanTarget::Query, ScanTarget::Headers, ScanTarget::Body]);
    if scan.contains(&ScanTarget::Body) && regex_spec(api).or(regex_spec(gateway)).is_some_and(|r| r.scan.is_some()) {
        warnings.push(format!("{path}.threat_protection.regex.scan"), "`body` is not scanned yet: path, query and headers are");
    }
    let regex = if list.is_empty() {
        None
    } else if let Some(p) = cache.0.get(&list) {
        Some(p.clone())
    } else {
        match RegexProtector::compile(list.iter().map(|(n, p)| (n.as_str(), p.as_str()))) {
            Ok(p) => {
                let p = Arc::new(p);
                cache.0.insert(list, p.clone());
                Some(p)
            }
            Err((i, e)) => {
                let name = list.get(i).map_or("", |(n, _)| n.as_str());
                errors.push(if at.is_empty() { format!("{path}.threat_protection.regex") } else { at }, format!("pattern `{name}`: {e}"));
                None
            }
        }
    };
    Some(ThreatPolicy {
        enforce: mode == ThreatMode::Enforce,
        max_uri_length,
        max_header_size,
        max_headers: u32::try_from(max_headers).unwrap_or(u32::MAX),
        regex,
        scan_path: scan.contains(&ScanTarget::Path),
        scan_query: scan.contains(&ScanTarget::Query),
        scan_headers: scan.contains(&ScanTarget::Headers),
    })
}

#[cfg(test)]
mod tests {
    use crate::state::Durable;
    use crate::{compile, parse, Format};

    fn errors(yaml: &str) -> Vec<(String, String)> {
        let spec = parse(yaml.as_bytes(), Format::Yaml).unwrap();
        match compile(&spec, &Durable::new()) {
            Ok(s) => s.warnings.iter().map(|e| (format!("warning {}", e.path), e.message.clone())).collect(),
            Err(e) => e.into_iter().map(|e| (e.path, e.message)).collect(),
        }
    }

    const API: &str = "apis: [{ name: a, context: /a, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, resources: [{ path: \"/*\" }] }]";

    #[test]
    fn bad_threat_settings_are_refused_with_their_path_and_body_scanning_is_warned_about() {
        let e = errors(&format!("threat_protection: {{ regex: {{ patterns: [{{ name: bad, pattern: \"(\" }}] }} }}\n{API}"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "threat_protection.regex.patterns");
        assert!(e[0].1.starts_with("pattern `bad`: "), "{e:?}");
        let e = errors(&format!("threat_protection: {{ regex: {{ patterns: everything }} }}\n{API}"));
        assert_eq!(
            e[0],
            ("threat_protection.regex.patterns".into(), "`everything` is not `default`, `none` or a list of { name, pattern }".into())
        );
        let e = errors(&format!("threat_protection: {{ limits: {{ max_uri_length: 10B, max_headers: 0 }} }}\n{API}"));
        assert_eq!(
            e.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            ["threat_protection.limits.max_uri_length", "threat_protection.limits.max_headers"]
        );
        let e = errors(&format!("threat_protection: {{ regex: {{ scan: [path, body] }} }}\n{API}"));
        assert_eq!(
            e,
            [("warning apis[0].threat_protection.regex.scan".into(), "`body` is not scanned yet: path, query and headers are".into())]
        );
    }

    #[test]
    fn apis_with_the_same_patterns_share_one_compiled_set() {
        let yaml = format!(
            "threat_protection: {{ mode: monitor }}\napis:\n{}\n{}\n{}",
            "  - { name: a, context: /a, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, resources: [{ path: \"/*\" }] }",
            "  - { name: b, context: /b, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, resources: [{ path: \"/*\" }] }",
            "  - { name: c, context: /c, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, threat_protection: { mode: enforce, regex: { add: [{ name: t, pattern: x }] } }, resources: [{ path: \"/*\" }] }",
        );
        let s = compile(&parse(yaml.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap();
        let p = |i: usize| s.apis[i].threat.as_ref().unwrap();
        assert!(std::sync::Arc::ptr_eq(p(0).regex.as_ref().unwrap(), p(1).regex.as_ref().unwrap()));
        assert!(!std::sync::Arc::ptr_eq(p(0).regex.as_ref().unwrap(), p(2).regex.as_ref().unwrap()));
        assert!(!p(0).enforce && p(2).enforce);
        assert_eq!((p(0).max_uri_length, p(0).max_header_size, p(0).max_headers), (8192, 16384, 100));
    }
}
