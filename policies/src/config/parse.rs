//! Bytes to [`GatewaySpec`], with the field path of the first syntax or type error and a
//! did-you-mean for unknown keys and enum values.
//!
//! Serde stops at the first error, so a document with a typo reports that typo alone; the
//! semantic checks in `compile` then report every remaining problem at once.

use super::GatewaySpec;
use crate::error::ConfigError;
use serde::de::DeserializeOwned;

/// The two accepted syntaxes. One schema; the file extension picks the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` is JSON; everything else (`.yaml`, `.yml`) is YAML.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }

    /// From a `Content-Type` header value; `None` when it names neither syntax.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" | "text/json" => Some(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Some(Format::Yaml),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/yaml",
        }
    }
}

/// Parses a whole config document.
pub fn parse(bytes: &[u8], format: Format) -> Result<GatewaySpec, Vec<ConfigError>> {
    parse_document(bytes, format).map(|(spec, _)| spec)
}

/// Parses a whole document once into its generic tree, then the schema from that tree: the
/// store needs both (the tree for per-API diffs), and YAML parsing is the expensive part of a
/// reload.
pub fn parse_document(bytes: &[u8], format: Format) -> Result<(GatewaySpec, serde_json::Value), Vec<ConfigError>> {
    let value: serde_json::Value = parse_as(bytes, format).map_err(|e| vec![e])?;
    let spec = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        vec![to_config_error(path, e.into_inner().to_string())]
    })?;
    Ok((spec, value))
}

/// Parses any part of the schema (for example one API for `PUT /v1/apis/{name}`), or a
/// generic `serde_json::Value`.
pub fn parse_value<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, ConfigError> {
    parse_as(bytes, format)
}

fn parse_as<T: DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, ConfigError> {
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                to_config_error(path, e.into_inner().to_string())
            })?;
            de.end().map_err(|e| ConfigError::new("", e.to_string()))?;
            Ok(value)
        }
        Format::Yaml => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(ConfigError::new("", "the document is empty"));
            }
            let de = yaml_serde::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                to_config_error(path, e.into_inner().to_string())
            })
        }
    }
}

fn to_config_error(path: String, message: String) -> ConfigError {
    // serde_path_to_error prints "." for the root.
    let path = if path == "." { String::new() } else { path };
    // yaml_serde prefixes its own copy of the path ("apis[0].endpoint: unknown field ..."):
    // the path is reported separately, so drop it from the message.
    let message = match message.split_once(": ") {
        Some((head, tail)) if !head.is_empty() && !head.contains(' ') => tail.to_string(),
        _ => message,
    };
    let hint = did_you_mean(&message);
    let mut err = ConfigError::new(path, message);
    err.hint = hint;
    err
}

/// Serde words unknown keys and variants as "unknown field `x`, expected one of `a`, `b`".
/// Picks the closest expected name, if it is close enough to be a typo.
fn did_you_mean(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("unknown variant")) {
        return None;
    }
    let mut quoted = message.split('`').skip(1).step_by(2);
    let unknown = quoted.next()?;
    let best = quoted
        .map(|cand| (strsim::jaro_winkler(unknown, cand), cand))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some(format!("did you mean `{}`?", best.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_has_path_and_did_you_mean() {
        let yaml = b"apis:\n  - name: a\n    context: /a\n    version: v1\n    endpoint:\n      strategi: failover\n      targets: []\n";
        let errs = parse(yaml, Format::Yaml).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "apis[0].endpoint.strategi");
        assert!(errs[0].message.contains("unknown field `strategi`"), "{}", errs[0].message);
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `strategy`?"));
    }

    #[test]
    fn bad_enum_value_has_did_you_mean() {
        let json = br#"{"apis":[{"name":"a","context":"/a","version":"v1","state":"publishd"}]}"#;
        let errs = parse(json, Format::Json).unwrap_err();
        assert_eq!(errs[0].path, "apis[0].state");
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `published`?"));
    }

    #[test]
    fn bad_duration_names_the_field() {
        let yaml = b"apis:\n  - name: a\n    context: /a\n    version: v1\n    endpoint:\n      targets: []\n      connect_timeout: 30\n";
        let errs = parse(yaml, Format::Yaml).unwrap_err();
        assert_eq!(errs[0].path, "apis[0].endpoint.connect_timeout");
        assert!(errs[0].message.contains("has no unit"), "{}", errs[0].message);
    }

    #[test]
    fn empty_and_garbage_documents_are_errors() {
        assert!(parse(b"", Format::Yaml).is_err());
        assert!(parse(b"{", Format::Json).is_err());
        assert!(parse(b"{} trailing", Format::Json).is_err());
        assert!(parse(b"- a\n- b\n", Format::Yaml).is_err());
    }

    #[test]
    fn format_from_content_type() {
        assert_eq!(Format::from_content_type("application/json; charset=utf-8"), Some(Format::Json));
        assert_eq!(Format::from_content_type("application/yaml"), Some(Format::Yaml));
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
