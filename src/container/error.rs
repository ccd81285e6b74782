//! Everything that can go wrong with a container.

use std::path::PathBuf;

use crate::image::ImageError;
use crate::sandbox::{CapabilityError, SandboxError, SeccompError};
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// Everything that can go wrong with a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
    #[error("container state is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    #[error("remove {name}: volume is in use by container {container}")]
    VolumeInUse { name: String, container: String },
    #[error("multiple containers match {0}: give more of the id")]
    Ambiguous(String),
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error(
        "cannot remove container \"/{0}\": container is running: stop the container before \
         removing or force remove"
    )]
    Running(String),
    #[error("Container {0} is not running")]
    NotRunning(String),
    /// A path `docker cp` names that the container does not have.
    #[error("Could not find the file {0} in container")]
    NoSuchPath(String),
    /// A copy into or out of a container that cannot be done as asked: the destination is
    /// not a directory, the archive is unreadable or names a path outside it.
    #[error("{0}")]
    ArchiveRequest(String),
    #[error("no command specified")]
    NoCommand,
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// `--security-opt seccomp=FILE` that cannot be read (Docker's message).
    #[error("opening seccomp profile ({}) failed: {source}", path.display())]
    SeccompProfileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--security-opt seccomp=FILE` that is not a usable profile.
    #[error("decoding seccomp profile ({}) failed: {source}", path.display())]
    SeccompProfile {
        path: PathBuf,
        #[source]
        source: SeccompError,
    },
    /// The runtime that supervises the sandbox could not start.
    #[error("background task failed: {0}")]
    Runtime(#[source] std::io::Error),
    /// A detached container could not start: what its monitor recorded.
    #[error("{0}")]
    StartFailed(String),
    /// The monitor of a detached container ended before taking over; `log` is what it said.
    #[error("background task failed: the container monitor exited ({status}): {log}")]
    MonitorExited {
        status: std::process::ExitStatus,
        log: String,
    },
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

pub(super) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.into();
    move |source| ContainerError::Io {
        action,
        path,
        source,
    }
}
