//! Routing: path normalisation, the context/version table and per-API resource matchers.
//!
//! `compile.rs` checks the routing fields of the spec (an API's context and version, a
//! resource's methods); the tables are in `table.rs`.

pub(crate) mod compile;
pub mod normalize;
pub mod table;

pub use normalize::{normalize, NormalizeError};
pub use table::{ApiRoute, ResourceMatch, ResourceTable, RouteTable};

use std::fmt;

/// A set of HTTP methods as a bitmask: membership tests on the hot path are one AND.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct MethodSet(u16);

/// The methods a resource can name, in the order `Allow` lists them.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

impl MethodSet {
    pub const EMPTY: MethodSet = MethodSet(0);
    pub const ANY: MethodSet = MethodSet((1 << METHODS.len()) - 1);

    /// The bit of a request's method; `None` for extension methods, which no resource names.
    pub fn bit(method: &http::Method) -> Option<MethodSet> {
        let i = match *method {
            http::Method::GET => 0,
            http::Method::HEAD => 1,
            http::Method::POST => 2,
            http::Method::PUT => 3,
            http::Method::DELETE => 4,
            http::Method::PATCH => 5,
            http::Method::OPTIONS => 6,
            http::Method::TRACE => 7,
            http::Method::CONNECT => 8,
            _ => return None,
        };
        Some(MethodSet(1 << i))
    }

    /// Parses a config name (`GET`, `ANY`); case-insensitive.
    pub fn parse(name: &str) -> Option<MethodSet> {
        if name.eq_ignore_ascii_case("ANY") {
            return Some(Self::ANY);
        }
        METHODS.iter().position(|m| m.eq_ignore_ascii_case(name)).map(|i| MethodSet(1 << i))
    }

    pub fn contains(self, other: MethodSet) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: MethodSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The value of an `Allow` header: `GET, HEAD, PUT`.
    pub fn allow_header(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (i, m) in METHODS.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(m)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MethodSet({self})")
    }
}
