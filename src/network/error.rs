//! The error of the `network` module.

use std::path::PathBuf;

use crate::sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    ActiveEndpoints { name: String, id: String },
    #[error("no free address left in network {0}")]
    Exhausted(String),
    #[error("address {address} is already in use in network {network}")]
    AddressInUse { address: String, network: String },
    #[error("no free 10.89.x.0/24 subnet is left for a new network")]
    NoSubnet,
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error(
        "bridge networks need root: their namespace is kept by a bind mount, which a \
         rootless kiln cannot leave behind (use --network host or none)"
    )]
    Rootless,
    #[error("Bind for {address} failed: port is already allocated")]
    PortInUse {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the network: {0}")]
    Sys(#[from] SysError),
    #[error("bad network record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot make a network id: {0}")]
    Id(#[source] crate::store::StoreError),
}

pub type Result<T> = std::result::Result<T, NetworkError>;

/// Maps an `io::Error` on `path` to [`NetworkError::Io`].
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> NetworkError {
    let path = path.into();
    move |source| NetworkError::Io {
        action,
        path,
        source,
    }
}
