//! Per-snapshot connector state for every target: the `HttpPeer` template requests clone,
//! and the health checker. Built by the store's prepare hook right after compile, so a bad
//! CA file is a config error with a field path, and the request path only clones.

use control_api::Prepare;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use policies::upstream::{Endpoint, Target};
use policies::{ConfigError, Snapshot};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// What the data plane keeps in `Target::data_plane`.
pub struct PreparedTarget {
    pub peer: HttpPeer,
    /// `peer.reuse_hash()`, computed once: the key of the direct exchange's idle connections.
    pub reuse_key: u64,
    pub backend: Backend,
    pub check: Option<HttpHealthCheck>,
}

/// The hook the store runs after every compile.
pub fn prepare_hook() -> Prepare {
    Arc::new(prepare)
}

fn prepare(snapshot: &Snapshot) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    for (i, api) in snapshot.apis.iter().enumerate() {
        let Some(endpoint) = &api.endpoint else { continue };
        for (j, target) in endpoint.targets.iter().enumerate() {
            match prepare_target(endpoint, target) {
                Ok(prepared) => {
                    // A fresh snapshot's cell is empty; `set` only fails if prepared twice.
                    let _ = target.data_plane.set(Box::new(prepared));
                }
                Err(msg) => errors.push(ConfigError::new(format!("apis[{i}].endpoint.tls.ca_file"), format!("target {j}: {msg}"))),
            }
        }
    }
    release_parse_memory();
    if errors.is_empty() {
        crate::jwks::fetch_unloaded_blocking(snapshot);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Returns the memory the config parse just freed to the OS. mimalloc purges freed pages
/// lazily, on the owning thread's next allocations; the thread that parsed a reload (a
/// blocking-pool thread) then goes idle, so without this a 10,000-API reload would leave
/// ~130 MiB of freed parse buffers resident (measured: 213 MB vs 82 MB RSS; BENCHMARKS.md).
#[allow(unsafe_code)]
pub fn release_parse_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time;
    // `force = true` also returns abandoned and empty pages to the OS.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Parses a PEM bundle into the CA list Pingora's rustls connector takes. Each certificate
/// is parsed here because Pingora's `WrappedX509` panics on bad DER.
fn ca_list(pem: &[u8]) -> Result<Arc<[WrappedX509]>, String> {
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let der = cert.map_err(|e| format!("bad PEM: {e}"))?;
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| format!("bad certificate: {e}"))?;
        out.push(WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509));
    }
    if out.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(Arc::from(out))
}

fn prepare_target(endpoint: &Endpoint, target: &Target) -> Result<PreparedTarget, String> {
    let ca = target.ca_pem.as_deref().map(ca_list).transpose()?;
    // `new` resolves its argument; a resolved `SocketAddr` cannot fail there.
    // Plain-HTTP peers carry no SNI: an empty String clones without allocating per request.
    let sni = if target.tls { target.sni.clone() } else { String::new() };
    let mut peer = HttpPeer::new(target.addr, target.tls, sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(endpoint.connect_timeout);
    o.read_timeout = Some(endpoint.read_timeout);
    o.write_timeout = Some(endpoint.write_timeout);
    o.idle_timeout = Some(endpoint.idle_timeout);
    o.verify_cert = target.verify;
    o.verify_hostname = target.verify;
    if let Some(ca) = &ca {
        o.ca = Some(ca.clone());
    }
    let check = endpoint.health_check.as_ref().map(|hc| {
        let host = target.authority.to_str().unwrap_or("localhost");
        let mut check = HttpHealthCheck::new(host, target.tls);
        check.peer_template.sni = target.sni.clone();
        check.peer_template.options.connection_timeout = Some(hc.timeout);
        check.peer_template.options.read_timeout = Some(hc.timeout);
        check.peer_template.options.verify_cert = target.verify;
        check.peer_template.options.verify_hostname = target.verify;
        if let Some(ca) = &ca {
            check.peer_template.options.ca = Some(ca.clone());
        }
        // The check's request is built by `new` for "/"; point it at the configured path.
        let path = format!("{}{}", target.base_path, hc.path);
        if let Ok(uri) = path.parse() {
            check.req.set_uri(uri);
        }
        check
    });
    use pingora::upstreams::peer::Peer;
    let reuse_key = peer.reuse_hash();
    Ok(PreparedTarget {
        reuse_key,
        peer,
        backend: Backend { addr: PingoraAddr::Inet(target.addr), weight: 1, ext: Default::default() },
        check,
    })
}

/// The prepared state of a target; `None` only if the prepare hook did not run.
pub fn prepared(target: &Target) -> Option<&PreparedTarget> {
    target.data_plane.get()?.downcast_ref::<PreparedTarget>()
}
