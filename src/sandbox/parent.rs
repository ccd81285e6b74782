//! The parent side (async): writes the state directory, starts
//! `kiln __sandbox <state>` and streams its output.
//!
//! The spec travels as a file, `<state>/spec.json`, next to the generated
//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` sources and the empty
//! mountpoint of the root; the child writes `created.json` (mountpoints it
//! had to add to the writable layer) and, on a setup failure, `error`.
//! `wait` removes the created mountpoints from the layer, the cgroups and the
//! state directory.
//!
//! The child dies with the *thread* that spawned it (PR_SET_PDEATHSIG), so
//! spawn from a long-lived runtime thread, not from a `spawn_blocking` task.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::child::{CREATED_FILE, ChildConfig, ERROR_FILE, ROOT_DIR, SPEC_FILE};
use super::error::{SandboxError, io_err};
use super::spec::{NetworkMode, Spec};
use crate::sys::SysError;
use crate::sys::cgroup::Cgroup;

/// Environment variable naming the kiln binary to run as the sandbox child
/// (tests and benches run from their own executables).
pub const EXE_ENV: &str = "KILN_SANDBOX_EXE";

/// How the command's standard streams are connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StdioMode {
    /// stdin from /dev/null; stdout/stderr as [`OutputEvent`]s (builds).
    #[default]
    Piped,
    /// The caller's terminal (`kiln run`).
    Inherit,
    /// stdin from the caller; stdout/stderr as [`OutputEvent`]s (`kiln run -i`,
    /// which also copies the output to the container's log).
    PipedWithStdin,
}

/// Options of [`Sandbox::spawn`].
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// The kiln binary; default: `$KILN_SANDBOX_EXE`, else the current executable.
    pub exe: Option<PathBuf>,
    /// Where state directories go; default: `/run/kiln/sandbox` (tmpfs), else
    /// `$TMPDIR/kiln-sandbox`.
    pub state_root: Option<PathBuf>,
    pub stdio: StdioMode,
    /// Where cgroups are mounted; default `/sys/fs/cgroup`.
    pub cgroup_root: Option<PathBuf>,
    /// `--network none` steps join one empty network namespace that this
    /// process creates once and keeps, instead of each creating its own
    /// (~0.6 ms per step). Steps running at the same time then share `lo`.
    pub share_empty_net_ns: bool,
    /// For [`NetworkMode::Bridge`]: the network namespace to join, as a path the child
    /// can open (`/proc/<this pid>/fd/<n>` of a descriptor held until the sandbox ends).
    pub net_ns: Option<PathBuf>,
}

/// The shared empty network namespace, created on first use.
fn shared_net_ns() -> Result<PathBuf, SandboxError> {
    // The error is shared: every later step reports the first attempt's failure.
    static NET_NS: std::sync::OnceLock<Result<std::os::fd::OwnedFd, Arc<SysError>>> =
        std::sync::OnceLock::new();
    let fd = NET_NS.get_or_init(|| crate::sys::namespace::new_empty_net_ns().map_err(Arc::new));
    match fd {
        Ok(fd) => {
            use std::os::fd::AsRawFd;
            Ok(PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                fd.as_raw_fd()
            )))
        }
        Err(error) => Err(SandboxError::SharedNetNs(error.clone())),
    }
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A chunk of the command's output, as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEvent {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How the sandbox ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The command's exit code, or 128 + signal number.
    pub code: i32,
    /// Why the sandbox could not run the command, when setup failed.
    pub setup_error: Option<String>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Starts sandboxes.
pub struct Sandbox;

/// A running sandbox.
pub struct Running {
    child: tokio::process::Child,
    /// Output chunks (only with [`StdioMode::Piped`]); ends after the exit.
    pub events: mpsc::UnboundedReceiver<OutputEvent>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    state_dir: PathBuf,
    writable: PathBuf,
    cgroup: Option<Cgroup>,
    finished: bool,
}

/// Names kiln's runtime directory when set (a user's `$XDG_RUNTIME_DIR/kiln` when
/// running without root).
pub const RUNTIME_DIR_ENV: &str = "KILN_RUNTIME_DIR";

