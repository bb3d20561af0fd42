//! Scenario files: a weighted mix of requests with variables and token pools.
//!
//! A scenario is YAML (parsed with `yaml_serde`; unknown fields are errors, so a typo such as
//! `wieght` is reported instead of silently ignored). It is compiled once, before the run, into
//! templates of literal byte runs and variable slots, so the per-request work is a weighted
//! pick, a few random numbers and a `memcpy` per segment. Every name a template uses is checked
//! at load time; a bad file fails with the field path and the reason, before any traffic.
//!
//! ```yaml
//! name: orders mix
//! defaults:
//!   headers: { Accept: application/json }
//!   expect: [2xx]
//! variables:
//!   id:  { random: { min: 1, max: 100000 } }
//!   seq: { sequence: { start: 1 } }
//!   region: { one_of: [eu, us] }
//! keys:
//!   rs: { algorithm: RS256, private_key: keys/jwt_rs256_priv.pem, kid: k1 }
//! token_pools:
//!   gold: { key: rs, issuer: https://idp.example/, audience: orders, tiers: [Gold],
//!           applications: { count: 20, prefix: app- }, scope: "read write", ttl: 1h }
//! requests:
//!   - { name: get, weight: 8, path: "/orders/v1/order/{{id}}",
//!       headers: { Authorization: "Bearer {{token:gold}}" } }
//!   - { name: create, weight: 2, method: POST, path: /orders/v1/order,
//!       body: '{"seq": {{seq}}, "region": "{{region}}"}', expect: [2xx, 429] }
//! ```
//!
//! A request's expected statuses are counted apart from the others: a 429 in a throttling
//! scenario is an outcome the scenario asked for, not an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::http1::{valid_header_name, valid_header_value};
use crate::jwt::{self, SigningKey};

/// A set of status codes, written as `2xx`, `429` or `400-499`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    bits: [u64; 16],
    /// The spec as written, for reports.
    pub text: Vec<String>,
}

impl StatusSet {
    /// The default expectation: 2xx and 3xx.
    pub fn success() -> Self {
        // The items are constants, so parsing cannot fail; fall back to an empty set anyway.
        Self::parse(&["2xx".to_string(), "3xx".to_string()]).unwrap_or_else(|_| StatusSet { bits: [0; 16], text: vec![] })
    }

    /// Parses a list such as `["2xx", "429", "500-503"]`.
    pub fn parse(items: &[String]) -> Result<Self> {
        let mut set = StatusSet { bits: [0; 16], text: Vec::new() };
        for raw in items {
            for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (lo, hi) = parse_status_item(item)?;
                for code in lo..=hi {
                    set.bits[usize::from(code / 64)] |= 1 << (code % 64);
                }
                set.text.push(item.to_string());
            }
        }
        if set.text.is_empty() {
            bail!("an expected-status list must name at least one status");
        }
        Ok(set)
    }

    #[inline]
    pub fn contains(&self, status: u16) -> bool {
        status < 1024 && self.bits[usize::from(status / 64)] & (1 << (status % 64)) != 0
    }
}

fn parse_status_item(item: &str) -> Result<(u16, u16)> {
    let bad = || anyhow!("bad status {item:?}: use a code (429), a class (2xx) or a range (500-504)");
    let lower = item.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let d: u16 = class.parse().map_err(|_| bad())?;
        if !(1..=5).contains(&d) {
            return Err(bad());
        }
        return Ok((d * 100, d * 100 + 99));
    }
    let (lo, hi) = match lower.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?),
        None => {
            let c = lower.parse::<u16>().map_err(|_| bad())?;
            (c, c)
        }
    };
    if !(100..=999).contains(&lo) || !(100..=999).contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

// ---- the file format ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSpec {
    name: Option<String>,
    #[serde(default)]
    defaults: DefaultsSpec,
    #[serde(default)]
    variables: BTreeMap<String, VariableSpec>,
    #[serde(default)]
    keys: BTreeMap<String, KeySpec>,
    #[serde(default)]
    token_pools: BTreeMap<String, PoolSpec>,
    requests: Vec<RequestSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsSpec {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expect: Option<Vec<String>>,
}

