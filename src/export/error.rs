//! What can make an export fail.

use std::path::PathBuf;

use crate::cache;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cache index: {0}")]
    Cache(#[from] cache::CacheError),
    #[error("writing the layer of {name}: {source}")]
    Layer {
        name: String,
        #[source]
        source: Box<ExportError>,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Diff(#[from] crate::snapshot::diff::DiffError),
    #[error("base image {reference}: {source}")]
    Base {
        reference: String,
        #[source]
        source: crate::oci::DigestError,
    },
    #[error("the result of {0} is missing")]
    MissingResult(String),
}