/// Where kiln keeps what lives only while it runs (sandbox state, secret files):
/// `$KILN_RUNTIME_DIR`, else `/run/kiln`.
pub fn runtime_dir() -> PathBuf {
    std::env::var_os(RUNTIME_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/run/kiln"), PathBuf::from)
}

/// `<runtime dir>/sandbox` when it can be made (a tmpfs: the state files cost no
/// disk writes or discards), else `$TMPDIR/kiln-sandbox`.
fn default_state_root() -> PathBuf {
    let run = runtime_dir().join("sandbox");
    if std::fs::create_dir_all(&run).is_ok() {
        return run;
    }
    std::env::temp_dir().join("kiln-sandbox")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new private state directory (mode 0700: what it holds may carry secret values).
pub(super) fn new_state_dir() -> Result<PathBuf, SandboxError> {
    let state_root = default_state_root();
    std::fs::create_dir_all(&state_root).map_err(io_err("mkdir", &state_root))?;
    let state_dir = state_root.join(unique_id());
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&state_dir)
        .map_err(io_err("mkdir", &state_dir))?;
    Ok(state_dir)
}

impl Sandbox {
    /// Starts `spec` in a new sandbox. Must be called inside a tokio runtime.
    pub fn spawn(spec: &Spec, options: &SpawnOptions) -> Result<Running, SandboxError> {
        let exe = match (&options.exe, std::env::var_os(EXE_ENV)) {
            (Some(exe), _) => exe.clone(),
            (None, Some(exe)) => PathBuf::from(exe),
            (None, None) => std::env::current_exe().map_err(SandboxError::NoExecutable)?,
        };
        let state_root = match &options.state_root {
            Some(root) => root.clone(),
            None => default_state_root(),
        };
        std::fs::create_dir_all(&state_root).map_err(io_err("mkdir", &state_root))?;
        let id = unique_id();
        let state_dir = state_root.join(&id);
        // Private: spec.json may hold secret environment values.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&state_dir)
            .map_err(io_err("mkdir", &state_dir))?;
        let prepared = (|| {
            let cgroup = if spec.limits.is_empty() {
                None
            } else {
                let root = options
                    .cgroup_root
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
                let not_delegated = crate::sys::userns::in_user_namespace();
                Some(Cgroup::create(&root, &id, spec.limits).map_err(|e| {
                    if not_delegated && e.is_not_permitted() {
                        SandboxError::CgroupNotDelegated(e)
                    } else {
                        SandboxError::Cgroup(e)
                    }
                })?)
            };
            let join_net_ns = match spec.network {
                NetworkMode::None if options.share_empty_net_ns => Some(shared_net_ns()?),
                NetworkMode::Bridge => Some(
                    options
                        .net_ns
                        .clone()
                        .ok_or(SandboxError::BridgeWithoutNamespace)?,
                ),
                _ => None,
            };
            let config = ChildConfig {
                spec: spec.clone(),
                cgroup_procs: cgroup.as_ref().map(Cgroup::procs_files).unwrap_or_default(),
                parent_pid: std::process::id() as i32,
                join_net_ns,
            };
            for (name, text) in [
                (SPEC_FILE, serde_json::to_string(&config)?),
                ("hosts", spec.etc.hosts.clone()),
                ("resolv.conf", spec.etc.resolv_conf.clone()),
                ("hostname", spec.etc.hostname.clone()),
            ] {
                let path = state_dir.join(name);
                let mode = if name == SPEC_FILE { 0o600 } else { 0o644 };
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                    .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
                    .map_err(io_err("write", &path))?;
            }
            let root = state_dir.join(ROOT_DIR);
            std::fs::create_dir(&root).map_err(io_err("mkdir", &root))?;
            Ok::<_, SandboxError>(cgroup)
        })();
        let cgroup = match prepared {
            Ok(cgroup) => cgroup,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&state_dir);
                return Err(error);
            }
        };
        let mut command = tokio::process::Command::new(&exe);
        command.arg("__sandbox").arg(&state_dir).kill_on_drop(true);
        match options.stdio {
            StdioMode::Piped => {
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
            StdioMode::PipedWithStdin => {
                command
                    .stdin(Stdio::inherit())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
            StdioMode::Inherit => {
                command
                    .stdin(Stdio::inherit())
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::inherit());
            }
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                if let Some(cgroup) = &cgroup {
                    let _ = cgroup.remove();
                }
                let _ = std::fs::remove_dir_all(&state_dir);
                return Err(SandboxError::Spawn(error));
            }
        };
        let (sender, events) = mpsc::unbounded_channel();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(forward(out, Stream::Stdout, sender.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(forward(err, Stream::Stderr, sender)));
        }
        Ok(Running {
            child,
            events,
            readers,
            state_dir,
            writable: spec.rootfs.writable_dir().to_path_buf(),
            cgroup,
            finished: false,
        })
    }
}

async fn forward(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    sender: mpsc::UnboundedSender<OutputEvent>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = sender.send(OutputEvent {
            stream,
            data: buf[..n].to_vec(),
        });
    }
}

