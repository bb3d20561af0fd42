//! The JSON protector: a streaming validator fed the body chunk by chunk as it arrives. It
//! builds no document: its memory is one byte of state per open container (at most
//! `max_depth`), whatever the body's size, and it answers as soon as a limit is passed, so a
//! hostile body is refused before the rest of it is read.
//!
//! It checks the structure RFC 8259 defines (malformed JSON is refused: nothing a lenient
//! backend parser might read differently gets through) and the limits: nesting depth,
//! properties per object, elements per array, key and string length (in characters, escapes
//! counted once), number length (as a string) and total size. Byte sequences are not checked
//! for UTF-8 validity; lengths count UTF-8 characters.

/// The limits (see docs/threat-protection.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    pub max_depth: u32,
    pub max_properties: u32,
    pub max_string_length: u64,
    pub max_array_length: u32,
    pub max_key_length: u64,
    pub max_size: u64,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_depth: 32,
            max_properties: 256,
            max_string_length: 8 * 1024,
            max_array_length: 10_000,
            max_key_length: 256,
            max_size: 1024 * 1024,
        }
    }
}

/// Why a body was refused: the rule, for the problem body and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonViolation {
    Depth,
    Properties,
    StringLength,
    ArrayLength,
    KeyLength,
    Size,
    /// Not JSON: what was wrong.
    Malformed(&'static str),
}

