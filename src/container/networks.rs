//! Connecting a container to a bridge network and disconnecting it, running or not:
//! the change goes into its `config.json`, and a running one is plugged in or out at
//! once (its `/etc/hosts`, and its peers', follow).

use std::fs;

use super::error::io_err;
use super::state::write_atomic;
use super::{CONFIG_FILE, Container, ContainerError, NetworkMode, Result, Status, resolve};
use crate::network::{self, Attachment, NetworkError};
use crate::store::Store;

/// Held while a container's `config.json` changes after its creation (networks,
/// rename), so two changes neither lose each other's edit nor pick the same `ethN`; and
/// while its writable layer is mounted outside it (`cp` of a stopped container) or it
/// starts, so that layer is never mounted twice.
pub(super) struct ConfigLock {
    _file: fs::File,
}

pub(super) fn lock_config(container: &Container) -> Result<ConfigLock> {
    let path = container.dir.join(".config.lock");
    let file = crate::sys::lock_file(&path).map_err(io_err("lock", &path))?;
    Ok(ConfigLock { _file: file })
}

fn save_config(container: &Container) -> Result<()> {
    write_atomic(
        &container.dir.join(CONFIG_FILE),
        &serde_json::to_vec_pretty(&container.config)?,
    )
}

fn running_process(container: &Container) -> Option<crate::sys::process::ProcessId> {
    container
        .state
        .process
        .filter(|p| container.state.status == Status::Running && p.is_alive())
}

/// The container as it is now, with its config locked.
pub(super) fn locked(store: &Store, query: &str) -> Result<(Container, ConfigLock)> {
    let found = resolve(store, query)?;
    let lock = lock_config(&found)?;
    // Re-read under the lock: another change may have landed while we waited.
    Ok((super::load(&found.dir)?, lock))
}

/// `network connect`: adds the network to the container (with its aliases).
pub fn connect_network(store: &Store, query: &str, mut attachment: Attachment) -> Result<()> {
    let (mut container, _lock) = locked(store, query)?;
    let found = network::find(store, &attachment.network)?;
    attachment.network = found.name.clone();
    if container.config.network != NetworkMode::Bridge {
        return Err(ContainerError::Usage(
            "container sharing network namespace with the host, or without a network, \
             cannot be connected to any other network"
                .into(),
        ));
    }
    if container
        .config
        .networks
        .iter()
        .any(|a| a.network == found.name)
    {
        return Err(NetworkError::AlreadyConnected {
            container: container.config.name.clone(),
            network: found.name,
        }
        .into());
    }
    if let (Some(process), Some(owner)) = (running_process(&container), container.state.owner) {
        let path = std::path::PathBuf::from(format!("/proc/{}/ns/net", process.pid));
        let namespace = crate::sys::netlink::open_net_ns(&path)?;
        let member = network::Member {
            id: container.config.id.clone(),
            name: container.config.name.clone(),
            hostname: container.config.hostname.clone(),
        };
        network::connect_running(store, &member, &attachment, &namespace, owner)?;
    }
    container.config.networks.push(attachment);
    save_config(&container)
}

/// `network disconnect`: takes the network away from the container. A network removed
/// since (a stopped container may still name it) is taken off by its name.
pub fn disconnect_network(store: &Store, query: &str, network_name: &str) -> Result<()> {
    let (mut container, _lock) = locked(store, query)?;
    let name = match network::find(store, network_name) {
        Ok(found) => found.name,
        Err(NetworkError::NotFound(_))
            if container
                .config
                .networks
                .iter()
                .any(|a| a.network == network_name) =>
        {
            network_name.to_string()
        }
        Err(error) => return Err(error.into()),
    };
    if !container.config.networks.iter().any(|a| a.network == name) {
        return Err(NetworkError::NotConnected {
            container: container.config.name.clone(),
            network: name,
        }
        .into());
    }
    if running_process(&container).is_some() {
        let endpoints = network::endpoints_of(store, &container.config.id)?;
        let publishing = endpoints
            .iter()
            .any(|e| e.network == name && e.interface == "eth0");
        // The listeners forward to this network's address, which would go to the next
        // container given it.
        if publishing && !container.state.ports.is_empty() {
            return Err(ContainerError::Usage(format!(
                "container {} publishes ports through network {name}: stop it before \
                 disconnecting it",
                container.config.name
            )));
        }
        if endpoints.iter().any(|e| e.network == name) {
            network::disconnect_running(store, &container.config.id, &name)?;
        }
    }
    container.config.networks.retain(|a| a.network != name);
    save_config(&container)
}
