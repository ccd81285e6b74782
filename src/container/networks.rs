//! Connecting a container to a bridge network and disconnecting it, running or not:
//! the change goes into its `config.json`, and a running one is plugged in or out at
//! once (its `/etc/hosts`, and its peers', follow).

use super::state::write_atomic;
use super::{CONFIG_FILE, Container, ContainerError, NetworkMode, Result, Status, resolve};
use crate::network::{self, Attachment, NetworkError};
use crate::store::Store;

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

/// `network connect`: adds the network to the container (with its aliases).
pub fn connect_network(store: &Store, query: &str, mut attachment: Attachment) -> Result<()> {
    let mut container = resolve(store, query)?;
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

/// `network disconnect`: takes the network away from the container.
pub fn disconnect_network(store: &Store, query: &str, network_name: &str) -> Result<()> {
    let mut container = resolve(store, query)?;
    let found = network::find(store, network_name)?;
    if !container
        .config
        .networks
        .iter()
        .any(|a| a.network == found.name)
    {
        return Err(NetworkError::NotConnected {
            container: container.config.name.clone(),
            network: found.name,
        }
        .into());
    }
    if running_process(&container).is_some() {
        network::disconnect_running(store, &container.config.id, &found.name)?;
    }
    container
        .config
        .networks
        .retain(|a| a.network != found.name);
    save_config(&container)
}