impl JsonViolation {
    /// The rule's name: `json.max_depth`, ..., `json.malformed`.
    pub const fn rule(self) -> &'static str {
        match self {
            JsonViolation::Depth => "json.max_depth",
            JsonViolation::Properties => "json.max_properties",
            JsonViolation::StringLength => "json.max_string_length",
            JsonViolation::ArrayLength => "json.max_array_length",
            JsonViolation::KeyLength => "json.max_key_length",
            JsonViolation::Size => "json.max_size",
            JsonViolation::Malformed(_) => "json.malformed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must come (top level, after `:` or after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,`, the container's end, or (at top level) only whitespace.
    After,
    /// Inside a string (a key when `key`).
    Str { key: bool },
    /// After `\` in a string.
    Escape { key: bool },
    /// In `\uXXXX`: hex digits still to come.
    Unicode { key: bool, left: u8 },
    /// In a number, at this part of its grammar.
    Number(Num),
    /// In `true`, `false` or `null`: the bytes still to come.
    Literal(&'static [u8]),
    /// The top-level value ended and only whitespace followed.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    /// After `-`: a digit.
    Sign,
    /// After a leading `0`.
    Zero,
    Int,
    /// After `.`: a digit.
    FracStart,
    Frac,
    /// After `e`: a sign or a digit.
    ExpStart,
    /// After the exponent's sign: a digit.
    ExpSign,
    Exp,
}

/// A streaming validator for one body.
#[derive(Debug)]
pub struct JsonValidator {
    limits: JsonLimits,
    state: State,
    /// Open containers: `true` for an object. Bounded by `max_depth`.
    stack: Vec<bool>,
    /// Properties or elements so far in each open container (parallel to `stack`).
    counts: Vec<u32>,
    /// Characters of the current string or number.
    len: u64,
    size: u64,
    failed: Option<JsonViolation>,
}

const ORDINARY: u8 = 0;
const CONTINUATION: u8 = 1;
const STOP: u8 = 2;

/// What a byte is inside a string: a character's first byte, a UTF-8 continuation byte, or a
/// byte that ends the fast scan (`"`, `\`, a control character).
static STRING_CLASS: [u8; 256] = {
    let mut t = [ORDINARY; 256];
    let mut b = 0;
    while b < 256 {
        if b < 0x20 || b == b'"' as usize || b == b'\\' as usize {
            t[b] = STOP;
        } else if b & 0xC0 == 0x80 {
            t[b] = CONTINUATION;
        }
        b += 1;
    }
    t
};

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonValidator {
    pub fn new(limits: JsonLimits) -> JsonValidator {
        JsonValidator { limits, state: State::Value, stack: Vec::new(), counts: Vec::new(), len: 0, size: 0, failed: None }
    }

    /// Feeds the next chunk. The first violation is final: later calls return it again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), JsonViolation> {
        if let Some(v) = self.failed {
            return Err(v);
        }
        self.size += chunk.len() as u64;
        let r = if self.size > self.limits.max_size { Err(JsonViolation::Size) } else { self.run(chunk) };
        if let Err(v) = r {
            self.failed = Some(v);
        }
        r
    }

    /// The body ended: it must have been one complete JSON value.
    pub fn finish(&mut self) -> Result<(), JsonViolation> {
        if let Some(v) = self.failed {
            return Err(v);
        }
        let r = match self.state {
            State::Done => Ok(()),
            State::After if self.stack.is_empty() => Ok(()),
            // A top-level number ends with the body.
            State::Number(Num::Zero | Num::Int | Num::Frac | Num::Exp) if self.stack.is_empty() => Ok(()),
            State::Value if self.stack.is_empty() => Err(JsonViolation::Malformed("the body is empty")),
            _ => Err(JsonViolation::Malformed("the body ends inside a value")),
        };
        if let Err(v) = r {
            self.failed = Some(v);
        }
        r
    }

    fn open(&mut self, object: bool) -> Result<(), JsonViolation> {
        if self.stack.len() as u32 >= self.limits.max_depth {
            return Err(JsonViolation::Depth);
        }
        self.stack.push(object);
        self.counts.push(0);
        self.state = if object { State::ObjectFirst } else { State::ArrayFirst };
        Ok(())
    }

    fn close(&mut self) {
        self.stack.pop();
        self.counts.pop();
        self.state = if self.stack.is_empty() { State::Done } else { State::After };
    }

    /// One more property or element in the innermost container.
    fn count(&mut self) -> Result<(), JsonViolation> {
        let (Some(&object), Some(n)) = (self.stack.last(), self.counts.last_mut()) else { return Ok(()) };
        *n += 1;
        match object {
            true if *n > self.limits.max_properties => Err(JsonViolation::Properties),
            false if *n > self.limits.max_array_length => Err(JsonViolation::ArrayLength),
            _ => Ok(()),
        }
    }

    /// A value starts with `b` (state was Value or ArrayFirst).
    fn value(&mut self, b: u8) -> Result<(), JsonViolation> {
        match b {
            b'{' => self.open(true),
            b'[' => self.open(false),
            b'"' => {
                self.len = 0;
                self.state = State::Str { key: false };
                Ok(())
            }
            b'-' => {
                self.len = 1;
                self.state = State::Number(Num::Sign);
                Ok(())
            }
            b'0' => {
                self.len = 1;
                self.state = State::Number(Num::Zero);
                Ok(())
            }
            b'1'..=b'9' => {
                self.len = 1;
                self.state = State::Number(Num::Int);
                Ok(())
            }
            b't' => {
                self.state = State::Literal(b"rue");
                Ok(())
            }
            b'f' => {
                self.state = State::Literal(b"alse");
                Ok(())
            }
            b'n' => {
                self.state = State::Literal(b"ull");
                Ok(())
            }
            _ => Err(JsonViolation::Malformed("a value was expected")),
        }
    }

    fn string_char(&mut self, key: bool) -> Result<(), JsonViolation> {
        self.len += 1;
        match key {
            true if self.len > self.limits.max_key_length => Err(JsonViolation::KeyLength),
            false if self.len > self.limits.max_string_length => Err(JsonViolation::StringLength),
            _ => Ok(()),
        }
    }

    fn run(&mut self, chunk: &[u8]) -> Result<(), JsonViolation> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.state {
                State::Str { key } => {
                    // The common case, in one tight pass: ordinary characters up to `"`, `\` or a
                    // control character, counting characters (not UTF-8 continuation bytes).
                    let mut j = i;
                    let mut chars = 0u64;
                    while let Some(&c) = chunk.get(j) {
                        match STRING_CLASS[c as usize] {
                            ORDINARY => chars += 1,
                            CONTINUATION => {}
                            _ => break,
                        }
                        j += 1;
                    }
                    let stop = j - i;
                    self.len += chars;
                    let limit = if key { self.limits.max_key_length } else { self.limits.max_string_length };
                    if self.len > limit {
                        return Err(if key { JsonViolation::KeyLength } else { JsonViolation::StringLength });
                    }
                    i += stop;
                    let Some(&c) = chunk.get(i) else { return Ok(()) };
                    match c {
                        b'"' if key => {
                            // The usual sequel of a key, `: ` or `:`, without a trip through the
                            // dispatch for each byte.
                            i += 1;
                            if chunk.get(i) == Some(&b':') {
                                i += 1;
                                self.state = State::Value;
                                if chunk.get(i) == Some(&b' ') {
                                    i += 1;
                                }
                                // A string value: straight into it.
                                if chunk.get(i) == Some(&b'"') {
                                    i += 1;
                                    self.len = 0;
                                    self.state = State::Str { key: false };
                                }
                            } else {
                                self.state = State::Colon;
                            }
                            continue;
                        }
                        b'"' => self.state = if self.stack.is_empty() { State::Done } else { State::After },
                        b'\\' => self.state = State::Escape { key },
                        _ => return Err(JsonViolation::Malformed("a control character in a string")),
                    }
                    i += 1;
                    continue;
                }
                State::Escape { key } => match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        self.string_char(key)?;
                        self.state = State::Str { key };
                    }
                    b'u' => self.state = State::Unicode { key, left: 4 },
                    _ => return Err(JsonViolation::Malformed("an invalid escape in a string")),
                },
                State::Unicode { key, left } => {
                    if !b.is_ascii_hexdigit() {
                        return Err(JsonViolation::Malformed("an invalid \\u escape"));
                    }
                    if left == 1 {
                        self.string_char(key)?;
                        self.state = State::Str { key };
                    } else {
                        self.state = State::Unicode { key, left: left - 1 };
                    }
                }
                State::Literal(rest) => {
                    if rest.first() != Some(&b) {
                        return Err(JsonViolation::Malformed("an invalid literal"));
                    }
                    self.state = if rest.len() == 1 {
                        if self.stack.is_empty() {
                            State::Done
                        } else {
                            State::After
                        }
                    } else {
                        State::Literal(&rest[1..])
                    };
                }
                State::Number(part) => {
                    let next = match (part, b) {
                        (Num::Sign, b'0') => Some(Num::Zero),
                        (Num::Sign, b'1'..=b'9') => Some(Num::Int),
                        (Num::Int, b'0'..=b'9') => Some(Num::Int),
                        (Num::Zero | Num::Int, b'.') => Some(Num::FracStart),
                        (Num::FracStart | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::ExpStart),
                        (Num::ExpStart, b'+' | b'-') => Some(Num::ExpSign),
                        (Num::ExpStart | Num::ExpSign | Num::Exp, b'0'..=b'9') => Some(Num::Exp),
                        _ => None,
                    };
                    match next {
                        Some(n) => {
                            self.len += 1;
                            if self.len > self.limits.max_string_length {
                                return Err(JsonViolation::StringLength);
                            }
                            self.state = State::Number(n);
                        }
                        None if matches!(part, Num::Zero | Num::Int | Num::Frac | Num::Exp) => {
                            // The number ended; this byte is the next token's.
                            self.state = if self.stack.is_empty() { State::Done } else { State::After };
                            continue;
                        }
                        None => return Err(JsonViolation::Malformed("an invalid number")),
                    }
                }
                _ if is_ws(b) => {
                    // A run of whitespace (indentation) in one tight loop.
                    while chunk.get(i + 1).is_some_and(|&c| is_ws(c)) {
                        i += 1;
                    }
                }
                State::Value => self.value(b)?,
                State::ArrayFirst => {
                    if b == b']' {
                        self.close();
                    } else {
                        self.count()?;
                        self.value(b)?;
                    }
                }
                State::ObjectFirst | State::Key => match b {
                    b'"' => {
                        self.count()?;
                        self.len = 0;
                        self.state = State::Str { key: true };
                    }
                    b'}' if self.state == State::ObjectFirst => self.close(),
                    _ => return Err(JsonViolation::Malformed("a key was expected")),
                },
                State::Colon => {
                    if b != b':' {
                        return Err(JsonViolation::Malformed("`:` was expected after a key"));
                    }
                    self.state = State::Value;
                }
                State::After => match (self.stack.last(), b) {
                    (Some(true), b',') => {
                        // The usual `, "` before the next key: straight into it.
                        let mut j = i + 1;
                        if chunk.get(j) == Some(&b' ') {
                            j += 1;
                        }
                        if chunk.get(j) == Some(&b'"') {
                            self.state = State::Key;
                            self.count()?;
                            self.len = 0;
                            self.state = State::Str { key: true };
                            i = j + 1;
                            continue;
                        }
                        self.state = State::Key;
                    }
                    (Some(true), b'}') | (Some(false), b']') => self.close(),
                    (Some(false), b',') => {
                        self.count()?;
                        self.state = State::Value;
                    }
                    _ => return Err(JsonViolation::Malformed("`,` or the end of the container was expected")),
                },
                State::Done => return Err(JsonViolation::Malformed("data after the JSON value")),
            }
            i += 1;
        }
        Ok(())
    }
}

