//! Target URLs: parsing, resolution, and the loopback guard.
//!
//! A load generator pointed at the wrong host is a denial-of-service tool, so every target is
//! resolved before any traffic and refused unless all of its addresses are loopback, unless
//! the user passed `--allow-remote`. Only plain `http://` is supported: the tool measures the
//! gateway's HTTP path on one machine, and TLS in the client would cost the client more CPU
//! than it costs the server.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A parsed and resolved `http://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// The host as written in the URL (without brackets for IPv6).
    pub host: String,
    pub port: u16,
    /// What the `Host` header carries: the URL's authority.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
    /// The address connections go to (the first resolved address, IPv4 preferred).
    pub addr: SocketAddr,
}

/// Why a target URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    Scheme(String),
    Malformed(String),
    Resolve(String, String),
    Remote { host: String, addrs: Vec<IpAddr> },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Scheme(url) => {
                write!(f, "unsupported URL {url:?}: only http:// targets are supported (the tool speaks plain HTTP/1.1)")
            }
            TargetError::Malformed(why) => write!(f, "malformed URL: {why}"),
            TargetError::Resolve(host, why) => write!(f, "cannot resolve host {host:?}: {why}"),
            TargetError::Remote { host, addrs } => {
                write!(f, "refusing to load non-loopback host {host:?} ({addrs:?}); pass --allow-remote if you really mean to")
            }
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `url`, resolves its host and applies the loopback guard.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target, TargetError> {
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if url.contains("://") => return Err(TargetError::Scheme(url.to_string())),
            None => return Err(TargetError::Malformed(format!("{url:?} does not start with http://"))),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, mut path) = rest.split_at(split);
        if let Some(hash) = path.find('#') {
            path = &path[..hash];
        }
        if authority.is_empty() {
            return Err(TargetError::Malformed(format!("{url:?} has no host")));
        }
        if authority.contains('@') {
            return Err(TargetError::Malformed("user info in URLs is not supported".into()));
        }
        let (host, port) = split_host_port(authority)?;
        let path = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(TargetError::Malformed(format!("path {path:?} contains spaces or control characters")));
        }
        let addrs: Vec<SocketAddr> =
            (host.as_str(), port).to_socket_addrs().map_err(|e| TargetError::Resolve(host.clone(), e.to_string()))?.collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| TargetError::Resolve(host.clone(), "no addresses".into()))?;
        if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(TargetError::Remote { host, addrs: addrs.iter().map(|a| a.ip()).collect() });
        }
        Ok(Target { url: url.to_string(), host, port, authority: authority.to_string(), path, addr })
    }

    /// The same target with another path (used by scenarios, whose paths are templates).
    pub fn with_path(&self, path: &str) -> Target {
        Target { path: path.to_string(), ..self.clone() }
    }
}

/// Checks that a listen address is loopback unless `allow_remote`; servers started by the tool
/// are test fixtures and must not be reachable from other machines by accident.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), TargetError> {
    if allow_remote || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(TargetError::Remote { host: addr.to_string(), addrs: vec![addr.ip()] })
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), TargetError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| TargetError::Malformed(format!("unclosed '[' in {authority:?}")))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(TargetError::Malformed(format!("bad authority {authority:?}"))),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| TargetError::Malformed(format!("bad port {p:?}")))?,
    };
    if host.is_empty() {
        return Err(TargetError::Malformed(format!("{authority:?} has no host")));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:18099/bench/v1/x?q=1", false).unwrap();
        assert_eq!(t.port, 18099);
        assert_eq!(t.authority, "127.0.0.1:18099");
        assert_eq!(t.path, "/bench/v1/x?q=1");
        assert_eq!(t.addr, "127.0.0.1:18099".parse().unwrap());
        let t = Target::parse("http://localhost", false).unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        assert!(t.addr.ip().is_loopback());
        let t = Target::parse("http://[::1]:9000?x", false).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9000, "/?x"));
    }

    #[test]
    fn refuses_remote_hosts_unless_allowed() {
        let err = Target::parse("http://192.0.2.10:80/", false).unwrap_err();
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        assert!(Target::parse("http://192.0.2.10:80/", true).is_ok());
        assert!(check_listen("0.0.0.0:9000".parse().unwrap(), false).is_err());
        assert!(check_listen("127.0.0.1:9000".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for (url, needle) in [
            ("https://127.0.0.1/", "only http://"),
            ("127.0.0.1:80/", "does not start with http://"),
            ("http://127.0.0.1:99999/", "bad port"),
            ("http:///x", "no host"),
            ("http://user@127.0.0.1/", "user info"),
            ("http://127.0.0.1/a b", "spaces"),
        ] {
            let err = Target::parse(url, false).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