/// A variable: exactly one of `random`, `sequence` or `one_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableSpec {
    /// A uniformly random integer in `min..=max`.
    random: Option<RandomSpec>,
    /// A counter shared by all connections: start, start + step, ...
    sequence: Option<SequenceSpec>,
    /// One of the listed strings, uniformly.
    one_of: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RandomSpec {
    min: u64,
    max: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceSpec {
    #[serde(default)]
    start: u64,
    #[serde(default = "one")]
    step: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    /// RS256, ES256, EdDSA, HS256, ... (optional for PEM keys: implied by the key type).
    algorithm: Option<String>,
    /// A PKCS#8 PEM private key, relative to the scenario file.
    private_key: Option<PathBuf>,
    /// An HMAC secret given inline.
    secret: Option<String>,
    /// An HMAC secret read from a file (trailing newline removed).
    secret_file: Option<PathBuf>,
    kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSpec {
    key: String,
    issuer: Option<String>,
    audience: Option<String>,
    /// Tiers to mint tokens for; each token carries one in its `tier` claim.
    #[serde(default)]
    tiers: Vec<String>,
    applications: ApplicationsSpec,
    /// The `sub` claim; default: the application id.
    subject: Option<String>,
    scope: Option<String>,
    /// Token lifetime (`exp - iat`), e.g. `1h`.
    ttl: Option<String>,
    /// Extra claims, copied into every token.
    #[serde(default)]
    claims: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ApplicationsSpec {
    List(Vec<String>),
    Count {
        count: u32,
        #[serde(default = "app_prefix")]
        prefix: String,
    },
}

fn app_prefix() -> String {
    "app-".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    name: Option<String>,
    #[serde(default = "one_u32")]
    weight: u32,
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
    expect: Option<Vec<String>>,
}

fn one_u32() -> u32 {
    1
}

fn get() -> String {
    "GET".to_string()
}

// ---- the compiled form --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Vec<u8>),
    Var(usize),
    Token(usize),
}

/// A string with `{{name}}` slots, split into literal runs and slot references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Template {
    segments: Vec<Segment>,
}

impl Template {
    fn is_static(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }
}

#[derive(Debug)]
enum Variable {
    Random { min: u64, span: u64 },
    Sequence { next: AtomicU64, step: u64 },
    OneOf(Vec<String>),
}

/// One request of the mix.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub method: String,
    pub weight: u32,
    pub expect: StatusSet,
    head: bool,
    path: Template,
    headers: Vec<(String, Template)>,
    body: Template,
    /// The whole request, when nothing in it varies.
    fixed: Option<Vec<u8>>,
}

/// A compiled scenario, shared read-only by every connection.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub entries: Vec<Entry>,
    cumulative: Vec<u64>,
    variables: Vec<Variable>,
    pools: Vec<Vec<String>>,
    /// Token pool names and sizes, for the report.
    pub pool_sizes: Vec<(String, usize)>,
}

/// Per-connection state for building requests: random numbers and scratch buffers.
pub struct Builder {
    rng: Rng,
    values: Vec<Option<u64>>,
    tokens: Vec<Option<usize>>,
    body: Vec<u8>,
    number: itoa_buf::Buf,
}

/// A tiny integer-to-text buffer, so numbers in templates are written without allocating.
mod itoa_buf {
    pub struct Buf([u8; 20]);
    impl Buf {
        pub fn new() -> Self {
            Buf([0; 20])
        }
        pub fn format(&mut self, mut n: u64) -> &[u8] {
            let mut i = self.0.len();
            loop {
                i -= 1;
                self.0[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            &self.0[i..]
        }
    }
}

/// SplitMix64: a small, fast, seedable generator. Statistical quality is ample for picking
/// requests and ids; it is not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (Lemire's multiply-shift; the bias is below 2^-64 * n).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

impl Scenario {
    /// Loads and compiles a scenario file. Relative key and body paths are resolved against
    /// the file's directory.
    pub fn load(path: &Path, host: &str) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read scenario file {}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_yaml(&text, &base, host).with_context(|| format!("scenario file {}", path.display()))
    }

    /// Parses and compiles scenario YAML. `host` is the `Host` header for requests that do not
    /// set one.
    pub fn from_yaml(text: &str, base: &Path, host: &str) -> Result<Scenario> {
        let spec: ScenarioSpec = yaml_serde::from_str(text).map_err(|e| anyhow!("{e}"))?;
        compile(spec, base, host)
    }

