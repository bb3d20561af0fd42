//! The route table: context → version → API, then the API's resources.
//!
//! Built once per snapshot. A lookup costs a few hash probes for the context (one per
//! possible context depth, longest first), a short scan of the context's versions, and a walk
//! over the API's resource patterns, most specific first. Nothing is allocated unless the
//! path has more than 16 segments.
//!
//! Specificity, compared segment by segment from the left: a literal beats a `{variable}`,
//! which beats the `*` of a URL mapping; a path that ends beats one that continues with `*`.
//! Two patterns can only tie when they have the same shape (`/order/{id}` and
//! `/order/{num}`); such a pair is one pattern, and listing the same verb twice on it is a
//! config error. A method-aware rule picks the resource: the most specific pattern that
//! matches the path *and* allows the method wins; if none allows it, the answer is 405 with
//! the union of the verbs of every pattern that matched the path.

use super::MethodSet;
use smallvec::SmallVec;
use std::collections::HashMap;

/// Byte ranges of bound template variables in the normalised path.
pub type Bindings = SmallVec<[(u16, u16); 4]>;

/// The API a path belongs to, before resources are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRoute {
    pub api: u32,
    /// Byte offset in the path where the part after context (and version) starts.
    pub rest_start: usize,
}

#[derive(Debug, Default)]
struct ContextRoutes {
    versions: SmallVec<[(Box<str>, u32); 2]>,
    default: Option<u32>,
}

/// Maps contexts and versions to APIs.
#[derive(Debug, Default)]
pub struct RouteTable {
    contexts: HashMap<Box<str>, ContextRoutes, ahash::RandomState>,
    max_depth: usize,
}

impl RouteTable {
    /// Adds an API. `context` is normalised (`/orders`, no trailing slash). Returns an error
    /// message when the context+version (or the default version) is already taken.
    pub fn insert(&mut self, context: &str, version: &str, default_version: bool, api: u32) -> Result<(), String> {
        let key: Box<str> = context.trim_start_matches('/').into();
        let depth = key.split('/').count();
        self.max_depth = self.max_depth.max(depth);
        let entry = self.contexts.entry(key).or_default();
        if entry.versions.iter().any(|(v, _)| &**v == version) {
            return Err(format!("context {context} already has a version {version}"));
        }
        entry.versions.push((version.into(), api));
        if default_version {
            if entry.default.is_some() {
                return Err(format!("context {context} already has a default version"));
            }
            entry.default = Some(api);
        }
        Ok(())
    }

