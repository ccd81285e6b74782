//! A container on disk: its `config.json`, its `state.json` (replaced atomically), and
//! finding, refreshing and removing containers.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::io_err;
use super::security::Security;
use super::{
    CONFIG_FILE, ContainerError, EXIT_OWNER_GONE, LOG_FILE, REMOVING_PREFIX, Result, SIGKILL,
    STATE_FILE, STDIN_FIFO, now_rfc3339,
};
use crate::network::{Attachment, PortBinding};
use crate::sandbox::{BindMount, CgroupLimits, NetworkMode, Rootfs, Spec};
use crate::store::Store;
pub use crate::sys::process::ProcessId;

/// What a container runs (`config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// The image id (config digest, `sha256:…`).
    pub image: String,
    /// The image as the user typed it.
    pub image_ref: String,
    /// The full argv (entrypoint + cmd).
    pub command: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub network: NetworkMode,
    pub mounts: Vec<BindMount>,
    pub limits: CgroupLimits,
    /// The image's snapshot directories, top first.
    pub lowers: Vec<PathBuf>,
    /// Their chain ids, bottom first: `image prune` keeps them while the container exists.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// Signal number `stop` sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: i32,
    /// `--init`: a minimal init is PID 1 (else the command is).
    #[serde(default)]
    pub init: bool,
    /// The anonymous volumes made for the image's `VOLUME`s: removed with the container by
    /// `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// Capabilities, seccomp and no_new_privs (Docker's defaults when absent).
    #[serde(default)]
    pub security: Security,
    /// The bridge networks it joins when it starts (with [`NetworkMode::Bridge`]).
    #[serde(default)]
    pub networks: Vec<Attachment>,
    /// `-p`: published on the host while it runs.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// Whether the command's standard input is open for an attach to write into.
    #[serde(default)]
    pub stdin: StdinConfig,
    /// The creator asked for a terminal (`Tty`): the daemon streams its output raw.
    #[serde(default)]
    pub tty: bool,
    /// The image's labels with the creator's over them, as Docker's container labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Docker's `OpenStdin`, `StdinOnce` and `AttachStdin` of a container. With `open`, the
/// command's standard input is the fifo `stdin` in the container's directory, which an
/// attach writes into; with `once` it ends when the first attach's input does, else it
/// stays open (the monitor keeps a writer) until the command ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdinConfig {
    pub open: bool,
    pub once: bool,
    /// The creator asked to attach to it (the docker CLI's `run -i`).
    pub attach: bool,
}

/// `created`, `running` or `exited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// Where a container is (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    /// The sandbox's outer process (signals sent to it reach the command).
    pub pid: Option<i32>,
    #[serde(default)]
    pub process: Option<ProcessId>,
    /// The kiln process that runs the sandbox and records its end.
    #[serde(default)]
    pub owner: Option<ProcessId>,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Why the sandbox could not start the command, when it could not.
    #[serde(default)]
    pub error: Option<String>,
    /// The published ports as bound (a host port of 0 replaced), while it runs.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
}

impl ContainerState {
    pub(super) fn created() -> ContainerState {
        ContainerState {
            status: Status::Created,
            pid: None,
            process: None,
            owner: ProcessId::current(),
            exit_code: None,
            started_at: None,
            finished_at: None,
            error: None,
            ports: Vec::new(),
        }
    }
}

