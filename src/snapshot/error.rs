//! The errors of `snapshot`: unpacking and reading snapshots, writing layer diffs, and
//! overlay chains. They stay three types because callers meet them in different places
//! (the exporter only diffs, the solver only prepares overlays) and wrap them as such.

use std::io;
use std::path::PathBuf;

use super::overlay::MAX_LOWERS;
use crate::oci::Digest;

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

/// Why an upper directory could not be written as a layer tar.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} changed size while it was being archived", .0.display())]
    FileChanged(PathBuf),
    #[error("writing the layer: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
}

/// Why an overlay chain could not be prepared, committed or removed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{0} lower layers; overlayfs allows at most {MAX_LOWERS}")]
    TooManyLowers(usize),
    #[error("lower layer {} is not a directory", .0.display())]
    LowerMissing(PathBuf),
    #[error("{} already exists", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
}
