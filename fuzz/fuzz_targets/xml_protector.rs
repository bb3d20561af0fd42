//! The XML protector never panics and never expands an entity, whatever the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policies::threat::xml::{check_xml, Dtd, XmlLimits};

fuzz_target!(|data: &[u8]| {
    let _ = check_xml(data, &XmlLimits::default());
    let _ = check_xml(data, &XmlLimits { dtd: Dtd::Allow, ..XmlLimits::default() });
});
