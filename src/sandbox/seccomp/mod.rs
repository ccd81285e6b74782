//! seccomp for the sandboxed command: Docker's default profile, profiles in Docker's JSON
//! format, and their compilation, in process, to the BPF program the command runs under.
//!
//! - [`profile`]: the JSON format (serde) and what is refused in it.
//! - `default`: Docker's default profile as data.
//! - `resolve`: a profile made concrete for a container's capabilities on this host.
//! - `bpf`: the program; `syscalls`: syscall numbers by name for each ABI.
//!
//! The program is built here rather than with a crate such as `seccompiler`, which gives
//! one action to every matching rule of a filter and covers one architecture: Docker's
//! profile returns ENOSYS for `clone3` next to its allowlist, and covers the x86 and x32
//! ABIs on x86_64 and arm on aarch64, whose processes a one-architecture filter kills.

mod bpf;
mod default;
pub mod profile;
mod resolve;
mod syscalls;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use super::error::SeccompError;
pub use crate::sys::seccomp::Instruction;
pub use profile::Profile;

/// The filter the command runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`, `RUN --security=insecure`).
    Unconfined,
    /// A profile in Docker's JSON format (`--security-opt seccomp=PROFILE.json`).
    Profile(Box<Profile>),
}

/// A compiled filter: the program and its `SECCOMP_FILTER_FLAG_*` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub instructions: Vec<Instruction>,
    pub flags: u32,
}

impl Seccomp {
    /// The filter for a command keeping `capabilities` (the bounding set, which the
    /// profile's capability conditions read); `None` when there is none to install.
    pub fn compile(&self, capabilities: &[u32]) -> Result<Option<Program>, SeccompError> {
        match self {
            Seccomp::Unconfined => Ok(None),
            Seccomp::Default => compile(
                &default::profile(),
                &resolve::Host::current()?,
                capabilities,
            ),
            Seccomp::Profile(profile) => compile(profile, &resolve::Host::current()?, capabilities),
        }
    }
}

fn compile(
    profile: &Profile,
    host: &resolve::Host,
    capabilities: &[u32],
) -> Result<Option<Program>, SeccompError> {
    let Some(tables) = resolve::tables(profile, host, capabilities)? else {
        return Ok(None);
    };
    let instructions = bpf::program(&tables, bpf::RET_KILL_PROCESS)?;
    let flags = profile.flags.iter().fold(0, |flags, flag| {
        flags
            | match flag {
                profile::Flag::Log => crate::sys::seccomp::FLAG_LOG,
                profile::Flag::SpecAllow => crate::sys::seccomp::FLAG_SPEC_ALLOW,
                profile::Flag::Tsync | profile::Flag::WaitKillableRecv => 0,
            }
    });
    Ok(Some(Program {
        instructions,
        flags,
    }))
}
