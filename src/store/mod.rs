//! The local image store: an OCI image layout on disk plus kiln's own directories.
//!
//! ```text
//! <root>/oci-layout, index.json   tagged manifests (org.opencontainers.image.ref.name = full name)
//! <root>/blobs/sha256/<hex>       verified content, written only by renaming from ingest/
//! <root>/ingest/                  blobs being written; each held with an exclusive file lock
//! <root>/snapshots-v1/<chain-id>/ unpacked layers (see `snapshot::unpack`)
//! <root>/cache-v1/, containers-v1/, locks/
//! ```
//!
//! Several kiln processes may share a root: blob writes are write-to-temp + fsync + rename,
//! `index.json` updates are read-modify-write under `locks/index.lock`, and writers hold
//! `locks/gc.lock` shared (a [`Lease`]) so that [`Store::prune`] (exclusive) never deletes
//! content that a writer is about to reference.
//!
//! L4: synchronous; async callers use `spawn_blocking`.

mod blob;
mod error;
pub mod events;
mod fsutil;
mod image;
mod index;
mod prune;
mod root;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::oci::Digest;

pub use blob::Ingest;
pub use error::{Result, StoreError};
pub use image::Image;
pub use prune::{PruneReport, PruneRoots, disk_usage};
pub use root::{RootSources, select_root, select_root_from};

pub(crate) use error::IoContext;
pub(crate) use fsutil::{fsync_dir, write_atomic};
pub use fsutil::{random_id, random_name};

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
const BLOBS_DIR: &str = "blobs/sha256";
const INGEST_DIR: &str = "ingest";
const SNAPSHOTS_DIR: &str = "snapshots-v1";
const CACHE_DIR: &str = "cache-v1";
const CONTAINERS_DIR: &str = "containers-v1";
const LOCKS_DIR: &str = "locks";
const GC_LOCK: &str = "gc.lock";
const INDEX_LOCK: &str = "index.lock";

/// A handle on a store root. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A shared hold on the store's GC lock: while any lease is alive, [`Store::prune`] waits.
///
/// Take one around "write blobs, then tag" sequences (a pull, a build's export) so that
/// the blobs cannot be collected before the tag that makes them reachable.
#[derive(Debug)]
pub struct Lease {
    _lock: File,
}

/// An exclusive hold on the GC lock; see [`Store::exclusive`].
#[derive(Debug)]
pub struct Exclusive {
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes stale ingest files.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [
            BLOBS_DIR,
            INGEST_DIR,
            SNAPSHOTS_DIR,
            CACHE_DIR,
            CONTAINERS_DIR,
            LOCKS_DIR,
        ] {
            let path = store.root.join(dir);
            fs::create_dir_all(&path).io_context("create directory", &path)?;
        }
        let layout = store.root.join(OCI_LAYOUT_FILE);
        if !layout.exists() {
            fsutil::write_atomic(&layout, OCI_LAYOUT_CONTENT)?;
        }
        store.init_index()?;
        store.clean_stale_ingests()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where unpacked layers live (`snapshots-v1/`).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS_DIR)
    }

    /// Where the build cache lives (`cache-v1/`).
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(CACHE_DIR)
    }

    /// Where `kiln run` containers live (`containers-v1/`).
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join(CONTAINERS_DIR)
    }

    /// The path of a blob, whether or not it exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    fn open_lock(&self, name: &str) -> Result<File> {
        let path = self.root.join(LOCKS_DIR).join(name);
        File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .io_context("open lock", &path)
    }

    /// Takes a shared hold on the GC lock; see [`Lease`].
    ///
    /// Locks are per open file, so a thread that holds a lease must not call
    /// [`Store::prune`]: it would wait for itself.
    pub fn lease(&self) -> Result<Lease> {
        let lock = self.open_lock(GC_LOCK)?;
        lock.lock_shared()
            .io_context("lock", &self.root.join(LOCKS_DIR).join(GC_LOCK))?;
        Ok(Lease { _lock: lock })
    }

    /// Waits until no [`Lease`] is held and keeps any new one waiting until dropped: for
    /// collectors of what leases protect (`builder prune`). Same caveat as
    /// [`Store::prune`]: not while this thread holds a lease.
    pub fn exclusive(&self) -> Result<Exclusive> {
        Ok(Exclusive {
            _lock: self.lock_gc_exclusive()?,
        })
    }

    fn lock_gc_exclusive(&self) -> Result<File> {
        let lock = self.open_lock(GC_LOCK)?;
        lock.lock()
            .io_context("lock", &self.root.join(LOCKS_DIR).join(GC_LOCK))?;
        Ok(lock)
    }

    fn lock_index(&self) -> Result<File> {
        let lock = self.open_lock(INDEX_LOCK)?;
        lock.lock()
            .io_context("lock", &self.root.join(LOCKS_DIR).join(INDEX_LOCK))?;
        Ok(lock)
    }
}
