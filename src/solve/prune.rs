//! The build cache on disk, measured and pruned (`kiln system df`, `kiln builder prune`).
//!
//! The build cache is the cache index (`cache-v1/index.redb`) and what its records point at:
//! step snapshots (`snapshots-v1/build-<key>[-<n>]`), downloaded URLs (`snapshots-v1/url-*`
//! with `cache-v1/urls/*.json`) and cache mounts (`cache-v1/mounts/`). Images never depend
//! on it: their layers are blobs, and `kiln run` unpacks those itself, so pruning the build
//! cache costs only rebuild time.
//!
//! Pruning takes the store's GC lock exclusively, so it waits for running builds (each
//! holds a lease for its whole solve) and none starts while it works.
//!
//! - By default it removes records superseded by a newer run of the same step (the same
//!   Dockerfile line of the same stage and context: a build hits them again only when it
//!   goes back to older inputs, e.g. alternating build args), records whose snapshot is
//!   gone, snapshots no record names (a crash between commit and record, a `--no-cache`
//!   rerun's predecessor), URL downloads no record names, and leftovers of interrupted
//!   steps.
//! - `--all` removes every record, snapshot, download and cache mount.
//! - `--keep-storage SIZE` removes the same candidates least recently used first, only
//!   until the build cache fits in SIZE.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::op::exec::mounts_dir;
use super::op::git;
use super::op::url::{self, records_dir as urls_dir};
use super::step::{KEY_LOCKS, SNAPSHOT_PREFIX};
use super::{SolveError, unique_suffix};
use crate::cache::CacheIndex;
use crate::store::Store;

type Result<T, E = SolveError> = std::result::Result<T, E>;

/// What `builder prune` should remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    pub all: bool,
    /// Stop once the build cache uses at most this many bytes.
    pub keep_storage: Option<u64>,
}

/// What was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub records: usize,
    pub snapshots: usize,
    /// Disk usage freed (blocks of files no longer linked anywhere else in the cache).
    pub bytes: u64,
}

/// The build cache's footprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUsage {
    pub records: u64,
    pub snapshots: u64,
    /// Disk usage of snapshots, downloads and cache mounts, each file counted once.
    pub bytes: u64,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SolveError {
    SolveError::io(what, path)
}

