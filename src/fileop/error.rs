//! The one error type of file operations.

use std::io;
use std::path::PathBuf;

/// What can go wrong in COPY, ADD or WORKDIR. Messages name the Dockerfile-level reason and
/// the path (inside the source or destination root) they are about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A source without wildcards matched nothing (or only ignored files).
    #[error(
        "{keyword} failed: file not found in build context or excluded by .dockerignore: {path}"
    )]
    NotInContext { keyword: &'static str, path: String },
    /// A source without wildcards is missing from a stage or image.
    #[error("{keyword} failed: {path}: not found")]
    NotFound { keyword: &'static str, path: String },
    /// No source matched anything and empty wildcards are not allowed.
    #[error("{keyword} failed: no source files were specified (nothing matches {pattern})")]
    NoMatch {
        keyword: &'static str,
        pattern: String,
    },
    #[error(
        "When using {keyword} with more than one source file, the destination must be a directory and end with a /"
    )]
    DestNotDirectory { keyword: &'static str },
    #[error("cannot copy to non-directory: {path}")]
    CopyToNonDirectory { path: String },
    #[error("cannot replace to directory {path} with file")]
    ReplaceDirectoryWithFile { path: String },
    #[error("mkdir {path}: no such file or directory")]
    MkdirNoParent { path: String },
    #[error("mkdir {path}: not a directory")]
    MkdirNotDirectory { path: String },
    /// A user name with no filesystem to look it up in (the destination is scratch).
    #[error("unable to find user {name}: the destination is empty, it has no /etc/passwd")]
    UnknownUser { name: String },
    #[error("unable to find group {name}: the destination is empty, it has no /etc/group")]
    UnknownGroup { name: String },
    #[error("invalid chmod value {value:?}: {reason}")]
    BadChmod { value: String, reason: String },
    #[error("invalid pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    #[error("ADD failed: extracting {path}: {source}")]
    Extract {
        path: String,
        #[source]
        source: crate::snapshot::SnapshotError,
    },
    /// The op refers to an input it was not given, or a Context where a chain is needed.
    #[error("file op: {0}")]
    BadInput(String),
    #[error("file op: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("file op: {0}")]
    Sys(#[from] crate::sys::SysError),
    #[error("file op: settling the layer against its parent: {0}")]
    Settle(#[source] crate::snapshot::OverlayError),
    #[error("file op thread panicked: {0}")]
    Panicked(String),
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
