//! The error of every wrapper in this part of `sys`.

use std::io;
use std::path::PathBuf;

/// A failed system call, with what it was doing and on which path.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{call} failed: {source}")]
    Call {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{call} {path} failed: {source}")]
    OnPath {
        call: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid argument for {call}: {reason}")]
    Invalid { call: &'static str, reason: String },
}

impl SysError {
    pub(crate) fn call(call: &'static str, source: impl Into<io::Error>) -> Self {
        SysError::Call {
            call,
            source: source.into(),
        }
    }

    pub(crate) fn path(
        call: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        SysError::OnPath {
            call,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The OS error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysError::Call { source, .. } | SysError::OnPath { source, .. } => {
                source.raw_os_error()
            }
            SysError::Invalid { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, SysError>;