/// One container: its directory, config and state.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub config: ContainerConfig,
    pub state: ContainerState,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The fifo that is the command's standard input (with [`StdinConfig::open`]).
    pub fn stdin_path(&self) -> PathBuf {
        self.dir.join(STDIN_FIFO)
    }

    /// Rewrites `state.json` atomically.
    pub fn save_state(&self) -> Result<()> {
        write_atomic(
            &self.dir.join(STATE_FILE),
            &serde_json::to_vec_pretty(&self.state)?,
        )
    }

    /// Re-reads `state.json`.
    pub fn reload(&mut self) -> Result<()> {
        self.state = read_json(&self.dir.join(STATE_FILE))?;
        Ok(())
    }

    /// The sandbox spec of this container.
    pub fn spec(&self) -> Spec {
        let c = &self.config;
        let rootfs = Rootfs::Overlay {
            lowers: c.lowers.clone(),
            upper: self.dir.join("upper"),
            work: self.dir.join("work"),
        };
        let mut spec = Spec::new(rootfs, c.command.clone()).with_network(&c.hostname, c.network);
        spec.process.env = c.env.clone();
        spec.process.cwd = c.working_dir.clone();
        spec.process.user = c.user.clone();
        spec.mounts = c.mounts.clone();
        spec.limits = c.limits;
        // Docker's default for `docker run` (no `--security-opt no-new-privileges`).
        spec.no_new_privs = false;
        spec.init = c.init;
        spec.no_new_privs = c.security.no_new_privileges;
        spec.capabilities = c.security.capabilities.clone();
        spec.seccomp = c.security.seccomp.clone();
        spec
    }
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per writer: the daemon's threads write the same container's files too.
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", crate::store::random_name()));
    fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename", &tmp)(e)
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Loads the container in `dir`.
pub fn load(dir: &Path) -> Result<Container> {
    Ok(Container {
        dir: dir.to_path_buf(),
        config: read_json(&dir.join(CONFIG_FILE))?,
        state: read_json(&dir.join(STATE_FILE))?,
    })
}

/// Every container (stale ones refreshed, `--rm` leftovers removed), newest first.
pub fn list(store: &Store) -> Result<Vec<Container>> {
    let dir = store.containers_dir();
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("read", &dir)(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(REMOVING_PREFIX) {
            // A removal that was interrupted.
            let _ = fs::remove_dir_all(entry.path());
            continue;
        }
        if name.starts_with(".new-") && is_stale(&entry.path()) {
            // A creation that was interrupted.
            let _ = fs::remove_dir_all(entry.path());
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        // A container being created has no state yet; skip it.
        let Ok(mut container) = load(&entry.path()) else {
            continue;
        };
        if refresh(&mut container)? {
            continue;
        }
        out.push(container);
    }
    // `created` is always kiln's own fixed-width UTC form, so it sorts as text.
    out.sort_by(|a, b| {
        b.config
            .created
            .cmp(&a.config.created)
            .then_with(|| a.config.id.cmp(&b.config.id))
    });
    Ok(out)
}

/// Whether `path` was last modified over a minute ago (a creation takes milliseconds).
fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(60))
}

/// Marks a container whose owner is gone as exited (137), and removes it when it was
/// started with `--rm`. Returns whether it was removed.
pub fn refresh(container: &mut Container) -> Result<bool> {
    if container.state.status == Status::Exited {
        if container.config.auto_remove && !container.state.owner.is_some_and(|o| o.is_alive()) {
            remove_dir(container)?;
            return Ok(true);
        }
        return Ok(false);
    }
    if container.state.owner.is_some_and(|o| o.is_alive()) {
        return Ok(false);
    }
    // The owner is gone: re-read (it may have just recorded the end), then decide.
    let _ = container.reload();
    if container.state.status == Status::Exited
        || container.state.owner.is_some_and(|o| o.is_alive())
    {
        return refresh_exited(container);
    }
    if let Some(process) = container.state.process
        && process.is_alive()
    {
        // Cannot happen with PDEATHSIG, but never leave a process behind.
        let _ = crate::sys::process::send_signal(process.pid, SIGKILL);
    }
    if container.config.auto_remove {
        remove_dir(container)?;
        return Ok(true);
    }
    if container.state.status == Status::Running {
        container.state.status = Status::Exited;
        container.state.exit_code = Some(EXIT_OWNER_GONE);
        container.state.finished_at = Some(now_rfc3339());
        container.save_state()?;
    }
    Ok(false)
}

fn refresh_exited(container: &mut Container) -> Result<bool> {
    if container.state.status == Status::Exited
        && container.config.auto_remove
        && !container.state.owner.is_some_and(|o| o.is_alive())
    {
        remove_dir(container)?;
        return Ok(true);
    }
    Ok(false)
}

/// Finds a container by exact name, exact id, or unique id prefix (as Docker does).
pub fn resolve(store: &Store, query: &str) -> Result<Container> {
    let all = list(store)?;
    if let Some(c) = all
        .iter()
        .find(|c| c.config.name == query.trim_start_matches('/') || c.config.id == query)
    {
        return Ok(c.clone());
    }
    let matches: Vec<&Container> = if query.is_empty() {
        Vec::new()
    } else {
        all.iter()
            .filter(|c| c.config.id.starts_with(query))
            .collect()
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ContainerError::NotFound(query.to_string())),
        _ => Err(ContainerError::Ambiguous(query.to_string())),
    }
}

