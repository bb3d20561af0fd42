//! The control plane's background service: the admin API listener, SIGHUP reloads and the
//! debounced config-file watch. All three feed `Store::apply`, which serialises them.

use async_trait::async_trait;
use control_api::{AdminState, Source, Store};
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ControlPlane {
    pub store: Arc<Store>,
    pub admin: Mutex<Option<(std::net::TcpListener, Arc<AdminState>)>>,
}

/// Quiet time after the last file event before reloading: editors write in several steps.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[async_trait]
impl BackgroundService for ControlPlane {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let admin = self.admin.lock().ok().and_then(|mut a| a.take());
        if let Some((listener, state)) = admin {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    let mut stop = shutdown.clone();
                    tokio::spawn(async move {
                        let wait = async move {
                            let _ = stop.changed().await;
                        };
                        if let Err(e) = control_api::api::serve(listener, state, wait).await {
                            tracing::error!(error = %e, "admin listener failed");
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "cannot use the admin listener"),
            }
        }

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Source>();
        let _watcher = watch_file(self.store.config_path().to_path_buf(), tx.clone());
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = tx.send(Source::Sighup);
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP"),
        }

        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(source) = rx.recv() => self.reload_from_file(source).await,
            }
        }
    }
}

impl ControlPlane {
    async fn reload_from_file(&self, source: Source) {
        // `apply_file` reads under the store's lock, logs and counts the outcome; an invalid
        // file never replaces a valid config.
        let _ = self.store.apply_file(source).await;
    }
}

/// Watches the config file's directory. Editors replace files by rename, and Kubernetes
/// ConfigMaps by swapping a `..data` symlink, so events may name another entry than the file
/// itself: any change in the directory triggers a read, and an unchanged document is a no-op
/// (`Store::apply` compares ETags), which also absorbs the gateway's own writes.
fn watch_file(path: PathBuf, tx: tokio::sync::mpsc::UnboundedSender<Source>) -> Option<impl Drop> {
    let dir = path.parent().map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() })?;
    let handler = move |res: DebounceEventResult| {
        if let Ok(events) = res {
            let relevant = events.iter().any(|e| !e.kind.is_access());
            if relevant {
                let _ = tx.send(Source::File);
            }
        }
    };
    let mut debouncer = match new_debouncer(DEBOUNCE, None, handler) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the config file watch; use SIGHUP or the admin API to reload");
            return None;
        }
    };
    if let Err(e) = debouncer.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::error!(dir = %dir.display(), error = %e, "cannot watch the config directory");
        return None;
    }
    Some(debouncer)
}
