//! The body part of threat protection: one [`BodyInspector`] per request body, fed the body
//! as it arrives, so every exchange (the lane, which holds small bodies whole, and Pingora's
//! phases, which read them chunk by chunk) reaches the same verdict on the same bytes.
//!
//! What is checked depends on the `Content-Type`:
//!
//! | body | checks |
//! |---|---|
//! | JSON (`application/json`, `+json`) | the streaming JSON validator, chunk by chunk; the regex protector over the body with JSON escapes decoded |
//! | XML (`application/xml`, `text/xml`, `+xml`) | the XML protector over the whole body (at most `xml.max_size`); the regex protector |
//! | a form (`application/x-www-form-urlencoded`) | the regex protector, decoded as a query is (`+` is a space) |
//! | anything else | the regex protector over the first `regex.max_body_scan` bytes |
//!
//! `limits.max_body_size` holds for every body: a declared length beyond it is refused with
//! the head (`head::check_head`), a chunked body when it grows past it.
//!
//! The exchange holds the body back until the verdict ([`BodyInspector::holds`]): no byte of a
//! refused body reaches the upstream. Only a body the regex protector alone looks at is
//! released once `max_body_scan` bytes were seen and scanned ([`Fed::Release`]); JSON and XML
//! bodies are held whole, which their `max_size` bounds.

use super::head::{Detection, ThreatPolicy};
use super::json::{is_json_content_type, JsonValidator, JsonViolation};
use super::xml::{check_xml, is_xml_content_type, XmlViolation};
use crate::verdict::ProblemCode;
use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::sync::Arc;

/// What kind of body a request carries, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Xml,
    Form,
    Other,
}

impl BodyKind {
    pub fn of(content_type: Option<&[u8]>) -> BodyKind {
        match content_type {
            Some(ct) if is_json_content_type(ct) => BodyKind::Json,
            Some(ct) if is_xml_content_type(ct) => BodyKind::Xml,
            Some(ct) if essence(ct).eq_ignore_ascii_case(b"application/x-www-form-urlencoded") => BodyKind::Form,
            _ => BodyKind::Other,
        }
    }
}

fn essence(ct: &[u8]) -> &[u8] {
    ct.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii()
}

/// What [`BodyInspector::feed`] says about the body so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Go on reading (and holding, if [`BodyInspector::holds`]).
    More,
    /// Enough was seen: call [`BodyInspector::finish`] with what is held now, then forward
    /// the held bytes and the rest of the body unchecked (except for `max_body_size`).
    Release,
}

/// The checks of one request body. It keeps no reference to the policy (each call takes it),
/// so it can live in a request's context between body chunks.
#[derive(Debug)]
pub struct BodyInspector {
    kind: BodyKind,
    json: Option<JsonValidator>,
    xml: bool,
    regex: bool,
    seen: u64,
    released: bool,
}

impl BodyInspector {
    /// The inspector for a body with this `Content-Type` under `policy`.
    pub fn new(policy: &ThreatPolicy, content_type: Option<&[u8]>) -> BodyInspector {
        let kind = BodyKind::of(content_type);
        BodyInspector {
            kind,
            json: policy.json.filter(|_| kind == BodyKind::Json).map(JsonValidator::new),
            xml: policy.xml.is_some() && kind == BodyKind::Xml,
            regex: policy.scan_body && policy.regex.is_some(),
            seen: 0,
            released: false,
        }
    }

    /// Whether the exchange must hold the body back until the verdict (otherwise it only
    /// counts it against `max_body_size`).
    pub fn holds(&self) -> bool {
        !self.released && (self.json.is_some() || self.xml || self.regex)
    }

    /// The next chunk. A detection is final: the body is refused.
    pub fn feed(&mut self, policy: &ThreatPolicy, chunk: &[u8]) -> Result<Fed, Detection> {
        self.seen += chunk.len() as u64;
        if self.seen > policy.max_body_size {
            return Err(size_limit("limits", "max_body_size"));
        }
        if self.released {
            return Ok(Fed::More);
        }
        if let Some(v) = &mut self.json {
            v.feed(chunk).map_err(json_detection)?;
        }
        if let (true, Some(limits)) = (self.xml, &policy.xml) {
            if self.seen > limits.max_size {
                return Err(xml_detection(XmlViolation::Size));
            }
        }
        // Only a body no structural protector holds is let go early, once its scanned part
        // was seen whole.
        if self.json.is_none() && !self.xml && self.regex && self.seen > policy.max_body_scan {
            return Ok(Fed::Release);
        }
        Ok(Fed::More)
    }

