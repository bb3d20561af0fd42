//! Bounded, seeded mutation tests of the protectors' parsers, run in CI (the cargo-fuzz
//! targets in `fuzz/` go further, locally): thousands of mutated bodies, each fed whole and in
//! random chunks. No panic, the same verdict however the body is cut, and decoding never
//! grows a value.

use super::json::{JsonLimits, JsonValidator};
use super::regex::{decode, RegexProtector};
use super::xml::{check_xml, Dtd, XmlLimits};

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of `seed`: bytes flipped, deleted, duplicated, or replaced by interesting ones.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"{}[]\",:\\u0<>&;#%!-'/ \n\t\x00\xff\xc3";
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        if v.is_empty() {
            v.push(INTERESTING[rng.below(INTERESTING.len())]);
            continue;
        }
        let i = rng.below(v.len());
        match rng.below(4) {
            0 => v[i] = INTERESTING[rng.below(INTERESTING.len())],
            1 => {
                v.remove(i);
            }
            2 => {
                let end = (i + rng.below(16)).min(v.len());
                let chunk = v[i..end].to_vec();
                v.splice(i..i, chunk);
            }
            _ => v[i] ^= 1 << rng.below(8),
        }
    }
    v
}

const JSON_SEEDS: &[&str] = &[
    r#"{"name":"O'Brien","n":-12.5e+3,"ok":[true,false,null],"s":"\u00e9\n"}"#,
    r#"[[[[1,2,{"a":[]}]]]]"#,
    r#""just a string""#,
    "-0.5E-7",
];

const XML_SEEDS: &[&str] = &[
    r#"<?xml version="1.0"?><a x="1" y='&amp;'><b>t&lt;</b><!-- c --><![CDATA[<x>]]><c/></a>"#,
    r#"<!DOCTYPE a [<!ENTITY e "x">]><a>&e;&#65;</a>"#,
    "<soap:Envelope xmlns:soap=\"urn:x\"><soap:Body/></soap:Envelope>",
];

#[test]
fn mutated_json_never_panics_and_chunking_never_changes_the_verdict() {
    let limits =
        JsonLimits { max_depth: 8, max_properties: 8, max_string_length: 32, max_array_length: 8, max_key_length: 8, max_size: 4096 };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..20_000 {
        let body = mutate(&mut rng, JSON_SEEDS[round % JSON_SEEDS.len()].as_bytes());
        let mut whole = JsonValidator::new(limits);
        let expected = whole.feed(&body).and_then(|()| whole.finish());
        let mut v = JsonValidator::new(limits);
        let mut rest = &body[..];
        let mut got = Ok(());
        while !rest.is_empty() && got.is_ok() {
            let n = 1 + rng.below(rest.len());
            got = v.feed(&rest[..n]);
            rest = &rest[n..];
        }
        let got = got.and_then(|()| v.finish());
        assert_eq!(got, expected, "round {round}: {:?}", String::from_utf8_lossy(&body));
    }
}

/// serde_json as the oracle of what is JSON: with limits no input reaches, the validator
/// accepts exactly what serde_json parses. (Left out: invalid UTF-8 and lone surrogate escapes,
/// which the validator does not check and serde_json refuses, and numbers beyond an f64.)
#[test]
fn mutated_json_is_accepted_exactly_when_serde_json_parses_it() {
    let limits = JsonLimits {
        max_depth: 100,
        max_properties: u32::MAX,
        max_string_length: u64::MAX,
        max_array_length: u32::MAX,
        max_key_length: u64::MAX,
        max_size: u64::MAX,
    };
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut compared, mut valid) = (0, 0);
    for round in 0..20_000 {
        let body = mutate(&mut rng, JSON_SEEDS[round % JSON_SEEDS.len()].as_bytes());
        let Ok(text) = std::str::from_utf8(&body) else { continue };
        if text.to_ascii_lowercase().contains("\\ud") {
            continue;
        }
        let theirs = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(_) => true,
            // RFC 8259 grammar allows any exponent; serde_json refuses what overflows an f64.
            Err(e) if e.to_string().contains("number out of range") => continue,
            Err(_) => false,
        };
        let mut v = JsonValidator::new(limits);
        let ours = v.feed(&body).and_then(|()| v.finish()).is_ok();
        assert_eq!(ours, theirs, "round {round}: {text:?}");
        compared += 1;
        valid += usize::from(ours);
    }
    // The mutations must produce both kinds, or the comparison proves little.
    assert!(compared > 10_000 && valid > 500 && compared - valid > 500, "{compared} compared, {valid} valid");
}

#[test]
fn mutated_xml_never_panics_in_either_dtd_mode() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let allow = XmlLimits { dtd: Dtd::Allow, ..XmlLimits::default() };
    for round in 0..4000 {
        let body = mutate(&mut rng, XML_SEEDS[round % XML_SEEDS.len()].as_bytes());
        let _ = check_xml(&body, &XmlLimits::default());
        let _ = check_xml(&body, &allow);
    }
}

#[test]
fn decoding_never_grows_a_value_and_scanning_never_panics() {
    let p = RegexProtector::built_in();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let seed = b"%253Cscript%3E&lt;&#x3C;&#60;a+b%zz&#xFFFFFFFF;&amp";
    for _ in 0..4000 {
        let v = mutate(&mut rng, seed);
        assert!(decode(&v, true).len() <= v.len());
        let _ = p.scan(&v, true);
    }
}
