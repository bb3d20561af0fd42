//! `threat_protection` spec → [`ThreatPolicy`] per API: the gateway-wide block, with an API's
//! block overriding any part of it. Pattern sets are compiled once and shared by every API
//! that uses the same set.

use super::head::ThreatPolicy;
use super::json::JsonLimits;
use super::regex::{RegexProtector, BUILT_IN};
use super::spec::{DtdSpec, JsonSpec, PatternsSpec, ScanTarget, ThreatLimitsSpec, ThreatMode, ThreatSpec, XmlSpec};
use super::xml::{Dtd, XmlLimits};
use crate::error::Errors;
use std::collections::HashMap;
use std::sync::Arc;

const DEFAULT_URI: u64 = 8 * 1024;
const DEFAULT_HEADERS_SIZE: u64 = 16 * 1024;
const DEFAULT_HEADERS: u32 = 100;
const DEFAULT_BODY_SIZE: u64 = 10 * 1024 * 1024;
const DEFAULT_BODY_SCAN: u64 = 1024 * 1024;

fn clamp32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The policy an empty `threat_protection: {}` block compiles to: every protector on, at the
/// documented defaults (for benches, fuzzing and tests; `compile_threat` builds the same).
pub fn default_policy() -> ThreatPolicy {
    ThreatPolicy {
        enforce: true,
        max_uri_length: DEFAULT_URI,
        max_header_size: DEFAULT_HEADERS_SIZE,
        max_headers: DEFAULT_HEADERS,
        regex: Some(Arc::new(RegexProtector::built_in())),
        scan_path: true,
        scan_query: true,
        scan_headers: true,
        max_body_size: DEFAULT_BODY_SIZE,
        scan_body: true,
        max_body_scan: DEFAULT_BODY_SCAN,
        json: Some(JsonLimits::default()),
        xml: Some(XmlLimits::default()),
    }
}

/// Compiled pattern sets, by their (name, pattern) list.
#[derive(Default)]
pub struct PatternCache(HashMap<Vec<(String, String)>, Arc<RegexProtector>>);

