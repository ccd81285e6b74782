//! kiln's own network namespace, the bridges in it, and the veth pairs that plug a
//! container's namespace into them.

use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{NetworkError, Result, io_err};
use super::{Endpoint, Network};
use crate::sys::netlink::{Netlink, in_net_ns, open_net_ns, pin_net_ns};

/// A rootless kiln runs in a user and mount namespace of its own per command: a pinned
/// namespace would not outlive it.
pub(super) fn rootless() -> bool {
    crate::sys::userns::in_user_namespace() || !crate::sys::is_root()
}

fn netns_dir() -> PathBuf {
    crate::sandbox::runtime_dir().join("netns")
}

/// Holds the machine-wide lock on kiln's namespace while alive.
pub(super) struct RuntimeLock {
    _file: fs::File,
}

pub(super) fn lock_runtime() -> Result<RuntimeLock> {
    let dir = netns_dir();
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let path = dir.join(".lock");
    let file = crate::sys::lock_file(&path).map_err(io_err("lock", &path))?;
    Ok(RuntimeLock { _file: file })
}

/// kiln's network namespace, created and pinned the first time (and again after a
/// reboot emptied the runtime directory).
pub(super) fn kiln_ns() -> Result<OwnedFd> {
    if rootless() {
        return Err(NetworkError::Rootless);
    }
    let path = netns_dir().join("kiln");
    if let Ok(ns) = open_net_ns(&path) {
        return Ok(ns);
    }
    let _locked = lock_runtime()?;
    if let Ok(ns) = open_net_ns(&path) {
        return Ok(ns);
    }
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let ns = crate::sys::namespace::new_empty_net_ns()?;
    no_forwarding(&ns)?;
    pin_net_ns(&ns, &path)?;
    Ok(ns)
}

/// Turns IPv4 forwarding off in kiln's namespace: it holds every bridge's gateway, and a
/// new namespace copies the host's setting (on where Docker or Kubernetes run), which
/// would route between networks that must stay apart.
pub(super) fn no_forwarding(ns: &OwnedFd) -> Result<()> {
    in_net_ns(ns, || {
        // /proc/sys/net shows the namespace of the thread that opens it.
        for name in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
            fs::write(&path, "0").map_err(|e| crate::sys::SysError::path("write", &path, e))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Every IPv4 address (with prefix) assigned in `ns`.
pub(super) fn addresses(ns: &OwnedFd) -> Result<Vec<(Ipv4Addr, u8)>> {
    Ok(in_net_ns(ns, || Netlink::open()?.ipv4_addresses())?)
}

fn owners_dir() -> PathBuf {
    netns_dir().join("bridges")
}

/// Who a bridge belongs to: its network's record (`network.json`) and subnet.
struct Owner {
    record: PathBuf,
    subnet: Option<(Ipv4Addr, u8)>,
}

/// Notes a bridge's owner: every store shares kiln's namespace, so a store deleted with
/// its networks leaves bridges behind that [`sweep`] finds by their missing record, and
/// a subnet noted here is taken even while its bridge is not up (after a reboot, until
/// a container needs it again).
fn note_owner(bridge: &str, record: &Path, network: &Network) -> Result<()> {
    let dir = owners_dir();
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let path = dir.join(bridge);
    let mut text = record.as_os_str().as_bytes().to_vec();
    text.extend_from_slice(format!("\n{}\n", network.subnet_text()).as_bytes());
    fs::write(&path, text).map_err(io_err("write", &path))
}

fn read_owners() -> Vec<(String, Owner)> {
    let Ok(entries) = fs::read_dir(owners_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(text) = fs::read(entry.path()) else {
            continue;
        };
        let mut lines = text.split(|b| *b == b'\n');
        let record = PathBuf::from(std::ffi::OsStr::from_bytes(
            lines.next().unwrap_or_default(),
        ));
        let subnet = lines
            .next()
            .and_then(|line| std::str::from_utf8(line).ok())
            .and_then(|text| super::parse_subnet(text).ok());
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, Owner { record, subnet }));
    }
    out
}

/// The subnets every bridge kiln noted stands for, up or not.
pub(super) fn noted_subnets() -> Vec<(Ipv4Addr, u8)> {
    read_owners()
        .into_iter()
        .filter_map(|(_, o)| o.subnet)
        .collect()
}

/// Removes the bridges of deleted stores, so their subnets are free again: a bridge
/// whose noted record is gone (or, left from before notes, that has none) and that no
/// container is plugged into. The caller holds [`lock_runtime`].
pub(super) fn sweep(kiln: &OwnedFd) -> Result<()> {
    let links = in_net_ns(kiln, || Netlink::open()?.links())?;
    let in_use = |name: &str| {
        links
            .iter()
            .find(|l| l.name == name)
            .is_some_and(|bridge| links.iter().any(|l| l.master == Some(bridge.index)))
    };
    let owners = read_owners();
    for link in links.iter().filter(|l| l.name.starts_with("kb-")) {
        if !owners.iter().any(|(name, _)| *name == link.name) && !in_use(&link.name) {
            delete_link(kiln, link.name.clone())?;
        }
    }
    for (name, owner) in owners {
        if owner.record.exists() || in_use(&name) {
            continue;
        }
        delete_link(kiln, name.clone())?;
        let _ = fs::remove_file(owners_dir().join(name));
    }
    Ok(())
}

fn delete_link(ns: &OwnedFd, name: String) -> Result<()> {
    in_net_ns(ns, move || {
        let mut netlink = Netlink::open()?;
        match netlink.link_index(&name)? {
            Some(index) => netlink.delete_link(index),
            None => Ok(()),
        }
    })?;
    Ok(())
}

/// Creates the network's bridge, with the gateway address, if it is not there;
/// `record` is the network's `network.json`. The caller holds [`lock_runtime`]: a bridge
/// made again (after a reboot) must not take a subnet another bridge has meanwhile.
pub(super) fn ensure_bridge(kiln: &OwnedFd, network: &Network, record: &Path) -> Result<()> {
    let name = network.bridge_name();
    note_owner(&name, record, network)?;
    let (gateway, prefix, subnet) = (network.gateway, network.prefix, network.subnet);
    let taken = in_net_ns(kiln, move || {
        let mut netlink = Netlink::open()?;
        if netlink.link_index(&name)?.is_some() {
            return Ok(false);
        }
        if netlink
            .ipv4_addresses()?
            .into_iter()
            .any(|address| super::overlaps(address, (subnet, prefix)))
        {
            return Ok(true);
        }
        netlink.add_bridge(&name)?;
        let index = netlink.link_index(&name)?.ok_or_else(|| missing(&name))?;
        netlink.add_address(index, gateway, prefix)?;
        netlink.set_up(index, None)?;
        Ok(false)
    })?;
    if taken {
        return Err(NetworkError::Usage(format!(
            "network {}'s subnet {} is in use by another kiln network: remove one of them",
            network.name,
            network.subnet_text()
        )));
    }
    Ok(())
}

fn missing(name: &str) -> crate::sys::SysError {
    crate::sys::SysError::Invalid {
        call: "netlink",
        reason: format!("link {name} vanished right after it was made"),
    }
}

pub(super) fn remove_bridge(kiln: &OwnedFd, network: &Network) -> Result<()> {
    let name = network.bridge_name();
    delete_link(kiln, name.clone())?;
    let _ = fs::remove_file(owners_dir().join(name));
    Ok(())
}

/// The host-side interface name of a container's endpoint on a network: unique in
/// kiln's namespace, which every store shares.
pub(super) fn host_interface(container_id: &str, network_id: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}/{network_id}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("kv{}", &hex[..11])
}