    /// The whole-body checks, over the bytes held (the whole body, or its first
    /// `max_body_scan` bytes and more after a [`Fed::Release`]). Afterwards the body is only
    /// counted.
    pub fn finish(&mut self, policy: &ThreatPolicy, held: &[u8]) -> Result<(), Detection> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        // A JSON body is never released early, so `held` is the whole of it.
        if let Some(v) = &mut self.json {
            v.finish().map_err(json_detection)?;
        }
        if let (true, Some(limits)) = (self.xml, &policy.xml) {
            check_xml(held, limits).map_err(xml_detection)?;
        }
        if let (true, Some(r)) = (self.regex, policy.regex.as_deref()) {
            let scanned = &held[..held.len().min(usize::try_from(policy.max_body_scan).unwrap_or(usize::MAX))];
            let found = match self.kind {
                BodyKind::Json => r.scan(&unescape_json(scanned), false),
                BodyKind::Form => r.scan(scanned, true),
                BodyKind::Xml | BodyKind::Other => r.scan(scanned, false),
            };
            if let Some(rule) = found {
                return Err(Detection { protector: "regex", rule: Arc::from(rule), location: "body", code: ProblemCode::ThreatDetected });
            }
        }
        Ok(())
    }

    /// Convenience for a body the exchange already holds whole (the lane's).
    pub fn check_whole(policy: &ThreatPolicy, content_type: Option<&[u8]>, body: &[u8]) -> Result<(), Detection> {
        let mut inspector = BodyInspector::new(policy, content_type);
        inspector.feed(policy, body)?;
        inspector.finish(policy, body)
    }
}

/// A body on its way through an exchange that reads it chunk by chunk: the inspector, and
/// the chunks held back until its verdict.
#[derive(Debug)]
pub struct BodyGate {
    inspector: BodyInspector,
    held: Vec<Bytes>,
    held_len: usize,
}

/// What to do with a chunk given to [`BodyGate::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum GateStep {
    /// Held back: forward nothing yet.
    Hold,
    /// Forward these bytes (what was held, and the chunk; empty at the end of a body that was
    /// forwarded already).
    Forward(Bytes),
    /// A protector found something. Refuse the request, or (monitor mode) forward
    /// [`BodyGate::let_through`].
    Found(Detection),
}

impl BodyGate {
    pub fn new(inspector: BodyInspector) -> BodyGate {
        BodyGate { inspector, held: Vec::new(), held_len: 0 }
    }

    /// Whether chunks are being held back.
    pub fn holds(&self) -> bool {
        self.inspector.holds()
    }

    /// The next chunk (`end`: the body ends with it; the chunk may be empty).
    pub fn push(&mut self, policy: &ThreatPolicy, chunk: Bytes, end: bool) -> GateStep {
        if !self.inspector.holds() {
            return match self.inspector.feed(policy, &chunk) {
                Ok(_) => GateStep::Forward(chunk),
                Err(found) => {
                    self.keep(chunk);
                    GateStep::Found(found)
                }
            };
        }
        let fed = self.inspector.feed(policy, &chunk);
        self.keep(chunk);
        match fed {
            Err(found) => GateStep::Found(found),
            Ok(Fed::More) if !end => GateStep::Hold,
            Ok(_) => {
                let held = self.take();
                match self.inspector.finish(policy, &held) {
                    Ok(()) => GateStep::Forward(held),
                    Err(found) => {
                        self.keep(held);
                        GateStep::Found(found)
                    }
                }
            }
        }
    }

    /// After a finding that is let through (monitor mode): the bytes held, to forward; the
    /// rest of the body is only counted.
    pub fn let_through(&mut self) -> Bytes {
        self.inspector.released = true;
        self.take()
    }

    fn keep(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.held_len += chunk.len();
            self.held.push(chunk);
        }
    }

    /// The held chunks as one buffer (copied only when there are several).
    fn take(&mut self) -> Bytes {
        let len = std::mem::take(&mut self.held_len);
        match self.held.len() {
            0 => Bytes::new(),
            1 => self.held.pop().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(len);
                for c in self.held.drain(..) {
                    all.extend_from_slice(&c);
                }
                all.freeze()
            }
        }
    }
}

fn size_limit(protector: &'static str, rule: &'static str) -> Detection {
    Detection { protector, rule: Arc::from(rule), location: "body", code: ProblemCode::BodyTooLarge }
}

fn json_detection(v: JsonViolation) -> Detection {
    let code = if v == JsonViolation::Size { ProblemCode::BodyTooLarge } else { ProblemCode::ThreatDetected };
    Detection { protector: "json", rule: Arc::from(v.rule()), location: "body", code }
}

fn xml_detection(v: XmlViolation) -> Detection {
    let code = if v == XmlViolation::Size { ProblemCode::BodyTooLarge } else { ProblemCode::ThreatDetected };
    Detection { protector: "xml", rule: Arc::from(v.rule()), location: "body", code }
}

