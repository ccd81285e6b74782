//! The content digest of a selection: paths, types, modes, link targets and file
//! contents, with a stat cache that lets unchanged files skip the read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use super::{Context, Entry, FileKind, Selection, join_all, stat_key};
use crate::source::Error;
use crate::source::statcache::{CacheStatus, StatCache, StatKey};

const READ_BUFFER: usize = 1 << 20;
/// A file modified this close to the hashing time could change again without its mtime
/// moving (coarse kernel timestamps), so its digest is not cached (git's "racy clean").
const RACY_WINDOW_NS: i64 = 20_000_000;

/// How a digest was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    /// Regular files read and hashed.
    pub files_hashed: usize,
    /// Regular files whose digest came from the stat cache without reading them.
    pub files_from_cache: usize,
    pub bytes_hashed: u64,
    pub cache: CacheStatus,
}

/// The content digest of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextDigest {
    /// `sha256:<hex>` over the canonical encoding of every entry.
    pub digest: String,
    /// The content digest of each entry of the selection it was computed for (same
    /// index); `None` for anything but a regular file.
    pub entry_digests: Vec<Option<[u8; 32]>>,
    pub stats: Stats,
}

impl ContextDigest {
    /// Each regular file's content digest (`sha256:<hex>`), by relative path: what a cache
    /// record keeps to explain a later miss (built on demand; hits never need it).
    /// `selection` is the one the digest was computed for.
    pub fn files(&self, selection: &Selection) -> BTreeMap<String, String> {
        selection
            .entries
            .iter()
            .zip(&self.entry_digests)
            .filter_map(|(entry, digest)| {
                digest.map(|d| (entry.path.clone(), format!("sha256:{}", hex(&d))))
            })
            .collect()
    }
}