    /// Finds the API for a normalised path. Longest context first; then an explicit version
    /// segment; then the context's default version.
    pub fn lookup(&self, path: &str) -> Option<ApiRoute> {
        // Ends of the first `max_depth` segments: "/a/b/c" -> [2, 4, 6].
        let mut ends: SmallVec<[usize; 4]> = SmallVec::new();
        let bytes = path.as_bytes();
        for (i, &b) in bytes.iter().enumerate().skip(1) {
            if b == b'/' {
                ends.push(i);
                if ends.len() == self.max_depth {
                    break;
                }
            }
        }
        if ends.len() < self.max_depth {
            ends.push(bytes.len());
        }
        for &end in ends.iter().rev() {
            let Some(key) = path.get(1..end) else { continue };
            if key.is_empty() {
                continue;
            }
            let Some(routes) = self.contexts.get(key) else { continue };
            let after = &path[end..];
            // The version is the next segment, if any.
            if let Some(seg) = after.strip_prefix('/') {
                let vlen = seg.find('/').unwrap_or(seg.len());
                let version = &seg[..vlen];
                if let Some((_, api)) = routes.versions.iter().find(|(v, _)| &**v == version) {
                    return Some(ApiRoute { api: *api, rest_start: end + 1 + vlen });
                }
            }
            if let Some(api) = routes.default {
                return Some(ApiRoute { api, rest_start: end });
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(Box<str>),
    Var,
}

/// One path shape and the resources (by verb) that use it.
#[derive(Debug)]
struct Pattern {
    segs: Vec<Seg>,
    /// Ends with `/*`: matches any (possibly empty) remainder.
    wildcard: bool,
    /// Verb → resource index (bit position in `MethodSet`).
    by_method: [Option<u32>; 9],
    methods: MethodSet,
    /// Sort key, larger is more specific.
    rank: Vec<u8>,
}

/// A parsed resource path; the compiler validates it before it reaches the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPattern {
    segs: Vec<Seg>,
    wildcard: bool,
    /// Names of the variables, in order.
    pub vars: Vec<String>,
}

impl ParsedPattern {
    /// Parses `/menu`, `/order/{id}`, `/admin/*`.
    pub fn parse(path: &str) -> Result<ParsedPattern, String> {
        let Some(body) = path.strip_prefix('/') else {
            return Err("must start with '/'".into());
        };
        let mut segs = Vec::new();
        let mut vars = Vec::new();
        let mut wildcard = false;
        let parts: Vec<&str> = if body.is_empty() { Vec::new() } else { body.split('/').collect() };
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let last = i + 1 == n;
            if wildcard {
                return Err("`*` may only be the last segment".into());
            }
            if part == "*" {
                if !last {
                    return Err("`*` may only be the last segment".into());
                }
                wildcard = true;
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("`{part}` is not a valid template variable (letters, digits and _ only)"));
                }
                if vars.iter().any(|v| v == name) {
                    return Err(format!("variable `{name}` appears twice"));
                }
                vars.push(name.to_string());
                segs.push(Seg::Var);
            } else if part.is_empty() {
                if last {
                    continue; // "/menu/" is "/menu"
                }
                return Err("empty segment (`//`)".into());
            } else if part.contains(['{', '}']) {
                return Err(format!("`{part}`: a template variable must be a whole segment"));
            } else if part.contains('*') {
                return Err(format!("`{part}`: `*` must be a whole segment, and the last one"));
            } else if part == "." || part == ".." {
                return Err("dot segments are not allowed".into());
            } else if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@".contains(&b)) {
                return Err(format!(
                    "`{part}` has characters that must be percent-encoded; write the decoded path segment with unreserved characters"
                ));
            } else {
                segs.push(Seg::Literal(part.into()));
            }
        }
        Ok(ParsedPattern { segs, wildcard, vars })
    }

    /// The shape with variable names erased: `/order/{}`.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        for seg in &self.segs {
            s.push('/');
            match seg {
                Seg::Literal(l) => s.push_str(l),
                Seg::Var => s.push_str("{}"),
            }
        }
        if self.wildcard {
            s.push_str("/*");
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    fn rank(&self) -> Vec<u8> {
        let mut r: Vec<u8> = self.segs.iter().map(|s| if matches!(s, Seg::Literal(_)) { 3 } else { 2 }).collect();
        r.push(if self.wildcard { 0 } else { 1 });
        r
    }
}

/// The result of matching a path and verb against an API's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceMatch {
    Found {
        resource: u32,
        bindings: Bindings,
    },
    /// The path matched, the verb did not: these verbs would have.
    MethodNotAllowed(MethodSet),
    NotFound,
}

/// An API's resources, most specific first.
#[derive(Debug, Default)]
pub struct ResourceTable {
    patterns: Vec<Pattern>,
}

impl ResourceTable {
    /// Adds a resource. Errors when the same verb is already taken on the same shape.
    pub fn insert(&mut self, pattern: &ParsedPattern, methods: MethodSet, resource: u32) -> Result<(), String> {
        let existing = self.patterns.iter_mut().find(|p| p.segs == pattern.segs && p.wildcard == pattern.wildcard);
        let entry = match existing {
            Some(p) => {
                if p.methods.intersects(methods) {
                    let clash = MethodSet(p.methods.0 & methods.0);
                    let bit = clash.0.trailing_zeros() as usize;
                    let other = p.by_method.get(bit).copied().flatten().unwrap_or(0);
                    return Err(format!(
                        "{clash} {} is already served by resources[{other}]; most-specific-match cannot choose between them",
                        pattern.canonical()
                    ));
                }
                p
            }
            None => {
                self.patterns.push(Pattern {
                    segs: pattern.segs.clone(),
                    wildcard: pattern.wildcard,
                    by_method: [None; 9],
                    methods: MethodSet::EMPTY,
                    rank: pattern.rank(),
                });
                let last = self.patterns.len() - 1;
                &mut self.patterns[last]
            }
        };
        for bit in 0..9 {
            if methods.0 & (1 << bit) != 0 {
                entry.by_method[bit] = Some(resource);
            }
        }
        entry.methods = entry.methods.union(methods);
        // Stable sort keeps config order among unrelated patterns of equal rank.
        self.patterns.sort_by(|a, b| b.rank.cmp(&a.rank));
        Ok(())
    }

