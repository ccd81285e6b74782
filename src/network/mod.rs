//! User-defined bridge networks, as Docker's: containers on one network reach each other
//! by name and alias, `-p` publishes their ports on the host's loopback.
//!
//! Every bridge lives in one network namespace that kiln creates and pins at
//! `<runtime dir>/netns/kiln` (as rootless Podman keeps its own), never in the host's:
//! no host link, route, firewall or NAT rule is touched. A container gets its own
//! namespace with one veth per network (`eth0`, `eth1`, …) whose other end is enslaved to
//! the network's bridge. Names resolve through the container's `/etc/hosts`, rewritten in
//! place whenever a container joins or leaves one of its networks. Published ports are
//! loopback listeners on the host whose connections are made from inside kiln's
//! namespace ([`forward`]). There is no route out: these networks have no internet.
//!
//! On disk: `<root>/networks-v1/<id>/network.json`, and one
//! `endpoints/<container id>.json` per attached container, owned by the process that
//! supervises the container, so a record whose owner died is stale and ignored.

mod endpoint;
pub mod error;
pub mod forward;
mod hosts;
mod namespace;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use endpoint::{
    Attachment, Endpoint, Member, connect_running, disconnect_running, endpoints_of,
    endpoints_of_network, hosts_for, join, leave, rename_member, set_hosts_file,
};
pub use error::{NetworkError, Result};
pub use forward::{PortBinding, Protocol, Published, publish};

use crate::store::Store;
use error::io_err;

const DIR: &str = "networks-v1";
const META: &str = "network.json";
const LOCK: &str = ".lock";

/// The network `kiln run -p` and Docker's `bridge` mode use.
pub const DEFAULT_BRIDGE: &str = "bridge";
/// The networks that are modes, not bridges: listed, never created or removed.
pub const PSEUDO: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

/// A bridge network (`network.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Docker's `--internal`; kiln's networks never reach outside anyway.
    #[serde(default)]
    pub internal: bool,
}

impl Network {
    /// The bridge's interface name in kiln's namespace.
    pub fn bridge_name(&self) -> String {
        format!("kb-{}", &self.id[..12])
    }

    /// `10.89.0.0/24`.
    pub fn subnet_text(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    fn dir(&self, store: &Store) -> PathBuf {
        networks_dir(store).join(&self.id)
    }

    /// Its `network.json` by absolute path: the sweep of kiln's namespace checks it
    /// from any working directory.
    fn record(&self, store: &Store) -> PathBuf {
        fs::canonicalize(store.root())
            .unwrap_or_else(|_| store.root().to_path_buf())
            .join(DIR)
            .join(&self.id)
            .join(META)
    }
}

/// What `network create` may set.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `10.1.2.0/24`; a free `10.89.x.0/24` when absent.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub internal: bool,
}

