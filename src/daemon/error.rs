//! Everything that can go wrong in the daemon, and the HTTP status Docker gives each.

use std::path::PathBuf;

use hyper::StatusCode;

use crate::container::ContainerError;
use crate::image::ImageError;
use crate::network::NetworkError;
use crate::registry::RegistryError;
use crate::store::StoreError;

/// Everything that can go wrong in the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--host` that is not `unix:///path`.
    #[error("unsupported host {0}: kiln serves on unix:///PATH only")]
    Host(String),
    #[error("another daemon is listening on {}", .0.display())]
    AlreadyServing(PathBuf),
    #[error("{} exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    #[error("no such group: {0}")]
    NoSuchGroup(String),
    #[error("looking up group {name}: {source}")]
    Group {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Boxed: a container error is large, and every handler returns this enum.
    #[error(transparent)]
    Container(Box<ContainerError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A request the API rejects as malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// A request body that is not the JSON the endpoint takes (400).
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A path the API does not have (404).
    #[error("page not found")]
    NoRoute,
    /// Something a request names that does not exist, e.g. an exec instance (404).
    #[error("{0}")]
    NotFound(String),
    /// A request that conflicts with the state of a container or image (409).
    #[error("{0}")]
    Conflict(String),
    /// A blocking task that panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<ContainerError> for DaemonError {
    fn from(error: ContainerError) -> Self {
        DaemonError::Container(Box::new(error))
    }
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

pub(super) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.into();
    move |source| DaemonError::Io {
        action,
        path,
        source,
    }
}

impl DaemonError {
    /// Docker's status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            DaemonError::BadRequest(_) | DaemonError::Json(_) => StatusCode::BAD_REQUEST,
            DaemonError::NoRoute | DaemonError::NotFound(_) => StatusCode::NOT_FOUND,
            DaemonError::Conflict(_) => StatusCode::CONFLICT,
            DaemonError::Image(error) => image_status(error),
            DaemonError::Container(error) => container_status(error),
            DaemonError::Store(StoreError::ImageNotFound(_)) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message of the `{"message": …}` body: Docker's words where clients match them.
    pub fn message(&self) -> String {
        let image = match self {
            DaemonError::Image(error) => Some(error),
            DaemonError::Container(error) => match error.as_ref() {
                ContainerError::Image(error) => Some(error),
                _ => None,
            },
            _ => None,
        };
        match image {
            Some(ImageError::NotFound(name)) => format!("No such image: {name}"),
            _ => self.to_string(),
        }
    }
}

fn image_status(error: &ImageError) -> StatusCode {
    match error {
        ImageError::NotFound(_) | ImageError::Store(StoreError::ImageNotFound(_)) => {
            StatusCode::NOT_FOUND
        }
        ImageError::InUse { .. } | ImageError::MultipleReferences { .. } => StatusCode::CONFLICT,
        // An archive that is not one (`load`) is the client's.
        ImageError::Usage(_)
        | ImageError::Reference(_)
        | ImageError::Platform { .. }
        | ImageError::Archive { .. }
        | ImageError::ArchivePart { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn container_status(error: &ContainerError) -> StatusCode {
    match error {
        ContainerError::NotFound(_)
        | ContainerError::NoSuchVolume(_)
        | ContainerError::NoSuchPath(_) => StatusCode::NOT_FOUND,
        ContainerError::VolumeInUse { .. } => StatusCode::CONFLICT,
        ContainerError::NameInUse { .. }
        | ContainerError::Running(_)
        | ContainerError::NotRunning(_) => StatusCode::CONFLICT,
        ContainerError::Ambiguous(_)
        | ContainerError::NoCommand
        | ContainerError::Usage(_)
        | ContainerError::ArchiveRequest(_)
        | ContainerError::Capability(_)
        | ContainerError::SeccompProfile { .. }
        | ContainerError::SeccompProfileRead { .. } => StatusCode::BAD_REQUEST,
        ContainerError::Image(error) => image_status(error),
        ContainerError::Network(error) => network_status(error),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn network_status(error: &NetworkError) -> StatusCode {
    match error {
        NetworkError::NotFound(_) => StatusCode::NOT_FOUND,
        NetworkError::Exists(_) => StatusCode::CONFLICT,
        NetworkError::Predefined(_)
        | NetworkError::ActiveEndpoints { .. }
        | NetworkError::AlreadyConnected { .. }
        | NetworkError::AddressInUse { .. } => StatusCode::FORBIDDEN,
        NetworkError::InvalidName(_)
        | NetworkError::Usage(_)
        | NetworkError::NotConnected { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