/// Removes a container's directory (state, log, writable layer): renamed aside first,
/// so a crash midway leaves no half container (the next [`list`] finishes the job).
pub(super) fn remove_dir(container: &Container) -> Result<()> {
    remove_dir_only(container)?;
    // `--rm` takes the anonymous volumes along, as Docker does.
    if container.config.auto_remove {
        remove_anonymous_volumes(container);
    }
    Ok(())
}

/// Readies a container to start: a created one as it is; an exited one runs again with its
/// config and filesystem, as Docker's start of a stopped container does (its log goes
/// on). `false` when it is running already.
pub fn ready_to_start(container: &mut Container) -> Result<bool> {
    match container.state.status {
        Status::Running => Ok(false),
        Status::Created => Ok(true),
        Status::Exited => {
            container.state = ContainerState::created();
            container.save_state()?;
            Ok(true)
        }
    }
}

/// The store a container lives in (`<root>/containers-v1/<id>`).
fn store_of(container: &Container) -> Option<Store> {
    let root = container.dir.parent().and_then(Path::parent)?;
    Store::open(root).ok()
}

/// Records a container event (best effort), with its name and image as Docker does.
pub(super) fn event(container: &Container, action: &str, extra: &[(&str, &str)]) {
    // The store's root: only the event log is written, so the store is not opened.
    let Some(root) = container.dir.parent().and_then(Path::parent) else {
        return;
    };
    let mut attributes = vec![
        ("name", container.config.name.as_str()),
        ("image", container.config.image_ref.as_str()),
    ];
    attributes.extend_from_slice(extra);
    crate::store::events::record(root, "container", action, &container.config.id, &attributes);
}

/// Removes the container's anonymous volumes (those another container mounts too stay).
fn remove_anonymous_volumes(container: &Container) {
    if container.config.anonymous_volumes.is_empty() {
        return;
    }
    let Some(store) = store_of(container) else {
        return;
    };
    for name in &container.config.anonymous_volumes {
        let _ = super::volume::remove(&store, name);
    }
}

fn remove_dir_only(container: &Container) -> Result<()> {
    let Some(parent) = container.dir.parent() else {
        return Ok(());
    };
    let aside = parent.join(format!("{REMOVING_PREFIX}{}", container.config.id));
    match fs::rename(&container.dir, &aside) {
        Ok(()) => event(container, "destroy", &[]),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("rename", &container.dir)(e)),
    }
    match fs::remove_dir_all(&aside) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &aside)(e)),
    }
}

/// `kiln rm`: removes a container; a running one only with `force` (killed first).
/// Bind-mounted host directories and volumes are never touched.
pub fn remove(store: &Store, query: &str, force: bool) -> Result<()> {
    remove_with_volumes(store, query, force, false)
}

/// [`remove`], and with `volumes` (`rm -v`) the container's anonymous volumes too.
pub fn remove_with_volumes(store: &Store, query: &str, force: bool, volumes: bool) -> Result<()> {
    let mut container = resolve(store, query)?;
    if container.state.status == Status::Running {
        if !force {
            return Err(ContainerError::Running(container.config.name.clone()));
        }
        if let Some(process) = container.state.process
            && process.is_alive()
        {
            let _ = crate::sys::process::send_signal(process.pid, SIGKILL);
        }
        wait_exit(&mut container, std::time::Duration::from_secs(10));
    }
    remove_dir(&container)?;
    if volumes && !container.config.auto_remove {
        remove_anonymous_volumes(&container);
    }
    Ok(())
}

/// Polls until the container is no longer running (or its owner is gone, which
/// [`refresh`] then records) or `timeout` passes; true if it ended.
pub(super) fn wait_exit(container: &mut Container, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let _ = container.reload();
        if container.state.status != Status::Running {
            return true;
        }
        if !container.state.owner.is_some_and(|o| o.is_alive()) {
            let _ = refresh(container);
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The log of a container.
pub fn read_log(container: &Container) -> Result<Vec<u8>> {
    let path = container.log_path();
    let mut out = Vec::new();
    match fs::File::open(&path) {
        Ok(mut file) => {
            file.read_to_end(&mut out).map_err(io_err("read", &path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("open", &path)(e)),
    }
    Ok(out)
}
