//! The body gate (every body protector, as the exchanges run them) never panics, and cutting
//! the body into chunks never changes the verdict or the bytes forwarded. The first byte picks
//! the content type, the next two the cut points.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use policies::threat::body::{BodyGate, BodyInspector, GateStep};
use policies::threat::head::ThreatPolicy;
use policies::threat::json::JsonLimits;
use std::sync::OnceLock;

fn policy() -> &'static ThreatPolicy {
    static POLICY: OnceLock<ThreatPolicy> = OnceLock::new();
    POLICY.get_or_init(|| ThreatPolicy {
        max_body_size: 1 << 16,
        max_body_scan: 512,
        json: Some(JsonLimits { max_depth: 16, max_properties: 64, max_string_length: 256, max_array_length: 64, max_key_length: 32, max_size: 1 << 15 }),
        ..policies::threat::compile::default_policy()
    })
}

/// The verdict (a rule, or none) and the bytes forwarded.
fn run(ct: &[u8], body: &[u8], cuts: &[usize]) -> (Option<String>, Vec<u8>) {
    let p = policy();
    let mut gate = BodyGate::new(BodyInspector::new(p, Some(ct)));
    let mut out = Vec::new();
    let mut start = 0;
    let ends: Vec<usize> = cuts.iter().copied().chain([body.len()]).collect();
    for (k, &end) in ends.iter().enumerate() {
        match gate.push(p, Bytes::copy_from_slice(&body[start..end]), k + 1 == ends.len()) {
            GateStep::Hold => {}
            GateStep::Forward(b) => out.extend_from_slice(&b),
            GateStep::Found(d) => return (Some(d.rule.to_string()), out),
        }
        start = end;
    }
    (None, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let ct: &[u8] = match kind % 4 {
        0 => b"application/json",
        1 => b"application/soap+xml",
        2 => b"application/x-www-form-urlencoded",
        _ => b"text/plain",
    };
    let (a, b, body) = match rest {
        [a, b, body @ ..] => (usize::from(*a), usize::from(*b), body),
        _ => return,
    };
    let mut cuts = [a % (body.len() + 1), (a * 7 + b) % (body.len() + 1)];
    cuts.sort_unstable();
    let whole = run(ct, body, &[]);
    let split = run(ct, body, &cuts);
    assert_eq!(whole, split);
    if whole.0.is_none() {
        assert_eq!(whole.1, body, "a passed body is forwarded whole");
    }
});
