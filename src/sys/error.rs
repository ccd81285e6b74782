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

    /// The OS error number, when there is one (e.g. to tell `ENOTSUP` apart).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SysError::Call { source, .. } | SysError::OnPath { source, .. } => {
                source.raw_os_error()
            }
            SysError::Invalid { .. } => None,
        }
    }
}

impl SysError {
    /// The path (or something it needs) does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        self.raw_os_error() == Some(libc::ENOENT)
    }

    /// The call failed for lack of privilege or support (`EPERM`, `EACCES`,
    /// `ENOTSUP`): what an unprivileged caller may choose to tolerate.
    pub fn is_not_permitted(&self) -> bool {
        matches!(
            self.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::ENOTSUP)
        )
    }
}

pub type Result<T> = std::result::Result<T, SysError>;
