//! Everything that can go wrong in the cache index.

use std::path::PathBuf;

/// Everything that can go wrong in the cache index.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache index {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache index {path} is locked by another process: {reason}")]
    Locked { path: PathBuf, reason: String },
    #[error("cache index {path}: {reason}")]
    Database { path: PathBuf, reason: String },
    #[error("cache index {path}: corrupt record {key}: {reason}")]
    BadRecord {
        path: PathBuf,
        key: String,
        reason: String,
    },
}