/// Whether a `Content-Type` is JSON: `application/json`, or any `+json` type.
pub fn is_json_content_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json") && essence.contains(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &[u8], limits: JsonLimits) -> Result<(), JsonViolation> {
        let mut v = JsonValidator::new(limits);
        v.feed(body)?;
        v.finish()
    }

    fn ok(body: &str) {
        assert_eq!(check(body.as_bytes(), JsonLimits::default()), Ok(()), "{body}");
    }

    fn bad(body: &str) -> JsonViolation {
        check(body.as_bytes(), JsonLimits::default()).expect_err(body)
    }

    #[test]
    fn ordinary_json_passes() {
        for body in [
            r#"{"name":"O'Brien","url":"https://example.com/a?b=c&d=\"e\"","tags":["select","drop table"],"n":-12.5e+3,"ok":true,"x":null}"#,
            r#"[]"#,
            r#"{}"#,
            r#"  [1, 2.0, 0, -0, 3e7, "\u00e9\n\t", {"a": [[], {}]}]  "#,
            "\"a string\"",
            "42",
            "true",
            r#"{"emoji":"😀 çà","escaped":"\\\/\b\f\r"}"#,
        ] {
            ok(body);
        }
    }

    #[test]
    fn malformed_json_is_refused_with_its_reason() {
        for (body, why) in [
            ("", "the body is empty"),
            ("{", "the body ends inside a value"),
            (r#"{"a" 1}"#, "`:` was expected after a key"),
            (r#"{"a":1,}"#, "a key was expected"),
            ("[1,]", "a value was expected"),
            ("[1 2]", "`,` or the end of the container was expected"),
            ("{'a':1}", "a key was expected"),
            ("01", "data after the JSON value"),
            ("1.", "the body ends inside a value"),
            ("-", "the body ends inside a value"),
            ("[.5]", "a value was expected"),
            ("tru", "the body ends inside a value"),
            ("nul1", "an invalid literal"),
            ("\"a\nb\"", "a control character in a string"),
            (r#""\x""#, "an invalid escape in a string"),
            (r#""\u12G4""#, "an invalid \\u escape"),
            ("{} {}", "data after the JSON value"),
            ("[1]]", "data after the JSON value"),
            ("NaN", "a value was expected"),
        ] {
            assert_eq!(bad(body), JsonViolation::Malformed(why), "{body:?}");
        }
    }

    #[test]
    fn each_limit_refuses_one_past_it_and_passes_at_it() {
        let l = JsonLimits { max_depth: 3, max_properties: 2, max_string_length: 5, max_array_length: 3, max_key_length: 4, max_size: 64 };
        assert_eq!(check(b"[[[1]]]", l), Ok(()));
        assert_eq!(check(b"[[[[1]]]]", l), Err(JsonViolation::Depth));
        assert_eq!(check(br#"{"a":1,"b":2}"#, l), Ok(()));
        assert_eq!(check(br#"{"a":1,"b":2,"c":3}"#, l), Err(JsonViolation::Properties));
        assert_eq!(check(br#"["abcde"]"#, l), Ok(()));
        assert_eq!(check(br#"["abcdef"]"#, l), Err(JsonViolation::StringLength));
        assert_eq!(check(br#"["\u00e9\u00e9\u00e9\u00e9\n"]"#, l), Ok(()), "escapes count once");
        assert_eq!(check("[\"ééééé\"]".as_bytes(), l), Ok(()), "characters, not bytes");
        assert_eq!(check(b"[123456]", l), Err(JsonViolation::StringLength), "numbers too");
        assert_eq!(check(b"[1,2,3]", l), Ok(()));
        assert_eq!(check(b"[1,2,3,4]", l), Err(JsonViolation::ArrayLength));
        assert_eq!(check(br#"{"abcd":1}"#, l), Ok(()));
        assert_eq!(check(br#"{"abcde":1}"#, l), Err(JsonViolation::KeyLength));
        assert_eq!(check(&[b' '; 65], l), Err(JsonViolation::Size));
    }

    #[test]
    fn parser_bombs_are_refused_early_with_bounded_memory() {
        // 10,000-deep nesting: refused at depth 33, having kept 32 bytes of stack.
        let deep = "[".repeat(10_000);
        let mut v = JsonValidator::new(JsonLimits::default());
        assert_eq!(v.feed(deep.as_bytes()), Err(JsonViolation::Depth));
        assert!(v.stack.capacity() <= 64);
        let deep_objects = r#"{"a":"#.repeat(10_000);
        assert_eq!(bad(&deep_objects), JsonViolation::Depth);
        // A 1 MiB key and a 100 KiB string.
        assert_eq!(bad(&format!(r#"{{"{}":1}}"#, "k".repeat(1 << 20))), JsonViolation::Size);
        assert_eq!(bad(&format!(r#"{{"{}":1}}"#, "k".repeat(300))), JsonViolation::KeyLength);
        assert_eq!(bad(&format!(r#"["{}"]"#, "s".repeat(100_000))), JsonViolation::StringLength);
        // 20,000 properties, 20,000 elements.
        let props: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":1")).collect();
        assert_eq!(bad(&format!("{{{}}}", props.join(","))), JsonViolation::Properties);
        assert_eq!(bad(&format!("[{}]", vec!["0"; 20_000].join(","))), JsonViolation::ArrayLength);
    }

    #[test]
    fn chunk_boundaries_never_change_the_verdict() {
        // Every body of the other tests, split at every position into two chunks, and fed a
        // byte at a time: the same verdict as in one piece.
        let l = JsonLimits { max_depth: 4, max_properties: 3, max_string_length: 6, max_array_length: 3, max_key_length: 4, max_size: 200 };
        let bodies = [
            r#"{"name":"O'Brien","n":-12.5e+3,"ok":[true,false,null]}"#,
            r#"  [1, 2.0, 0, {"a": [[], {}]}]  "#,
            r#"{"ab":"\u00e9\n","x":1e5}"#,
            r#"{"a":1,"b":2,"c":3,"d":4}"#,
            r#"[[[[[1]]]]]"#,
            r#"{"abcde":1}"#,
            r#"["abcdefg"]"#,
            r#"[1,2,3,4]"#,
            r#"{"a" 1}"#,
            "[1 2]",
            "1.",
            "123",
            "-0.5E-7",
            r#""\u12G4""#,
            "tru",
            "{} x",
        ];
        for body in bodies {
            let whole = check(body.as_bytes(), l);
            for cut in 0..=body.len() {
                let mut v = JsonValidator::new(l);
                let r = v.feed(&body.as_bytes()[..cut]).and_then(|()| v.feed(&body.as_bytes()[cut..])).and_then(|()| v.finish());
                assert_eq!(r, whole, "{body:?} cut at {cut}");
            }
            let mut v = JsonValidator::new(l);
            let r = body.as_bytes().iter().try_for_each(|b| v.feed(std::slice::from_ref(b))).and_then(|()| v.finish());
            assert_eq!(r, whole, "{body:?} a byte at a time");
        }
    }

    #[test]
    fn json_content_types() {
        for t in ["application/json", "Application/JSON; charset=utf-8", "application/problem+json", "application/vnd.api+json"] {
            assert!(is_json_content_type(t.as_bytes()), "{t}");
        }
        for t in ["text/plain", "application/jsonp", "+json", "application/x-www-form-urlencoded"] {
            assert!(!is_json_content_type(t.as_bytes()), "{t}");
        }
    }
}
