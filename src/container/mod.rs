//! Containers of `kiln run`: Docker's container basics without a daemon.
//!
//! A container is a directory, `<root>/containers-v1/<id>/`:
//! - `config.json`: what to run ([`ContainerConfig`]); its `"image"` (the image id) is
//!   what `image rm` and `image prune` check;
//! - `state.json`: [`ContainerState`] (`created` → `running` → `exited`), replaced
//!   atomically (write to a temp file, rename), so readers never see half a state;
//! - `log`: the combined stdout/stderr (a foreground run copies its output there too);
//! - `upper/`, `work/`: the writable overlay layer over the image's snapshots.
//!
//! Whoever runs the sandbox (the foreground `kiln run`, or the `kiln __monitor <id>`
//! process of `run -d`) is the container's *owner*: it records the sandbox's pid, waits,
//! and records the exit. Pids are stored with their start time (`/proc/<pid>/stat`), so a
//! reused pid is never mistaken for the container.
//!
//! **Stale containers.** The sandbox's mounts live in its own mount namespace and its
//! processes die with their owner (PDEATHSIG), so a `kill -9` of the owner leaves no mount
//! and no process, only a state that still says `running`. Every `run`, `ps`, `rm`,
//! `stop` and `logs` first calls [`refresh`]: a container whose owner is gone is marked
//! `exited` with code 137 (its processes were SIGKILLed when the owner died), and a
//! `--rm` container whose owner is gone is removed.
//!
//! L5: uses `oci`, `sys`, `store`, `snapshot`, `sandbox`, `image`.

mod archive;
mod create;
mod error;
mod exec;
mod names;
mod networks;
mod ps;
mod security;
mod state;
pub mod volume;

/// What [`RunOptions`] is made of, for callers that build one.
pub use crate::sandbox::{BindMount, CgroupLimits, NetworkMode};
/// The kinds of file a [`PathStat`] tells apart.
pub use crate::sys::dir::Kind as FileKind;
pub use archive::{PathStat, archive_path, extract_archive, stat_path};
pub use create::{
    RunOptions, command_line, create, network_choice, parse_memory, parse_signal, parse_volume,
    rename,
};
pub use error::{ContainerError, Result};
pub use exec::{
    ExecOptions, MONITOR_COMMAND, RunOutcome, exec, exec_start, kill, monitor_main, run_foreground,
    start_detached, start_failure, start_monitor, stop,
};
pub use networks::{connect_network, disconnect_network};
pub use ps::{command_text, ports_text, status_text};
pub use security::{Security, parse_security};
pub use state::{
    Container, ContainerConfig, ContainerState, ProcessId, Status, StdinConfig, list, load,
    read_log, ready_to_start, refresh, remove, remove_with_volumes, resolve,
};

/// Exit code recorded for a container whose owner vanished (its processes got SIGKILL).
pub const EXIT_OWNER_GONE: i32 = 137;

const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
const LOG_FILE: &str = "log";
const STDIN_FIFO: &str = "stdin";
const NAMES_LOCK: &str = ".names.lock";
const REMOVING_PREFIX: &str = ".removing-";

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

pub use crate::oci::time::now_rfc3339;

/// Seconds since the epoch (UTC) now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