impl Running {
    /// The pid of the outer `__sandbox` process (in kiln's pid namespace).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The sandbox's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Kills the sandbox (SIGKILL to the outer child; the init and the command
    /// follow through PDEATHSIG and the pid namespace). Call [`wait`](Self::wait) after.
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        self.child.start_kill().map_err(SandboxError::Wait)
    }

    /// Waits for the end, drains the output readers, and cleans up: removes
    /// created mountpoints from the writable layer, the cgroups and the
    /// state directory.
    pub async fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        let status = self.child.wait().await.map_err(SandboxError::Wait)?;
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        let code = {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        };
        let setup_error = std::fs::read_to_string(self.state_dir.join(ERROR_FILE)).ok();
        self.finished = true;
        let cleanup = self.cleanup();
        cleanup?;
        Ok(ExitStatus { code, setup_error })
    }

    fn cleanup(&mut self) -> Result<(), SandboxError> {
        let created_file = self.state_dir.join(CREATED_FILE);
        if let Ok(text) = std::fs::read(&created_file) {
            let paths: Vec<PathBuf> = serde_json::from_slice(&text)?;
            remove_created(&self.writable, &paths)?;
        }
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove().map_err(SandboxError::Cgroup)?;
        }
        match std::fs::remove_dir_all(&self.state_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &self.state_dir)(e)),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            // Not waited for: kill it; the state directory goes too (the
            // cgroup may stay until its processes are gone).
            let _ = self.child.start_kill();
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

/// Removes mountpoints the sandbox created in `writable` (relative `paths`,
/// created ancestors included): files, then directories deepest first and only
/// when empty, so anything the command wrote there stays. The directory each was
/// in keeps its times, as BuildKit's `MountStubsCleaner` restores them (for
/// reproducible layers). Never follows a symlink.
pub fn remove_created(writable: &Path, paths: &[PathBuf]) -> Result<(), SandboxError> {
    let mut sorted: Vec<&PathBuf> = paths.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    'paths: for path in sorted {
        // Every ancestor must be a real directory inside `writable`.
        let mut prefix = writable.to_path_buf();
        let components: Vec<_> = path.components().collect();
        for (index, component) in components.iter().enumerate() {
            if !matches!(component, std::path::Component::Normal(_)) {
                continue 'paths;
            }
            prefix.push(component);
            let Ok(meta) = prefix.symlink_metadata() else {
                continue 'paths;
            };
            if index + 1 < components.len() && !meta.is_dir() {
                continue 'paths;
            }
        }
        let meta = match prefix.symlink_metadata() {
            Ok(meta) => meta,
            Err(_) => continue,
        };
        let parent = prefix.parent().unwrap_or(writable);
        let parent_times = parent
            .symlink_metadata()
            .and_then(|m| Ok((m.accessed()?, m.modified()?)));
        let removed = if meta.is_dir() {
            std::fs::remove_dir(&prefix)
        } else {
            std::fs::remove_file(&prefix)
        };
        match removed {
            Ok(()) => {
                if let Ok((accessed, modified)) = parent_times {
                    crate::sys::set_times_nofollow(parent, accessed, modified)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => return Err(io_err("remove", &prefix)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_created_keeps_what_the_command_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        std::fs::create_dir_all(w.join("etc")).unwrap();
        std::fs::write(w.join("etc/hosts"), "").unwrap();
        std::fs::create_dir_all(w.join("proc")).unwrap();
        std::fs::create_dir_all(w.join("data")).unwrap();
        std::fs::write(w.join("data/kept"), "x").unwrap();
        std::fs::write(w.join("data/hostname"), "").unwrap();
        let paths: Vec<PathBuf> = [
            "etc",
            "etc/hosts",
            "proc",
            "data",
            "data/hostname",
            "missing/x",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        crate::sys::set_times_nofollow(&w.join("data"), then, then).unwrap();
        remove_created(w, &paths).unwrap();
        assert_eq!(
            std::fs::symlink_metadata(w.join("data"))
                .unwrap()
                .modified()
                .unwrap(),
            then,
            "the directory a stub was removed from keeps its mtime"
        );
        assert!(!w.join("etc").exists());
        assert!(!w.join("proc").exists());
        assert!(!w.join("data/hostname").exists());
        assert!(w.join("data/kept").exists());
    }

    #[test]
    fn remove_created_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("hosts"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("etc")).unwrap();
        remove_created(dir.path(), &[PathBuf::from("etc/hosts")]).unwrap();
        assert!(outside.path().join("hosts").exists());
    }
}
