//! The persistent cache index: cache key → [`Record`] (where the result is, when it was made
//! and last used, its size, and the explained inputs of its key), plus "the same step of the
//! same Dockerfile" → its last key, so that a miss can say what changed ([`explain`]).
//!
//! One redb file, `<root>/cache-v1/index.redb`, with four tables: records, file maps (shared
//! by content hash), step identities, and nothing else; values are versioned JSON.
//!
//! Several kiln processes share the file. redb's default mode locks the whole file for one
//! process (a second open fails with `DatabaseAlreadyOpen`), so the index opens it in redb's
//! `ConcurrencyMode::MultiWriter`: every process keeps its handle for the whole build, reads
//! are MVCC snapshots that never wait, and write transactions are serialised across
//! processes by a byte-range lock (`begin_write` waits for another process's commit). Writes
//! are batched ([`Batch`]) so a build commits once; lookups note last-use times in memory and
//! write them with the next commit, on [`CacheIndex::flush`], or on drop.
//!
//! L4: synchronous; async callers use `spawn_blocking`.

mod error;
mod explain;
mod record;
pub mod remote;

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{
    ConcurrencyMode, Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition, TableError,
};
use sha2::{Digest as _, Sha256};

pub use error::{CacheError, DbError};
pub use explain::explain;
use record::StoredRecord;
pub use record::{BlobRef, Explain, Record, ResultRef, StepIdentity};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records-v1");
const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files-v1");
const STEPS: TableDefinition<&str, &str> = TableDefinition::new("steps-v1");
const RECORD_VERSION: u32 = 1;
/// Opening waits this long for a process holding the file exclusively (an older redb, a
/// compaction) before giving up.
const OPEN_RETRIES: u32 = 20;
const OPEN_BACKOFF: Duration = Duration::from_millis(50);
/// redb's page cache; the index is small and read sparsely.
const CACHE_BYTES: usize = 16 << 20;

/// A corrupt index found on open and moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub moved_to: PathBuf,
    pub reason: String,
}

/// A handle on the cache index. Share it between the build's tasks (`&self` everywhere).
pub struct CacheIndex {
    db: Database,
    path: PathBuf,
    recovered: Option<Recovery>,
    /// Keys looked up since the last commit, with when: written in the next commit.
    touched: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for CacheIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheIndex")
            .field("path", &self.path)
            .field("recovered", &self.recovered)
            .finish()
    }
}

/// Writes collected in memory and committed in one transaction.
#[derive(Debug)]
pub struct Batch<'a> {
    index: &'a CacheIndex,
    puts: Vec<(String, Record, Option<StepIdentity>)>,
}

impl Batch<'_> {
    /// Adds (or replaces) `key`; with an identity, records it as that step's latest key.
    pub fn put(&mut self, key: impl Into<String>, record: Record, identity: Option<StepIdentity>) {
        self.puts.push((key.into(), record, identity));
    }

    pub fn len(&self) -> usize {
        self.puts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }

    /// Commits every put (and pending last-use times) durably, at once.
    pub fn commit(self) -> Result<(), CacheError> {
        self.index.commit(self.puts)
    }
}

