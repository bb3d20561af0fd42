//! Human units in config files: durations (`500ms`, `30s`, `5m`, `1h`, `1d`) and sizes
//! (`512B`, `64KiB`, `1MiB`, `10KB`). Bare numbers are refused on purpose: `timeout: 30` is
//! ambiguous between seconds and milliseconds, and that ambiguity has caused outages elsewhere.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A duration written with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

/// A size in bytes written with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

pub const DURATION_SYNTAX: &str = "a duration such as 500ms, 30s, 5m, 1h or 1d";
pub const SIZE_SYNTAX: &str = "a size such as 512B, 64KiB, 1MiB or 10KB";

/// Parses `<integer><unit>` with units ms, s, m, h, d.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("`{s}` is not {DURATION_SYNTAX}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is too large"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(format!("`{s}` is not {DURATION_SYNTAX}")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses `<integer><unit>` with units B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB
/// (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("`{s}` is not {SIZE_SYNTAX}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is too large"))?;
    let mult: u64 = match unit.trim() {
        "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        _ => return Err(format!("`{s}` is not {SIZE_SYNTAX}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_SYNTAX)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!("`{v}` has no unit; write {DURATION_SYNTAX}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!("`{v}` has no unit; write {DURATION_SYNTAX}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_SYNTAX)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!("`{v}` has no unit; write {SIZE_SYNTAX}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!("`{v}` has no unit; write {SIZE_SYNTAX}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A length in characters: a plain number (`256`) or, for readability, a size (`8KiB` is
/// 8192). Used by the JSON protector's string and key limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Length(pub u64);

impl<'de> serde::Deserialize<'de> for Length {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Length;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of characters such as 256, or a size such as 8KiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_size(v).map(Length).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Length(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v).map(Length).map_err(|_| E::custom(format!("`{v}` is negative")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 min").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn sizes_binary_and_decimal() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert!(parse_size("64").is_err());
        assert!(parse_size("64kib").is_err());
    }

    #[test]
    fn bare_numbers_are_refused_with_the_syntax() {
        let err = serde_json::from_str::<HumanDuration>("30").unwrap_err().to_string();
        assert!(err.contains("has no unit"), "{err}");
    }
}
