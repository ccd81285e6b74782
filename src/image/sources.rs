//! `<root>/image-v1/blob-sources.json`: which `registry/repository`s hold each blob.
//!
//! Written after pulls and pushes, read by pushes to choose a cross-repository mount.
//! Updates are read-modify-write under `image-v1/blob-sources.lock`, written to a temp file
//! and renamed, so concurrent kiln processes never see a torn file. Losing it only costs
//! uploads, so a corrupt file is treated as empty.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;

use super::{Result, io_err};
use crate::oci::Digest;
use crate::store::Store;

const DIR: &str = "image-v1";
const FILE: &str = "blob-sources.json";
const LOCK: &str = "blob-sources.lock";
/// Repositories remembered per blob; the newest are kept.
const MAX_SOURCES: usize = 16;

type Sources = BTreeMap<String, BTreeSet<String>>;

fn dir(store: &Store) -> PathBuf {
    store.root().join(DIR)
}

fn read(store: &Store) -> Sources {
    fs::read(dir(store).join(FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The `registry/repository`s known to hold `digest`.
pub fn sources_of(store: &Store, digest: &Digest) -> Vec<String> {
    read(store)
        .remove(&digest.to_string())
        .map(|set| set.into_iter().collect())
        .unwrap_or_default()
}

/// The `registry/repository`s known to hold each of `digests` (the file read once).
pub(crate) fn sources_of_all<'a>(
    store: &Store,
    digests: impl IntoIterator<Item = &'a Digest>,
) -> HashMap<Digest, Vec<String>> {
    let mut all = read(store);
    digests
        .into_iter()
        .map(|digest| {
            let sources = all
                .remove(&digest.to_string())
                .map(|set| set.into_iter().collect())
                .unwrap_or_default();
            (digest.clone(), sources)
        })
        .collect()
}

/// Records that `registry/repository` holds every blob in `digests`.
pub fn record(store: &Store, registry: &str, repository: &str, digests: &[Digest]) -> Result<()> {
    let dir = dir(store);
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let lock_path = dir.join(LOCK);
    let _lock = crate::sys::lock_file(&lock_path).map_err(io_err("lock", &lock_path))?;
    let mut sources = read(store);
    let location = format!("{registry}/{repository}");
    for digest in digests {
        let set = sources.entry(digest.to_string()).or_default();
        set.insert(location.clone());
        while set.len() > MAX_SOURCES {
            let first = set.iter().next().cloned().unwrap_or_default();
            set.remove(&first);
        }
    }
    let bytes = serde_json::to_vec_pretty(&sources).unwrap_or_default();
    let temp = dir.join(format!("{FILE}.tmp-{}", std::process::id()));
    let mut file = File::create(&temp).map_err(io_err("create", &temp))?;
    file.write_all(&bytes).map_err(io_err("write", &temp))?;
    file.sync_all().map_err(io_err("fsync", &temp))?;
    let target = dir.join(FILE);
    fs::rename(&temp, &target).map_err(io_err("rename", &target))?;
    Ok(())
}