/// The cache key of an op: sha256 hex of its canonical definition bytes
/// (`plan::Definition::cache_definition`) and the keys of its inputs, in input order.
/// Every part is length-prefixed, so no two different lists encode alike.
pub fn key(definition: &[u8], input_keys: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"kiln-cache-key-v1\0");
    hasher.update((definition.len() as u64).to_le_bytes());
    hasher.update(definition);
    hasher.update((input_keys.len() as u64).to_le_bytes());
    for input in input_keys {
        hasher.update((input.len() as u64).to_le_bytes());
        hasher.update(input.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Where the index remembers the layer blob of the step with cache key `step_key`, as
/// written with `SOURCE_DATE_EPOCH` = `epoch` (it clamps the tar's mtimes).
pub fn layer_blob_key(step_key: &str, epoch: Option<u64>) -> String {
    let epoch = epoch.map_or(String::new(), |e| e.to_string());
    key(format!("layer-tar-v1\0{epoch}").as_bytes(), &[step_key])
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        .set_cache_size(CACHE_BYTES);
    builder
}

/// Why an open failed: worth moving the file aside, or not ours to touch.
enum OpenFailure {
    Corrupt(DbError),
    Busy(DatabaseError),
    Io(std::io::Error),
}

fn try_open(path: &Path) -> Result<Database, OpenFailure> {
    // redb may panic on a damaged file instead of returning an error.
    let opened = catch_unwind(AssertUnwindSafe(|| builder().create(path)));
    let db = match opened {
        Err(_) => {
            return Err(OpenFailure::Corrupt(DbError::Panicked(
                "the database panicked on open",
            )));
        }
        Ok(Ok(db)) => db,
        Ok(Err(err)) => {
            return Err(match err {
                DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                    OpenFailure::Busy(err)
                }
                DatabaseError::Storage(StorageError::Io(io))
                    if io.kind() != std::io::ErrorKind::InvalidData
                        && io.kind() != std::io::ErrorKind::UnexpectedEof =>
                {
                    OpenFailure::Io(io)
                }
                other => OpenFailure::Corrupt(other.into()),
            });
        }
    };
    // A file redb accepts may still hold tables of other types or undecodable records.
    match catch_unwind(AssertUnwindSafe(|| probe(&db))) {
        Ok(Ok(())) => Ok(db),
        Ok(Err(reason)) => Err(OpenFailure::Corrupt(reason)),
        Err(_) => Err(OpenFailure::Corrupt(DbError::Panicked(
            "the database panicked on read",
        ))),
    }
}

fn probe(db: &Database) -> Result<(), DbError> {
    let txn = db.begin_read()?;
    macro_rules! first {
        ($table:expr) => {
            match txn.open_table($table) {
                Ok(table) => {
                    // Reading a row walks the tree from its root: a damaged root fails here.
                    table.first()?;
                }
                Err(TableError::TableDoesNotExist(_)) => {}
                Err(err) => return Err(err.into()),
            }
        };
    }
    first!(RECORDS);
    first!(FILES);
    first!(STEPS);
    Ok(())
}

impl CacheIndex {
    /// Opens or creates the index of `store`, `<root>/cache-v1/index.redb` (see
    /// [`CacheIndex::open`]).
    pub fn for_store(store: &crate::store::Store) -> Result<CacheIndex, CacheError> {
        CacheIndex::open(&store.cache_dir().join("index.redb"))
    }

    /// Opens or creates the index at `path` (`<root>/cache-v1/index.redb`). A file that is not
    /// a usable index is renamed to `<path>.corrupt-<time>-<pid>` and a new, empty index
    /// takes its place; [`CacheIndex::recovered`] says so. A file another process holds in an
    /// incompatible mode is waited for briefly, then reported, never moved.
    pub fn open(path: &Path) -> Result<CacheIndex, CacheError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| CacheError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut recovered = None;
        let mut attempt = 0;
        let db = loop {
            match try_open(path) {
                Ok(db) => break db,
                Err(OpenFailure::Io(source)) => {
                    return Err(CacheError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
                Err(OpenFailure::Busy(source)) => {
                    attempt += 1;
                    if attempt >= OPEN_RETRIES {
                        return Err(CacheError::Locked {
                            path: path.to_path_buf(),
                            source,
                        });
                    }
                    std::thread::sleep(OPEN_BACKOFF);
                }
                Err(OpenFailure::Corrupt(failure)) if recovered.is_none() => {
                    let moved_to = PathBuf::from(format!(
                        "{}.corrupt-{}-{}",
                        path.display(),
                        unix_now(),
                        std::process::id()
                    ));
                    std::fs::rename(path, &moved_to).map_err(|source| CacheError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    recovered = Some(Recovery {
                        moved_to,
                        reason: failure.to_string(),
                    });
                }
                Err(OpenFailure::Corrupt(source)) => {
                    return Err(CacheError::Database {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        };
        Ok(CacheIndex {
            db,
            path: path.to_path_buf(),
            recovered,
            touched: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Set when [`CacheIndex::open`] replaced a corrupt file.
    pub fn recovered(&self) -> Option<&Recovery> {
        self.recovered.as_ref()
    }

    /// The record for `key` (its `inputs.files` not loaded), `None` when absent or
    /// undecodable. Notes the use; the new last-use time is written with the next commit.
    pub fn get(&self, key: &str) -> Result<Option<Record>, CacheError> {
        let found = self.read(|txn| {
            let Some(table) = open_read(txn, RECORDS)? else {
                return Ok(None);
            };
            let value = table.get(key)?;
            Ok(value.map(|v| v.value().to_vec()))
        })?;
        let Some(bytes) = found else {
            return Ok(None);
        };
        // An undecodable record (written by a newer kiln, or damaged) is a miss; the
        // rebuilt step's put replaces it.
        let Ok((mut record, _)) = self.decode(key, &bytes) else {
            return Ok(None);
        };
        let now = unix_now();
        record.last_used_at = record.last_used_at.max(now);
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string(), now);
        Ok(Some(record))
    }

    /// Puts one record in its own commit; a build should use [`CacheIndex::batch`].
    pub fn put(
        &self,
        key: &str,
        record: Record,
        identity: Option<&StepIdentity>,
    ) -> Result<(), CacheError> {
        self.commit(vec![(key.to_string(), record, identity.cloned())])
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            index: self,
            puts: Vec::new(),
        }
    }

    /// The key and record (with its file map) last stored for this step, if it still exists.
    pub fn previous(
        &self,
        identity: &StepIdentity,
    ) -> Result<Option<(String, Record)>, CacheError> {
        let found = self.read(|txn| {
            let Some(steps) = open_read(txn, STEPS)? else {
                return Ok(None);
            };
            let Some(key) = steps.get(identity.encode().as_str())? else {
                return Ok(None);
            };
            let key = key.value().to_string();
            let Some(records) = open_read(txn, RECORDS)? else {
                return Ok(None);
            };
            let Some(bytes) = records.get(key.as_str())? else {
                return Ok(None);
            };
            let bytes = bytes.value().to_vec();
            Ok(Some((key, bytes)))
        })?;
        let Some((key, bytes)) = found else {
            return Ok(None);
        };
        let Ok((mut record, files_ref)) = self.decode(&key, &bytes) else {
            return Ok(None);
        };
        self.load_files(&key, &mut record, files_ref)?;
        Ok(Some((key, record)))
    }

    /// The record for `key` with its file map (for exporting it), without noting a use.
    pub fn get_with_files(&self, key: &str) -> Result<Option<Record>, CacheError> {
        let found = self.read(|txn| {
            let Some(table) = open_read(txn, RECORDS)? else {
                return Ok(None);
            };
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })?;
        let Some(bytes) = found else {
            return Ok(None);
        };
        let Ok((mut record, files_ref)) = self.decode(key, &bytes) else {
            return Ok(None);
        };
        self.load_files(key, &mut record, files_ref)?;
        Ok(Some(record))
    }

    /// Loads the file map `files_ref` names into `record.inputs.files`.
    fn load_files(
        &self,
        key: &str,
        record: &mut Record,
        files_ref: Option<String>,
    ) -> Result<(), CacheError> {
        let Some(files_ref) = files_ref else {
            return Ok(());
        };
        let files = self.read(|txn| {
            let Some(table) = open_read(txn, FILES)? else {
                return Ok(None);
            };
            Ok(table.get(files_ref.as_str())?.map(|v| v.value().to_vec()))
        })?;
        if let Some(files) = files {
            let map = serde_json::from_slice(&files).map_err(|e| self.bad(key, e))?;
            record.inputs.files = Some(map);
        }
        Ok(())
    }

    /// Removes `keys` and whatever only they referenced. Returns how many records existed.
    pub fn remove(&self, keys: &[String]) -> Result<usize, CacheError> {
        let mut removed = 0;
        self.write(|txn| {
            removed = 0;
            let mut records = txn.open_table(RECORDS)?;
            for key in keys {
                if records.remove(key.as_str())?.is_some() {
                    removed += 1;
                }
            }
            // Garbage: file maps and step pointers that no remaining record needs.
            let mut live_keys = HashSet::new();
            let mut live_files = HashSet::new();
            for row in records.iter()? {
                let (key, value) = row?;
                live_keys.insert(key.value().to_string());
                if let Ok(stored) = serde_json::from_slice::<StoredRecord>(value.value())
                    && let Some(files_ref) = stored.files_ref
                {
                    live_files.insert(files_ref);
                }
            }
            let mut files = txn.open_table(FILES)?;
            files.retain(|hash, _| live_files.contains(hash))?;
            let mut steps = txn.open_table(STEPS)?;
            steps.retain(|_, key| live_keys.contains(key))?;
            Ok(())
        })?;
        Ok(removed)
    }

    /// Every record (without file maps), least recently used first, for pruning. A record
    /// that cannot be decoded comes first, with zero times and size.
    pub fn iter_by_last_used(&self) -> Result<Vec<(String, Record)>, CacheError> {
        self.flush()?;
        let rows = self.read(|txn| {
            let Some(table) = open_read(txn, RECORDS)? else {
                return Ok(Vec::new());
            };
            let mut rows = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                rows.push((key.value().to_string(), value.value().to_vec()));
            }
            Ok(rows)
        })?;
        let mut records = Vec::with_capacity(rows.len());
        for (key, bytes) in rows {
            // An undecodable record sorts first (never used), so pruning removes it.
            let record = match self.decode(&key, &bytes) {
                Ok((record, _)) => record,
                Err(_) => Record {
                    result: ResultRef::default(),
                    created_at: 0,
                    last_used_at: 0,
                    size_bytes: 0,
                    inputs: Explain::default(),
                },
            };
            records.push((key, record));
        }
        records.sort_by(|a, b| {
            (a.1.last_used_at, a.1.created_at, &a.0).cmp(&(b.1.last_used_at, b.1.created_at, &b.0))
        });
        Ok(records)
    }

    /// The keys the step identities point at: each step's most recent result.
    pub fn latest_keys(&self) -> Result<HashSet<String>, CacheError> {
        self.read(|txn| {
            let Some(steps) = open_read(txn, STEPS)? else {
                return Ok(HashSet::new());
            };
            let mut keys = HashSet::new();
            for row in steps.iter()? {
                let (_, key) = row?;
                keys.insert(key.value().to_string());
            }
            Ok(keys)
        })
    }

    /// (number of records, total of their sizes in bytes).
    pub fn usage(&self) -> Result<(u64, u64), CacheError> {
        let rows = self.read(|txn| {
            let Some(table) = open_read(txn, RECORDS)? else {
                return Ok((0, 0));
            };
            let (mut count, mut bytes) = (0u64, 0u64);
            for row in table.iter()? {
                let (_, value) = row?;
                count += 1;
                if let Ok(stored) = serde_json::from_slice::<StoredRecord>(value.value()) {
                    bytes += stored.size_bytes;
                }
            }
            Ok((count, bytes))
        })?;
        Ok(rows)
    }

    /// Writes pending last-use times now.
    pub fn flush(&self) -> Result<(), CacheError> {
        let pending = !self
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if pending {
            self.commit(Vec::new())?;
        }
        Ok(())
    }

    fn commit(&self, puts: Vec<(String, Record, Option<StepIdentity>)>) -> Result<(), CacheError> {
        let touched: HashMap<String, u64> =
            std::mem::take(&mut *self.touched.lock().unwrap_or_else(PoisonError::into_inner));
        // Encode outside the transaction: the cross-process write lock is held only briefly.
        let mut encoded = Vec::with_capacity(puts.len());
        for (key, record, identity) in puts {
            let (files_ref, files_json) = match &record.inputs.files {
                Some(files) => {
                    let json = serde_json::to_vec(files).map_err(|e| self.bad(&key, e))?;
                    (Some(hex(&Sha256::digest(&json))), Some(json))
                }
                None => (None, None),
            };
            let stored = StoredRecord {
                v: RECORD_VERSION,
                result: record.result,
                created_at: record.created_at,
                last_used_at: record.last_used_at,
                size_bytes: record.size_bytes,
                inputs: record.inputs.values,
                files_ref: files_ref.clone(),
            };
            let value = serde_json::to_vec(&stored).map_err(|e| self.bad(&key, e))?;
            encoded.push((key, value, files_ref.zip(files_json), identity));
        }
        let result = self.write(|txn| {
            let mut records = txn.open_table(RECORDS)?;
            let mut files = txn.open_table(FILES)?;
            let mut steps = txn.open_table(STEPS)?;
            for (key, value, file_map, identity) in &encoded {
                records.insert(key.as_str(), value.as_slice())?;
                if let Some((hash, json)) = file_map
                    && files.get(hash.as_str())?.is_none()
                {
                    files.insert(hash.as_str(), json.as_slice())?;
                }
                if let Some(identity) = identity {
                    steps.insert(identity.encode().as_str(), key.as_str())?;
                }
            }
            for (key, used) in &touched {
                let Some(bytes) = records.get(key.as_str())?.map(|v| v.value().to_vec()) else {
                    continue; // removed meanwhile (by a prune in another process)
                };
                let Ok(mut stored) = serde_json::from_slice::<StoredRecord>(&bytes) else {
                    continue;
                };
                if stored.last_used_at >= *used {
                    continue;
                }
                stored.last_used_at = *used;
                let value = serde_json::to_vec(&stored)?;
                records.insert(key.as_str(), value.as_slice())?;
            }
            Ok(())
        });
        if result.is_err() {
            // Keep the touches for a later commit.
            let mut pending = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, used) in touched {
                pending.entry(key).or_insert(used);
            }
        }
        result
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<(Record, Option<String>), CacheError> {
        let stored: StoredRecord = serde_json::from_slice(bytes).map_err(|e| self.bad(key, e))?;
        if stored.v != RECORD_VERSION {
            return Err(CacheError::RecordVersion {
                path: self.path.clone(),
                key: key.to_string(),
                version: stored.v,
            });
        }
        let record = Record {
            result: stored.result,
            created_at: stored.created_at,
            last_used_at: stored.last_used_at,
            size_bytes: stored.size_bytes,
            inputs: Explain {
                values: stored.inputs,
                files: None,
            },
        };
        Ok((record, stored.files_ref))
    }

    fn bad(&self, key: &str, source: serde_json::Error) -> CacheError {
        CacheError::BadRecord {
            path: self.path.clone(),
            key: key.to_string(),
            source,
        }
    }

    /// Runs `f` in a read transaction, turning redb errors and panics into [`CacheError`].
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, DbError>,
    ) -> Result<T, CacheError> {
        let run = || -> Result<T, DbError> {
            let txn = self.db.begin_read()?;
            f(&txn)
        };
        self.guard(run)
    }

    /// Runs `f` in a write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), DbError>,
    ) -> Result<(), CacheError> {
        let run = || -> Result<(), DbError> {
            // Waits while another process commits (MultiWriter mode).
            let txn = self.db.begin_write()?;
            f(&txn)?;
            Ok(txn.commit()?)
        };
        self.guard(run)
    }

    fn guard<T>(&self, run: impl FnOnce() -> Result<T, DbError>) -> Result<T, CacheError> {
        let result = catch_unwind(AssertUnwindSafe(run))
            .unwrap_or(Err(DbError::Panicked("the database panicked")));
        result.map_err(|source| CacheError::Database {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for CacheIndex {
    fn drop(&mut self) {
        // Best effort: last-use times only steer pruning.
        let _ = self.flush();
    }
}

fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, DbError> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
