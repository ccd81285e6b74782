//! A container's place on a network: its address, names, the veth that carries it, and
//! the `/etc/hosts` files kept current as containers come and go.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{NetworkError, Result, io_err};
use super::{Network, find, host_in, list_stored, lock, namespace, read_json, write_json};
use crate::store::Store;
use crate::sys::process::ProcessId;

pub(super) const ENDPOINTS: &str = "endpoints";

/// A network a container is to be on (its configuration, before it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// Extra names (`--network-alias`, compose's service name).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A fixed address (`--ip`); the first free one when absent.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
}

/// The container joining networks.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub hostname: String,
}

/// A container on a network (`endpoints/<container id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 hex digits.
    pub id: String,
    pub network_id: String,
    pub network: String,
    pub container_id: String,
    pub container_name: String,
    pub hostname: String,
    pub aliases: Vec<String>,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// `02:42:…`.
    pub mac: String,
    /// Its name in the container (`eth0`).
    pub interface: String,
    /// Its name in kiln's namespace, on the bridge.
    pub host_interface: String,
    /// The process that supervises the container: the record is stale once it is gone.
    pub owner: ProcessId,
    /// The source of the container's `/etc/hosts`, once it runs.
    #[serde(default)]
    pub hosts_file: Option<PathBuf>,
}

impl Endpoint {
    /// The names other containers reach it by: its name, the aliases, its short id.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.container_name.clone()];
        names.extend(self.aliases.iter().cloned());
        names.push(self.container_id[..12.min(self.container_id.len())].to_string());
        names
    }
}

fn endpoints_dir(store: &Store, network: &Network) -> PathBuf {
    network.dir(store).join(ENDPOINTS)
}

fn endpoint_path(store: &Store, network: &Network, container_id: &str) -> PathBuf {
    endpoints_dir(store, network).join(format!("{container_id}.json"))
}

