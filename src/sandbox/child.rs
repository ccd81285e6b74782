//! The `__sandbox` child. Three processes, all from this single-threaded exec
//! of kiln:
//! - outer (parent ns): joins the cgroups, unshares uts/ipc/pid(/net), sets
//!   the hostname, forks the init and relays signals and its exit status;
//!   it keeps the host's mount view, so pivot_root never moves it.
//! - init (PID 1 of the new pid ns): unshares the mount ns, mounts the root
//!   and everything in it (the [`Plan`](super::plan::Plan)), pivots, then
//!   becomes the command: it closes inherited descriptors, enters the working
//!   directory, drops to the command's user and capabilities, installs its
//!   seccomp filter, and execs. So
//!   the command is PID 1, as with Docker and BuildKit, and nothing of kiln
//!   (its path, the store's) is left in the container's `/proc`.
//! - with `Spec::init` (`kiln run --init`), PID 1 stays a minimal init instead:
//!   it forks the command, forwards signals to it and reaps every zombie, its
//!   command line and environment overwritten (`kiln-init -- CMD`).
//!
//! The outer child also enters a new cgroup namespace, where the kernel has
//! them, after joining the container's cgroup: `/proc/self/cgroup` inside
//! shows `0::/`.
//!
//! Every process dies with its parent (PR_SET_PDEATHSIG SIGKILL), and when
//! the init exits the kernel kills the rest of the pid namespace, so killing
//! kiln leaves no process and no mount (they only exist in the child's ns).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use super::error::{SandboxError, io_err};
use super::plan::{self, Create, Plan, Source, Step};
use super::seccomp;
use super::spec::{Rootfs, Spec};
use super::user;
use crate::sys;
use crate::sys::mount::{NodeKind, Target};
use crate::sys::process::Fork;

/// The one capability a `--init` init keeps (linux/capability.h).
const CAP_KILL: u32 = 5;

/// Exit status when the sandbox could not be set up (Docker's 125).
pub const EXIT_SETUP_FAILED: u8 = 125;
/// Exit status when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXEC: u8 = 126;
/// Exit status when the command is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Files in a sandbox's state directory.
pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const ROOT_DIR: &str = "rootfs";
pub(crate) const CREATED_FILE: &str = "created.json";
pub(crate) const ERROR_FILE: &str = "error";

/// What the parent hands the child (as `<state>/spec.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildConfig {
    pub spec: Spec,
    /// `cgroup.procs` files to join before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// The pid of the kiln that spawned us, to notice when it died early.
    pub parent_pid: i32,
    /// A network namespace held open by the parent (`/proc/<parent>/fd/<n>`), joined
    /// instead of creating one: the empty one `--network none` steps share (NEWNET
    /// costs ~0.6 ms and a deferred teardown), or a container's, wired to its bridges.
    #[serde(default)]
    pub join_net_ns: Option<PathBuf>,
}

