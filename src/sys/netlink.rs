//! rtnetlink, the few requests kiln's bridge networks need: bridges, veth pairs (one end
//! created straight into another network namespace), IPv4 addresses, links up or
//! enslaved, and deleting links. A [`Netlink`] socket works in the network namespace of
//! the thread that opened it, whatever that thread does later; [`in_net_ns`] opens
//! sockets in another namespace without moving the caller.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{Result, SysError};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;

/// A network interface, as a link dump lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    /// The bridge it is enslaved to.
    pub master: Option<u32>,
}

/// Size of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;

/// An rtnetlink socket.
pub struct Netlink {
    socket: OwnedFd,
    sequence: u32,
}

/// A request being built: the header, a fixed part, then attributes.
struct Message {
    bytes: Vec<u8>,
    /// Offsets of nested attributes still open.
    open: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut bytes = vec![0; HEADER_LEN];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        Message {
            bytes,
            open: Vec::new(),
        }
    }

    /// `struct ifinfomsg`.
    fn link_info(mut self, index: u32, flags: u32, change: u32) -> Message {
        push_link_info(&mut self.bytes, index, flags, change);
        self
    }

    /// `struct ifaddrmsg` (IPv4).
    fn address_info(mut self, prefix: u8, index: u32) -> Message {
        self.bytes.extend_from_slice(&[AF_INET, prefix, 0, 0]);
        self.bytes.extend_from_slice(&index.to_ne_bytes());
        self
    }

    fn attribute(mut self, kind: u16, data: &[u8]) -> Message {
        push_attribute(&mut self.bytes, kind, data);
        self
    }

    fn begin(mut self, kind: u16) -> Message {
        self.open.push(self.bytes.len());
        self.bytes.extend_from_slice(&[0, 0]);
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self
    }

    /// Extra bytes inside the innermost open attribute (the peer's `ifinfomsg`).
    fn raw(mut self, f: impl FnOnce(&mut Vec<u8>)) -> Message {
        f(&mut self.bytes);
        self
    }

    fn end(mut self) -> Message {
        if let Some(start) = self.open.pop() {
            let len = (self.bytes.len() - start) as u16;
            self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self, sequence: u32) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes[8..12].copy_from_slice(&sequence.to_ne_bytes());
        self.bytes
    }
}

fn push_link_info(bytes: &mut Vec<u8>, index: u32, flags: u32, change: u32) {
    bytes.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
    bytes.extend_from_slice(&index.to_ne_bytes());
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(&change.to_ne_bytes());
}

fn push_attribute(bytes: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    bytes.extend_from_slice(&(len as u16).to_ne_bytes());
    bytes.extend_from_slice(&kind.to_ne_bytes());
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len() + (align(len) - len), 0);
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A NUL-terminated interface name, checked against IFNAMSIZ.
fn interface_name(name: &str) -> Result<Vec<u8>> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', '\0', ' ']) {
        return Err(SysError::Invalid {
            call: "netlink",
            reason: format!("bad interface name {name:?}"),
        });
    }
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    Ok(bytes)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes after a fixed part: (kind, data).
fn attributes(bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u16_at(bytes, at), u16_at(bytes, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > bytes.len() {
            break;
        }
        out.push((kind & 0x3fff, &bytes[at + 4..at + len]));
        at += align(len);
    }
    out
}

fn protocol_error(reason: &str) -> SysError {
    SysError::Invalid {
        call: "netlink",
        reason: reason.to_string(),
    }
}