    /// Matches `rest` (the normalised path after context and version; `""` or `/...`).
    /// `offset` is where `rest` starts in the full path, for the bindings' byte ranges.
    /// `method` is `None` for extension methods, which no resource serves.
    pub fn find(&self, rest: &str, offset: usize, method: Option<MethodSet>) -> ResourceMatch {
        let mut segs: SmallVec<[(usize, &str); 16]> = SmallVec::new();
        let mut pos = 0;
        for part in rest.split('/') {
            if !part.is_empty() {
                segs.push((offset + pos, part));
            }
            pos += part.len() + 1;
        }
        let mut allowed = MethodSet::EMPTY;
        for p in &self.patterns {
            if !p.matches(&segs) {
                continue;
            }
            if let Some(m) = method {
                if p.methods.contains(m) {
                    let bit = m.0.trailing_zeros() as usize;
                    if let Some(Some(resource)) = p.by_method.get(bit) {
                        let bindings = p
                            .segs
                            .iter()
                            .zip(segs.iter())
                            .filter(|(s, _)| matches!(s, Seg::Var))
                            .map(|(_, (start, text))| (*start as u16, (*start + text.len()) as u16))
                            .collect();
                        return ResourceMatch::Found { resource: *resource, bindings };
                    }
                }
            }
            allowed = allowed.union(p.methods);
        }
        if allowed.is_empty() {
            ResourceMatch::NotFound
        } else {
            ResourceMatch::MethodNotAllowed(allowed)
        }
    }