/// The network's endpoints whose owner is alive; stale records are removed on the way.
pub(super) fn live(store: &Store, network: &Network) -> Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for entry in super::entries(&endpoints_dir(store, network))? {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let endpoint: Endpoint = match read_json(&path) {
            Ok(endpoint) => endpoint,
            // Written by rename, so a record that does not parse is not ours: skip it.
            Err(NetworkError::Json(_)) => continue,
            Err(NetworkError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(error) => return Err(error),
        };
        if endpoint.owner.is_alive() {
            out.push(endpoint);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    out.sort_by(|a, b| a.container_name.cmp(&b.container_name));
    Ok(out)
}

/// The running containers on `network`.
pub fn endpoints_of_network(store: &Store, network: &Network) -> Result<Vec<Endpoint>> {
    live(store, network)
}

/// Every live endpoint of the container `container_id`, on every network.
pub fn endpoints_of(store: &Store, container_id: &str) -> Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for network in list_stored(store)? {
        out.extend(
            live(store, &network)?
                .into_iter()
                .filter(|e| e.container_id == container_id),
        );
    }
    Ok(out)
}

/// A name `/etc/hosts` can carry: one word of host-name characters.
fn valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 253
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Picks the address: the one asked for if free, else the lowest free one.
fn allocate(network: &Network, taken: &[Endpoint], wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
    let subnet = (network.subnet, network.prefix);
    let free = |a: Ipv4Addr| {
        host_in(a, subnet) && a != network.gateway && !taken.iter().any(|e| e.address == a)
    };
    if let Some(address) = wanted {
        if !host_in(address, subnet) {
            return Err(NetworkError::Usage(format!(
                "address {address} is not in network {}'s subnet {}",
                network.name,
                network.subnet_text()
            )));
        }
        return if free(address) {
            Ok(address)
        } else {
            Err(NetworkError::AddressInUse {
                address: address.to_string(),
                network: network.name.clone(),
            })
        };
    }
    let first = u32::from(network.subnet) + 1;
    let last = u32::from(network.subnet) | !super::mask(network.prefix);
    (first..last)
        .map(Ipv4Addr::from)
        .find(|a| free(*a))
        .ok_or_else(|| NetworkError::Exhausted(network.name.clone()))
}

/// Adds the member to one network: records the endpoint (owned by this process) and
/// plugs `ns` in.
fn attach(
    store: &Store,
    member: &Member,
    attachment: &Attachment,
    ns: &OwnedFd,
    interface: String,
) -> Result<Endpoint> {
    let network = find(store, &attachment.network)?;
    if let Some(bad) = attachment.aliases.iter().find(|a| !valid_alias(a)) {
        return Err(NetworkError::Usage(format!(
            "invalid network alias {bad:?}: a host name of letters, digits, '.', '-' and '_'"
        )));
    }
    if network.name == super::DEFAULT_BRIDGE && attachment.address.is_some() {
        return Err(NetworkError::Usage(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    let kiln = namespace::kiln_ns()?;
    let endpoint = {
        let _locked = lock(store)?;
        let taken = live(store, &network)?;
        if taken.iter().any(|e| e.container_id == member.id) {
            return Err(NetworkError::AlreadyConnected {
                container: member.name.clone(),
                network: network.name.clone(),
            });
        }
        let address = allocate(&network, &taken, attachment.address)?;
        let mac = namespace::mac_for(address);
        let endpoint = Endpoint {
            id: super::random_id()?,
            network_id: network.id.clone(),
            network: network.name.clone(),
            container_id: member.id.clone(),
            container_name: member.name.clone(),
            hostname: member.hostname.clone(),
            aliases: attachment.aliases.clone(),
            address,
            prefix: network.prefix,
            gateway: network.gateway,
            mac: mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            interface,
            host_interface: namespace::host_interface(&member.id, &network.id),
            owner: ProcessId::current().ok_or_else(|| NetworkError::Io {
                action: "read",
                path: "/proc/self/stat".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?,
            hosts_file: None,
        };
        write_json(&endpoint_path(store, &network, &member.id), &endpoint)?;
        endpoint
    };
    if let Err(error) = namespace::plug(&kiln, &network, &network.record(store), &endpoint, ns) {
        let _ = fs::remove_file(endpoint_path(store, &network, &member.id));
        return Err(error);
    }
    super::event(
        store,
        "connect",
        &network,
        &[("container", &member.id), ("type", "bridge")],
    );
    Ok(endpoint)
}

/// Puts a container that is about to start on its networks, in the fresh network
/// namespace `ns`: `eth0` for the first, `eth1` for the next, …
pub fn join(
    store: &Store,
    member: &Member,
    attachments: &[Attachment],
    ns: &OwnedFd,
) -> Result<Vec<Endpoint>> {
    let mut endpoints = Vec::new();
    for (n, attachment) in attachments.iter().enumerate() {
        match attach(store, member, attachment, ns, format!("eth{n}")) {
            Ok(endpoint) => endpoints.push(endpoint),
            Err(error) => {
                let _ = leave(store, &member.id);
                return Err(error);
            }
        }
    }
    Ok(endpoints)
}

/// Connects a running container (its namespace `ns`) to one more network.
pub fn connect_running(
    store: &Store,
    member: &Member,
    attachment: &Attachment,
    ns: &OwnedFd,
    owner: ProcessId,
) -> Result<Endpoint> {
    let interface = namespace::free_interface(ns)?;
    let mut endpoint = attach(store, member, attachment, ns, interface)?;
    // The container's supervisor, not this command, keeps the record alive.
    endpoint.owner = owner;
    endpoint.hosts_file = endpoints_of(store, &member.id)?
        .into_iter()
        .find_map(|e| e.hosts_file);
    let network = stored(store, &endpoint.network_id)?;
    let _locked = lock(store)?;
    write_json(&endpoint_path(store, &network, &member.id), &endpoint)?;
    refresh(store, &member.id)?;
    Ok(endpoint)
}

/// Takes a running container off a network.
pub fn disconnect_running(store: &Store, container_id: &str, network: &str) -> Result<()> {
    let network = find(store, network)?;
    let endpoint = live(store, &network)?
        .into_iter()
        .find(|e| e.container_id == container_id)
        .ok_or_else(|| NetworkError::NotConnected {
            container: container_id.to_string(),
            network: network.name.clone(),
        })?;
    namespace::unplug(&endpoint)?;
    let _locked = lock(store)?;
    forget(store, &network, container_id)?;
    refresh_networks(store, &[network])?;
    rewrite_hosts(&all_live(store)?, &endpoint)
}

/// Removes the container's record on `network` and says so in the event log.
fn forget(store: &Store, network: &Network, container_id: &str) -> Result<()> {
    let path = endpoint_path(store, network, container_id);
    fs::remove_file(&path).map_err(io_err("remove", &path))?;
    super::event(
        store,
        "disconnect",
        network,
        &[("container", container_id), ("type", "bridge")],
    );
    Ok(())
}

/// Takes an ended container off every network (its veths went with its namespace) and
/// tells the others.
pub fn leave(store: &Store, container_id: &str) -> Result<()> {
    let _locked = lock(store)?;
    let mut left = Vec::new();
    for network in list_stored(store)? {
        if endpoint_path(store, &network, container_id).exists() {
            forget(store, &network, container_id)?;
            left.push(network);
        }
    }
    refresh_networks(store, &left)
}

/// Records where the running container's `/etc/hosts` comes from, and brings every
/// `/etc/hosts` on its networks up to date (its own included).
pub fn set_hosts_file(store: &Store, container_id: &str, path: &Path) -> Result<()> {
    update_records(store, container_id, |endpoint| {
        endpoint.hosts_file = Some(path.to_path_buf());
    })
}

/// Changes every record of the container, then brings the `/etc/hosts` on its networks
/// up to date, all under the store's network lock.
fn update_records(store: &Store, container_id: &str, change: impl Fn(&mut Endpoint)) -> Result<()> {
    let mut networks = Vec::new();
    let _locked = lock(store)?;
    for network in list_stored(store)? {
        let record = endpoint_path(store, &network, container_id);
        if !record.exists() {
            continue;
        }
        let mut endpoint: Endpoint = read_json(&record)?;
        change(&mut endpoint);
        write_json(&record, &endpoint)?;
        networks.push(network);
    }
    refresh_networks(store, &networks)
}

/// A running container renamed: its records carry the new name, and every `/etc/hosts`
/// on its networks follows.
pub fn rename_member(store: &Store, container_id: &str, name: &str) -> Result<()> {
    update_records(store, container_id, |endpoint| {
        endpoint.container_name = name.to_string();
    })
}

/// The `/etc/hosts` of a container on networks: localhost, its hostname, and every
/// container on its networks by name, alias and short id.
pub fn hosts_for(store: &Store, container_id: &str, hostname: &str) -> Result<String> {
    Ok(hosts_from(&all_live(store)?, container_id, hostname))
}

/// Every network's live endpoints, read once for a round of `/etc/hosts` rewrites.
fn all_live(store: &Store) -> Result<Vec<Vec<Endpoint>>> {
    list_stored(store)?
        .iter()
        .map(|network| live(store, network))
        .collect()
}

fn hosts_from(all: &[Vec<Endpoint>], container_id: &str, hostname: &str) -> String {
    let mine =
        |endpoints: &&Vec<Endpoint>| endpoints.iter().any(|e| e.container_id == container_id);
    let own: Vec<Endpoint> = all
        .iter()
        .flatten()
        .filter(|e| e.container_id == container_id)
        .cloned()
        .collect();
    let peers: Vec<Endpoint> = all.iter().filter(mine).flatten().cloned().collect();
    super::hosts::render(hostname, &own, &peers)
}

/// The stored network with this id (never creates one: callers may hold the lock).
fn stored(store: &Store, id: &str) -> Result<Network> {
    list_stored(store)?
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| NetworkError::NotFound(id.to_string()))
}

/// Rewrites the `/etc/hosts` on the container's networks. The caller holds the lock.
fn refresh(store: &Store, container_id: &str) -> Result<()> {
    let networks: Vec<Network> = endpoints_of(store, container_id)?
        .iter()
        .map(|e| stored(store, &e.network_id))
        .collect::<Result<_>>()?;
    refresh_networks(store, &networks)
}

/// Rewrites the `/etc/hosts` of every running container on `networks`. The caller holds
/// the lock, so two writers never interleave in one file.
fn refresh_networks(store: &Store, networks: &[Network]) -> Result<()> {
    let all = all_live(store)?;
    let mut done = BTreeSet::new();
    for endpoint in all.iter().flatten() {
        if networks.iter().any(|n| n.id == endpoint.network_id)
            && done.insert(endpoint.container_id.clone())
        {
            rewrite_hosts(&all, endpoint)?;
        }
    }
    Ok(())
}

/// Writes the container's hosts file in place: it is bind-mounted, so a rename would
/// leave the container on the old file.
fn rewrite_hosts(all: &[Vec<Endpoint>], endpoint: &Endpoint) -> Result<()> {
    let Some(path) = endpoint.hosts_file.as_ref() else {
        return Ok(());
    };
    let text = hosts_from(all, &endpoint.container_id, &endpoint.hostname);
    // Written over the old text, then cut to length: a lookup at that moment reads
    // whole lines (old or new), never an empty file.
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(mut file) => std::io::Write::write_all(&mut file, text.as_bytes())
            .and_then(|()| file.set_len(text.len() as u64))
            .map_err(io_err("write", path)),
        // The container ended meanwhile and its state went with it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("open", path)(e)),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn network() -> Network {
        Network {
            id: "f".repeat(64),
            name: "n".into(),
            created: String::new(),
            subnet: Ipv4Addr::new(10, 89, 0, 0),
            prefix: 29,
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            labels: Default::default(),
            options: Default::default(),
            internal: false,
        }
    }

    /// A record for the tests of this module and of `hosts`.
    pub(in crate::network) fn endpoint(
        name: &str,
        id: &str,
        address: Ipv4Addr,
        aliases: &[&str],
    ) -> Endpoint {
        Endpoint {
            id: String::new(),
            network_id: String::new(),
            network: String::new(),
            container_id: id.repeat(64),
            container_name: name.into(),
            hostname: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            address,
            prefix: 24,
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            mac: String::new(),
            interface: "eth0".into(),
            host_interface: String::new(),
            owner: ProcessId {
                pid: 1,
                start_time: 0,
            },
            hosts_file: None,
        }
    }

    #[test]
    fn aliases_are_host_names() {
        assert!(valid_alias("db"));
        assert!(valid_alias("api.v2-x_y"));
        for bad in ["", "a b", "x\n10.0.0.1 evil", "a#b", "a\tb"] {
            assert!(!valid_alias(bad), "{bad:?}");
        }
    }

    #[test]
    fn allocation_skips_the_gateway_and_taken_addresses() {
        let net = network();
        assert_eq!(
            allocate(&net, &[], None).unwrap(),
            Ipv4Addr::new(10, 89, 0, 2)
        );
        let taken = [endpoint("c", "c", Ipv4Addr::new(10, 89, 0, 2), &[])];
        assert_eq!(
            allocate(&net, &taken, None).unwrap(),
            Ipv4Addr::new(10, 89, 0, 3)
        );
        let full: Vec<Endpoint> = (2..=6)
            .map(|d| endpoint("c", "c", Ipv4Addr::new(10, 89, 0, d), &[]))
            .collect();
        assert!(matches!(
            allocate(&net, &full, None),
            Err(NetworkError::Exhausted(_))
        ));
        assert!(matches!(
            allocate(&net, &taken, Some(Ipv4Addr::new(10, 89, 0, 2))),
            Err(NetworkError::AddressInUse { .. })
        ));
        assert!(allocate(&net, &taken, Some(Ipv4Addr::new(10, 89, 1, 2))).is_err());
        assert_eq!(
            allocate(&net, &taken, Some(Ipv4Addr::new(10, 89, 0, 5))).unwrap(),
            Ipv4Addr::new(10, 89, 0, 5)
        );
    }
}
