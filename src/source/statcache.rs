//! The persistent context stat cache: (context root, relative path) → the file's stat tuple
//! and content digest, in a redb file. A file whose stat tuple is unchanged is not re-read.
//! The cache is an optimisation only: any problem with it (corrupt, locked by another
//! process, unwritable) disables it and hashing goes on without it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("context-stat-v1");
const VALUE_VERSION: u8 = 1;
const VALUE_LEN: usize = 1 + 8 * 5 + 4 + 32;
/// From this many files on, scan the root's records instead of looking each one up.
const SCAN_THRESHOLD: usize = 512;

/// What identifies one version of a file without reading it. Never part of any digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
}

/// Whether a digest run could use the stat cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache was given.
    NotConfigured,
    Used,
    /// The cache could not be used; every file was hashed. The build is not affected.
    Disabled {
        reason: String,
    },
}

/// A handle on the stat cache database (open it once per build).
pub struct StatCache {
    db: Result<Database, String>,
}

impl std::fmt::Debug for StatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatCache")
            .field("status", &self.status())
            .finish()
    }
}

impl StatCache {
    /// Opens or creates the cache at `path` (for example
    /// `<root>/cache-v1/context-stat.redb`). Never fails: an unusable file gives a disabled
    /// cache whose [`StatCache::status`] says why.
    pub fn open(path: &Path) -> StatCache {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let opened = catch_unwind(AssertUnwindSafe(|| Database::create(path)));
        let db = match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(err)) => Err(format!("stat cache {}: {err}", path.display())),
            Err(_) => Err(format!("stat cache {}: database panicked", path.display())),
        };
        StatCache { db }
    }

    pub fn status(&self) -> CacheStatus {
        match &self.db {
            Ok(_) => CacheStatus::Used,
            Err(reason) => CacheStatus::Disabled {
                reason: reason.clone(),
            },
        }
    }

    /// The cached digest of each `(relative path, stat)` whose stat tuple is unchanged.
    /// `files` must be sorted by path bytes.
    pub(crate) fn lookup(
        &self,
        root: &[u8],
        files: &[(&[u8], StatKey)],
    ) -> Result<Vec<Option<[u8; 32]>>, String> {
        let db = self.db.as_ref().map_err(Clone::clone)?;
        let run = || -> Result<Vec<Option<[u8; 32]>>, redb::Error> {
            let txn = db.begin_read()?;
            let table = match txn.open_table(TABLE) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; files.len()]),
                Err(err) => return Err(err.into()),
            };
            let mut found = Vec::with_capacity(files.len());
            if files.len() >= SCAN_THRESHOLD {
                // One ordered scan of this root's records beats many point lookups. The
                // records and `files` are both sorted by path bytes: merge them.
                let mut start = root.to_vec();
                start.push(0);
                let mut end = root.to_vec();
                end.push(1);
                let mut wanted = files.iter().peekable();
                for row in table.range::<&[u8]>(start.as_slice()..end.as_slice())? {
                    let (key, value) = row?;
                    let rel = &key.value()[start.len()..];
                    while let Some((next, _)) = wanted.peek()
                        && *next < rel
                    {
                        wanted.next();
                        found.push(None);
                    }
                    match wanted.peek() {
                        Some((next, stat)) if *next == rel => {
                            found.push(decode(value.value(), stat));
                            wanted.next();
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                found.resize(files.len(), None);
                return Ok(found);
            }
            let mut key = Vec::new();
            for (rel, stat) in files {
                make_key(&mut key, root, rel);
                let cached = table.get(key.as_slice())?;
                found.push(cached.and_then(|v| decode(v.value(), stat)));
            }
            Ok(found)
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(|err| format!("stat cache read: {err}")),
            Err(_) => Err("stat cache read panicked".to_string()),
        }
    }

    /// Records freshly hashed files in one transaction.
    pub(crate) fn store(
        &self,
        root: &[u8],
        files: &[(&[u8], StatKey, [u8; 32])],
    ) -> Result<(), String> {
        if files.is_empty() {
            return Ok(());
        }
        let db = self.db.as_ref().map_err(Clone::clone)?;
        let run = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(TABLE)?;
                let mut key = Vec::new();
                for (rel, stat, digest) in files {
                    make_key(&mut key, root, rel);
                    table.insert(key.as_slice(), encode(stat, digest).as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(|err| format!("stat cache write: {err}")),
            Err(_) => Err("stat cache write panicked".to_string()),
        }
    }
}

/// Paths cannot contain NUL, so `root NUL rel` is unambiguous.
fn make_key(key: &mut Vec<u8>, root: &[u8], rel: &[u8]) {
    key.clear();
    key.extend_from_slice(root);
    key.push(0);
    key.extend_from_slice(rel);
}

fn encode(stat: &StatKey, digest: &[u8; 32]) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    out[0] = VALUE_VERSION;
    out[1..9].copy_from_slice(&stat.dev.to_le_bytes());
    out[9..17].copy_from_slice(&stat.ino.to_le_bytes());
    out[17..25].copy_from_slice(&stat.size.to_le_bytes());
    out[25..33].copy_from_slice(&stat.mtime_ns.to_le_bytes());
    out[33..41].copy_from_slice(&stat.ctime_ns.to_le_bytes());
    out[41..45].copy_from_slice(&stat.mode.to_le_bytes());
    out[45..77].copy_from_slice(digest);
    out
}

/// The cached digest if the record is well-formed and its stat tuple equals `current`.
fn decode(value: &[u8], current: &StatKey) -> Option<[u8; 32]> {
    if value.len() != VALUE_LEN || value[0] != VALUE_VERSION {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().unwrap_or([0; 8]));
    let stored = StatKey {
        dev: u64_at(1),
        ino: u64_at(9),
        size: u64_at(17),
        mtime_ns: u64_at(25) as i64,
        ctime_ns: u64_at(33) as i64,
        mode: u32::from_le_bytes(value[41..45].try_into().unwrap_or([0; 4])),
    };
    if stored != *current {
        return None;
    }
    value[45..77].try_into().ok()
}