    /// True when some resource matches the path, whatever its verbs (CORS preflight).
    pub fn matches_path(&self, rest: &str) -> bool {
        !matches!(self.find(rest, 0, None), ResourceMatch::NotFound)
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl Pattern {
    fn matches(&self, segs: &[(usize, &str)]) -> bool {
        if segs.len() < self.segs.len() || (!self.wildcard && segs.len() != self.segs.len()) {
            return false;
        }
        self.segs.iter().zip(segs).all(|(p, (_, s))| match p {
            Seg::Literal(l) => &**l == *s,
            Seg::Var => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MethodSet {
        MethodSet::parse(s).unwrap()
    }

    fn table(items: &[(&str, &str)]) -> ResourceTable {
        let mut t = ResourceTable::default();
        for (i, (path, methods)) in items.iter().enumerate() {
            let set = methods.split(',').map(m).fold(MethodSet::EMPTY, MethodSet::union);
            t.insert(&ParsedPattern::parse(path).unwrap(), set, i as u32).unwrap();
        }
        t
    }

    fn found(t: &ResourceTable, path: &str, method: &str) -> Option<u32> {
        match t.find(path, 0, Some(m(method))) {
            ResourceMatch::Found { resource, .. } => Some(resource),
            _ => None,
        }
    }

    #[test]
    fn most_specific_wins() {
        let t = table(&[("/admin/*", "ANY"), ("/order/{id}", "GET"), ("/order/latest", "GET"), ("/menu", "GET"), ("/*", "GET")]);
        assert_eq!(found(&t, "/menu", "GET"), Some(3));
        assert_eq!(found(&t, "/order/latest", "GET"), Some(2));
        assert_eq!(found(&t, "/order/42", "GET"), Some(1));
        assert_eq!(found(&t, "/admin/x/y", "DELETE"), Some(0));
        assert_eq!(found(&t, "/admin", "POST"), Some(0));
        assert_eq!(found(&t, "/anything/else", "GET"), Some(4));
        assert_eq!(found(&t, "/menu/", "GET"), Some(3));
    }

    #[test]
    fn wrong_verb_lists_allowed_verbs() {
        let t = table(&[("/order/{id}", "GET,PUT"), ("/menu", "GET")]);
        assert_eq!(t.find("/order/1", 0, Some(m("POST"))), ResourceMatch::MethodNotAllowed(m("GET").union(m("PUT"))));
        assert_eq!(t.find("/nothing", 0, Some(m("GET"))), ResourceMatch::NotFound);
    }

    #[test]
    fn less_specific_pattern_serves_a_verb_the_specific_one_lacks() {
        let t = table(&[("/admin/*", "ANY"), ("/admin/users", "GET")]);
        assert_eq!(found(&t, "/admin/users", "GET"), Some(1));
        assert_eq!(found(&t, "/admin/users", "POST"), Some(0));
    }

    #[test]
    fn bindings_are_byte_ranges() {
        let t = table(&[("/{state}/{town}", "GET")]);
        let path = "/api/v1/ca/sf";
        match t.find(&path[7..], 7, Some(m("GET"))) {
            ResourceMatch::Found { bindings, .. } => {
                let got: Vec<&str> = bindings.iter().map(|(a, b)| &path[*a as usize..*b as usize]).collect();
                assert_eq!(got, vec!["ca", "sf"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_shape_same_verb_is_ambiguous() {
        let mut t = ResourceTable::default();
        t.insert(&ParsedPattern::parse("/order/{id}").unwrap(), m("GET"), 0).unwrap();
        t.insert(&ParsedPattern::parse("/order/{num}").unwrap(), m("PUT"), 1).unwrap();
        let err = t.insert(&ParsedPattern::parse("/order/{x}").unwrap(), m("GET"), 2).unwrap_err();
        assert!(err.contains("resources[0]"), "{err}");
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(ParsedPattern::parse("menu").is_err());
        assert!(ParsedPattern::parse("/a/*/b").is_err());
        assert!(ParsedPattern::parse("/order/{id}.json").is_err());
        assert!(ParsedPattern::parse("/a/{}").is_err());
        assert!(ParsedPattern::parse("/a//b").is_err());
        assert!(ParsedPattern::parse("/a/../b").is_err());
        assert!(ParsedPattern::parse("/a b").is_err());
        assert!(ParsedPattern::parse("/{a}/{a}").is_err());
    }

    #[test]
    fn context_version_and_default() {
        let mut t = RouteTable::default();
        t.insert("/orders", "v1", true, 0).unwrap();
        t.insert("/orders", "v2", false, 1).unwrap();
        t.insert("/shop/cart", "v1", false, 2).unwrap();
        t.insert("/shop", "v1", false, 3).unwrap();
        assert_eq!(t.lookup("/orders/v1/menu"), Some(ApiRoute { api: 0, rest_start: 10 }));
        assert_eq!(t.lookup("/orders/v2/menu"), Some(ApiRoute { api: 1, rest_start: 10 }));
        assert_eq!(t.lookup("/orders/menu"), Some(ApiRoute { api: 0, rest_start: 7 }));
        assert_eq!(t.lookup("/orders"), Some(ApiRoute { api: 0, rest_start: 7 }));
        assert_eq!(t.lookup("/orders/v1"), Some(ApiRoute { api: 0, rest_start: 10 }));
        assert_eq!(t.lookup("/shop/cart/v1/x"), Some(ApiRoute { api: 2, rest_start: 13 }));
        assert_eq!(t.lookup("/shop/v1/x"), Some(ApiRoute { api: 3, rest_start: 8 }));
        assert_eq!(t.lookup("/shop/x"), None);
        assert_eq!(t.lookup("/ordersx/v1"), None);
        assert_eq!(t.lookup("/"), None);
        assert!(t.insert("/orders", "v1", false, 9).is_err());
        assert!(t.insert("/orders", "v3", true, 9).is_err());
    }
}
