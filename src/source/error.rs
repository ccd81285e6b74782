//! The one error type of the source module.

use std::path::PathBuf;

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
    /// The request or the response body failed (DNS, connect, TLS, reset, …). The message
    /// spells out the whole chain of causes: reqwest keeps the useful part in them.
    #[error("downloading {url}: {}", cause_chain(.source))]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status other than success (or 304 when asked).
    #[error("downloading {url}: HTTP {status}")]
    HttpStatus {
        url: String,
        status: reqwest::StatusCode,
    },
    /// `git` could not be started.
    #[error("running git: {source}")]
    GitSpawn { source: std::io::Error },
    /// The shell that runs git did not find it.
    #[error("ADD from a git repository needs the git binary (install git)")]
    GitMissing,
    /// A git command failed; `stderr` is what it said.
    #[error("git {command} of {remote} failed: {stderr}")]
    GitCommand {
        command: String,
        remote: String,
        stderr: String,
    },
    /// The repository does not have what the source asks for (a ref, a commit, a
    /// subdirectory).
    #[error("{remote}: {message}")]
    Git { remote: String, message: String },
    /// Making the checkout's directories.
    #[error("{what} {}: {source}", path.display())]
    GitIo {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The body ended before the length the server announced.
    #[error("downloading {url}: the connection closed after {received} of {expected} bytes")]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },
}

/// The error and its causes on one line.
fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
