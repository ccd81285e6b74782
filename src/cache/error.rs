//! Everything that can go wrong in the cache index.

use std::path::PathBuf;

/// Everything that can go wrong in the cache index.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache index {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache index {path} is locked by another process: {source}")]
    Locked {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("cache index {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error("cache index {path}: corrupt record {key}: {source}")]
    BadRecord {
        path: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A record written by a kiln whose record format this one does not know.
    #[error("cache index {path}: corrupt record {key}: record version {version}")]
    RecordVersion {
        path: PathBuf,
        key: String,
        version: u32,
    },
    /// An imported cache (see `remote`) this kiln cannot use.
    #[error(
        "cache format version {found} is not one this kiln reads ({})",
        super::remote::VERSION
    )]
    RemoteVersion { found: u32 },
    #[error("cache record {key} names layer {index}, but there are {count} layers")]
    RemoteLayer {
        key: String,
        index: usize,
        count: usize,
    },
    #[error("cache record {key} has a layer without a diff_id")]
    RemoteDiffId { key: String },
}

/// What went wrong inside the index file: redb's own error, or a panic it raised instead.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Open(#[from] redb::DatabaseError),
    #[error(transparent)]
    Transaction(#[from] redb::TransactionError),
    #[error(transparent)]
    Table(#[from] redb::TableError),
    #[error(transparent)]
    Storage(#[from] redb::StorageError),
    #[error(transparent)]
    Commit(#[from] redb::CommitError),
    /// A stored record rewritten with its new last-use time that would not encode.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// redb may panic on a damaged file instead of returning an error: what it was doing.
    #[error("{0}")]
    Panicked(&'static str),
}