/// The build-cache snapshot directories (`build-*`, `url-*`, `git-*`), by name.
fn cache_snapshots(store: &Store) -> Result<BTreeSet<String>> {
    let dir = store.snapshots_dir();
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(&dir).map_err(io("read", &dir))? {
        let name = entry
            .map_err(io("read", &dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if [SNAPSHOT_PREFIX, url::SNAPSHOT_PREFIX, git::SNAPSHOT_PREFIX]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            names.insert(name);
        }
    }
    Ok(names)
}

/// Disk usage of `paths`, each inode counted once (snapshots share files by hard links).
fn disk_usage(paths: &[PathBuf], seen: &mut HashSet<(u64, u64)>) -> u64 {
    let mut total = 0;
    let mut pending: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir()
            && let Ok(entries) = fs::read_dir(&path)
        {
            pending.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    total
}

/// The build cache's size.
pub fn usage(store: &Store, cache: &CacheIndex) -> Result<CacheUsage> {
    let (records, _) = cache.usage()?;
    let names = cache_snapshots(store)?;
    let snapshots = store.snapshots_dir();
    let mut paths: Vec<PathBuf> = names.iter().map(|n| snapshots.join(n)).collect();
    paths.push(mounts_dir(store));
    Ok(CacheUsage {
        records,
        snapshots: names.len() as u64,
        bytes: disk_usage(&paths, &mut HashSet::new()),
    })
}

/// The URL download snapshots the URL records name.
fn recorded_urls(store: &Store) -> BTreeSet<String> {
    let Ok(entries) = fs::read_dir(urls_dir(store)) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .filter_map(|v| v.get("snapshot")?.as_str().map(str::to_string))
        .collect()
}

/// Removes a directory tree: renamed aside first, so nothing ever sees half of it under
/// its real name.
fn remove_tree(path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let aside = parent.join(format!("tmp-prune-{}", unique_suffix()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("rename", path)(e)),
    }
    Ok(crate::snapshot::overlay::remove(&aside)?)
}

/// Prunes the build cache (see the module docs).
pub fn prune(store: &Store, cache: &CacheIndex, options: &PruneOptions) -> Result<PruneReport> {
    let _exclusive = store.exclusive()?;
    let snapshots = store.snapshots_dir();
    let records = cache.iter_by_last_used()?;
    let latest = cache.latest_keys()?;
    let on_disk = cache_snapshots(store)?;

    // Candidates, least recently used first.
    let mut candidates: Vec<(String, Option<String>)> = Vec::new();
    let mut keep: Vec<(String, Option<String>)> = Vec::new();
    for (key, record) in records {
        let snapshot = record.result.snapshot.clone();
        let gone = match (&snapshot, &record.result.blob) {
            (Some(name), _) => !on_disk.contains(name),
            (None, Some(blob)) => blob
                .digest
                .parse()
                .map(|d| !store.has_blob(&d))
                .unwrap_or(true),
            (None, None) => true,
        };
        // Layer records (a step key's written layer) are kept while their blob is there:
        // they save rewriting layers, and are not superseded the way steps are.
        let superseded = snapshot.is_some() && !latest.contains(&key);
        if options.all || gone || superseded {
            candidates.push((key, snapshot));
        } else {
            keep.push((key, snapshot));
        }
    }
    if let Some(limit) = options.keep_storage {
        // Free only as much as needed: candidates stay, least recently used go first.
        let mut seen = HashSet::new();
        let mut paths: Vec<PathBuf> = on_disk.iter().map(|n| snapshots.join(n)).collect();
        paths.push(mounts_dir(store));
        let mut total = disk_usage(&paths, &mut seen);
        let mut removed = 0;
        for (_, snapshot) in &candidates {
            if total <= limit {
                break;
            }
            if let Some(name) = snapshot {
                total =
                    total.saturating_sub(disk_usage(&[snapshots.join(name)], &mut HashSet::new()));
            }
            removed += 1;
        }
        keep.extend(candidates.drain(removed..));
    }

    let mut report = PruneReport::default();
    let keys: Vec<String> = candidates.iter().map(|(k, _)| k.clone()).collect();
    report.records = cache.remove(&keys)?;
    let still_named: HashSet<String> = keep.into_iter().filter_map(|(_, s)| s).collect();

    // Snapshots nothing names any more (with --all: every one), URL downloads no record
    // names, and git checkouts (a build fetches them again when it needs them).
    let urls = if options.all {
        BTreeSet::new()
    } else {
        recorded_urls(store)
    };
    let doomed: Vec<PathBuf> = on_disk
        .iter()
        .filter(|name| {
            if name.starts_with(url::SNAPSHOT_PREFIX) {
                !urls.contains(*name)
            } else if name.starts_with(git::SNAPSHOT_PREFIX) {
                true
            } else {
                !still_named.contains(*name)
            }
        })
        .map(|name| snapshots.join(name))
        .collect();
    let mut remaining: Vec<PathBuf> = on_disk
        .iter()
        .map(|n| snapshots.join(n))
        .filter(|p| !doomed.contains(p))
        .collect();
    if !options.all {
        remaining.push(mounts_dir(store));
    }
    // Freed bytes: blocks of inodes that no remaining snapshot still links.
    let mut still_linked = HashSet::new();
    disk_usage(&remaining, &mut still_linked);
    report.bytes = disk_usage(&doomed, &mut still_linked);
    for path in &doomed {
        remove_tree(path)?;
        report.snapshots += 1;
    }
    if options.all {
        report.bytes += disk_usage(&[mounts_dir(store)], &mut still_linked);
        for dir in [mounts_dir(store), urls_dir(store)] {
            if dir.exists() {
                remove_tree(&dir)?;
            }
        }
    }
    // Leftovers of interrupted steps and downloads, and the per-key lock files: no build
    // runs while we hold the GC lock.
    for entry in fs::read_dir(&snapshots).map_err(io("read", &snapshots))? {
        let path = entry.map_err(io("read", &snapshots))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("tmp-build-") || n.starts_with("tmp-url-")) {
            remove_tree(&path)?;
        }
    }
    let locks = snapshots.join(KEY_LOCKS);
    if locks.exists() {
        fs::remove_dir_all(&locks).map_err(io("remove", &locks))?;
    }
    Ok(report)
}
