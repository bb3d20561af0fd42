//! The snapshot store: one `ArcSwap<Snapshot>` and everything that changes it.
//!
//! Writers (file watch, SIGHUP, the admin API, rollback) serialise on one async mutex and go
//! through the same steps: precondition → parse → compile → persist → swap. A failure at any
//! step leaves the served snapshot, the config file and the revision history as they were.
//! Readers never take the mutex: [`Store::load`] is a lock-free `load_full`.

use crate::revisions::{format_name, write_atomic, RevisionMeta, Revisions};
use arc_swap::ArcSwap;
use policies::config::parse_value;
use policies::metrics::FAMILIES;
use policies::snapshot::ProcessSettings;
use policies::state::Durable;
use policies::{ConfigError, Format, GatewaySpec, Snapshot};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Who asked for a change: the `source` label of `gateway_config_reloads_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Startup,
    File,
    Sighup,
    Api,
    Rollback(u64),
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Startup => "startup",
            Source::File => "file",
            Source::Sighup => "sighup",
            Source::Api => "api",
            Source::Rollback(_) => "rollback",
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Rollback(id) => format!("rollback:{id}"),
            other => other.label().to_string(),
        }
    }

    /// Changes that came from the file itself must not be written back to it.
    fn writes_file(&self) -> bool {
        matches!(self, Source::Api | Source::Rollback(_))
    }
}

/// A proposed config document.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub source: Source,
}

/// What would change (validate) or did change (apply).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub apis_added: Vec<String>,
    pub apis_removed: Vec<String>,
    pub apis_changed: Vec<String>,
    /// Settings a reload cannot change (listeners, admin, server, access_log): they take
    /// effect at the next restart.
    pub restart_required: Vec<&'static str>,
    /// Accepted settings that are probably not what was meant (see `Snapshot::warnings`).
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub revision: u64,
    pub etag: String,
    /// False when the document was identical to the one served (nothing was done).
    pub changed: bool,
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Syntax or type errors: the document is not a config at all.
    #[error("the document cannot be parsed")]
    Malformed(Vec<ConfigError>),
    /// The document parses but does not compile.
    #[error("the config is invalid")]
    Invalid(Vec<ConfigError>),
    /// `If-Match` named another revision.
    #[error("the config changed since it was read (current etag {current})")]
    Stale { current: String },
    /// Reading or writing the config file or the revisions failed.
    #[error("{0}")]
    Persist(String),
    #[error("{0}")]
    NotFound(String),
}

impl ApplyError {
    pub fn errors(&self) -> Vec<ConfigError> {
        match self {
            ApplyError::Malformed(e) | ApplyError::Invalid(e) => e.clone(),
            _ => Vec::new(),
        }
    }
}

/// The document being served, as applied. Only the bytes are kept: the generic tree of a
/// 10,000-API document is tens of MiB, and the admin reads that need it (GET in the other
/// syntax, per-API edits) are rare, so they parse on demand.
#[derive(Debug, Clone)]
pub struct Document {
    pub bytes: Arc<[u8]>,
    pub format: Format,
    /// A digest of each API's definition, for "what changed" summaries.
    pub api_digests: BTreeMap<String, u64>,
    pub etag: String,
    pub revision: u64,
    pub source: String,
    pub applied_unix: u64,
}

pub struct Store {
    current: ArcSwap<Snapshot>,
    document: ArcSwap<Document>,
    durable: Arc<Durable>,
    prepare: Option<Prepare>,
    release: Option<Release>,
    revisions: Revisions,
    /// The process settings the running process started with (what a restart would change).
    boot: ProcessSettings,
    config_path: PathBuf,
    write: tokio::sync::Mutex<()>,
    started: Instant,
}

/// A data-plane step run after `compile` and before a snapshot can be served: the gateway
/// builds its connector state here (peer templates, CA stores, health checkers) so that those
/// errors, too, are reported at validation time with field paths, and so the request path
/// never builds them.
pub type Prepare = Arc<dyn Fn(&Snapshot) -> Result<(), Vec<ConfigError>> + Send + Sync>;

/// Called after a replaced snapshot is dropped, on the thread that dropped it: the gateway
/// hands the freed memory back to the OS there (see `gateway::upstream`).
pub type Release = Arc<dyn Fn() + Send + Sync>;

/// A strong ETag over the document bytes.
pub fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Document {
    /// The document as a generic tree.
    pub fn value(&self) -> Result<serde_json::Value, ApplyError> {
        parse_value(&self.bytes, self.format).map_err(|e| ApplyError::Malformed(vec![e]))
    }
}

/// Digest of every API definition by name (SipHash of its canonical JSON; only compared
/// within one process).
fn api_digests(value: &serde_json::Value) -> BTreeMap<String, u64> {
    use std::hash::{Hash, Hasher};
    value
        .get("apis")
        .and_then(|a| a.as_array())
        .map(|arr| {
            arr.iter()
                .filter_map(|api| {
                    let name = api.get("name")?.as_str()?.to_string();
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    serde_json::to_vec(api).ok()?.hash(&mut h);
                    Some((name, h.finish()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Parse and compile, without touching any state but `durable`'s registry.
pub fn build(
    bytes: &[u8],
    format: Format,
    durable: &Durable,
    prepare: Option<&Prepare>,
) -> Result<(Snapshot, BTreeMap<String, u64>), ApplyError> {
    let (spec, value): (GatewaySpec, serde_json::Value) = policies::config::parse_document(bytes, format).map_err(ApplyError::Malformed)?;
    let digests = api_digests(&value);
    drop(value);
    let snapshot = policies::compile(&spec, durable).map_err(ApplyError::Invalid)?;
    // Everything the parse allocated is freed before the prepare hook runs, so the hook can
    // hand that memory back to the OS (the gateway's does).
    drop(spec);
    if let Some(prepare) = prepare {
        prepare(&snapshot).map_err(ApplyError::Invalid)?;
    }
    Ok((snapshot, digests))
}

impl Store {
    /// Loads the config file at startup. The file must be valid: there is nothing older to
    /// fall back on. Its revision is the newest on disk when identical, else a new one.
    pub fn open(config_path: &Path, durable: Arc<Durable>, prepare: Option<Prepare>) -> Result<Store, ApplyError> {
        let bytes = std::fs::read(config_path).map_err(|e| ApplyError::Persist(format!("cannot read {}: {e}", config_path.display())))?;
        let format = Format::from_path(config_path);
        let (mut snapshot, digests) = build(&bytes, format, &durable, prepare.as_ref()).inspect_err(|_| {
            FAMILIES.config_reloads.with_label_values(&["startup", "invalid"]).inc();
        })?;
        let dir = match snapshot.process.admin.as_ref().and_then(|a| a.revisions_dir.clone()) {
            Some(d) => PathBuf::from(d),
            None => config_path.parent().unwrap_or(Path::new(".")).join(".revisions"),
        };
        let keep = snapshot.process.admin.as_ref().map_or(20, |a| a.keep_revisions);
        let revisions =
            Revisions::open(&dir, keep).map_err(|e| ApplyError::Persist(format!("cannot open revisions dir {}: {e}", dir.display())))?;
        let etag = etag_of(&bytes);
        let latest = revisions.latest().map_err(|e| ApplyError::Persist(e.to_string()))?;
        let revision = match latest {
            Some(m) if m.etag == etag => m.id,
            other => {
                let id = other.map_or(1, |m| m.id + 1);
                let meta = RevisionMeta {
                    id,
                    etag: etag.clone(),
                    source: "startup".into(),
                    created_unix: now_unix(),
                    format: format_name(format).into(),
                };
                revisions.save(&meta, &bytes).map_err(|e| ApplyError::Persist(e.to_string()))?;
                id
            }
        };
        snapshot.revision = revision;
        log_warnings(&snapshot.warnings);
        FAMILIES.config_revision.set(revision as i64);
        FAMILIES.config_reloads.with_label_values(&["startup", "ok"]).inc();
        let document = Document {
            bytes: Arc::from(bytes),
            format,
            api_digests: digests,
            etag,
            revision,
            source: "startup".into(),
            applied_unix: now_unix(),
        };
        let boot = snapshot.process.clone();
        Ok(Store {
            boot,
            current: ArcSwap::from_pointee(snapshot),
            document: ArcSwap::from_pointee(document),
            durable,
            prepare,
            release: None,
            revisions,
            config_path: config_path.to_path_buf(),
            write: tokio::sync::Mutex::new(()),
            started: Instant::now(),
        })
    }

    /// Sets the hook run after a replaced snapshot is freed.
    pub fn with_release(mut self, release: Release) -> Self {
        self.release = Some(release);
        self
    }

    /// The snapshot to serve a request with. Lock-free; call once per request and keep it.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn document(&self) -> Arc<Document> {
        self.document.load_full()
    }

    pub fn durable(&self) -> &Arc<Durable> {
        &self.durable
    }

    pub fn revisions(&self) -> &Revisions {
        &self.revisions
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Parses and compiles `candidate` without applying it; says what would change.
    pub async fn validate(&self, candidate: Candidate) -> Result<Summary, ApplyError> {
        let durable = self.durable.clone();
        let prepare = self.prepare.clone();
        let (snapshot, digests) =
            tokio::task::spawn_blocking(move || build(&candidate.bytes, candidate.format, &durable, prepare.as_ref()))
                .await
                .map_err(|e| ApplyError::Persist(format!("validation task failed: {e}")))??;
        Ok(self.summarize(&snapshot, &digests))
    }

    /// Applies a candidate: the whole pipeline, or nothing.
    pub async fn apply(&self, candidate: Candidate, if_match: Option<&str>) -> Result<Applied, ApplyError> {
        let source = candidate.source.clone();
        let guard = self.write.lock().await;
        let result = self.apply_locked(candidate, if_match).await;
        drop(guard);
        self.report(&source, &result);
        result
    }

    /// Reads the config file and applies it (file watch, SIGHUP). The file is read while
    /// holding the write lock: read before it, a change applied through the API in between
    /// would be undone by the stale bytes.
    pub async fn apply_file(&self, source: Source) -> Result<Applied, ApplyError> {
        let guard = self.write.lock().await;
        let result = match tokio::fs::read(&self.config_path).await {
            Ok(bytes) => {
                let candidate = Candidate { bytes, format: Format::from_path(&self.config_path), source: source.clone() };
                self.apply_locked(candidate, None).await
            }
            Err(e) => Err(ApplyError::Persist(format!("cannot read {}: {e}", self.config_path.display()))),
        };
        drop(guard);
        self.report(&source, &result);
        result
    }

    fn report(&self, source: &Source, result: &Result<Applied, ApplyError>) {
        let outcome = match result {
            Ok(a) if a.changed => "ok",
            Ok(_) => "unchanged",
            Err(ApplyError::Malformed(_) | ApplyError::Invalid(_)) => "invalid",
            Err(ApplyError::Stale { .. }) => "stale",
            Err(_) => "error",
        };
        FAMILIES.config_reloads.with_label_values(&[source.label(), outcome]).inc();
        if let Ok(a) = result {
            log_warnings(&a.summary.warnings);
        }
        match &result {
            Ok(a) if a.changed => tracing::info!(
                revision = a.revision,
                source = source.label(),
                apis_added = a.summary.apis_added.len(),
                apis_removed = a.summary.apis_removed.len(),
                apis_changed = a.summary.apis_changed.len(),
                restart_required = ?a.summary.restart_required,
                "config applied"
            ),
            Ok(_) => tracing::debug!(source = source.label(), "config unchanged"),
            Err(e) => {
                let errors: Vec<String> = e.errors().iter().map(ToString::to_string).collect();
                tracing::warn!(source = source.label(), error = %e, ?errors, "config rejected; the previous config keeps serving");
            }
        }
    }

    /// The pipeline; the caller holds `self.write`.
    async fn apply_locked(&self, candidate: Candidate, if_match: Option<&str>) -> Result<Applied, ApplyError> {
        let current = self.document.load_full();
        if let Some(expected) = if_match {
            // If-Match uses the strong comparison (RFC 9110 §13.1.1): weak tags never match.
            let matches = expected.trim() == "*" || expected.split(',').any(|e| e.trim() == current.etag);
            if !matches {
                return Err(ApplyError::Stale { current: current.etag.clone() });
            }
        }
        let file_format = Format::from_path(&self.config_path);
        // The document is kept in the config file's syntax: a body in the other syntax is
        // rendered once here, so the file, the revision and the ETag are the same bytes and
        // the file watch sees nothing new when the gateway writes the file.
        let (bytes, format) = if candidate.format == file_format {
            (candidate.bytes, candidate.format)
        } else {
            let value: serde_json::Value = parse_value(&candidate.bytes, candidate.format).map_err(|e| ApplyError::Malformed(vec![e]))?;
            (render(&value, file_format)?, file_format)
        };
        let etag = etag_of(&bytes);
        if etag == current.etag {
            return Ok(Applied { revision: current.revision, etag, changed: false, summary: Summary::default() });
        }

        let durable = self.durable.clone();
        let prepare = self.prepare.clone();
        let revision = current.revision + 1;
        let config_path = self.config_path.clone();
        let source = candidate.source.clone();
        let source_label = source.describe();
        let revisions_dir = self.revisions.dir().to_path_buf();
        let keep = self.boot.admin.as_ref().map_or(20, |a| a.keep_revisions);
        // Compile and persist off the async workers: both can take a while on big configs.
        let (mut snapshot, digests, bytes) = tokio::task::spawn_blocking(move || {
            let (snapshot, digests) = build(&bytes, format, &durable, prepare.as_ref())?;
            // The config file first: it is what a restart serves.
            if source.writes_file() {
                write_atomic(&config_path, &bytes)
                    .map_err(|e| ApplyError::Persist(format!("cannot write {}: {e}", config_path.display())))?;
            }
            let meta = RevisionMeta {
                id: revision,
                etag: etag_of(&bytes),
                source: source.describe(),
                created_unix: now_unix(),
                format: format_name(format).into(),
            };
            // History is secondary: a failure to record it is logged, not fatal.
            if let Err(e) = Revisions::open(&revisions_dir, keep).and_then(|r| r.save(&meta, &bytes)) {
                tracing::warn!(error = %e, revision, "cannot record the revision on disk");
            }
            Ok::<_, ApplyError>((snapshot, digests, bytes))
        })
        .await
        .map_err(|e| ApplyError::Persist(format!("apply task failed: {e}")))??;

        let summary = self.summarize(&snapshot, &digests);
        snapshot.revision = revision;
        let old_snapshot = self.current.swap(Arc::new(snapshot));
        let old_document = self.document.swap(Arc::new(Document {
            bytes: Arc::from(bytes),
            format,
            api_digests: digests,
            etag: etag.clone(),
            revision,
            source: source_label,
            applied_unix: now_unix(),
        }));
        FAMILIES.config_revision.set(revision as i64);
        // Free the replaced snapshot off the async workers (unless requests still hold it:
        // then the last of them frees it).
        let release = self.release.clone();
        tokio::task::spawn_blocking(move || {
            drop(old_snapshot);
            drop(old_document);
            if let Some(release) = release {
                release();
            }
        });
        Ok(Applied { revision, etag, changed: true, summary })
    }

    /// Re-applies a stored revision as a new revision.
    pub async fn rollback(&self, id: u64, if_match: Option<&str>) -> Result<Applied, ApplyError> {
        let found = self.revisions.read(id).map_err(|e| ApplyError::Persist(e.to_string()))?;
        let Some((meta, bytes)) = found else {
            return Err(ApplyError::NotFound(format!("revision {id} is not kept on disk")));
        };
        self.apply(Candidate { bytes, format: meta.format(), source: Source::Rollback(id) }, if_match).await
    }

    fn summarize(&self, next: &Snapshot, new: &BTreeMap<String, u64>) -> Summary {
        let doc = self.document.load_full();
        let old = &doc.api_digests;
        let mut s = Summary::default();
        for (name, digest) in new {
            match old.get(name) {
                None => s.apis_added.push(name.clone()),
                Some(o) if o != digest => s.apis_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        s.apis_removed = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
        s.restart_required = restart_required(&self.boot, &next.process);
        s.warnings = next.warnings.clone();
        s
    }
}

fn log_warnings(warnings: &[ConfigError]) {
    for w in warnings {
        tracing::warn!(path = %w.path, hint = w.hint.as_deref().unwrap_or(""), "config warning: {}", w.message);
    }
}

fn restart_required(old: &ProcessSettings, new: &ProcessSettings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listeners != new.listeners {
        out.push("listeners");
    }
    if old.admin != new.admin {
        out.push("admin");
    }
    if old.server != new.server {
        out.push("server");
    }
    if old.access_log != new.access_log {
        out.push("access_log");
    }
    out
}

/// Writes a JSON value in the given syntax (for the config file when the API was given the
/// other syntax, and for GET in the other syntax). Comments of the original are not kept.
pub fn render(value: &serde_json::Value, format: Format) -> Result<Vec<u8>, ApplyError> {
    match format {
        Format::Json => serde_json::to_vec_pretty(value).map_err(|e| ApplyError::Persist(e.to_string())),
        Format::Yaml => yaml_serde::to_string(value).map(String::into_bytes).map_err(|e| ApplyError::Persist(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
