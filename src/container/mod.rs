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

mod error;
mod exec;
mod names;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gocompat::go_quote;
use crate::sandbox::{BindMount, CgroupLimits, NetworkMode, Rootfs, Spec};
use crate::store::Store;

use error::io_err;

pub use error::{ContainerError, Result};
pub use exec::{MONITOR_COMMAND, RunOutcome, monitor_main, run_foreground, start_detached, stop};

/// Exit code recorded for a container whose owner vanished (its processes got SIGKILL).
pub const EXIT_OWNER_GONE: i32 = 137;

const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
const LOG_FILE: &str = "log";
const NAMES_LOCK: &str = ".names.lock";
const REMOVING_PREFIX: &str = ".removing-";

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
}

/// `created`, `running` or `exited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// A process, identified by its pid and start time (so a reused pid is not it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<ProcessId> {
        ProcessId::of(crate::sys::process::own_pid())
    }

    /// `pid` if it is alive (not a zombie), with its start time.
    pub fn of(pid: i32) -> Option<ProcessId> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
            return None;
        }
        let start_time = fields.get(19)?.parse().ok()?;
        Some(ProcessId { pid, start_time })
    }

    pub fn is_alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|p| p.start_time == self.start_time)
    }
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
}

impl ContainerState {
    fn created() -> ContainerState {
        ContainerState {
            status: Status::Created,
            pid: None,
            process: None,
            owner: ProcessId::current(),
            exit_code: None,
            started_at: None,
            finished_at: None,
            error: None,
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
        spec
    }
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename", path)(e)
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

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

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
fn remove_dir(container: &Container) -> Result<()> {
    let Some(parent) = container.dir.parent() else {
        return Ok(());
    };
    let aside = parent.join(format!("{REMOVING_PREFIX}{}", container.config.id));
    match fs::rename(&container.dir, &aside) {
        Ok(()) => {}
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
/// Bind-mounted host directories are never touched.
pub fn remove(store: &Store, query: &str, force: bool) -> Result<()> {
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
    remove_dir(&container)
}

/// Polls until the container is no longer running (or its owner is gone, which
/// [`refresh`] then records) or `timeout` passes; true if it ended.
pub(crate) fn wait_exit(container: &mut Container, timeout: std::time::Duration) -> bool {
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

/// What `kiln run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub name: Option<String>,
    /// The image as typed.
    pub image_ref: String,
    /// CMD arguments after the image (replace the image's Cmd).
    pub args: Vec<String>,
    /// `--entrypoint`: replaces the image's Entrypoint and clears its Cmd.
    pub entrypoint: Option<String>,
    /// `-e K=V` or `-e K` (the value taken from kiln's environment).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: NetworkMode,
    /// `-v SRC:DST[:ro]`.
    pub volumes: Vec<String>,
    pub limits: CgroupLimits,
    pub auto_remove: bool,
}

/// Docker's argv rules: `--entrypoint` replaces the Entrypoint and clears the Cmd; CMD
/// arguments replace the Cmd.
pub fn command_line(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => image_entrypoint.to_vec(),
    };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if entrypoint.is_none() {
        argv.extend(image_cmd.iter().cloned());
    }
    argv
}

/// Parses `-v SRC:DST[:ro|rw]` (SRC must be an absolute host path; created when missing).
pub fn parse_volume(spec: &str) -> Result<BindMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, readonly) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => {
            return Err(ContainerError::Usage(format!(
                "invalid volume specification: '{spec}'"
            )));
        }
    };
    if !source.starts_with('/') {
        return Err(ContainerError::Usage(format!(
            "invalid volume specification: '{spec}': kiln has no named volumes; the source must be an absolute host path"
        )));
    }
    if !destination.starts_with('/') {
        return Err(ContainerError::Usage(format!(
            "invalid volume specification: '{spec}': mount path must be absolute"
        )));
    }
    Ok(BindMount {
        source: PathBuf::from(source),
        destination: destination.to_string(),
        readonly,
    })
}

/// Parses Docker's memory sizes: `64m`, `1g`, `512k`, `1048576` (binary units).
pub fn parse_memory(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => (&lower[..i], &lower[i..]),
        None => (lower, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(ContainerError::Usage(format!("invalid size: '{text}'"))),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| ContainerError::Usage(format!("invalid size: '{text}'")))?;
    Ok((value * multiplier as f64) as u64)
}