/// Docker's MAC for an address: `02:42` and the address's bytes.
pub(super) fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

/// The first `ethN` not yet in the container's namespace.
pub(super) fn free_interface(container_ns: &OwnedFd) -> Result<String> {
    let links = in_net_ns(container_ns, || Netlink::open()?.links())?;
    Ok((0..)
        .map(|n| format!("eth{n}"))
        .find(|name| !links.iter().any(|l| l.name == *name))
        .unwrap_or_default())
}

/// Plugs the container's namespace into the network: a veth whose host end is on the
/// bridge, and whose container end (`endpoint.interface`) has the endpoint's address.
pub(super) fn plug(
    kiln: &OwnedFd,
    network: &Network,
    record: &Path,
    endpoint: &Endpoint,
    container_ns: &OwnedFd,
) -> Result<()> {
    {
        let _runtime = lock_runtime()?;
        ensure_bridge(kiln, network, record)?;
    }
    let bridge = network.bridge_name();
    let host_end = endpoint.host_interface.clone();
    let inner = endpoint.interface.clone();
    let mac = mac_for(endpoint.address);
    let peer_ns = container_ns
        .try_clone()
        .map_err(io_err("duplicate", "the container's network namespace"))?;
    in_net_ns(kiln, move || {
        let mut netlink = Netlink::open()?;
        // A leftover from a supervisor that was killed before its container's namespace went.
        if let Some(index) = netlink.link_index(&host_end)? {
            netlink.delete_link(index)?;
        }
        netlink.add_veth(&host_end, &inner, peer_ns.as_fd(), mac)?;
        let index = netlink
            .link_index(&host_end)?
            .ok_or_else(|| missing(&host_end))?;
        let bridge = netlink
            .link_index(&bridge)?
            .ok_or_else(|| missing(&bridge))?;
        netlink.set_up(index, Some(bridge))
    })?;
    let inner = endpoint.interface.clone();
    let (address, prefix) = (endpoint.address, network.prefix);
    in_net_ns(container_ns, move || {
        let mut netlink = Netlink::open()?;
        let index = netlink.link_index(&inner)?.ok_or_else(|| missing(&inner))?;
        netlink.add_address(index, address, prefix)?;
        netlink.set_up(index, None)
    })?;
    Ok(())
}

/// Removes an endpoint's veth pair (both ends go together).
pub(super) fn unplug(endpoint: &Endpoint) -> Result<()> {
    let kiln = kiln_ns()?;
    let host_end = endpoint.host_interface.clone();
    in_net_ns(&kiln, move || {
        let mut netlink = Netlink::open()?;
        match netlink.link_index(&host_end)? {
            Some(index) => netlink.delete_link(index),
            None => Ok(()),
        }
    })?;
    Ok(())
}