/// The policy for one API. `gateway`: the top-level block (`None`: absent); `api`: the API's
/// (at `path`). `None` when neither exists: the API has no threat protection.
///
/// A value is reported at the block it came from. Problems in the gateway-wide block are
/// reported only when `report_gateway` (the compiler makes one such call, so they are reported
/// once, not once per API).
pub fn compile_threat(
    gateway: Option<&ThreatSpec>,
    api: Option<&ThreatSpec>,
    path: &str,
    report_gateway: bool,
    cache: &mut PatternCache,
    errors: &mut Errors,
    warnings: &mut Errors,
) -> Option<ThreatPolicy> {
    if gateway.is_none() && api.is_none() {
        return None;
    }
    let api_prefix = format!("{path}.threat_protection");
    // Where a value came from: the API's block (`true`) or the gateway's.
    let at = |from_api: bool, field: &str| {
        if from_api {
            format!("{api_prefix}.{field}")
        } else {
            format!("threat_protection.{field}")
        }
    };
    let report = |errors: &mut Errors, from_api: bool, field: String, message: String| {
        if from_api || report_gateway {
            errors.push(field, message);
        }
    };
    // A value from the API's block, else the gateway's, with its origin.
    fn pick<T>(api: Option<&ThreatSpec>, gateway: Option<&ThreatSpec>, f: impl Fn(&ThreatSpec) -> Option<T>) -> Option<(T, bool)> {
        api.and_then(&f).map(|v| (v, true)).or_else(|| gateway.and_then(&f).map(|v| (v, false)))
    }
    let mode = pick(api, gateway, |s| s.mode).map_or(ThreatMode::Enforce, |(m, _)| m);
    let limit = |f: fn(&ThreatLimitsSpec) -> Option<u64>| pick(api, gateway, |s| s.limits.as_ref().and_then(f));
    let checked = |errors: &mut Errors, value: Option<(u64, bool)>, default: u64, min: u64, field: &str, message: &str| match value {
        Some((v, from_api)) if v < min => {
            report(errors, from_api, at(from_api, field), message.to_string());
            v
        }
        Some((v, _)) => v,
        None => default,
    };
    let max_uri_length =
        checked(errors, limit(|l| l.max_uri_length.map(|b| b.0)), DEFAULT_URI, 64, "limits.max_uri_length", "must be at least 64B");
    let max_header_size = checked(
        errors,
        limit(|l| l.max_header_size.map(|b| b.0)),
        DEFAULT_HEADERS_SIZE,
        256,
        "limits.max_header_size",
        "must be at least 256B",
    );
    let max_headers =
        checked(errors, limit(|l| l.max_headers.map(u64::from)), u64::from(DEFAULT_HEADERS), 1, "limits.max_headers", "must be at least 1");
    let max_headers = clamp32(max_headers);

    // The regex part: the API's `patterns` replace the gateway's; both blocks' `add` add to
    // them. Each entry keeps where it was written, for its error.
    let built_in = || BUILT_IN.iter().map(|(n, p)| (n.to_string(), p.to_string(), false, String::new())).collect::<Vec<_>>();
    let mut list: Vec<(String, String, bool, String)> = match pick(api, gateway, |s| s.regex.as_ref()?.patterns.clone()) {
        None => built_in(),
        Some((PatternsSpec::Named(n), _)) if n == "default" => built_in(),
        Some((PatternsSpec::Named(n), _)) if n == "none" => Vec::new(),
        Some((PatternsSpec::Named(n), from_api)) => {
            report(
                errors,
                from_api,
                at(from_api, "regex.patterns"),
                format!("`{n}` is not `default`, `none` or a list of {{ name, pattern }}"),
            );
            Vec::new()
        }
        Some((PatternsSpec::List(l), from_api)) => {
            l.iter().map(|p| (p.name.clone(), p.pattern.clone(), from_api, at(from_api, "regex.patterns"))).collect()
        }
    };
    for (s, from_api) in [(gateway, false), (api, true)] {
        if let Some(r) = s.and_then(|s| s.regex.as_ref()) {
            for (k, p) in r.add.iter().enumerate() {
                list.push((p.name.clone(), p.pattern.clone(), from_api, at(from_api, &format!("regex.add[{k}]"))));
            }
        }
    }
    let scan = pick(api, gateway, |s| s.regex.as_ref()?.scan.clone())
        .map_or_else(|| vec![ScanTarget::Path, ScanTarget::Query, ScanTarget::Headers, ScanTarget::Body], |(t, _)| t);
    let max_body_size =
        checked(errors, limit(|l| l.max_body_size.map(|b| b.0)), DEFAULT_BODY_SIZE, 1, "limits.max_body_size", "must be at least 1B");
    let max_body_scan = checked(
        errors,
        pick(api, gateway, |s| s.regex.as_ref()?.max_body_scan.map(|b| b.0)),
        DEFAULT_BODY_SCAN,
        1,
        "regex.max_body_scan",
        "must be at least 1B",
    );

    // The JSON and XML protectors: each key from the API's block, else the gateway's, else
    // the default; on unless `enabled: false`.
    let json = {
        let d = JsonLimits::default();
        let get = |f: fn(&JsonSpec) -> Option<u64>| pick(api, gateway, |s| s.json.as_ref().and_then(f));
        let n = |errors: &mut Errors, f: fn(&JsonSpec) -> Option<u64>, default: u64, field: &str| {
            checked(errors, get(f), default, 1, &format!("json.{field}"), "must be at least 1")
        };
        let limits = JsonLimits {
            max_depth: clamp32(n(errors, |j| j.max_depth.map(u64::from), d.max_depth.into(), "max_depth")),
            max_properties: clamp32(n(errors, |j| j.max_properties.map(u64::from), d.max_properties.into(), "max_properties")),
            max_string_length: n(errors, |j| j.max_string_length.map(|l| l.0), d.max_string_length, "max_string_length"),
            max_array_length: clamp32(n(errors, |j| j.max_array_length.map(u64::from), d.max_array_length.into(), "max_array_length")),
            max_key_length: n(errors, |j| j.max_key_length.map(|l| l.0), d.max_key_length, "max_key_length"),
            max_size: n(errors, |j| j.max_size.map(|b| b.0), d.max_size, "max_size"),
        };
        pick(api, gateway, |s| s.json.as_ref()?.enabled).is_none_or(|(on, _)| on).then_some(limits)
    };
    let xml = {
        let d = XmlLimits::default();
        let get = |f: fn(&XmlSpec) -> Option<u64>| pick(api, gateway, |s| s.xml.as_ref().and_then(f));
        let n = |errors: &mut Errors, f: fn(&XmlSpec) -> Option<u64>, default: u64, field: &str| {
            checked(errors, get(f), default, 1, &format!("xml.{field}"), "must be at least 1")
        };
        let limits = XmlLimits {
            max_depth: clamp32(n(errors, |x| x.max_depth.map(u64::from), d.max_depth.into(), "max_depth")),
            max_elements: clamp32(n(errors, |x| x.max_elements.map(u64::from), d.max_elements.into(), "max_elements")),
            max_attributes: clamp32(n(errors, |x| x.max_attributes.map(u64::from), d.max_attributes.into(), "max_attributes")),
            max_attribute_length: n(errors, |x| x.max_attribute_length.map(|l| l.0), d.max_attribute_length, "max_attribute_length"),
            max_children: clamp32(n(errors, |x| x.max_children.map(u64::from), d.max_children.into(), "max_children")),
            max_text_length: n(errors, |x| x.max_text_length.map(|l| l.0), d.max_text_length, "max_text_length"),
            max_size: n(errors, |x| x.max_size.map(|b| b.0), d.max_size, "max_size"),
            dtd: match pick(api, gateway, |s| s.xml.as_ref()?.dtd) {
                Some((DtdSpec::Allow, _)) => Dtd::Allow,
                _ => Dtd::Deny,
            },
        };
        pick(api, gateway, |s| s.xml.as_ref()?.enabled).is_none_or(|(on, _)| on).then_some(limits)
    };
    // A structural protector's own size limit above the body limit never applies.
    for (protector, size) in [("json", json.map(|j| j.max_size)), ("xml", xml.map(|x| x.max_size))] {
        if let Some((size, from_api)) = size.and(pick(api, gateway, |s| match protector {
            "json" => s.json.as_ref()?.max_size.map(|b| b.0),
            _ => s.xml.as_ref()?.max_size.map(|b| b.0),
        })) {
            if size > max_body_size && (from_api || report_gateway) {
                warnings.push(
                    at(from_api, &format!("{protector}.max_size")),
                    format!("is larger than limits.max_body_size ({max_body_size} bytes), which holds first"),
                );
            }
        }
    }
    let key: Vec<(String, String)> = list.iter().map(|(n, p, _, _)| (n.clone(), p.clone())).collect();
    let regex = if key.is_empty() {
        None
    } else if let Some(p) = cache.0.get(&key) {
        Some(p.clone())
    } else {
        match RegexProtector::compile(key.iter().map(|(n, p)| (n.as_str(), p.as_str()))) {
            Ok(p) => {
                let p = Arc::new(p);
                cache.0.insert(key, p.clone());
                Some(p)
            }
            Err((i, e)) => {
                if let Some((name, _, from_api, field)) = list.get(i) {
                    report(errors, *from_api, field.clone(), format!("pattern `{name}`: {e}"));
                }
                None
            }
        }
    };
    Some(ThreatPolicy {
        enforce: mode == ThreatMode::Enforce,
        max_uri_length,
        max_header_size,
        max_headers,
        regex,
        scan_path: scan.contains(&ScanTarget::Path),
        scan_query: scan.contains(&ScanTarget::Query),
        scan_headers: scan.contains(&ScanTarget::Headers),
        max_body_size,
        scan_body: scan.contains(&ScanTarget::Body),
        max_body_scan,
        json,
        xml,
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
    fn bad_threat_settings_are_refused_with_their_path_and_oversized_limits_are_warned_about() {
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
        // A warning names the block its value is written in: the API's here ...
        let own = API.replace("resources:", "threat_protection: { limits: { max_body_size: 1KiB }, json: { max_size: 2KiB } }, resources:");
        let e = errors(&format!("threat_protection: {{ mode: enforce }}\n{own}"));
        assert_eq!(
            e,
            [(
                "warning apis[0].threat_protection.json.max_size".into(),
                "is larger than limits.max_body_size (1024 bytes), which holds first".into()
            )]
        );
        // ... and the gateway's here, once, however many APIs inherit it.
        let e = errors(&format!("threat_protection: {{ limits: {{ max_body_size: 1KiB }}, xml: {{ max_size: 4KiB }} }}\n{API}"));
        assert_eq!(
            e,
            [(
                "warning threat_protection.xml.max_size".into(),
                "is larger than limits.max_body_size (1024 bytes), which holds first".into()
            )]
        );
        let e =
            errors(&format!("threat_protection: {{ json: {{ max_depth: 0, max_key_length: 8KiB }}, xml: {{ max_children: 0 }} }}\n{API}"));
        assert_eq!(
            e.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            ["threat_protection.json.max_depth", "threat_protection.xml.max_children"]
        );
    }

    #[test]
    fn a_gateway_wide_problem_is_reported_once_and_an_apis_own_at_the_api() {
        let two = "apis:\n  - { name: a, context: /a, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, resources: [{ path: \"/*\" }] }\n  - { name: b, context: /b, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, threat_protection: { limits: { max_headers: 0 }, regex: { add: [{ name: mine, pattern: \"[\" }] } }, resources: [{ path: \"/*\" }] }";
        let e = errors(&format!("threat_protection: {{ limits: {{ max_uri_length: 10B }}, regex: {{ scan: [body] }} }}\n{two}"));
        let paths: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "threat_protection.limits.max_uri_length",
                "apis[1].threat_protection.limits.max_headers",
                "apis[1].threat_protection.regex.add[0]"
            ],
            "{e:?}"
        );
    }

    #[test]
    fn an_apis_json_and_xml_keys_override_the_gateways_one_by_one() {
        let yaml = format!(
            "threat_protection: {{ json: {{ max_depth: 16, max_string_length: 4KiB }}, xml: {{ dtd: allow, max_depth: 10 }} }}\napis:\n{}\n{}",
            "  - { name: a, context: /a, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, resources: [{ path: \"/*\" }] }",
            "  - { name: b, context: /b, version: v1, endpoint: { targets: [{ url: \"http://127.0.0.1:9\" }] }, threat_protection: { json: { max_depth: 8 }, xml: { enabled: false }, regex: { scan: [path], max_body_scan: 4KiB } }, resources: [{ path: \"/*\" }] }",
        );
        let s = compile(&parse(yaml.as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap();
        let (a, b) = (s.apis[0].threat.as_ref().unwrap(), s.apis[1].threat.as_ref().unwrap());
        let (ja, jb) = (a.json.unwrap(), b.json.unwrap());
        assert_eq!((ja.max_depth, ja.max_string_length, ja.max_properties), (16, 4096, 256));
        assert_eq!((jb.max_depth, jb.max_string_length), (8, 4096));
        assert_eq!(a.xml.map(|x| (x.dtd, x.max_depth)), Some((crate::threat::xml::Dtd::Allow, 10)));
        assert!(b.xml.is_none());
        assert!(a.scan_body && a.scan_path && !b.scan_body && b.scan_path && !b.scan_query);
        assert_eq!((a.max_body_scan, b.max_body_scan, a.max_body_size), (1 << 20, 4096, 10 << 20));
    }

    #[test]
    fn an_empty_block_compiles_to_the_default_policy() {
        let s = compile(&parse(format!("threat_protection: {{}}\n{API}").as_bytes(), Format::Yaml).unwrap(), &Durable::new()).unwrap();
        let (got, want) = (s.apis[0].threat.as_ref().unwrap(), super::default_policy());
        assert_eq!(
            (got.enforce, got.max_uri_length, got.max_header_size, got.max_headers, got.max_body_size, got.max_body_scan),
            (want.enforce, want.max_uri_length, want.max_header_size, want.max_headers, want.max_body_size, want.max_body_scan)
        );
        assert_eq!((got.scan_path, got.scan_query, got.scan_headers, got.scan_body), (true, true, true, true));
        assert_eq!((got.json, got.xml), (want.json, want.xml));
        assert!(got.regex.is_some() && want.regex.is_some());
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