/// The difference between two per-file digest maps, to explain a cache miss.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl FileChanges {
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        let mut changes = FileChanges::default();
        for (path, digest) in new {
            match old.get(path) {
                None => changes.added.push(path.clone()),
                Some(previous) if previous != digest => changes.changed.push(path.clone()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .keys()
            .filter(|path| !new.contains_key(*path))
            .cloned()
            .collect();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Context {
    /// Hashes `selection` by content. With a [`StatCache`], files whose stat tuple is
    /// unchanged since they were last hashed are not read; a cache that fails is reported in
    /// [`Stats::cache`] and otherwise ignored.
    pub fn digest(
        &self,
        selection: &Selection,
        cache: Option<&StatCache>,
    ) -> Result<ContextDigest, Error> {
        let root_key = self.root.as_os_str().as_bytes();
        // Indexes of the regular files in `selection.entries` (sorted by path, so the
        // files are too: the stat cache lookup relies on it).
        let file_indexes: Vec<usize> = (0..selection.entries.len())
            .filter(|&i| selection.entries[i].kind == FileKind::File)
            .collect();
        let files: Vec<&Entry> = file_indexes
            .iter()
            .map(|&i| &selection.entries[i])
            .collect();
        let mut cache_status = cache.map_or(CacheStatus::NotConfigured, StatCache::status);

        let mut digests: Vec<Option<[u8; 32]>> = vec![None; files.len()];
        if let (Some(cache), CacheStatus::Used) = (cache, &cache_status) {
            let keys: Vec<(&[u8], StatKey)> = files
                .iter()
                .map(|e| (e.os_path.as_os_str().as_bytes(), e.stat))
                .collect();
            match cache.lookup(root_key, &keys) {
                Ok(found) => digests = found,
                Err(reason) => cache_status = CacheStatus::Disabled { reason },
            }
        }
        let files_from_cache = digests.iter().filter(|d| d.is_some()).count();
        let to_hash: Vec<usize> = (0..files.len()).filter(|&i| digests[i].is_none()).collect();
        let hashed = self.hash_files(&files, &to_hash)?;

        let mut bytes_hashed = 0;
        let mut to_store = Vec::new();
        for (index, outcome) in to_hash.iter().zip(&hashed) {
            digests[*index] = Some(outcome.digest);
            bytes_hashed += outcome.bytes;
            if outcome.cacheable {
                let entry = files[*index];
                to_store.push((
                    entry.os_path.as_os_str().as_bytes(),
                    entry.stat,
                    outcome.digest,
                ));
            }
        }
        if let (Some(cache), CacheStatus::Used) = (cache, &cache_status)
            && let Err(reason) = cache.store(root_key, &to_store)
        {
            cache_status = CacheStatus::Disabled { reason };
        }

        let mut entry_digests = vec![None; selection.entries.len()];
        for (&index, digest) in file_indexes.iter().zip(digests) {
            entry_digests[index] = digest;
        }
        let mut tree = Sha256::new();
        tree.update(b"kiln-context-v1\0");
        for (entry, digest) in selection.entries.iter().zip(&entry_digests) {
            let path = entry.os_path.as_os_str().as_bytes();
            tree.update((path.len() as u64).to_be_bytes());
            tree.update(path);
            tree.update([entry.kind.tag()]);
            tree.update(entry.mode.to_be_bytes());
            if let Some(target) = &entry.link_target {
                let target = target.as_os_str().as_bytes();
                tree.update((target.len() as u64).to_be_bytes());
                tree.update(target);
            }
            if let Some(digest) = digest {
                tree.update(digest);
            }
        }
        Ok(ContextDigest {
            digest: format!("sha256:{}", hex(&tree.finalize().into())),
            entry_digests,
            stats: Stats {
                entries: selection.entries.len(),
                files_hashed: to_hash.len(),
                files_from_cache,
                bytes_hashed,
                cache: cache_status,
            },
        })
    }

    /// Hashes `files[i]` for each `i` in `wanted` on a few threads (cold reads gain from
    /// more threads than cores); results are in the order of `wanted`.
    fn hash_files(&self, files: &[&Entry], wanted: &[usize]) -> Result<Vec<Hashed>, Error> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (cores * 2).clamp(2, 8).min(wanted.len());
        let next = AtomicUsize::new(0);
        let started_ns = now_ns();
        let per_worker: Vec<Result<Vec<(usize, Hashed)>, Error>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut buffer = vec![0u8; READ_BUFFER];
                        let mut done = Vec::new();
                        loop {
                            let slot = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&index) = wanted.get(slot) else {
                                return Ok(done);
                            };
                            let entry = files[index];
                            let hashed = hash_file(&self.root, entry, &mut buffer, started_ns)?;
                            done.push((slot, hashed));
                        }
                    })
                })
                .collect();
            join_all(handles, &self.root, "a hashing thread panicked")
        });
        let mut ordered: Vec<Option<Hashed>> = (0..wanted.len()).map(|_| None).collect();
        for result in per_worker {
            for (slot, hashed) in result? {
                ordered[slot] = Some(hashed);
            }
        }
        ordered
            .into_iter()
            .map(|h| {
                h.ok_or_else(|| Error::Io {
                    path: self.root.clone(),
                    source: std::io::Error::other("a file was not hashed"),
                })
            })
            .collect()
    }
}

struct Hashed {
    digest: [u8; 32],
    bytes: u64,
    /// False if the file changed while being read or too recently to trust its mtime.
    cacheable: bool,
}

fn hash_file(
    root: &Path,
    entry: &Entry,
    buffer: &mut [u8],
    started_ns: i64,
) -> Result<Hashed, Error> {
    let full = root.join(&entry.os_path);
    let io_error = |source| Error::Io {
        path: full.clone(),
        source,
    };
    let mut file = File::open(&full).map_err(io_error)?;
    // The file opened must be the one the walk saw (not a symlink swapped in since).
    let before = file.metadata().map_err(io_error)?;
    if !before.is_file() || before.dev() != entry.stat.dev || before.ino() != entry.stat.ino {
        return Err(Error::ChangedDuringRead { path: full });
    }
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_error(err)),
        };
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    let after = file.metadata().map_err(io_error)?;
    let newest_change = stat_key(&after).mtime_ns.max(stat_key(&after).ctime_ns);
    let cacheable = stat_key(&after) == entry.stat
        && bytes == entry.stat.size
        && newest_change < started_ns - RACY_WINDOW_NS;
    Ok(Hashed {
        digest: hasher.finalize().into(),
        bytes,
        cacheable,
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
