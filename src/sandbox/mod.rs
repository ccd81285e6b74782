//! One process in new mount/pid/uts/ipc(/net) namespaces on an overlay (or
//! plain directory) root, with Docker's default capabilities and seccomp profile, a
//! tiny init as PID 1, cgroup limits, and generated `/etc/hosts`, `/etc/resolv.conf` and
//! `/etc/hostname` that never reach the layer.
//!
//! - [`spec`]: what to run (serde, passed to the child as a JSON file).
//! - [`plan`]: the namespaces and mounts as data (testable without root).
//! - [`parent`]: [`Sandbox::spawn`] → [`Running`] (tokio): output events, `wait`, `kill`.
//! - [`child`]: the hidden `kiln __sandbox STATE_DIR` entry, [`child_main`].
//! - [`capability`]: capabilities by name, `--cap-add`/`--cap-drop`.
//! - [`seccomp`]: Docker's default profile, JSON profiles, the BPF filter.
//! - [`emulation`]: whether binfmt_misc runs a foreign architecture's binaries here.

pub mod capability;
pub mod child;
pub mod emulation;
pub mod enter;
pub mod error;
pub mod parent;
pub mod plan;
pub mod seccomp;
pub mod spec;
pub mod user;

pub use child::child_main;
pub use error::{CapabilityError, EmulationError, SandboxError, SeccompError, UserError};
pub use parent::{ExitStatus, OutputEvent, Running, Sandbox, SpawnOptions, StdioMode, Stream};
pub use parent::{RUNTIME_DIR_ENV, runtime_dir};
pub use seccomp::Seccomp;
pub use spec::{
    BindMount, CgroupLimits, EtcFiles, NetworkMode, ProcessSpec, Rootfs, Spec, StepMount,
};