/// A signal number from a StopSignal value (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return Some(n);
    }
    let name = text.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const SIGNALS: [(&str, i32); 12] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("CONT", 18),
        ("STOP", 19),
        ("WINCH", 28),
    ];
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// A new random container id (64 hex digits).
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let path = Path::new("/dev/urandom");
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("read", path))?;
    let mut id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Docker avoids ids that are all digits (they could be read as numbers).
    if id[..12].bytes().all(|b| b.is_ascii_digit()) {
        id.replace_range(0..1, "a");
    }
    Ok(id)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Creates a container for `options` from the image (pulled and unpacked beforehand by
/// the caller; snapshots are unpacked here if missing). The state is `created`, owned
/// by this process.
pub fn create(store: &Store, options: &RunOptions) -> Result<Container> {
    let (_, image) = crate::image::resolve(store, &options.image_ref)?;
    let _lease = store.lease()?;
    crate::image::unpack_image(store, &image)?;
    let mut lowers = Vec::new();
    let chain_ids = image.chain_ids();
    for chain in &chain_ids {
        match crate::snapshot::open_snapshot(store, chain)? {
            Some(snapshot) => lowers.push(snapshot.fs_path()),
            None => {
                return Err(ContainerError::Usage(format!(
                    "snapshot {chain} of image {} is missing",
                    options.image_ref
                )));
            }
        }
    }
    lowers.reverse();
    let config = image.config.config().clone().unwrap_or_default();
    let none = Vec::new();
    let argv = command_line(
        config.entrypoint().as_ref().unwrap_or(&none),
        config.cmd().as_ref().unwrap_or(&none),
        options.entrypoint.as_deref(),
        &options.args,
    );
    if argv.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    let id = new_id()?;
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut env: Vec<String> = config.env().clone().unwrap_or_default();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(&key));
        env.push(entry);
    };
    if !config
        .env()
        .as_ref()
        .is_some_and(|e| e.iter().any(|v| v.starts_with("PATH=")))
    {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    }
    set(format!("HOSTNAME={hostname}"));
    for entry in &options.env {
        if entry.contains('=') {
            set(entry.clone());
        } else if let Ok(value) = std::env::var(entry) {
            set(format!("{entry}={value}"));
        }
    }
    let working_dir = options
        .workdir
        .clone()
        .or_else(|| config.working_dir().clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !working_dir.starts_with('/') {
        return Err(ContainerError::Usage(format!(
            "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )));
    }
    let mut mounts = Vec::new();
    for volume in &options.volumes {
        let mount = parse_volume(volume)?;
        // Docker creates a missing host directory.
        fs::create_dir_all(&mount.source).map_err(io_err("create", &mount.source))?;
        mounts.push(mount);
    }
    let stop_signal = config
        .stop_signal()
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(SIGTERM);
    let containers = store.containers_dir();
    fs::create_dir_all(&containers).map_err(io_err("create", &containers))?;
    let lock_path = containers.join(NAMES_LOCK);
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    let existing = list(store)?;
    let name = match &options.name {
        Some(name) => {
            let name = name.trim_start_matches('/').to_string();
            if !valid_name(&name) {
                return Err(ContainerError::Usage(format!(
                    "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            if let Some(other) = existing.iter().find(|c| c.config.name == name) {
                return Err(ContainerError::NameInUse {
                    name,
                    id: other.config.id.clone(),
                });
            }
            name
        }
        None => names::generate(&id, |n| existing.iter().any(|c| c.config.name == n)),
    };
    let container_config = ContainerConfig {
        id: id.clone(),
        name,
        image: image.config_digest.to_string(),
        image_ref: options.image_ref.clone(),
        command: argv,
        created: now_rfc3339(),
        env,
        working_dir,
        user: options
            .user
            .clone()
            .or_else(|| config.user().clone())
            .unwrap_or_default(),
        hostname,
        network: options.network,
        mounts,
        limits: options.limits,
        lowers,
        snapshots: chain_ids.iter().map(ToString::to_string).collect(),
        auto_remove: options.auto_remove,
        stop_signal,
    };
    // Build it under a hidden name, then rename: a half-made container is never listed.
    let building = containers.join(format!(".new-{id}"));
    let dir = containers.join(&id);
    let made = (|| {
        fs::create_dir(&building).map_err(io_err("create", &building))?;
        for sub in ["upper", "work"] {
            let path = building.join(sub);
            fs::create_dir(&path).map_err(io_err("create", &path))?;
        }
        let log = building.join(LOG_FILE);
        fs::write(&log, b"").map_err(io_err("write", &log))?;
        write_atomic(
            &building.join(CONFIG_FILE),
            &serde_json::to_vec_pretty(&container_config)?,
        )?;
        write_atomic(
            &building.join(STATE_FILE),
            &serde_json::to_vec_pretty(&ContainerState::created())?,
        )?;
        fs::rename(&building, &dir).map_err(io_err("rename", &building))
    })();
    if let Err(error) = made {
        let _ = fs::remove_dir_all(&building);
        return Err(error);
    }
    drop(lock);
    load(&dir)
}

/// Now as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::oci::time::format_rfc3339(now.as_secs() as i64, Some(now.subsec_nanos()))
}

/// Seconds since the epoch (UTC) now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `docker ps`'s STATUS: `Up 3 seconds`, `Exited (0) 19 seconds ago`, `Created`.
pub fn status_text(container: &Container, now: i64) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(crate::image::parse_rfc3339)
            .map(|t| crate::image::humanize_since(now - t))
            .unwrap_or_default()
    };
    match container.state.status {
        Status::Created => "Created".to_string(),
        Status::Running => {
            let ago = since(&container.state.started_at);
            format!("Up {}", ago.strip_suffix(" ago").unwrap_or(&ago))
        }
        Status::Exited => format!(
            "Exited ({}) {}",
            container.state.exit_code.unwrap_or(EXIT_OWNER_GONE),
            since(&container.state.finished_at)
        ),
    }
}

/// `docker ps`'s COMMAND: the argv shell-quoted, truncated to 20 characters with `…`
/// (unless `no_trunc`), then Go-quoted.
pub fn command_text(argv: &[String], no_trunc: bool) -> String {
    let joined = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let shown = if no_trunc || joined.chars().count() <= 20 {
        joined
    } else {
        let mut s: String = joined.chars().take(19).collect();
        s.push('…');
        s
    };
    go_quote(&shown)
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_argv_rules() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ep = s(&["/entry"]);
        let cmd = s(&["sh"]);
        assert_eq!(command_line(&ep, &cmd, None, &[]), s(&["/entry", "sh"]));
        assert_eq!(
            command_line(&ep, &cmd, None, &s(&["ls"])),
            s(&["/entry", "ls"])
        );
        assert_eq!(command_line(&ep, &cmd, Some("echo"), &[]), s(&["echo"]));
        assert_eq!(
            command_line(&ep, &cmd, Some("echo"), &s(&["hi"])),
            s(&["echo", "hi"])
        );
        assert_eq!(command_line(&ep, &cmd, Some(""), &[]), Vec::<String>::new());
    }

    #[test]
    fn ps_command_column() {
        let argv: Vec<String> = ["sh", "-c", "sleep 100; echo done"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_text(&argv, false), "\"sh -c 'sleep 100; e…\"");
        assert_eq!(
            command_text(&argv, true),
            "\"sh -c 'sleep 100; echo done'\""
        );
        assert_eq!(command_text(&["echo".into()], false), "\"echo\"");
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("12q").is_err());
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("QUIT"), Some(3));
        assert_eq!(parse_signal("9"), Some(9));
    }

    #[test]
    fn volumes() {
        let m = parse_volume("/a:/b:ro").unwrap();
        assert!(m.readonly);
        assert_eq!(m.destination, "/b");
        assert!(parse_volume("named:/b").is_err());
        assert!(parse_volume("/a:b").is_err());
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = crate::oci::time::format_rfc3339(1_709_208_000, Some(5));
        assert_eq!(t, "2024-02-29T12:00:00.000000005Z");
        assert_eq!(crate::image::parse_rfc3339(&t), Some(1_709_208_000));
    }
}
