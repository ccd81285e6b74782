//! Everything that can go wrong in an image operation.

use std::path::PathBuf;

use crate::registry::RegistryError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// Everything that can go wrong in an image operation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A manifest, index or config that is not what it claims to be.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("unsupported media type {media_type} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("archive {}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error(
        "unable to remove {image}: image is being used by container {container} (use -f to force)"
    )]
    InUse { image: String, container: String },
    #[error(
        "unable to delete {id} (must be forced): image is referenced in multiple repositories: {}",
        names.join(", ")
    )]
    MultipleReferences { id: String, names: Vec<String> },
    #[error("{0}")]
    Usage(String),
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}
