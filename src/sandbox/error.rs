//! Errors of the sandbox, parent and child side.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox spec is not valid JSON: {0}")]
    BadSpec(#[from] serde_json::Error),
    #[error("the command is empty")]
    EmptyCommand,
    #[error("{0}: executable file not found in $PATH")]
    NotFound(String),
    #[error("working directory {dir}: {source}")]
    WorkingDir {
        dir: String,
        #[source]
        source: io::Error,
    },
    #[error("the process that started the sandbox is gone")]
    ParentGone,
    /// `kiln exec` could not enter the running container.
    #[error("entering the container: {0}")]
    Enter(String),
    #[error("cannot find the kiln executable to run the sandbox: {0}")]
    NoExecutable(#[source] io::Error),
    #[error("starting the sandbox: {0}")]
    Spawn(#[source] io::Error),
    #[error("waiting for the sandbox: {0}")]
    Wait(#[source] io::Error),
    #[error("cgroup limits: {0}")]
    Cgroup(#[source] SysError),
    /// Without root, limits need a cgroup v2 subtree delegated to the user.
    #[error(
        "cgroup limits (-m, --pids-limit) without root need a cgroup v2 subtree delegated \
         to your user (systemd's Delegate=yes), which this machine does not give: {0}"
    )]
    CgroupNotDelegated(#[source] SysError),
    /// A bridge-network sandbox was spawned without the namespace to join.
    #[error("a sandbox on a bridge network needs the network namespace to join")]
    BridgeWithoutNamespace,
    /// The empty network namespace `--network none` steps share could not be created.
    #[error("invalid argument for shared network namespace: {0}")]
    SharedNetNs(#[source] Arc<SysError>),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("seccomp: {0}")]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Emulation(#[from] EmulationError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("mount source {path} in {root} (for {target}): {source}")]
    MountSource {
        root: PathBuf,
        path: PathBuf,
        target: PathBuf,
        #[source]
        source: SysError,
    },
}

/// A `--user` (or USER) that does not resolve in the image's passwd and group files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user {0:?}")]
    Invalid(String),
}

/// A `--cap-add` or `--cap-drop` name that is not a capability (Docker's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability: {0:?}")]
    Unknown(String),
    #[error(
        "capability not supported by your kernel or not available in the current environment: {0:?}"
    )]
    NotSupported(String),
}

/// A seccomp profile that cannot be used, or a filter that cannot be built from it.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not JSON, or not a profile in Docker's format.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Parsed, but asks for something contradictory or that kiln cannot do.
    #[error("{0}")]
    Invalid(String),
    #[error("kiln builds seccomp filters for x86_64 and aarch64, not {0}")]
    UnsupportedHost(&'static str),
    #[error("the filter has {0} instructions; the kernel takes at most 4096")]
    TooLong(usize),
}

/// Why binaries of a foreign architecture cannot run here, each with its fix; or why the
/// emulators could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error("kiln knows no ELF machine for {platform}, so no emulator can be looked up for it")]
    UnknownArchitecture { platform: String },
    #[error(
        "binfmt_misc is not mounted at {dir}: mount it (`mount -t binfmt_misc binfmt_misc {dir}`), \
         then register the emulators (`kiln system binfmt --install`)",
        dir = dir.display()
    )]
    NotMounted { dir: PathBuf },
    #[error(
        "binfmt_misc is disabled: enable it with `echo 1 > {}`",
        dir.join("status").display()
    )]
    BinfmtDisabled { dir: PathBuf },
    #[error(
        "no emulator for {platform} is registered in binfmt_misc ({}): install one with \
         `apt-get install qemu-user-static`, then register it with `kiln system binfmt --install`",
        dir.display()
    )]
    NoEntry { platform: String, dir: PathBuf },
    #[error(
        "the binfmt_misc entry {entry} for {platform} is disabled: enable it with `echo 1 > {}`",
        path.display()
    )]
    EntryDisabled {
        platform: String,
        entry: String,
        path: PathBuf,
    },
    #[error(
        "the binfmt_misc entry {entry} for {platform} lacks the F flag (its flags: {flags:?}), so \
         its interpreter cannot be opened inside the build's root filesystem: remove it \
         (`echo -1 > {}`) and register it again with F (`kiln system binfmt --install`)",
        path.display()
    )]
    NoFixBinary {
        platform: String,
        entry: String,
        flags: String,
        path: PathBuf,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "registering emulators needs root (it mounts binfmt_misc and writes its register file)"
    )]
    NotRoot,
    #[error("mounting binfmt_misc at {}: {source}", dir.display())]
    Mount {
        dir: PathBuf,
        #[source]
        source: SysError,
    },
    #[error(
        "no qemu-*.conf rules in {}: install them with `apt-get install qemu-user-static`",
        dir.display()
    )]
    NoQemuRules { dir: PathBuf },
    #[error("{}:{line}: not a binfmt_misc rule: {text}", path.display())]
    BadRule {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("registering {name} ({}): {source}", path.display())]
    Register {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> SandboxError + 'a {
    move |source| SandboxError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
