//! Everything that can go wrong while solving, each with the error it came from.

use std::path::{Path, PathBuf};

use crate::cache::CacheError;
use crate::fileop;
use crate::image::ImageError;
use crate::oci::{DigestError, ReferenceError};
use crate::registry::RegistryError;
use crate::sandbox::SandboxError;
use crate::snapshot::overlay::OverlayError;
use crate::store::StoreError;
use crate::syntax::Span;
use crate::sys::SysError;

/// Why a base image could not be pulled: whatever the puller met (registry, store, …).
pub type PullError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong while solving.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A step failed; `tail` holds the last lines of its output.
    #[error("{name}: {message}")]
    Step {
        name: String,
        span: Option<Span>,
        /// A boxed `str` rather than a `String`, so the error stays small.
        message: Box<str>,
        tail: Box<[String]>,
        /// The error the step failed with; `None` when the step itself said no (a
        /// command's exit code, a missing secret, a checksum that does not match).
        #[source]
        source: Option<Box<StepCause>>,
    },
    #[error("{what} is not supported yet")]
    Unsupported {
        what: String,
        name: String,
        span: Option<Span>,
    },
    #[error("the build was cancelled")]
    Cancelled,
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store's lease or lock, a lookup in it, or a file written into it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Changing a file's owner or times.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Setting up, committing or removing an overlay directory.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the plan has a cycle")]
    Cycle,
    /// The plan gave an op fewer inputs than its definition names.
    #[error("{name}: the op has no input {input}")]
    MissingInput { name: String, input: usize },
    /// A task running an op, or blocking work, panicked or was aborted.
    #[error("a build task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The limit of steps running at once was closed (it never is while a build runs).
    #[error("the job limit was closed: {0}")]
    Jobs(#[from] tokio::sync::AcquireError),
    /// A base image name that is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A stored image's manifest digest that is not a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A stored image's config blob that is not JSON.
    #[error(transparent)]
    ConfigBlob(serde_json::Error),
    /// A field of a stored image's config (`config`, `history`) that does not parse.
    #[error("image {what} of {reference}: {source}")]
    ImageConfig {
        what: &'static str,
        reference: String,
        source: serde_json::Error,
    },
    /// A base image is not in the store and nothing may pull it.
    #[error("{reference} is not in the store (kiln pull {written})")]
    NotStored { reference: String, written: String },
    /// The puller succeeded but the image is still not in the store.
    #[error("{reference} is not in the store after pulling it")]
    NotPulled { reference: String },
    #[error(transparent)]
    Pull(PullError),
    /// A file kiln wrote that does not parse (a kept failed step's description).
    #[error("reading {what} {}: {source}", path.display())]
    Decode {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A kept failed step that cannot be reopened: part of it is gone.
    #[error("the failed step kept in {} cannot be reopened: {what} is missing", path.display())]
    FailedStepGone { path: PathBuf, what: String },
    /// The sandbox of a reopened failed step could not be started or waited for.
    #[error("the debug session: {0}")]
    DebugSandbox(#[source] SandboxError),
    /// The sandbox of a reopened failed step failed before running the command.
    #[error("the debug session could not start: {reason}")]
    DebugSetup { reason: String },
}

/// What a failed step's error came from.
#[derive(Debug, thiserror::Error)]
pub enum StepCause {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    FileOp(#[from] fileop::Error),
    /// The build context, or a download.
    #[error(transparent)]
    Source(#[from] crate::source::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SolveError {
    /// Where in the Dockerfile the failing step is, when known.
    pub fn span(&self) -> Option<Span> {
        match self {
            SolveError::Step { span, .. } | SolveError::Unsupported { span, .. } => *span,
            _ => None,
        }
    }

    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| SolveError::Io { what, path, source }
    }
}
