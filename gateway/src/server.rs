//! Builds and runs the Pingora server: the proxy service on the configured listeners, the
//! control plane (admin API, reloads) and the health checker as background services.

use crate::access_log::AccessLog;
use crate::control_plane::ControlPlane;
use crate::health::HealthChecker;
use crate::proxy::{Gateway, GatewayState};
use control_api::{AdminState, AdminToken, Store};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::prelude::{background_service, Server};
use pingora::server::configuration::ServerConf;
use policies::state::Durable;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

pub fn run(config: &Path) -> ExitCode {
    init_tracing();
    let store = match Store::open(config, Arc::new(Durable::new()), Some(crate::upstream::prepare_hook())) {
        Ok(s) => Arc::new(s.with_release(Arc::new(crate::upstream::release_parse_memory))),
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            for err in e.errors() {
                eprintln!("{}: {err}", config.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let snapshot = store.load();
    let process = &snapshot.process;
    // The response cache lives as long as the process: a reload keeps its entries.
    let cache = crate::cache::ResponseCache::new(&process.cache);

    // The admin listener is bound here, before anything starts, so a taken port or a missing
    // token stops the process with a clear message instead of a half-started gateway.
    let admin = match &process.admin {
        None => None,
        Some(admin) => {
            let token = match &admin.token_env {
                None => None,
                Some(var) => match std::env::var(var) {
                    Ok(t) if !t.is_empty() => Some(AdminToken::new(&t)),
                    _ => {
                        eprintln!("admin.token_env: the environment variable {var} is not set or empty");
                        return ExitCode::FAILURE;
                    }
                },
            };
            if token.is_none() {
                tracing::warn!(address = %admin.address, "the admin API has no token (allowed on loopback only)");
            }
            let listener = match std::net::TcpListener::bind(&admin.address).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("admin.address: cannot listen on {}: {e}", admin.address);
                    return ExitCode::FAILURE;
                }
            };
            Some((
                listener,
                Arc::new(AdminState { store: store.clone(), token, cache: Some(cache.storage as &'static dyn policies::cache::Purge) }),
            ))
        }
    };

    let access_log = if process.access_log.enabled {
        match AccessLog::start(&process.access_log) {
            Ok(log) => Some(log),
            Err(e) => {
                eprintln!("access_log.path: cannot open {}: {e}", process.access_log.path);
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let threads = process.server.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let conf = ServerConf {
        threads,
        work_stealing: process.server.work_stealing,
        upstream_keepalive_pool_size: process.server.upstream_keepalive_pool,
        graceful_shutdown_timeout_seconds: Some(process.server.graceful_shutdown_timeout.0.as_secs()),
        grace_period_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Remote key sets are fetched once before traffic is accepted, so the first requests
    // find their keys; failures are logged and the background fetcher retries.
    let jwks = crate::jwks::JwksFetcher::new(store.clone());
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(jwks.fetch_all_now()),
        Err(e) => tracing::warn!(error = %e, "cannot fetch JWKS at startup; the background fetcher will"),
    }

    let lane = process.server.upstream_fast_path.then(|| crate::lane::pool::PoolSettings::new(process.server.upstream_keepalive_pool));
    let limits = crate::proxy::RequestLimits::from_spec(&process.server);
    let log_at_exit = access_log.clone();
    let gateway = Gateway::new(GatewayState { store: store.clone(), access_log, introspection: Default::default(), lane, limits, cache });
    // One service: the HTTP/1 fast lane on plain-HTTP connections, which hands every request
    // it does not take (and every TLS connection) to Pingora's proxy app.
    let app = crate::lane::Lane::new(gateway.clone(), pingora::proxy::http_proxy(&server.configuration, gateway));
    let mut proxy = pingora::services::listening::Service::new("gateway".to_string(), app);
    for l in &process.listeners {
        match &l.tls {
            // No L4 read buffer on plain listeners: the lane (and Pingora's HTTP/1 reader)
            // read into buffers of their own, so Pingora's default 64 KiB per connection was
            // memory held by every idle keep-alive client and an extra copy of each read.
            // TLS listeners keep it (rustls reads in small records).
            None => {
                proxy.add_listener(ListenerConfig::tcp(l.address.clone()).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)))
            }
            Some(tls) => {
                let mut settings = match TlsSettings::intermediate(&tls.cert, &tls.key) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("listeners: cannot load TLS certificate/key for {}: {e}", l.address);
                        return ExitCode::FAILURE;
                    }
                };
                if tls.http2 {
                    settings.enable_h2();
                }
                proxy.add_tls_with_settings(&l.address, None, settings);
            }
        }
    }
    server.add_service(proxy);
    server.add_service(background_service("control plane", ControlPlane { store: store.clone(), admin: Mutex::new(admin) }));
    server.add_service(background_service("health checks", HealthChecker { store: store.clone() }));
    server.add_service(background_service("jwks refresh", jwks));
    server.add_service(background_service("throttle sweep", crate::sweeper::ThrottleSweeper { store }));
    drop(snapshot);
    tracing::info!(config = %config.display(), "gateway starting");
    // `run` returns once the runtimes have exited (after a graceful stop, when the in-flight
    // requests are done): the access log's last lines are written before the process ends.
    server.run(pingora::server::RunArgs::default());
    if let Some(log) = log_at_exit {
        log.flush();
    }
    std::process::exit(0)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
