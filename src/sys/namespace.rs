//! Namespaces: `unshare`, the hostname, and bringing up `lo` in a new net ns.

use std::os::fd::AsRawFd;

use rustix::thread::UnshareFlags;
use serde::{Deserialize, Serialize};

use super::error::{Result, SysError};

/// Which namespaces to create (a plain set, so callers need no syscall types).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub mount: bool,
    pub uts: bool,
    pub ipc: bool,
    pub pid: bool,
    pub net: bool,
    pub cgroup: bool,
}

/// Moves the calling process into new namespaces (for `pid`: its next child).
pub fn unshare(ns: Namespaces) -> Result<()> {
    let mut flags = UnshareFlags::empty();
    for (on, flag) in [
        (ns.mount, UnshareFlags::NEWNS),
        (ns.uts, UnshareFlags::NEWUTS),
        (ns.ipc, UnshareFlags::NEWIPC),
        (ns.pid, UnshareFlags::NEWPID),
        (ns.net, UnshareFlags::NEWNET),
        (ns.cgroup, UnshareFlags::NEWCGROUP),
    ] {
        if on {
            flags |= flag;
        }
    }
    if flags.is_empty() {
        return Ok(());
    }
    // SAFETY: kiln calls this only from the single-threaded `__sandbox` child (and
    // tests that fork first), so no other thread shares the unshared state.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| SysError::call("unshare", e))
}

/// Whether this kernel has cgroup namespaces.
pub fn cgroup_ns_supported() -> bool {
    std::path::Path::new("/proc/self/ns/cgroup").exists()
}

/// Whether the host's `/sys/fs/cgroup` is a cgroup v2 hierarchy (not v1 or hybrid).
pub fn cgroup2_unified() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Sets the hostname of the current UTS namespace.
pub fn set_hostname(name: &str) -> Result<()> {
    rustix::system::sethostname(name.as_bytes()).map_err(|e| SysError::call("sethostname", e))
}

/// Sets `IFF_UP` on the loopback interface of the current network namespace.
pub fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(SysError::call("socket", std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the socket is open and `request` is a valid `ifreq` the kernel
    // reads and writes for SIOCGIFFLAGS.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } != 0 {
        return Err(SysError::call(
            "ioctl SIOCGIFFLAGS lo",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    unsafe {
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above, for SIOCSIFFLAGS.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } != 0 {
        return Err(SysError::call(
            "ioctl SIOCSIFFLAGS lo",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Creates an empty network namespace with `lo` up and returns a descriptor
/// that keeps it alive. The work happens on a short-lived thread of its own,
/// so no thread of the caller (e.g. a tokio worker) ever changes namespace.
pub fn new_empty_net_ns() -> Result<std::os::fd::OwnedFd> {
    std::thread::spawn(|| -> Result<std::os::fd::OwnedFd> {
        // SAFETY: unshare(CLONE_NEWNET) only changes this thread's network
        // namespace; the thread ends right after, so nothing else observes it.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
            .map_err(|e| SysError::call("unshare(CLONE_NEWNET)", e))?;
        loopback_up()?;
        let path = "/proc/thread-self/ns/net";
        std::fs::File::open(path)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| SysError::path("open", path, e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(SysError::Invalid {
            call: "unshare(CLONE_NEWNET)",
            reason: "the namespace thread panicked".into(),
        })
    })
}

/// Joins the network namespace that `path` names (an nsfs file, or a
/// `/proc/<pid>/fd/<n>` link to one held by another process).
/// Moves this (single-threaded) process into the ipc, uts, net, cgroup, pid (for its next
/// child) and mount namespaces of process `pid`: a running container's, for `kiln exec`.
/// The mount namespace goes last; entering it makes its root this process's root.
pub fn join_all(pid: i32) -> Result<()> {
    use rustix::thread::LinkNameSpaceType as Kind;
    join_if_other(pid, "user", Kind::User)?;
    for (name, kind) in [
        ("ipc", Kind::InterProcessCommunication),
        ("uts", Kind::HostNameAndNISDomainName),
        ("net", Kind::Network),
        ("cgroup", Kind::ControlGroup),
        ("pid", Kind::ProcessID),
        ("mnt", Kind::Mount),
    ] {
        join_if_other(pid, name, kind)?;
    }
    Ok(())
}

/// Joins process `pid`'s namespace `name` unless it is already this process's. A
/// container of a rootless kiln lives in the user namespace that kiln made: joining it
/// first is what lets its other namespaces be joined (their owner, this user in the
/// parent namespace, holds every capability there); and the namespaces it shares with
/// the host (the network, with `--network host`) are not joined again, which the
/// rootless user could not do.
fn join_if_other(pid: i32, name: &str, kind: rustix::thread::LinkNameSpaceType) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::path::PathBuf::from(format!("/proc/{pid}/ns/{name}"));
    let file = match std::fs::File::open(&theirs) {
        Ok(file) => file,
        // A kernel without cgroup namespaces has no such file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "cgroup" => return Ok(()),
        Err(e) => return Err(SysError::path("open", &theirs, e)),
    };
    let ours = std::path::PathBuf::from(format!("/proc/self/ns/{name}"));
    let identity = |metadata: std::fs::Metadata| (metadata.dev(), metadata.ino());
    let same = match (file.metadata(), std::fs::metadata(&ours)) {
        (Ok(a), Ok(b)) => identity(a) == identity(b),
        _ => false,
    };
    if same {
        return Ok(());
    }
    rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&file), Some(kind))
        .map_err(|e| SysError::path("setns", &theirs, e))
}

pub fn join_net_ns(path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| SysError::path("open", path, e))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| SysError::path("setns", path, e))
}