    /// A builder for one connection; `seed` makes runs reproducible.
    pub fn builder(&self, seed: u64) -> Builder {
        Builder {
            rng: Rng::new(seed),
            values: vec![None; self.variables.len()],
            tokens: vec![None; self.pools.len()],
            body: Vec::with_capacity(1024),
            number: itoa_buf::Buf::new(),
        }
    }

    /// Picks the next request by weight and serialises it into `out`; returns its entry index.
    pub fn next_request(&self, b: &mut Builder, out: &mut Vec<u8>) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let r = b.rng.below(total);
        let idx = self.cumulative.partition_point(|&c| c <= r).min(self.entries.len() - 1);
        let entry = &self.entries[idx];
        out.clear();
        if let Some(fixed) = &entry.fixed {
            out.extend_from_slice(fixed);
            return idx;
        }
        b.values.iter_mut().for_each(|v| *v = None);
        b.tokens.iter_mut().for_each(|v| *v = None);
        let mut body = std::mem::take(&mut b.body);
        body.clear();
        self.expand(&entry.body, b, &mut body);
        out.extend_from_slice(entry.method.as_bytes());
        out.push(b' ');
        self.expand(&entry.path, b, out);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &entry.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            self.expand(value, b, out);
            out.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() || matches!(entry.method.as_str(), "POST" | "PUT" | "PATCH") {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(b.number.format(body.len() as u64));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        b.body = body;
        idx
    }

    /// Whether entry `idx` is a HEAD request (its response has no body).
    pub fn is_head(&self, idx: usize) -> bool {
        self.entries.get(idx).is_some_and(|e| e.head)
    }

