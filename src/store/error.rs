//! Everything that can go wrong in the store.

use std::io;
use std::path::{Path, PathBuf};

use crate::oci::{Digest, DigestError, ReferenceError};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("cannot store {0}: the store only holds sha256 content")]
    UnsupportedAlgorithm(Digest),
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    #[error("corrupt content {digest}: {reason}")]
    CorruptBlob { digest: Digest, reason: String },
    /// A stored manifest or config that is not JSON of its kind.
    #[error("corrupt content {digest}: {source}")]
    BlobJson {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    /// A config whose `rootfs.diff_ids` are not all digests.
    #[error("corrupt content {digest}: {source}")]
    BlobDiffId {
        digest: Digest,
        #[source]
        source: DigestError,
    },
    /// `index.json` that does not parse (or, when writing, does not encode).
    #[error("corrupt {}: {source}", path.display())]
    CorruptFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{digest} is not an image manifest (media type {media_type}); pick a platform from the index first"
    )]
    NotAManifest { digest: Digest, media_type: String },
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error("{query:?} matches several images: {}", candidates.join(", "))]
    AmbiguousImage {
        query: String,
        candidates: Vec<String>,
    },
    #[error("no store root: pass --root, set KILN_ROOT, or set HOME")]
    NoRoot,
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the action and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io_context(self, action: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
