//! What one sandboxed process gets: its root filesystem, command, identity,
//! network, mounts, generated `/etc` files and limits. Serialised as JSON into
//! the sandbox's state directory for the `__sandbox` child.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::seccomp::Seccomp;
pub use crate::sys::cgroup::CgroupLimits;

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rootfs {
    /// An overlay: read-only `lowers` (top first) under a writable `upper`.
    /// With no lowers (`FROM scratch`) the upper alone is the root.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A plain directory used in place (writes land in it).
    Dir { path: PathBuf },
}

impl Rootfs {
    /// Where writes land (and where created mountpoints must be cleaned up).
    pub fn writable_dir(&self) -> &std::path::Path {
        match self {
            Rootfs::Overlay { upper, .. } => upper,
            Rootfs::Dir { path } => path,
        }
    }
}

/// The process to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv; `argv[0]` is looked up in the container's `PATH` unless it has a '/'.
    pub argv: Vec<String>,
    /// `KEY=value` entries; PATH and HOME get defaults when missing.
    pub env: Vec<String>,
    /// Working directory inside the container; created when missing.
    pub cwd: String,
    /// Docker's USER: `name`, `uid`, `uid:gid`, `name:group`, …; empty = root.
    pub user: String,
}

/// Network namespace choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Share the host's network namespace (BuildKit's default for RUN).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
    /// A network namespace wired to kiln's bridge networks by the caller, joined from
    /// [`SpawnOptions::net_ns`](super::SpawnOptions::net_ns).
    Bridge,
}

/// A bind mount (`-v src:dst[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub readonly: bool,
}

/// A mount of a build step beyond trusted host binds (`RUN --mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepMount {
    /// `path` inside the directory `root` (the build context, a single layer), resolved as
    /// if `root` were `/`: symlinks and `..` in it cannot leave `root`.
    Within {
        root: PathBuf,
        path: String,
        destination: String,
        readonly: bool,
    },
    /// An overlay of `lowers` (top first), read-only, or over a throwaway `(upper, work)`
    /// whose writes are discarded with it; `path` inside it (resolved as for `Within`) is
    /// what gets mounted.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<(PathBuf, PathBuf)>,
        path: String,
        destination: String,
    },
    /// A fresh tmpfs.
    Tmpfs {
        destination: String,
        size: Option<u64>,
        mode: Option<u32>,
    },
}

impl StepMount {
    pub fn destination(&self) -> &str {
        match self {
            StepMount::Within { destination, .. }
            | StepMount::Overlay { destination, .. }
            | StepMount::Tmpfs { destination, .. } => destination,
        }
    }
}

/// Generated `/etc` files, bind-mounted read-only and kept out of the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcFiles {
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: String,
}

impl EtcFiles {
    /// What kiln writes: localhost lines plus the hostname; the host's
    /// resolv.conf for host networking (given as `host_resolv_conf`), none for
    /// an empty network.
    pub fn generate(hostname: &str, network: NetworkMode, host_resolv_conf: &str) -> EtcFiles {
        EtcFiles {
            hosts: format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
            resolv_conf: match network {
                NetworkMode::Host => host_resolv_conf.to_string(),
                // No resolver is reachable from a bridge network: an empty file makes
                // lookups of unknown names fail at once instead of timing out.
                NetworkMode::None | NetworkMode::Bridge => String::new(),
            },
            hostname: format!("{hostname}\n"),
        }
    }
}

/// Docker's default capability set (numbers from linux/capability.h).
pub const DEFAULT_CAPABILITIES: [(u32, &str); 14] = [
    (0, "CHOWN"),
    (1, "DAC_OVERRIDE"),
    (3, "FOWNER"),
    (4, "FSETID"),
    (5, "KILL"),
    (6, "SETGID"),
    (7, "SETUID"),
    (8, "SETPCAP"),
    (10, "NET_BIND_SERVICE"),
    (13, "NET_RAW"),
    (18, "SYS_CHROOT"),
    (27, "MKNOD"),
    (29, "AUDIT_WRITE"),
    (31, "SETFCAP"),
];

/// Everything the sandbox needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub rootfs: Rootfs,
    pub process: ProcessSpec,
    pub hostname: String,
    pub network: NetworkMode,
    /// Trusted host paths (kiln's own files, `kiln run -v`).
    pub mounts: Vec<BindMount>,
    /// Build-step mounts; with `mounts`, made parents first (by destination depth).
    #[serde(default)]
    pub step_mounts: Vec<StepMount>,
    pub etc: EtcFiles,
    pub limits: CgroupLimits,
    /// Set no_new_privs before exec (Docker's `--security-opt no-new-privileges`);
    /// on by default for builds.
    pub no_new_privs: bool,
    /// A minimal init as PID 1 that runs the command, forwards signals and reaps zombies
    /// (`kiln run --init`); otherwise the command itself is PID 1.
    #[serde(default)]
    pub init: bool,
    /// Capability numbers the command keeps: its bounding set, and for root its
    /// permitted and effective sets. Docker's default set unless changed.
    #[serde(default = "super::capability::default_set")]
    pub capabilities: Vec<u32>,
    /// The seccomp filter installed just before exec.
    #[serde(default)]
    pub seccomp: Seccomp,
}

impl Spec {
    /// A spec with defaults: root user, cwd `/`, host network, no limits,
    /// no_new_privs, Docker's default capabilities and seccomp profile, a hostname,
    /// and `/etc` files generated for it.
    pub fn new(rootfs: Rootfs, argv: Vec<String>) -> Spec {
        let hostname = "kiln".to_string();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Spec {
            rootfs,
            process: ProcessSpec {
                argv,
                env: Vec::new(),
                cwd: "/".into(),
                user: String::new(),
            },
            etc: EtcFiles::generate(&hostname, NetworkMode::Host, &resolv),
            hostname,
            network: NetworkMode::Host,
            mounts: Vec::new(),
            step_mounts: Vec::new(),
            limits: CgroupLimits::default(),
            no_new_privs: true,
            init: false,
            capabilities: super::capability::default_set(),
            seccomp: Seccomp::Default,
        }
    }

    /// Sets hostname and network and regenerates the `/etc` files for them.
    pub fn with_network(mut self, hostname: &str, network: NetworkMode) -> Spec {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        self.hostname = hostname.to_string();
        self.network = network;
        self.etc = EtcFiles::generate(hostname, network, &resolv);
        self
    }
}
