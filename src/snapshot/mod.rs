//! Snapshots: unpacked layers under `snapshots-v1/<chain-id>/` (`fs/` + `meta.json`),
//! overlay chains of them (`overlay`) and layer diffs of upper dirs (`diff`).
//!
//! L4: may use `oci`, `sys` and `store`. Synchronous; async callers use `spawn_blocking`.

pub mod diff;
pub mod overlay;
pub mod unpack;

use std::io;
use std::path::PathBuf;

use crate::oci::Digest;

pub use unpack::{Snapshot, SnapshotMeta, UnpackStats, open_snapshot, unpack_layer, unpack_tar};

/// Everything that can go wrong while unpacking or reading snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed layer tar{}: {source}", entry.as_ref().map(|e| format!(" at entry {e:?}")).unwrap_or_default())]
    Tar {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("refusing tar entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("unsupported tar entry {entry:?}: type {kind}")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("corrupt snapshot metadata {}: {reason}", path.display())]
    CorruptMeta { path: PathBuf, reason: String },
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

trait IoContext<T> {
    fn io_context(self, action: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, action: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| SnapshotError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