/// The fixed id of a pseudo network (`host`, `none`).
pub fn pseudo_id(name: &str) -> String {
    let digest = Sha256::digest(format!("kiln-network:{name}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records a `network` event (`create`, `connect`, …) in the store's event log.
fn event(store: &Store, action: &str, network: &Network, extra: &[(&str, &str)]) {
    let mut attributes = vec![("name", network.name.as_str())];
    attributes.extend_from_slice(extra);
    crate::store::events::record(store.root(), "network", action, &network.id, &attributes);
}

fn networks_dir(store: &Store) -> PathBuf {
    store.root().join(DIR)
}

/// Docker's rule for network names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Holds the store's network lock while alive.
pub(crate) struct Locked {
    _file: fs::File,
}

pub(crate) fn lock(store: &Store) -> Result<Locked> {
    let dir = networks_dir(store);
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let path = dir.join(LOCK);
    let file = crate::sys::lock_file(&path).map_err(io_err("lock", &path))?;
    Ok(Locked { _file: file })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Writes `value` to a temp file beside `path` and renames it over `path`.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, serde_json::to_vec_pretty(value)?).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename", path))
}

/// Every bridge network of the store (the default `bridge` made on the way, when
/// kiln can make it), by name.
pub fn list(store: &Store) -> Result<Vec<Network>> {
    let networks = list_stored(store)?;
    if namespace::rootless() || networks.iter().any(|n| n.name == DEFAULT_BRIDGE) {
        return Ok(networks);
    }
    find(store, DEFAULT_BRIDGE)?;
    list_stored(store)
}

/// The entries of `dir`; none when it does not exist (yet).
fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

fn list_stored(store: &Store) -> Result<Vec<Network>> {
    let mut out = Vec::new();
    for entry in entries(&networks_dir(store))? {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = entry.path().join(META);
        // A network being created or removed has no record: it is not there yet, or any more.
        match read_json::<Network>(&meta) {
            Ok(network) => out.push(network),
            Err(NetworkError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The network called `name`, or whose id starts with it; the default `bridge` is
/// made the first time it is asked for.
pub fn find(store: &Store, name: &str) -> Result<Network> {
    let networks = list_stored(store)?;
    if let Some(network) = networks.iter().find(|n| n.name == name || n.id == name) {
        return Ok(network.clone());
    }
    let mut by_prefix = networks.iter().filter(|n| n.id.starts_with(name));
    if let (Some(network), None, false) = (by_prefix.next(), by_prefix.next(), name.is_empty()) {
        return Ok(network.clone());
    }
    if name == DEFAULT_BRIDGE {
        return match create(store, DEFAULT_BRIDGE, CreateOptions::default()) {
            Err(NetworkError::Exists(_)) => find(store, name),
            other => other,
        };
    }
    Err(NetworkError::NotFound(name.to_string()))
}

/// Parses `10.1.2.0/24` (host bits cleared).
fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || NetworkError::Usage(format!("invalid subnet {text:?}: want an IPv4 CIDR"));
    let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&prefix) {
        return Err(NetworkError::Usage(format!(
            "invalid subnet {text:?}: the prefix must be between /8 and /30"
        )));
    }
    let subnet = (Ipv4Addr::from(u32::from(address) & mask(prefix)), prefix);
    let first = subnet.0.octets()[0];
    // Not "this network", loopback, multicast or reserved: no host could sit there.
    if first == 0 || first == 127 || first >= 224 {
        return Err(NetworkError::Usage(format!(
            "invalid subnet {text:?}: not a range of unicast host addresses"
        )));
    }
    Ok(subnet)
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let common = mask(a.1.min(b.1));
    u32::from(a.0) & common == u32::from(b.0) & common
}

/// `address` is inside `subnet`, and neither its network nor its broadcast address.
fn host_in(address: Ipv4Addr, subnet: (Ipv4Addr, u8)) -> bool {
    let (net, m) = (u32::from(subnet.0), mask(subnet.1));
    let a = u32::from(address);
    a & m == net && a != net && a != net | !m
}

/// Creates the network `name` and its bridge.
pub fn create(store: &Store, name: &str, options: CreateOptions) -> Result<Network> {
    if !valid_name(name) {
        return Err(NetworkError::InvalidName(name.to_string()));
    }
    if PSEUDO.iter().any(|(pseudo, _)| *pseudo == name) {
        return Err(NetworkError::Usage(format!(
            "operation is not permitted on pre-defined network {name}"
        )));
    }
    if namespace::rootless() {
        return Err(NetworkError::Rootless);
    }
    let _locked = lock(store)?;
    let existing = list_stored(store)?;
    if existing.iter().any(|n| n.name == name) {
        return Err(NetworkError::Exists(name.to_string()));
    }
    let kiln = namespace::kiln_ns()?;
    // Subnets are unique in kiln's namespace, which every store on this machine shares.
    let _runtime = namespace::lock_runtime()?;
    // Set again for a namespace made before kiln turned it off there.
    namespace::no_forwarding(&kiln)?;
    namespace::sweep(&kiln)?;
    let taken: Vec<(Ipv4Addr, u8)> = existing
        .iter()
        .map(|n| (n.subnet, n.prefix))
        .chain(namespace::addresses(&kiln)?)
        .chain(namespace::noted_subnets())
        .collect();
    let subnet = match &options.subnet {
        Some(text) => {
            let subnet = parse_subnet(text)?;
            if taken.iter().any(|t| overlaps(*t, subnet)) {
                return Err(NetworkError::Usage(format!(
                    "invalid pool request: Pool overlaps with other one on this address space \
                     ({}/{} overlaps a subnet or address in kiln's network namespace)",
                    subnet.0, subnet.1
                )));
            }
            subnet
        }
        None => (0..=255u8)
            .map(|x| (Ipv4Addr::new(10, 89, x, 0), 24))
            .find(|candidate| !taken.iter().any(|t| overlaps(*t, *candidate)))
            .ok_or(NetworkError::NoSubnet)?,
    };
    let gateway = match &options.gateway {
        Some(text) => {
            let gateway: Ipv4Addr = text
                .parse()
                .map_err(|_| NetworkError::Usage(format!("invalid gateway {text:?}")))?;
            if !host_in(gateway, subnet) {
                return Err(NetworkError::Usage(format!(
                    "gateway {gateway} is not in subnet {}/{}",
                    subnet.0, subnet.1
                )));
            }
            gateway
        }
        None => Ipv4Addr::from(u32::from(subnet.0) + 1),
    };
    let network = Network {
        id: random_id()?,
        name: name.to_string(),
        created: crate::oci::time::now_rfc3339(),
        subnet: subnet.0,
        prefix: subnet.1,
        gateway,
        labels: options.labels,
        options: options.options,
        internal: options.internal,
    };
    let dir = network.dir(store);
    namespace::ensure_bridge(&kiln, &network, &network.record(store))?;
    fs::create_dir_all(dir.join(endpoint::ENDPOINTS)).map_err(io_err("create", &dir))?;
    write_json(&dir.join(META), &network)?;
    event(store, "create", &network, &[("type", "bridge")]);
    Ok(network)
}

/// Removes the network `name` and its bridge; refused while a container is on it.
pub fn remove(store: &Store, name: &str) -> Result<Network> {
    if name == DEFAULT_BRIDGE || PSEUDO.iter().any(|(pseudo, _)| *pseudo == name) {
        return Err(NetworkError::Predefined(name.to_string()));
    }
    let network = find(store, name)?;
    if network.name == DEFAULT_BRIDGE {
        return Err(NetworkError::Predefined(network.name));
    }
    let _locked = lock(store)?;
    if !endpoint::live(store, &network)?.is_empty() {
        return Err(NetworkError::ActiveEndpoints {
            name: network.name,
            id: network.id,
        });
    }
    let dir = network.dir(store);
    let meta = dir.join(META);
    fs::remove_file(&meta).map_err(io_err("remove", &meta))?;
    if let Ok(kiln) = namespace::kiln_ns() {
        // Not while another kiln sweeps or makes bridges.
        let _runtime = namespace::lock_runtime()?;
        namespace::remove_bridge(&kiln, &network)?;
    }
    fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
    event(store, "destroy", &network, &[("type", "bridge")]);
    Ok(network)
}

/// Removes every network no running container is on (the default `bridge` stays).
pub fn prune(store: &Store) -> Result<Vec<Network>> {
    let mut removed = Vec::new();
    for network in list_stored(store)? {
        if network.name == DEFAULT_BRIDGE {
            continue;
        }
        match remove(store, &network.id) {
            Ok(network) => removed.push(network),
            Err(NetworkError::ActiveEndpoints { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(removed)
}

fn random_id() -> Result<String> {
    crate::store::random_id().map_err(NetworkError::Id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        assert_eq!(
            parse_subnet("10.1.2.3/24").unwrap(),
            (Ipv4Addr::new(10, 1, 2, 0), 24)
        );
        assert!(parse_subnet("10.1.2.0").is_err());
        assert!(parse_subnet("10.1.2.0/31").is_err());
        assert!(parse_subnet("fe80::/64").is_err());
        for reserved in ["0.0.0.0/8", "127.0.0.0/24", "224.0.0.0/24", "240.0.0.0/8"] {
            assert!(parse_subnet(reserved).is_err(), "{reserved}");
        }
        let a = (Ipv4Addr::new(10, 89, 0, 0), 24);
        assert!(overlaps(a, (Ipv4Addr::new(10, 89, 0, 1), 32)));
        assert!(overlaps(a, (Ipv4Addr::new(10, 0, 0, 0), 8)));
        assert!(!overlaps(a, (Ipv4Addr::new(10, 89, 1, 0), 24)));
    }

    #[test]
    fn hosts_exclude_network_and_broadcast() {
        let subnet = (Ipv4Addr::new(10, 89, 3, 0), 24);
        assert!(host_in(Ipv4Addr::new(10, 89, 3, 1), subnet));
        assert!(!host_in(Ipv4Addr::new(10, 89, 3, 0), subnet));
        assert!(!host_in(Ipv4Addr::new(10, 89, 3, 255), subnet));
        assert!(!host_in(Ipv4Addr::new(10, 89, 4, 1), subnet));
    }

    #[test]
    fn names_follow_docker() {
        assert!(valid_name("app_default"));
        assert!(valid_name("a"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("-a"));
    }
}
