//! `-p`: a listener on the host (loopback unless told otherwise) whose connections are
//! forwarded to the container's address. The listener is bound in the host's network
//! namespace; the forwarding threads then join kiln's namespace, so the sockets they open
//! towards the container live there. No host firewall or NAT rule is involved. The
//! threads live as long as the process that supervises the container.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::error::{NetworkError, Result};
use crate::sys::netlink::join_net_ns_fd;

/// How long a forwarded connection waits for the container to answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// Where to listen on the host: 127.0.0.1 unless given.
    pub host_ip: Ipv4Addr,
    /// 0: any free port (the one bound is in [`Published`]).
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortBinding {
    /// Parses Docker's `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`.
    pub fn parse(spec: &str) -> Result<PortBinding> {
        let bad = |why: &str| NetworkError::Usage(format!("invalid publish spec {spec:?}: {why}"));
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [container] => ("", "", *container),
            [host, container] => ("", *host, *container),
            [ip, host, container] => (*ip, *host, *container),
            _ => return Err(bad("want [IP:][HOST_PORT:]CONTAINER_PORT")),
        };
        let port = |text: &str| -> Result<u16> {
            if text.contains('-') {
                return Err(bad("port ranges are not supported"));
            }
            text.parse::<u16>().map_err(|_| bad("not a port number"))
        };
        let container_port = port(container)?;
        if container_port == 0 {
            return Err(bad("the container port cannot be 0"));
        }
        Ok(PortBinding {
            host_ip: if ip.is_empty() {
                Ipv4Addr::LOCALHOST
            } else {
                ip.parse().map_err(|_| bad("not an IPv4 address"))?
            },
            host_port: if host.is_empty() { 0 } else { port(host)? },
            container_port,
            protocol,
        })
    }
}

/// The listeners of a container, bound; they forward until this process ends.
#[derive(Debug, Clone)]
pub struct Published {
    /// As bound (a host port of 0 replaced by the one the kernel chose).
    pub bindings: Vec<PortBinding>,
}

/// Binds every listener, failing as a whole when one port is taken.
fn bind_all(bindings: &[PortBinding]) -> Result<Vec<(PortBinding, Listener)>> {
    let mut bound = Vec::new();
    for binding in bindings {
        let address = SocketAddrV4::new(binding.host_ip, binding.host_port);
        let in_use = |source| NetworkError::PortInUse {
            address: address.to_string(),
            source,
        };
        let listener = match binding.protocol {
            Protocol::Tcp => Listener::Tcp(TcpListener::bind(address).map_err(in_use)?),
            Protocol::Udp => Listener::Udp(UdpSocket::bind(address).map_err(in_use)?),
        };
        let port = listener.port().map_err(in_use)?;
        bound.push((
            PortBinding {
                host_port: port,
                ..binding.clone()
            },
            listener,
        ));
    }
    Ok(bound)
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn port(&self) -> std::io::Result<u16> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.port()),
            Listener::Udp(s) => s.local_addr().map(|a| a.port()),
        }
    }
}

/// Publishes `bindings` to `target` (the container's address on a kiln network).
pub fn publish(bindings: &[PortBinding], target: Ipv4Addr) -> Result<Published> {
    if bindings.is_empty() {
        return Ok(Published {
            bindings: Vec::new(),
        });
    }
    let kiln = super::namespace::kiln_ns()?;
    let bound = bind_all(bindings)?;
    let mut out = Vec::new();
    for (binding, listener) in bound {
        let ns = kiln.try_clone().map_err(|source| NetworkError::Io {
            action: "duplicate",
            path: "kiln's network namespace".into(),
            source,
        })?;
        let destination = SocketAddr::V4(SocketAddrV4::new(target, binding.container_port));
        std::thread::spawn(move || forward(ns, listener, destination));
        out.push(binding);
    }
    Ok(Published { bindings: out })
}

fn forward(ns: OwnedFd, listener: Listener, destination: SocketAddr) {
    // Without kiln's namespace the container's address is unreachable: serve nothing.
    if join_net_ns_fd(ns.as_fd()).is_err() {
        return;
    }
    match listener {
        Listener::Tcp(listener) => forward_tcp(listener, destination),
        Listener::Udp(socket) => forward_udp(socket, destination),
    }
}

fn forward_tcp(listener: TcpListener, destination: SocketAddr) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        // Threads made here share this thread's (kiln's) network namespace.
        std::thread::spawn(move || {
            // Nothing listens in the container yet (or it is gone): the client sees the
            // connection close, soon.
            let Ok(upstream) = TcpStream::connect_timeout(&destination, CONNECT_TIMEOUT) else {
                return;
            };
            let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone())
            else {
                return;
            };
            let there = std::thread::spawn(move || copy(client_read, upstream_write));
            copy(upstream, client);
            let _ = there.join();
        });
    }
}

/// Copies until end of stream, then half-closes the writer so the other side sees it.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One upstream socket per client address, each with a thread relaying the replies.
fn forward_udp(socket: UdpSocket, destination: SocketAddr) {
    let socket = Arc::new(socket);
    let upstreams: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buffer = [0u8; 65536];
    while let Ok((n, client)) = socket.recv_from(&mut buffer) {
        let existing = upstreams
            .lock()
            .ok()
            .and_then(|map| map.get(&client).cloned());
        let upstream = match existing {
            Some(upstream) => upstream,
            None => {
                let Ok(upstream) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
                    continue;
                };
                if upstream.connect(destination).is_err() {
                    continue;
                }
                let upstream = Arc::new(upstream);
                if let Ok(mut map) = upstreams.lock() {
                    map.insert(client, upstream.clone());
                }
                let (replies, back) = (upstream.clone(), socket.clone());
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 65536];
                    while let Ok(n) = replies.recv(&mut buffer) {
                        let _ = back.send_to(&buffer[..n], client);
                    }
                });
                upstream
            }
        };
        let _ = upstream.send(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_as_docker_reads_them() {
        let p = PortBinding::parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol),
            (Ipv4Addr::LOCALHOST, 8080, 80, Protocol::Tcp)
        );
        let p = PortBinding::parse("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = PortBinding::parse("127.0.0.2::53/udp").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.protocol),
            (Ipv4Addr::new(127, 0, 0, 2), 0, Protocol::Udp)
        );
        for bad in [
            "",
            "x:80",
            "80/sctp",
            "1:2:3:4",
            "8000-8010:80",
            "0",
            "99999",
        ] {
            assert!(PortBinding::parse(bad).is_err(), "{bad}");
        }
    }
}