    fn expand(&self, t: &Template, b: &mut Builder, out: &mut Vec<u8>) {
        for seg in &t.segments {
            match seg {
                Segment::Literal(bytes) => out.extend_from_slice(bytes),
                Segment::Var(i) => {
                    // A variable has one value per request, however often it appears.
                    let value = match b.values[*i] {
                        Some(v) => v,
                        None => {
                            let v = match &self.variables[*i] {
                                Variable::Random { min, span } => min + b.rng.below(*span),
                                Variable::Sequence { next, step } => next.fetch_add(*step, Ordering::Relaxed),
                                Variable::OneOf(items) => b.rng.below(items.len() as u64),
                            };
                            b.values[*i] = Some(v);
                            v
                        }
                    };
                    match &self.variables[*i] {
                        Variable::OneOf(items) => out.extend_from_slice(items[value as usize].as_bytes()),
                        _ => out.extend_from_slice(b.number.format(value)),
                    }
                }
                Segment::Token(p) => {
                    let pool = &self.pools[*p];
                    let pick = *b.tokens[*p].get_or_insert_with(|| b.rng.below(pool.len() as u64) as usize);
                    out.extend_from_slice(pool[pick].as_bytes());
                }
            }
        }
    }
}

/// Splits `text` into a template, resolving `{{name}}` and `{{token:pool}}` slots.
fn parse_template(text: &str, vars: &BTreeMap<String, usize>, pools: &BTreeMap<String, usize>, what: &str) -> Result<Template> {
    let mut segments = Vec::new();
    let mut rest = text;
    let mut literal = Vec::new();
    while let Some(open) = rest.find("{{") {
        literal.extend_from_slice(&rest.as_bytes()[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| anyhow!("{what}: unclosed '{{{{' in {text:?}"))?;
        let name = after[..close].trim();
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        if let Some(pool) = name.strip_prefix("token:") {
            let pool = pool.trim();
            let idx = pools.get(pool).ok_or_else(|| anyhow!("{what}: unknown token pool {pool:?} (defined: {})", list(pools.keys())))?;
            segments.push(Segment::Token(*idx));
        } else {
            let idx = vars.get(name).ok_or_else(|| anyhow!("{what}: unknown variable {name:?} (defined: {})", list(vars.keys())))?;
            segments.push(Segment::Var(*idx));
        }
        rest = &after[close + 2..];
    }
    literal.extend_from_slice(rest.as_bytes());
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(Template { segments })
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn parse_ttl(text: Option<&str>) -> Result<Duration> {
    match text {
        None => Ok(Duration::from_secs(3600)),
        Some(t) => humantime::parse_duration(t).map_err(|e| anyhow!("bad ttl {t:?}: {e}")),
    }
}

fn compile(spec: ScenarioSpec, base: &Path, host: &str) -> Result<Scenario> {
    if spec.requests.is_empty() {
        bail!("requests: the scenario has no requests");
    }
    // Variables.
    let mut var_index = BTreeMap::new();
    let mut variables = Vec::new();
    for (name, v) in spec.variables {
        let var = match (v.random, v.sequence, v.one_of) {
            (Some(RandomSpec { min, max }), None, None) => {
                if min > max {
                    bail!("variables.{name}: random min {min} is above max {max}");
                }
                Variable::Random { min, span: max - min + 1 }
            }
            (None, Some(SequenceSpec { start, step }), None) => Variable::Sequence { next: AtomicU64::new(start), step },
            (None, None, Some(items)) => {
                if items.is_empty() {
                    bail!("variables.{name}: one_of needs at least one value");
                }
                if let Some(bad) = items.iter().find(|s| s.bytes().any(|b| b < b' ' || b == 0x7f)) {
                    bail!("variables.{name}: value {bad:?} contains control characters");
                }
                Variable::OneOf(items)
            }
            _ => bail!("variables.{name}: give exactly one of random, sequence or one_of"),
        };
        var_index.insert(name, variables.len());
        variables.push(var);
    }
    // Keys.
    let mut keys = BTreeMap::new();
    for (name, k) in spec.keys {
        let key = load_key(&name, &k, base).with_context(|| format!("keys.{name}"))?;
        keys.insert(name, key);
    }
    // Token pools: one token per tier and application.
    let now = jwt::unix_now();
    let mut pool_index = BTreeMap::new();
    let mut pools = Vec::new();
    let mut pool_sizes = Vec::new();
    for (name, p) in spec.token_pools {
        let key =
            keys.get(&p.key).ok_or_else(|| anyhow!("token_pools.{name}.key: unknown key {:?} (defined: {})", p.key, list(keys.keys())))?;
        let ttl = parse_ttl(p.ttl.as_deref()).with_context(|| format!("token_pools.{name}.ttl"))?;
        let apps: Vec<String> = match p.applications {
            ApplicationsSpec::List(list) => list,
            ApplicationsSpec::Count { count, prefix } => (1..=count).map(|i| format!("{prefix}{i}")).collect(),
        };
        if apps.is_empty() {
            bail!("token_pools.{name}.applications: at least one application is needed");
        }
        let tiers: Vec<Option<&String>> = if p.tiers.is_empty() { vec![None] } else { p.tiers.iter().map(Some).collect() };
        let mut tokens = Vec::new();
        for tier in &tiers {
            for app in &apps {
                let mut c = Map::new();
                if let Some(iss) = &p.issuer {
                    c.insert("iss".into(), Value::String(iss.clone()));
                }
                if let Some(aud) = &p.audience {
                    c.insert("aud".into(), Value::String(aud.clone()));
                }
                c.insert("sub".into(), Value::String(p.subject.clone().unwrap_or_else(|| app.clone())));
                c.insert("azp".into(), Value::String(app.clone()));
                c.insert("client_id".into(), Value::String(app.clone()));
                if let Some(tier) = tier {
                    c.insert("tier".into(), Value::String((*tier).clone()));
                }
                if let Some(scope) = &p.scope {
                    c.insert("scope".into(), Value::String(scope.clone()));
                }
                c.insert("iat".into(), Value::from(now));
                c.insert("nbf".into(), Value::from(now.saturating_sub(60)));
                c.insert("exp".into(), Value::from(now + ttl.as_secs().max(1)));
                c.insert("jti".into(), Value::String(jwt::next_jti()));
                for (k, v) in &p.claims {
                    c.insert(k.clone(), v.clone());
                }
                tokens.push(key.sign(&c).with_context(|| format!("token_pools.{name}"))?);
            }
        }
        pool_sizes.push((name.clone(), tokens.len()));
        pool_index.insert(name, pools.len());
        pools.push(tokens);
    }
    // Requests.
    let default_expect = match &spec.defaults.expect {
        Some(items) => StatusSet::parse(items).context("defaults.expect")?,
        None => StatusSet::success(),
    };
    for name in spec.defaults.headers.keys() {
        if !valid_header_name(name) {
            bail!("defaults.headers: {name:?} is not a valid header name");
        }
    }
    let mut entries = Vec::new();
    let mut cumulative = Vec::new();
    let mut total = 0u64;
    for (i, r) in spec.requests.into_iter().enumerate() {
        let at = format!("requests[{i}]");
        let method = r.method.trim().to_ascii_uppercase();
        if method.is_empty() || !valid_header_name(&method) {
            bail!("{at}.method: {:?} is not a valid method", r.method);
        }
        if !r.path.starts_with('/') {
            bail!("{at}.path: {:?} must start with '/'", r.path);
        }
        if r.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            bail!("{at}.path: {:?} contains spaces or control characters (percent-encode them)", r.path);
        }
        let path = parse_template(&r.path, &var_index, &pool_index, &format!("{at}.path"))?;
        // One-of values end up in paths verbatim, so they must be path-safe there too.
        for seg in &path.segments {
            if let Segment::Var(v) = seg {
                if let Variable::OneOf(items) = &variables[*v] {
                    if let Some(bad) = items.iter().find(|s| s.contains(' ')) {
                        bail!("{at}.path: variable value {bad:?} contains a space, which cannot appear in a path");
                    }
                }
            }
        }
        let mut merged: BTreeMap<String, String> = spec.defaults.headers.clone();
        for (k, v) in r.headers {
            // A request header replaces a default of the same name, whatever its case.
            merged.retain(|dk, _| !dk.eq_ignore_ascii_case(&k));
            merged.insert(k, v);
        }
        let mut headers = Vec::new();
        let mut has_host = false;
        for (k, v) in merged {
            if !valid_header_name(&k) {
                bail!("{at}.headers: {k:?} is not a valid header name");
            }
            if !valid_header_value(&v) {
                bail!("{at}.headers.{k}: the value contains a line break or control character");
            }
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding") {
                bail!("{at}.headers.{k}: set by the load tool from the body; remove it");
            }
            has_host |= k.eq_ignore_ascii_case("host");
            headers.push((k.clone(), parse_template(&v, &var_index, &pool_index, &format!("{at}.headers.{k}"))?));
        }
        if !has_host {
            headers.insert(0, ("Host".to_string(), Template { segments: vec![Segment::Literal(host.as_bytes().to_vec())] }));
        }
        let body_text = match (r.body, r.body_file) {
            (Some(_), Some(_)) => bail!("{at}: give body or body_file, not both"),
            (Some(b), None) => b,
            (None, Some(f)) => {
                let p = base.join(&f);
                std::fs::read_to_string(&p).with_context(|| format!("{at}.body_file: cannot read {}", p.display()))?
            }
            (None, None) => String::new(),
        };
        let body = parse_template(&body_text, &var_index, &pool_index, &format!("{at}.body"))?;
        let expect = match r.expect {
            Some(items) => StatusSet::parse(&items).with_context(|| format!("{at}.expect"))?,
            None => default_expect.clone(),
        };
        if r.weight == 0 {
            continue;
        }
        total += u64::from(r.weight);
        cumulative.push(total);
        let name = r.name.unwrap_or_else(|| format!("{method} {}", r.path));
        let mut entry = Entry { name, head: method == "HEAD", method, weight: r.weight, expect, path, headers, body, fixed: None };
        if entry.path.is_static() && entry.body.is_static() && entry.headers.iter().all(|(_, t)| t.is_static()) {
            entry.fixed = Some(Vec::new());
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        bail!("requests: every request has weight 0");
    }
    let mut scenario =
        Scenario { name: spec.name.unwrap_or_else(|| "scenario".to_string()), entries, cumulative, variables, pools, pool_sizes };
    // Pre-serialise the requests that never vary.
    let mut builder = scenario.builder(0);
    for i in 0..scenario.entries.len() {
        if scenario.entries[i].fixed.is_some() {
            let mut out = Vec::new();
            let e = &scenario.entries[i];
            let mut body = Vec::new();
            scenario.expand(&e.body, &mut builder, &mut body);
            out.extend_from_slice(e.method.as_bytes());
            out.push(b' ');
            scenario.expand(&e.path, &mut builder, &mut out);
            out.extend_from_slice(b" HTTP/1.1\r\n");
            for (name, value) in &e.headers {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                scenario.expand(value, &mut builder, &mut out);
                out.extend_from_slice(b"\r\n");
            }
            if !body.is_empty() || matches!(e.method.as_str(), "POST" | "PUT" | "PATCH") {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            scenario.entries[i].fixed = Some(out);
        }
    }
    Ok(scenario)
}

fn load_key(name: &str, k: &KeySpec, base: &Path) -> Result<SigningKey> {
    let kid = k.kid.clone().unwrap_or_else(|| name.to_string());
    let alg = k.algorithm.as_deref().map(jwt::parse_algorithm).transpose()?;
    match (&k.private_key, &k.secret, &k.secret_file) {
        (Some(path), None, None) => SigningKey::from_pem_file(&base.join(path), alg, &kid),
        (None, Some(secret), None) => SigningKey::from_secret(secret.as_bytes(), alg.unwrap_or(jsonwebtoken::Algorithm::HS256), &kid),
        (None, None, Some(path)) => {
            let p = base.join(path);
            let bytes = std::fs::read(&p).with_context(|| format!("cannot read secret file {}", p.display()))?;
            let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            SigningKey::from_secret(trimmed, alg.unwrap_or(jsonwebtoken::Algorithm::HS256), &kid)
        }
        _ => bail!("give exactly one of private_key, secret or secret_file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const SECRET: &str = "a-test-secret-of-enough-length";

    fn load(yaml: &str) -> Result<Scenario> {
        Scenario::from_yaml(yaml, Path::new("."), "127.0.0.1:9000")
    }

    fn err(yaml: &str) -> String {
        format!("{:#}", load(yaml).unwrap_err())
    }

    fn build(s: &Scenario, b: &mut Builder) -> (usize, String) {
        let mut out = Vec::new();
        let i = s.next_request(b, &mut out);
        (i, String::from_utf8(out).unwrap())
    }

    #[test]
    fn full_scenario_compiles_and_builds_valid_requests() {
        let yaml = format!(
            r#"
name: orders mix
defaults:
  headers: {{ Accept: application/json }}
  expect: [2xx]
variables:
  id: {{ random: {{ min: 5, max: 7 }} }}
  seq: {{ sequence: {{ start: 100, step: 2 }} }}
  region: {{ one_of: [eu, us] }}
keys:
  hs: {{ algorithm: HS256, secret: "{SECRET}", kid: k-hs }}
token_pools:
  gold:
    key: hs
    issuer: https://idp.test/
    audience: orders
    tiers: [Gold, Silver]
    applications: {{ count: 3, prefix: app- }}
    scope: "read write"
    ttl: 10m
    claims: {{ extra: 1 }}
requests:
  - name: get
    weight: 3
    path: "/orders/v1/order/{{{{id}}}}?r={{{{region}}}}"
    headers: {{ Authorization: "Bearer {{{{token:gold}}}}" }}
  - name: create
    weight: 1
    method: post
    path: /orders/v1/order
    body: '{{"seq": {{{{seq}}}}, "again": {{{{seq}}}}}}'
    expect: [2xx, 429]
"#
        );
        let s = load(&yaml).unwrap();
        assert_eq!(s.name, "orders mix");
        assert_eq!(s.pool_sizes, vec![("gold".to_string(), 6)]);
        assert!(s.entries[1].expect.contains(429) && !s.entries[0].expect.contains(429));
        let mut b = s.builder(42);
        let mut seen = [0u32; 2];
        let mut seqs = Vec::new();
        for _ in 0..400 {
            let (i, text) = build(&s, &mut b);
            seen[i] += 1;
            // Every request is a complete, parseable HTTP/1.1 request.
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            let n = match req.parse(text.as_bytes()).unwrap() {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("partial request: {text}"),
            };
            let host = req.headers.iter().find(|h| h.name == "Host").unwrap();
            assert_eq!(host.value, b"127.0.0.1:9000");
            if i == 0 {
                let path = req.path.unwrap();
                let id: u64 = path["/orders/v1/order/".len()..path.find('?').unwrap()].parse().unwrap();
                assert!((5..=7).contains(&id), "{path}");
                assert!(path.ends_with("?r=eu") || path.ends_with("?r=us"), "{path}");
                let auth = req.headers.iter().find(|h| h.name == "Authorization").unwrap();
                let token = std::str::from_utf8(auth.value).unwrap().strip_prefix("Bearer ").unwrap();
                let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
                v.set_audience(&["orders"]);
                v.set_issuer(&["https://idp.test/"]);
                let data = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(SECRET.as_bytes()), &v).unwrap();
                assert_eq!(data.header.kid.as_deref(), Some("k-hs"));
                assert!(["Gold", "Silver"].contains(&data.claims["tier"].as_str().unwrap()));
                assert!(data.claims["azp"].as_str().unwrap().starts_with("app-"));
                assert_eq!(data.claims["extra"], 1);
            } else {
                assert_eq!(req.method, Some("POST"));
                let body = &text[n..];
                let v: Value = serde_json::from_str(body).unwrap();
                // The same variable has the same value everywhere in one request.
                assert_eq!(v["seq"], v["again"]);
                seqs.push(v["seq"].as_u64().unwrap());
                assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
            }
        }
        // Weighted 3:1 (seeded, so deterministic; the bounds are loose binomial ones).
        assert!((270..=330).contains(&seen[0]), "{seen:?}");
        // The sequence counts 100, 102, 104, ... with no gaps or repeats.
        assert_eq!(seqs, (0..seqs.len() as u64).map(|i| 100 + 2 * i).collect::<Vec<_>>());
    }

    #[test]
    fn requests_without_variables_are_prebuilt() {
        let s = load("requests: [{ path: /health }, { method: HEAD, path: /x, weight: 2 }]").unwrap();
        assert!(s.entries.iter().all(|e| e.fixed.is_some()));
        assert!(s.is_head(1) && !s.is_head(0));
        let mut b = s.builder(1);
        let (_, text) = build(&s, &mut b);
        assert!(text == "GET /health HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n" || text.starts_with("HEAD /x"));
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        for (yaml, needle) in [
            ("requests: []", "no requests"),
            ("requests: [{ path: /x, wieght: 2 }]", "unknown field `wieght`"),
            ("requests: [{ path: x }]", "must start with '/'"),
            ("requests: [{ path: '/a/{{nope}}' }]", "unknown variable \"nope\""),
            ("requests: [{ path: '/a/{{id' }]", "unclosed"),
            ("requests: [{ path: /x, headers: { 'Bad Name': v } }]", "not a valid header name"),
            ("requests: [{ path: /x, headers: { X: \"a\\r\\nY: b\" } }]", "line break"),
            ("requests: [{ path: /x, headers: { Content-Length: '5' } }]", "set by the load tool"),
            ("requests: [{ path: /x, expect: [2xy] }]", "bad status"),
            ("requests: [{ path: /x, weight: 0 }]", "weight 0"),
            ("requests: [{ path: /x, headers: { A: '{{token:none}}' } }]", "unknown token pool"),
            ("variables: { id: { random: { min: 5, max: 1 } } }\nrequests: [{ path: /x }]", "above max"),
            ("variables: { id: { random: { min: 1, max: 2 }, one_of: [a] } }\nrequests: [{ path: /x }]", "exactly one of"),
            ("keys: { k: { private_key: /nonexistent/key.pem } }\nrequests: [{ path: /x }]", "cannot read key file"),
            ("keys: { k: { secret: short } }\nrequests: [{ path: /x }]", "at least 16"),
            ("token_pools: { p: { key: missing, applications: [a] } }\nrequests: [{ path: /x }]", "unknown key"),
            ("requests: [{ path: /x, body: a, body_file: b }]", "not both"),
            ("requests: {", "line"),
        ] {
            let e = err(yaml);
            assert!(e.contains(needle), "{yaml}\n  -> {e}");
        }
    }

    #[test]
    fn status_sets() {
        let s = StatusSet::parse(&["2xx".into(), "429, 500-502".into()]).unwrap();
        for c in [200, 299, 429, 500, 502] {
            assert!(s.contains(c), "{c}");
        }
        for c in [199, 300, 428, 503, 1023, 2000] {
            assert!(!s.contains(c), "{c}");
        }
        assert!(StatusSet::success().contains(301));
        for bad in ["6xx", "99", "500-400", "abc", ""] {
            assert!(StatusSet::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rng_below_is_in_range_and_spreads() {
        let mut r = Rng::new(7);
        let mut hist = [0u32; 10];
        for _ in 0..100_000 {
            let v = r.below(10);
            hist[v as usize] += 1;
        }
        assert!(hist.iter().all(|&n| (9_000..=11_000).contains(&n)), "{hist:?}");
    }
}