/// A JSON text with its string escapes decoded (`\u003c` is `<`, `\"` is `"`), so that an
/// escape is no bypass of the regex protector; borrowed when there is no escape. A lone
/// surrogate decodes to U+FFFD. (The text is not checked here: the JSON protector does that.)
pub fn unescape_json(text: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', text).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        // Copy the run up to the next `\` whole.
        let Some(at) = memchr::memchr(b'\\', &text[i..]) else {
            out.extend_from_slice(&text[i..]);
            break;
        };
        out.extend_from_slice(&text[i..i + at]);
        i += at;
        let b = text[i];
        if i + 1 >= text.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let simple = match text[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let hex = text.get(i + 2..i + 6).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u32::from_str_radix(h, 16).ok());
        match (text[i + 1], hex) {
            (b'u', Some(code)) => {
                let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threat::json::JsonLimits;

    fn policy() -> ThreatPolicy {
        crate::threat::compile::default_policy()
    }

    fn verdict(ct: &str, body: &str) -> Result<(), (&'static str, String)> {
        BodyInspector::check_whole(&policy(), Some(ct.as_bytes()), body.as_bytes()).map_err(|d| (d.protector, d.rule.to_string()))
    }

    #[test]
    fn each_content_type_gets_its_protectors() {
        assert_eq!(verdict("application/json", r#"{"a":[1,2,{"b":null}],"name":"O'Brien"}"#), Ok(()));
        assert_eq!(verdict("application/json", r#"{"a":"#), Err(("json", "json.malformed".into())));
        assert_eq!(verdict("application/json", &"[".repeat(40)), Err(("json", "json.max_depth".into())));
        // A JSON escape hides nothing from the regex protector.
        assert_eq!(
            verdict("application/problem+json; charset=utf-8", r#"{"q":"\u003cscript\u003ealert(1)"}"#),
            Err(("regex", "xss.script_tag".into()))
        );
        assert_eq!(verdict("text/xml", "<a><b>x</b></a>"), Ok(()));
        assert_eq!(verdict("application/soap+xml", "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"), Err(("xml", "xml.dtd".into())));
        assert_eq!(verdict("application/xml", "<a>&lt;script&gt;</a>"), Err(("regex", "xss.script_tag".into())));
        assert_eq!(verdict("application/x-www-form-urlencoded", "q=1+union+select+2"), Err(("regex", "sql.union_select".into())));
        assert_eq!(verdict("text/plain", "please select a drop-down item"), Ok(()));
        // JSON protection is only for JSON: the same text as plain text is only scanned.
        assert_eq!(verdict("text/plain", "{\"a\":"), Ok(()));
    }

    #[test]
    fn size_limits_answer_413_and_stop_at_the_limit() {
        let mut p = policy();
        p.max_body_size = 100;
        let mut i = BodyInspector::new(&p, Some(b"application/octet-stream"));
        assert_eq!(i.feed(&p, &[b'a'; 100]), Ok(Fed::More));
        let d = i.feed(&p, b"a").unwrap_err();
        assert_eq!((d.protector, &*d.rule, d.code), ("limits", "max_body_size", ProblemCode::BodyTooLarge));
        let mut p = policy();
        p.json = Some(JsonLimits { max_size: 10, ..JsonLimits::default() });
        let d = BodyInspector::check_whole(&p, Some(b"application/json"), b"[1,2,3,4,5,6]").unwrap_err();
        assert_eq!((&*d.rule, d.code), ("json.max_size", ProblemCode::BodyTooLarge));
    }

    #[test]
    fn a_body_only_the_regex_protector_reads_is_released_after_max_body_scan() {
        let mut p = policy();
        p.max_body_scan = 8;
        let mut i = BodyInspector::new(&p, None);
        assert!(i.holds());
        assert_eq!(i.feed(&p, b"hello"), Ok(Fed::More));
        assert_eq!(i.feed(&p, b" world"), Ok(Fed::Release));
        assert_eq!(i.finish(&p, b"hello world"), Ok(()));
        assert!(!i.holds());
        // Beyond the scanned part, nothing is looked at.
        assert_eq!(i.feed(&p, b"<script>"), Ok(Fed::More));
        // A JSON body is held whole.
        let mut i = BodyInspector::new(&p, Some(b"application/json"));
        assert_eq!(i.feed(&p, b"[\"0123456789\","), Ok(Fed::More));
    }

    #[test]
    fn without_protectors_for_it_a_body_is_only_counted() {
        let mut p = policy();
        p.scan_body = false;
        assert!(!BodyInspector::new(&p, Some(b"text/plain")).holds());
        assert!(BodyInspector::new(&p, Some(b"application/json")).holds());
        p.json = None;
        assert!(!BodyInspector::new(&p, Some(b"application/json")).holds());
    }

    #[test]
    fn json_unescaping_decodes_what_a_parser_would() {
        assert_eq!(&*unescape_json(br#"a\"b\\c\/d\u0041\u00e9\n"#), "a\"b\\c/dA\u{e9}\n".as_bytes());
        assert_eq!(&*unescape_json(br#"\ud800 \u12"#), "\u{fffd} \\u12".as_bytes());
        assert!(matches!(unescape_json(b"plain"), Cow::Borrowed(_)));
    }

    /// The gate's verdict on `body` given in chunks cut at `cuts` (sorted positions).
    fn gate_verdict(p: &ThreatPolicy, ct: &str, body: &[u8], cuts: &[usize]) -> (Result<(), String>, Vec<u8>) {
        let mut gate = BodyGate::new(BodyInspector::new(p, Some(ct.as_bytes())));
        let mut forwarded = Vec::new();
        let mut start = 0;
        let ends: Vec<usize> = cuts.iter().copied().chain([body.len()]).collect();
        for (k, &end) in ends.iter().enumerate() {
            let last = k == ends.len() - 1;
            match gate.push(p, Bytes::copy_from_slice(&body[start..end]), last) {
                GateStep::Hold => assert!(!last, "held at the end"),
                GateStep::Forward(b) => forwarded.extend_from_slice(&b),
                GateStep::Found(d) => return (Err(d.rule.to_string()), forwarded),
            }
            start = end;
        }
        (Ok(()), forwarded)
    }

    const BODIES: &[(&str, &str)] = &[
        ("application/json", r#"{"name":"O'Brien","tags":["a","b"],"n":-1.5e3,"ok":true,"z":null,"url":"http://x/?a=1&b=2"}"#),
        ("application/json", r#"{"a":[1,2,{"b":"\u003cscript>"}]}"#),
        ("application/json", r#"{"a":[1,2,}"#),
        ("application/json", r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#),
        ("application/json", r#"{"k":"\ud83d\ude00 caf\u00e9","e":"\"quoted\""}"#),
        ("text/xml", "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\"><soap:Body><m:Get xmlns:m=\"urn:x\"><m:Id>42</m:Id></m:Get></soap:Body></soap:Envelope>"),
        ("application/xml", "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><lolz>&lol2;</lolz>"),
        ("application/xml", "<a><b>1 union select 2</b></a>"),
        ("application/x-www-form-urlencoded", "user=bob&comment=a%27+or+%271%27%3D%271"),
        ("text/plain", "nothing to see here, please select an option and drop it off"),
        ("text/plain", "hello <script>alert(1)</script> world"),
    ];

    #[test]
    fn a_cut_at_any_position_gives_the_same_verdict_and_the_same_bytes() {
        let p = policy();
        for (ct, body) in BODIES {
            let body = body.as_bytes();
            let whole = BodyInspector::check_whole(&p, Some(ct.as_bytes()), body).map_err(|d| d.rule.to_string());
            for cut in 0..=body.len() {
                let (v, forwarded) = gate_verdict(&p, ct, body, &[cut]);
                assert_eq!(v, whole, "{ct} {body:?} cut at {cut}");
                if v.is_ok() {
                    assert_eq!(forwarded, body, "{ct} cut at {cut}");
                } else {
                    assert!(forwarded.is_empty(), "a refused body forwarded bytes: {ct} cut at {cut}");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, failure_persistence: None, ..Default::default() })]

        /// Any number of cuts anywhere, in generated JSON-like text: the verdict and the
        /// forwarded bytes are those of the whole body. With a small `max_body_scan`, a plain
        /// body is released part way and still forwarded whole.
        #[test]
        fn chunk_boundaries_never_change_a_verdict(
            text in proptest::collection::vec(proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\\", "a", "1", "-", ".", "e", " ", "true", "null", "<", ">", "'", "or", "=", "\\u0041", "é",
            ]), 0..80),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            ct in proptest::sample::select(vec!["application/json", "text/xml", "text/plain", "application/x-www-form-urlencoded"]),
            scan in proptest::sample::select(vec![16u64, 1 << 20]),
        ) {
            let body = text.concat().into_bytes();
            let mut p = policy();
            p.max_body_scan = scan;
            p.json = Some(JsonLimits { max_depth: 4, max_properties: 3, max_string_length: 12, max_array_length: 4, max_key_length: 6, max_size: 300 });
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= body.len()).collect();
            cuts.sort_unstable();
            let (whole, _) = gate_verdict(&p, ct, &body, &[]);
            let (v, forwarded) = gate_verdict(&p, ct, &body, &cuts);
            proptest::prop_assert_eq!(&v, &whole);
            if v.is_ok() {
                proptest::prop_assert_eq!(forwarded, body);
            }
        }
    }
}
