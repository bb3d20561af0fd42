//! Revisions on disk, and the atomic file write every persisted change goes through.
//!
//! Layout of the revisions directory: `0000000042.yaml` (the document exactly as applied) and
//! `0000000042.meta.json` (id, etag, source, time). The meta file is written last, so a crash
//! midway leaves a data file without meta, which listing ignores.

use policies::Format;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevisionMeta {
    pub id: u64,
    pub etag: String,
    /// startup, file, sighup, api, rollback:<id>
    pub source: String,
    pub created_unix: u64,
    /// `yaml` or `json`
    pub format: String,
}

impl RevisionMeta {
    pub fn format(&self) -> Format {
        if self.format == "json" {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

pub fn format_name(f: Format) -> &'static str {
    match f {
        Format::Json => "json",
        Format::Yaml => "yaml",
    }
}

#[derive(Debug)]
pub struct Revisions {
    dir: PathBuf,
    keep: usize,
}

impl Revisions {
    pub fn open(dir: impl Into<PathBuf>, keep: usize) -> io::Result<Revisions> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Revisions { dir, keep: keep.max(1) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every complete revision, newest first.
    pub fn list(&self) -> io::Result<Vec<RevisionMeta>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let is_meta = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".meta.json"));
            if !is_meta {
                continue;
            }
            // A torn or foreign file is skipped, not fatal: the others still load.
            if let Ok(meta) = fs::read(&path).map_err(|_| ()).and_then(|b| serde_json::from_slice::<RevisionMeta>(&b).map_err(|_| ())) {
                if self.data_path(&meta).exists() {
                    out.push(meta);
                }
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.id));
        Ok(out)
    }

    pub fn latest(&self) -> io::Result<Option<RevisionMeta>> {
        Ok(self.list()?.into_iter().next())
    }

    pub fn read(&self, id: u64) -> io::Result<Option<(RevisionMeta, Vec<u8>)>> {
        let Some(meta) = self.list()?.into_iter().find(|m| m.id == id) else { return Ok(None) };
        let bytes = fs::read(self.data_path(&meta))?;
        Ok(Some((meta, bytes)))
    }

    /// Stores a revision and prunes the oldest beyond `keep`.
    pub fn save(&self, meta: &RevisionMeta, bytes: &[u8]) -> io::Result<()> {
        write_atomic(&self.data_path(meta), bytes)?;
        let meta_bytes = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        write_atomic(&self.meta_path(meta.id), &meta_bytes)?;
        for old in self.list()?.into_iter().skip(self.keep) {
            let _ = fs::remove_file(self.meta_path(old.id));
            let _ = fs::remove_file(self.data_path(&old));
        }
        Ok(())
    }

    fn data_path(&self, meta: &RevisionMeta) -> PathBuf {
        self.dir.join(format!("{:010}.{}", meta.id, meta.format))
    }

    fn meta_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:010}.meta.json"))
    }
}

/// Replaces `path` with `bytes` so that a reader (or a restart after a crash) sees either the
/// old file or the new one, never a mix: write a temp file in the same directory, fsync it,
/// rename it over the target, fsync the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("config");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64) -> RevisionMeta {
        RevisionMeta { id, etag: format!("e{id}"), source: "api".into(), created_unix: 0, format: "yaml".into() }
    }

    #[test]
    fn keeps_the_newest_and_ignores_torn_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let revs = Revisions::open(dir.path(), 3).unwrap();
        for id in 1..=5 {
            revs.save(&meta(id), format!("rev {id}").as_bytes()).unwrap();
        }
        let ids: Vec<u64> = revs.list().unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![5, 4, 3]);
        assert_eq!(revs.read(4).unwrap().unwrap().1, b"rev 4");
        assert!(revs.read(1).unwrap().is_none());
        // A crash after the data file but before its meta: not listed.
        fs::write(dir.path().join("0000000006.yaml"), b"torn").unwrap();
        fs::write(dir.path().join("0000000007.meta.json"), b"{not json").unwrap();
        assert_eq!(revs.latest().unwrap().unwrap().id, 5);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.yaml");
        fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new content").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new content");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
