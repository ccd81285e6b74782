//! Garbage collection of blobs and snapshots that nothing references.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use super::image::{chain_ids, declared_media_type};
use super::{BLOBS_DIR, IoContext, Result, Store};
use crate::oci::{Digest, media_type};

/// Content to keep besides what `index.json` reaches: snapshots of containers and cache
/// records, blobs of cache exports. Callers (solve, cache, containers) fill this in.
#[derive(Debug, Clone, Default)]
pub struct PruneRoots {
    /// Snapshot chain ids to keep (their parents are not implied; list whole chains).
    pub snapshots: HashSet<Digest>,
    pub blobs: HashSet<Digest>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs_removed: usize,
    pub blob_bytes: u64,
    pub snapshots_removed: usize,
    pub snapshot_bytes: u64,
    pub ingests_removed: usize,
}

impl PruneReport {
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.snapshot_bytes
    }
}

/// What is reachable from the index: blobs, and the snapshot chains of images.
#[derive(Default)]
struct Reachable {
    blobs: HashSet<Digest>,
    snapshots: HashSet<Digest>,
}

impl Store {
    /// Removes blobs not reachable from `index.json` (indexes → manifests → config and
    /// layers) or `roots`, snapshots not in any tagged image's layer chain or `roots`, and
    /// leftover ingest and temporary snapshot directories.
    ///
    /// Takes the GC lock exclusively: it waits for every [`super::Lease`], so it must not
    /// be called while this thread holds one.
    pub fn prune(&self, roots: &PruneRoots) -> Result<PruneReport> {
        let _gc = self.lock_gc_exclusive()?;
        let reachable = self.reachable()?;
        let mut report = PruneReport::default();

        let blobs_dir = self.root.join(BLOBS_DIR);
        for entry in fs::read_dir(&blobs_dir).io_context("read directory", &blobs_dir)? {
            let entry = entry.io_context("read directory", &blobs_dir)?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|hex| Digest::from_sha256_hex(hex).ok())
            else {
                continue; // Not ours; leave it.
            };
            if reachable.blobs.contains(&digest) || roots.blobs.contains(&digest) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            remove_if_present(fs::remove_file(entry.path()), &entry.path())?;
            report.blobs_removed += 1;
            report.blob_bytes += size;
        }

        let snapshots_dir = self.snapshots_dir();
        for entry in fs::read_dir(&snapshots_dir).io_context("read directory", &snapshots_dir)? {
            let entry = entry.io_context("read directory", &snapshots_dir)?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Every unpack holds a lease, so a tmp- directory now is a leftover of a crash.
            let keep = match Digest::from_sha256_hex(&name) {
                Ok(chain_id) => {
                    reachable.snapshots.contains(&chain_id) || roots.snapshots.contains(&chain_id)
                }
                Err(_) => !name.starts_with("tmp-"),
            };
            if keep {
                continue;
            }
            let size = disk_usage(&path);
            remove_if_present(fs::remove_dir_all(&path), &path)?;
            if name.starts_with("tmp-") {
                report.snapshot_bytes += size;
            } else {
                report.snapshots_removed += 1;
                report.snapshot_bytes += size;
            }
        }

        // No writer is active (they hold leases), so every ingest file is a leftover.
        let ingest_dir = self.ingest_dir();
        for entry in fs::read_dir(&ingest_dir).io_context("read directory", &ingest_dir)? {
            let path = entry.io_context("read directory", &ingest_dir)?.path();
            remove_if_present(fs::remove_file(&path), &path)?;
            report.ingests_removed += 1;
        }
        Ok(report)
    }

    fn reachable(&self) -> Result<Reachable> {
        let mut reachable = Reachable::default();
        let mut pending: Vec<(Digest, String)> = Vec::new();
        for descriptor in self.index_manifests()? {
            if let Ok(digest) = Digest::from_oci(descriptor.digest()) {
                pending.push((digest, descriptor.media_type().to_string()));
            }
        }
        while let Some((digest, declared)) = pending.pop() {
            if !reachable.blobs.insert(digest.clone()) {
                continue;
            }
            let walk_children = media_type::is_manifest(&declared)
                || media_type::is_index(&declared)
                || media_type::is_config(&declared);
            if !walk_children {
                continue; // A layer or something we do not understand: keep it, look no further.
            }
            // A child of an index may not have been pulled (other platforms): skip it.
            let Ok(bytes) = self.read_blob(&digest) else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if media_type::is_config(&declared) {
                let diff_ids: Vec<Digest> = json
                    .pointer("/rootfs/diff_ids")
                    .and_then(|ids| ids.as_array())
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|id| id.as_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                reachable.snapshots.extend(chain_ids(&diff_ids));
                continue;
            }
            let declared = declared_media_type(&json).unwrap_or(&declared).to_string();
            let children = json
                .get("manifests")
                .into_iter()
                .chain(json.get("layers"))
                .filter_map(|list| list.as_array())
                .flatten()
                .chain(json.get("config"))
                .chain(json.get("subject"));
            for child in children {
                let Some(child_digest) = child
                    .get("digest")
                    .and_then(|d| d.as_str())
                    .and_then(|d| d.parse::<Digest>().ok())
                else {
                    continue;
                };
                let child_type = child
                    .get("mediaType")
                    .and_then(|m| m.as_str())
                    .unwrap_or("");
                // Configs are walked for their diff ids whatever media type they declare.
                let is_config =
                    json.get("config") == Some(child) && !media_type::is_index(&declared);
                let child_type = if is_config {
                    media_type::OCI_CONFIG
                } else {
                    child_type
                };
                pending.push((child_digest, child_type.to_string()));
            }
        }
        Ok(reachable)
    }
}

fn remove_if_present(result: io::Result<()>, path: &Path) -> Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.io_context("remove", path),
    }
}

/// Apparent size of the files under `path` (best effort; never follows symlinks).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}
