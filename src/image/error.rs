//! Everything that can go wrong in an image operation.

use std::path::PathBuf;

use crate::oci::{DigestError, ReferenceError};
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
    /// A manifest, index or config that is not JSON of its kind.
    #[error("invalid {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A digest in a manifest, index or config that does not parse.
    #[error("invalid {what}: {source}")]
    Digest {
        what: String,
        #[source]
        source: DigestError,
    },
    #[error("unsupported media type {media_type} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
    /// An archive that is not what `kiln load` reads.
    #[error("archive {}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
    /// A part of an archive (`manifest.json`, an entry) that could not be read or stored.
    #[error("archive {}: {part}: {source}", path.display())]
    ArchivePart {
        path: PathBuf,
        part: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An image of an archive whose manifest or config the store cannot read.
    #[error("archive {}: {source}", path.display())]
    ArchiveImage {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("no such image: {0}")]
    NotFound(String),
    /// An image index with no image for the platform asked for.
    #[error("{image}: {source}")]
    Platform {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
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
    /// An image name that does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A transfer or blocking task that panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The limit of transfers at once was closed (it never is while a transfer runs).
    #[error("background task failed: {0}")]
    Permit(#[from] tokio::sync::AcquireError),
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