/// Entry point of `kiln __sandbox STATE_DIR`.
pub fn child_main(state_dir: &Path) -> ExitCode {
    match outer(state_dir) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(error) => {
            report(state_dir, &error);
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn report(state_dir: &Path, error: &SandboxError) {
    eprintln!("kiln-sandbox: {error}");
    let _ = std::fs::write(state_dir.join(ERROR_FILE), error.to_string());
}

fn outer(state_dir: &Path) -> Result<i32, SandboxError> {
    let path = state_dir.join(SPEC_FILE);
    let text = std::fs::read(&path).map_err(io_err("read", &path))?;
    let config: ChildConfig = serde_json::from_slice(&text)?;
    sys::process::die_with_parent()?;
    if sys::process::parent_pid() != config.parent_pid {
        return Err(SandboxError::ParentGone);
    }
    sys::process::close_fds_from_3()?;
    if !config.cgroup_procs.is_empty() {
        sys::cgroup::join(&config.cgroup_procs).map_err(SandboxError::Cgroup)?;
    }
    let mut plan = plan::build(&config.spec, state_dir, plan::Host::detect());
    if let (true, Some(net_ns)) = (plan.namespaces.net, &config.join_net_ns) {
        sys::namespace::join_net_ns(net_ns)?;
        plan.namespaces.net = false;
        sys::namespace::unshare(plan.namespaces)?;
    } else {
        sys::namespace::unshare(plan.namespaces)?;
        if plan.namespaces.net {
            sys::namespace::loopback_up()?;
        }
    }
    if plan.namespaces.uts {
        sys::namespace::set_hostname(&config.spec.hostname)?;
    }
    sys::process::block_supervised_signals()?;
    match sys::process::fork()? {
        Fork::Parent(init_pid) => Ok(sys::process::supervise(init_pid)?),
        Fork::Child => {
            let code = match init(&config.spec, &plan, state_dir) {
                Ok(code) => code,
                Err(error) => {
                    report(state_dir, &error);
                    i32::from(EXIT_SETUP_FAILED)
                }
            };
            sys::process::exit_now(code)
        }
    }
}

/// PID 1: builds the root, pivots, runs and reaps.
fn init(spec: &Spec, plan: &Plan, state_dir: &Path) -> Result<i32, SandboxError> {
    sys::process::die_with_parent()?;
    sys::namespace::unshare(sys::namespace::Namespaces {
        mount: true,
        ..Default::default()
    })?;
    sys::mount::make_rprivate()?;
    let root = state_dir.join(ROOT_DIR);
    match &spec.rootfs {
        Rootfs::Overlay {
            lowers,
            upper,
            work,
        } if !lowers.is_empty() => sys::mount::mount_overlay(lowers, Some((upper, work)), &root)?,
        Rootfs::Overlay { upper: dir, .. } | Rootfs::Dir { path: dir } => sys::mount::bind(
            Target::Path(dir),
            Target::Path(&root),
            true,
            Default::default(),
        )?,
    }
    let root_fd = sys::mount::open_root(&root)?;
    let mut created = Created::default();
    for step in &plan.steps {
        execute(step, root_fd.as_fd(), &mut created)?;
    }
    let created_file = state_dir.join(CREATED_FILE);
    std::fs::write(&created_file, serde_json::to_vec(&created.paths)?)
        .map_err(io_err("write", &created_file))?;
    drop(root_fd);
    sys::mount::pivot_into(&root)?;
    sys::process::close_fds_from_3()?;
    if !spec.init {
        become_command(spec)
    }
    match sys::process::fork()? {
        Fork::Parent(pid) => {
            let mut title = vec!["kiln-init".to_string(), "--".to_string()];
            title.extend(spec.process.argv.iter().cloned());
            sys::process::overwrite_command_line(&title)?;
            // Inside the container, the init holds nothing the container could use: no
            // capability but CAP_KILL (to forward signals to a command of any user), and
            // no_new_privs.
            sys::process::drop_privileges(&sys::process::Credentials {
                uid: 0,
                gid: 0,
                supplementary_gids: Vec::new(),
                capabilities: vec![CAP_KILL],
                no_new_privs: true,
            })?;
            Ok(sys::process::supervise(pid)?)
        }
        Fork::Child => become_command(spec),
    }
}

/// Execs the command; on failure says why and exits with Docker's code for it.
pub(super) fn become_command(spec: &Spec) -> ! {
    let error = run_command(spec);
    eprintln!("kiln-sandbox: {error}");
    let code = match &error {
        SandboxError::NotFound(_) => EXIT_NOT_FOUND,
        SandboxError::Sys(e) if e.is_not_found() => EXIT_NOT_FOUND,
        SandboxError::Sys(_) => EXIT_CANNOT_EXEC,
        _ => EXIT_SETUP_FAILED,
    };
    sys::process::exit_now(i32::from(code))
}

/// Mountpoints we had to create in the root (each missing directory on the way
/// too); the parent removes them after the run, as BuildKit's `MountStubsCleaner`.
/// A directory of a lower layer they were created in stays copied up in the writable
/// layer: the layer leaves it out when it is unchanged (`snapshot::settle`).
#[derive(Default)]
struct Created {
    paths: Vec<PathBuf>,
}

impl Created {
    /// Called just before `path` (missing in the root) is created.
    fn record(&mut self, path: &Path) {
        if !self.paths.iter().any(|p| p == path) {
            self.paths.push(path.to_path_buf());
        }
    }
}

fn resolve(
    root: BorrowedFd<'_>,
    target: &Path,
    create: Option<NodeKind>,
    created: &mut Created,
) -> Result<Option<OwnedFd>, SandboxError> {
    match sys::mount::open_in_root(root, target, create, &mut |p| created.record(p)) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if create.is_none() && e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What to create at a missing mountpoint; `source_is_dir` for [`Create::LikeSource`].
fn node_kind(create: Option<Create>, source_is_dir: bool) -> Option<NodeKind> {
    create.map(|c| match c {
        Create::Dir => NodeKind::Dir,
        Create::File => NodeKind::File,
        Create::LikeSource if source_is_dir => NodeKind::Dir,
        Create::LikeSource => NodeKind::File,
    })
}

fn split(path: &Path) -> (&Path, &Path) {
    let parent = path.parent().unwrap_or(Path::new(""));
    let name = path.file_name().map_or(Path::new(""), Path::new);
    (parent, name)
}

fn execute(step: &Step, root: BorrowedFd<'_>, created: &mut Created) -> Result<(), SandboxError> {
    match step {
        Step::Mount {
            fstype,
            options,
            attrs,
            target,
            create,
        } => {
            let kind = node_kind(*create, true);
            let Some(fd) = resolve(root, target, kind, created)? else {
                return Ok(());
            };
            let options: Vec<(&str, &str)> = options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            sys::mount::mount_fs(fstype, &options, *attrs, Target::Fd(fd.as_fd()))?;
        }
        Step::Bind {
            source,
            target,
            recursive,
            attrs,
            create,
        } => {
            // An untrusted source is opened inside its root first: the mount then
            // takes that very inode, whatever links the tree holds.
            let within = match source {
                Source::Within { root: dir, path } => {
                    let opened = sys::mount::open_root(dir).and_then(|dir_fd| {
                        sys::mount::open_in_root(dir_fd.as_fd(), path, None, &mut |_| {})
                    });
                    Some(opened.map_err(|source| SandboxError::MountSource {
                        root: dir.clone(),
                        path: path.clone(),
                        target: Path::new("/").join(target),
                        source,
                    })?)
                }
                _ => None,
            };
            let source_is_dir = match (source, &within) {
                (_, Some(fd)) => sys::mount::is_dir(fd.as_fd())?,
                (Source::Host(path), _) => path.is_dir(),
                _ => true,
            };
            let kind = node_kind(*create, source_is_dir);
            let Some(fd) = resolve(root, target, kind, created)? else {
                return Ok(());
            };
            let from = match (source, &within) {
                (_, Some(source_fd)) => Target::Fd(source_fd.as_fd()),
                (Source::Host(path), _) => Target::Path(path),
                _ => Target::Fd(fd.as_fd()),
            };
            sys::mount::bind(from, Target::Fd(fd.as_fd()), *recursive, *attrs)?;
        }
        Step::Overlay {
            lowers,
            upper,
            target,
        } => {
            std::fs::create_dir_all(target).map_err(io_err("mkdir", target))?;
            let upper = upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path()));
            sys::mount::mount_overlay(lowers, upper, target)?;
        }
        Step::Mknod {
            path,
            major,
            minor,
            mode,
        } => {
            let (parent, name) = split(path);
            if let Some(dir) = resolve(root, parent, None, created)? {
                sys::mount::mknod_char(dir.as_fd(), name, *mode, *major, *minor)?;
            }
        }
        Step::Mkdir { path, mode } => {
            let (parent, name) = split(path);
            if let Some(dir) = resolve(root, parent, None, created)? {
                sys::mount::mkdir_in(dir.as_fd(), name, *mode)?;
            }
        }
        Step::Symlink { target, path } => {
            let (parent, name) = split(path);
            if let Some(dir) = resolve(root, parent, None, created)? {
                sys::mount::symlink_in(dir.as_fd(), target, name)?;
            }
        }
    }
    Ok(())
}

/// The command's process, inside the new root: returns only on failure.
fn run_command(spec: &Spec) -> SandboxError {
    match prepare_and_exec(spec) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

enum Never {}

fn prepare_and_exec(spec: &Spec) -> Result<Never, SandboxError> {
    // Descriptors first: a leaked directory fd must not be reachable through
    // /proc/self/fd when the working directory is resolved.
    sys::process::close_fds_from_3()?;
    let seccomp = spec.seccomp.compile(&spec.capabilities)?;
    let process = &spec.process;
    let cwd = if process.cwd.starts_with('/') {
        process.cwd.clone()
    } else {
        format!("/{}", process.cwd)
    };
    let working_dir = |source| SandboxError::WorkingDir {
        dir: cwd.clone(),
        source,
    };
    match std::env::set_current_dir(&cwd) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&cwd).map_err(working_dir)?;
            std::env::set_current_dir(&cwd).map_err(working_dir)?;
        }
        Err(e) => return Err(working_dir(e)),
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let who = user::resolve(&process.user, &passwd, &group)?;
    let env = user::environment(&process.env, who.home.as_deref());
    // Without no_new_privs, installing a filter takes CAP_SYS_ADMIN, so it goes on before
    // the capabilities are dropped (the profile must then allow what dropping them
    // calls); with it, as late as possible, as runc does.
    let install =
        |program: &seccomp::Program| sys::seccomp::install(&program.instructions, program.flags);
    if let (Some(program), false) = (&seccomp, spec.no_new_privs) {
        install(program)?;
    }
    sys::process::drop_privileges(&sys::process::Credentials {
        uid: who.uid,
        gid: who.gid,
        supplementary_gids: who.supplementary_gids.clone(),
        capabilities: spec.capabilities.clone(),
        no_new_privs: spec.no_new_privs,
    })?;
    // A change of user clears the parent-death signal; without it a killed kiln would
    // leave a non-root command running (it is PID 1: nothing else takes it down).
    sys::process::die_with_parent()?;
    sys::process::reset_signals()?;
    let program = process.argv.first().ok_or(SandboxError::EmptyCommand)?;
    let path = user::lookup_program(program, &env, |p| Path::new(p).is_file())
        .ok_or_else(|| SandboxError::NotFound(program.clone()))?;
    if let (Some(program), true) = (&seccomp, spec.no_new_privs) {
        install(program)?;
    }
    Err(sys::process::exec(Path::new(&path), &process.argv, &env).into())
}
