//! Where build inputs come from: the build context (`.dockerignore` matching with moby's
//! semantics in [`ignore`]; selecting COPY sources inside the context without ever leaving
//! it, and hashing the selection by content with a persistent stat cache, in [`context`])
//! and files fetched over HTTP(S) for `ADD <url>` ([`http`]).
//!
//! Everything but [`http`] is synchronous and may block on I/O; async callers use
//! `spawn_blocking`.

pub mod context;
pub mod glob;
pub mod http;
pub mod ignore;
mod statcache;

use std::path::PathBuf;

pub use context::{
    Context, ContextDigest, Entry, FileChanges, FileKind, Selection, SourceMatch, Stats,
};
pub use ignore::{IgnoreFile, MatchInfo, MatchType, PatternInfo, PatternMatcher};
pub use statcache::{CacheStatus, StatCache};

/// Errors of the `source` module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Go's `filepath.ErrBadPattern`.
    #[error("syntax error in pattern: {pattern}")]
    BadPattern { pattern: String },
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    #[error("wrong number of values in parent match info")]
    MatchInfoMismatch,
    #[error("build context {path}: {source}")]
    ContextRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file not found in build context or excluded by .dockerignore: {source_path}")]
    NotFound { source_path: String },
    #[error("too many levels of symbolic links resolving {source_path} in the build context")]
    SymlinkLoop { source_path: String },
    #[error("reading {path} in the build context: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while the build context was being read")]
    ChangedDuringRead { path: PathBuf },
    #[error("downloading {url}: {reason}")]
    Http { url: String, reason: String },
}