impl Netlink {
    /// An rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| SysError::call("socket(AF_NETLINK)", e))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Sends `message` and collects the replies' payloads (after the header) until the
    /// acknowledgement or the end of a dump.
    fn request(&mut self, message: Message, call: &'static str) -> Result<Vec<(u16, Vec<u8>)>> {
        self.sequence += 1;
        let sequence = self.sequence;
        let bytes = message.finish(sequence);
        rustix::net::send(&self.socket, &bytes, SendFlags::empty())
            .map_err(|e| SysError::call(call, e))?;
        let mut replies = Vec::new();
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let (len, _) = rustix::net::recv(&self.socket, &mut buffer[..], RecvFlags::empty())
                .map_err(|e| SysError::call(call, e))?;
            let mut at = 0;
            while at + HEADER_LEN <= len {
                let (Some(size), Some(kind), Some(seq)) = (
                    u32_at(&buffer, at),
                    u16_at(&buffer, at + 4),
                    u32_at(&buffer, at + 8),
                ) else {
                    return Err(protocol_error("short reply"));
                };
                let size = size as usize;
                if size < HEADER_LEN || at + size > len {
                    return Err(protocol_error("bad reply length"));
                }
                let payload = &buffer[at + HEADER_LEN..at + size];
                at += align(size);
                if seq != sequence {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR => {
                        let code =
                            u32_at(payload, 0).ok_or_else(|| protocol_error("short error"))? as i32;
                        if code == 0 {
                            return Ok(replies);
                        }
                        return Err(SysError::call(
                            call,
                            std::io::Error::from_raw_os_error(-code),
                        ));
                    }
                    _ => replies.push((kind, payload.to_vec())),
                }
            }
        }
    }

    /// The index of the link called `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let message = Message::new(RTM_GETLINK, NLM_F_ACK)
            .link_info(0, 0, 0)
            .attribute(IFLA_IFNAME, &interface_name(name)?);
        match self.request(message, "netlink get link") {
            Ok(replies) => Ok(replies
                .iter()
                .find(|(kind, _)| *kind == RTM_NEWLINK)
                .and_then(|(_, payload)| u32_at(payload, 4))),
            Err(error) if error.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every link in this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let message = Message::new(RTM_GETLINK, NLM_F_DUMP).link_info(0, 0, 0);
        let replies = self.request(message, "netlink list links")?;
        Ok(replies
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWLINK)
            .filter_map(|(_, payload)| {
                let index = u32_at(payload, 4)?;
                let attrs = attributes(payload.get(16..)?);
                let name =
                    attrs
                        .iter()
                        .find(|(kind, _)| *kind == IFLA_IFNAME)
                        .map(|(_, data)| {
                            String::from_utf8_lossy(data)
                                .trim_end_matches('\0')
                                .to_string()
                        })?;
                let master = attrs
                    .iter()
                    .find(|(kind, _)| *kind == IFLA_MASTER)
                    .and_then(|(_, data)| u32_at(data, 0));
                Some(Link {
                    name,
                    index,
                    master,
                })
            })
            .collect())
    }

    /// Creates a bridge called `name` (down).
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        let message = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK)
            .link_info(0, 0, 0)
            .attribute(IFLA_IFNAME, &interface_name(name)?)
            .begin(IFLA_LINKINFO)
            .attribute(IFLA_INFO_KIND, b"bridge")
            .end();
        self.request(message, "netlink create bridge").map(drop)
    }

    /// Creates a veth pair: `name` here, and `peer` with hardware address `peer_mac`
    /// straight in the network namespace `peer_ns` (both down).
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: [u8; 6],
    ) -> Result<()> {
        let peer_name = interface_name(peer)?;
        let ns_fd = peer_ns.as_raw_fd().to_ne_bytes();
        let message = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK)
            .link_info(0, 0, 0)
            .attribute(IFLA_IFNAME, &interface_name(name)?)
            .begin(IFLA_LINKINFO)
            .attribute(IFLA_INFO_KIND, b"veth")
            .begin(IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER)
            .raw(|bytes| {
                push_link_info(bytes, 0, 0, 0);
                push_attribute(bytes, IFLA_IFNAME, &peer_name);
                push_attribute(bytes, IFLA_ADDRESS, &peer_mac);
                push_attribute(bytes, IFLA_NET_NS_FD, &ns_fd);
            })
            .end()
            .end()
            .end();
        self.request(message, "netlink create veth").map(drop)
    }

    /// Brings link `index` up, enslaved to `master` when given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).link_info(index, IFF_UP, IFF_UP);
        if let Some(master) = master {
            message = message.attribute(IFLA_MASTER, &master.to_ne_bytes());
        }
        self.request(message, "netlink set link up").map(drop)
    }

    /// Adds `address/prefix` to link `index`.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
        let message = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK)
            .address_info(prefix, index)
            .attribute(IFA_LOCAL, &address.octets())
            .attribute(IFA_ADDRESS, &address.octets());
        self.request(message, "netlink add address").map(drop)
    }

    /// Deletes link `index` (a veth's peer goes with it).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let message = Message::new(RTM_DELLINK, NLM_F_ACK).link_info(index, 0, 0);
        self.request(message, "netlink delete link").map(drop)
    }

    /// Every IPv4 address of this namespace, with its prefix length.
    pub fn ipv4_addresses(&mut self) -> Result<Vec<(Ipv4Addr, u8)>> {
        let message = Message::new(RTM_GETADDR, NLM_F_DUMP).address_info(0, 0);
        let replies = self.request(message, "netlink list addresses")?;
        Ok(replies
            .iter()
            .filter(|(kind, payload)| *kind == RTM_NEWADDR && payload.first() == Some(&AF_INET))
            .filter_map(|(_, payload)| {
                let prefix = *payload.get(1)?;
                attributes(payload.get(8..)?)
                    .into_iter()
                    .find(|(kind, _)| *kind == IFA_LOCAL || *kind == IFA_ADDRESS)
                    .and_then(|(_, data)| <[u8; 4]>::try_from(data).ok())
                    .map(|octets| (Ipv4Addr::from(octets), prefix))
            })
            .collect())
    }
}

/// Runs `work` on a short-lived thread that has joined the network namespace `ns`, so
/// sockets it opens (netlink or TCP) belong there; the caller's threads never move.
pub fn in_net_ns<T: Send + 'static>(
    ns: &OwnedFd,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns
        .try_clone()
        .map_err(|e| SysError::call("dup(netns)", e))?;
    std::thread::spawn(move || {
        join_net_ns_fd(ns.as_fd())?;
        work()
    })
    .join()
    .unwrap_or_else(|_| Err(protocol_error("the network namespace thread panicked")))
}

/// Moves the calling thread into the network namespace `ns`.
pub fn join_net_ns_fd(ns: BorrowedFd<'_>) -> Result<()> {
    rustix::thread::move_into_link_name_space(ns, Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(|e| SysError::call("setns(CLONE_NEWNET)", e))
}

/// Opens an nsfs file (a bind-mounted namespace or `/proc/<pid>/ns/net`).
pub fn open_net_ns(path: &Path) -> Result<OwnedFd> {
    let file = std::fs::File::open(path).map_err(|e| SysError::path("open", path, e))?;
    let fd = OwnedFd::from(file);
    let kind = rustix::fs::fstatfs(&fd).map_err(|e| SysError::path("fstatfs", path, e))?;
    // NSFS_MAGIC: anything else is a plain file left where a mount used to be.
    if kind.f_type as u64 != 0x6e73_6673 {
        return Err(SysError::path(
            "open network namespace",
            path,
            std::io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    Ok(fd)
}

/// Keeps the network namespace `ns` alive at `path` (an existing empty file) by
/// bind-mounting it there, as `ip netns add` does.
pub fn pin_net_ns(ns: &OwnedFd, path: &Path) -> Result<()> {
    let source = format!("/proc/self/fd/{}", ns.as_raw_fd());
    rustix::mount::mount_bind(source.as_str(), path).map_err(|e| SysError::path("bind", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_length_and_padding() {
        let message = Message::new(RTM_NEWLINK, NLM_F_ACK)
            .link_info(7, IFF_UP, IFF_UP)
            .begin(IFLA_LINKINFO)
            .attribute(IFLA_INFO_KIND, b"veth")
            .end()
            .finish(9);
        assert_eq!(u32_at(&message, 0), Some(message.len() as u32));
        assert_eq!(u32_at(&message, 8), Some(9));
        assert_eq!(u32_at(&message, HEADER_LEN + 4), Some(7));
        let attrs = attributes(&message[HEADER_LEN + 16..]);
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, IFLA_LINKINFO);
        // kind "veth": 4 header + 4 data, already aligned.
        assert_eq!(attrs[0].1.len(), 8);
        assert_eq!(attributes(attrs[0].1), vec![(IFLA_INFO_KIND, &b"veth"[..])]);
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(interface_name("eth0").is_ok());
        assert!(interface_name("").is_err());
        assert!(interface_name("sixteen-chars-xx").is_err());
        assert!(interface_name("a/b").is_err());
    }
}
