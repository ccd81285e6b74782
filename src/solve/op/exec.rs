//! RUN: a fresh overlay upper over the input chain, the command in the sandbox, its output
//! streamed to progress, and the upper committed as the step's layer.

use std::collections::VecDeque;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::plan::{CacheSharing, Exec, ExecMount, MountKind, MountOwner};
use crate::progress::{Stream, Vertex};
use crate::sandbox::{
    BindMount, ExitStatus, NetworkMode, Rootfs, Running, Sandbox, SandboxError, Seccomp,
    SpawnOptions, Spec, StepMount, capability, emulation,
};
use crate::snapshot::{self, overlay};
use crate::solve::scheduler::cancelled;
use crate::solve::step::{Task, lock_waiting, open_lock};
use crate::solve::{NodeResult, Result, SolveError, failed, unique_suffix};

/// Output lines kept for the error message of a failed step.
const TAIL_LINES: usize = 10;

/// The last lines of a stream of chunks.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: String,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.lines
                .push_back(line.trim_end_matches(['\n', '\r']).to_string());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines.push_back(std::mem::take(&mut self.partial));
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.lines.into()
    }
}

/// What the sandbox gets for the step's mounts, and what must live as long as the step.
#[derive(Default)]
struct Mounts {
    binds: Vec<BindMount>,
    step_mounts: Vec<StepMount>,
    /// `NAME=value` for secrets with `env=` and `SSH_AUTH_SOCK`.
    env: Vec<String>,
    /// Held cache-mount locks (`sharing=locked|private`; shared ones take a shared lock).
    locks: Vec<std::fs::File>,
    /// Secret files, removed when the step ends (on a tmpfs when `/run` is writable).
    secrets: Option<SecretDir>,
    /// Secret and SSH mounts (destination, description), which a kept failed step leaves out.
    private: Vec<(String, String)>,
}

/// A private directory for one step's secret files.
struct SecretDir(PathBuf);

impl SecretDir {
    fn create(staging: &Path) -> Result<SecretDir> {
        let base = crate::sandbox::runtime_dir().join("secrets");
        let base = if std::fs::create_dir_all(&base).is_ok() {
            base
        } else {
            staging.join("secrets")
        };
        let dir = base.join(unique_suffix());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(SolveError::io("create", &dir))?;
        Ok(SecretDir(dir))
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A secret given with `--secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    pub(in crate::solve) fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            SecretSource::File(path) => std::fs::read(path),
            SecretSource::Env(name) => std::env::var_os(name)
                .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("environment variable {name} is not set"),
                    )
                }),
        }
    }
}

/// Where cache mounts live: `cache-v1/mounts/`.
pub(in crate::solve) fn mounts_dir(store: &crate::store::Store) -> PathBuf {
    store.cache_dir().join("mounts")
}

/// Gives `path` the mount's `mode` (else `default_mode`) and `uid`/`gid` (else root).
fn set_mode_and_owner(path: &Path, owner: &MountOwner, default_mode: u32) -> Result<()> {
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(owner.mode.unwrap_or(default_mode)),
    )
    .map_err(SolveError::io("chmod", path))?;
    Ok(crate::sys::lchown(
        path,
        owner.uid.unwrap_or(0),
        owner.gid.unwrap_or(0),
    )?)
}

/// A cache mount of the step: its id, how it is shared, its owner and where it goes.
struct CacheRequest<'a> {
    id: &'a str,
    sharing: CacheSharing,
    owner: &'a MountOwner,
    target: &'a str,
    read_only: bool,
}

/// The directory of a cache mount instance: `<root>/cache-v1/mounts/<id>-<hash>[-<n>]`.
fn cache_dir(task: &Task, id: &str, instance: usize) -> PathBuf {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{name}-{}", &crate::cache::key(id.as_bytes(), &[])[..12]);
    if instance > 0 {
        name.push_str(&format!("-{instance}"));
    }
    mounts_dir(&task.shared.store).join(name)
}

/// Most instances a `sharing=private` cache mount may have at once.
const MAX_PRIVATE_INSTANCES: usize = 64;
/// Opens (creating it with the mount's owner and mode) a cache mount directory and takes
/// the lock its sharing mode asks for. `private`: the first instance nobody holds.
fn cache_mount(task: &Task, cache: &CacheRequest<'_>) -> Result<(PathBuf, std::fs::File)> {
    let id = cache.id;
    for instance in 0..MAX_PRIVATE_INSTANCES {
        let dir = cache_dir(task, id, instance);
        let parent = dir.parent().unwrap_or(&dir);
        if !dir.exists() {
            std::fs::create_dir_all(parent).map_err(SolveError::io("create", parent))?;
            // Made beside and renamed, so a concurrent step never sees it half set up.
            let fresh = parent.join(format!(".new-{}", unique_suffix()));
            std::fs::create_dir(&fresh).map_err(SolveError::io("create", &fresh))?;
            set_mode_and_owner(&fresh, cache.owner, 0o755)?;
            if std::fs::rename(&fresh, &dir).is_err() {
                let _ = std::fs::remove_dir(&fresh);
            }
        }
        let mut lock_name = dir.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let lock_path = parent.join(lock_name);
        let lock = open_lock(&lock_path)?;
        match cache.sharing {
            CacheSharing::Locked => lock_waiting(&lock, &lock_path, true, &task.cancel)?,
            CacheSharing::Private => match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(SolveError::io("lock", &lock_path)(e));
                }
            },
            CacheSharing::Shared => lock_waiting(&lock, &lock_path, false, &task.cancel)?,
        }
        return Ok((dir, lock));
    }
    Err(task.step_error(
        format!("cache mount {id}: {MAX_PRIVATE_INSTANCES} private instances are all in use"),
        Vec::new(),
    ))
}

/// The mounts of the step. Blocking (cache locks may wait).
fn mounts(task: &Task, exec: &Exec, staging: &Path) -> Result<Mounts> {
    let mut out = Mounts::default();
    heredoc_files(exec, staging, &mut out)?;
    cache_mounts(task, exec, &mut out)?;
    for (number, mount) in exec.mounts.iter().enumerate() {
        match &mount.kind {
            MountKind::Cache { .. } => {}
            MountKind::Bind { input, .. } => {
                let step_mount = bind_mount(task, mount, *input, staging, number)?;
                out.step_mounts.push(step_mount);
            }
            MountKind::Tmpfs { size, .. } => out.step_mounts.push(StepMount::Tmpfs {
                destination: mount.target.clone(),
                size: *size,
                mode: None,
            }),
            MountKind::Secret {
                id,
                env,
                required,
                owner,
            } => {
                let secret = SecretRequest {
                    id,
                    env: env.as_deref(),
                    required: *required,
                    owner,
                    target: &mount.target,
                };
                secret_mount(task, &secret, staging, number, &mut out)?;
            }
            MountKind::Ssh { id, required, .. } => {
                let Some(socket) = task.shared.options.ssh.get(id) else {
                    if *required {
                        return Err(task.step_error(
                            format!("no SSH agent {id} (pass it with --ssh {id}[=SOCKET])"),
                            Vec::new(),
                        ));
                    }
                    continue;
                };
                out.binds.push(BindMount {
                    source: socket.clone(),
                    destination: mount.target.clone(),
                    readonly: true,
                });
                out.private.push((
                    mount.target.clone(),
                    format!("ssh agent {id} at {}", mount.target),
                ));
                if !out.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    out.env.push(format!("SSH_AUTH_SOCK={}", mount.target));
                }
            }
        }
    }
    Ok(out)
}

/// RUN heredoc scripts, written under `staging/files` and bound read-only at their path.
fn heredoc_files(exec: &Exec, staging: &Path, out: &mut Mounts) -> Result<()> {
    for (i, file) in exec.files.iter().enumerate() {
        let dir = staging.join("files");
        std::fs::create_dir_all(&dir).map_err(SolveError::io("create", &dir))?;
        let path = dir.join(i.to_string());
        std::fs::write(&path, &file.content).map_err(SolveError::io("write", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
            .map_err(SolveError::io("chmod", &path))?;
        out.binds.push(BindMount {
            source: path,
            destination: file.path.clone(),
            readonly: true,
        });
    }
    Ok(())
}

/// The cache mounts, their directories bound and their locks held in `out`.
fn cache_mounts(task: &Task, exec: &Exec, out: &mut Mounts) -> Result<()> {
    // Cache locks are taken in one order (by id), so two steps holding some of the same
    // locks cannot wait for each other; one id mounted twice takes its lock once.
    let mut caches: Vec<CacheRequest<'_>> = exec
        .mounts
        .iter()
        .filter_map(|mount| match &mount.kind {
            MountKind::Cache {
                id, sharing, owner, ..
            } => Some(CacheRequest {
                id,
                sharing: *sharing,
                owner,
                target: &mount.target,
                read_only: mount.read_only,
            }),
            _ => None,
        })
        .collect();
    caches.sort_by_key(|cache| (cache.id, cache.target));
    let mut taken: Vec<(&str, PathBuf)> = Vec::new();
    for cache in caches {
        let dir = match taken.iter().find(|(taken_id, _)| *taken_id == cache.id) {
            Some((_, dir)) if cache.sharing != CacheSharing::Private => dir.clone(),
            _ => {
                let (dir, lock) = cache_mount(task, &cache)?;
                out.locks.push(lock);
                taken.push((cache.id, dir.clone()));
                dir
            }
        };
        out.binds.push(BindMount {
            source: dir,
            destination: cache.target.to_string(),
            readonly: cache.read_only,
        });
    }
    Ok(())
}

/// A bind mount of input `input` (a stage, an image or the build context) at the
/// mount's source; writes to a `rw` one land in a throwaway upper.
fn bind_mount(
    task: &Task,
    mount: &ExecMount,
    input: usize,
    staging: &Path,
    number: usize,
) -> Result<StepMount> {
    let input: &NodeResult = task
        .inputs
        .get(input)
        .ok_or_else(|| SolveError::MissingInput {
            name: task.op.metadata.name.clone(),
            input,
        })?;
    // Rooted and cleaned, so `..` stops at the top of the source.
    let path =
        crate::gocompat::go_path_clean(&format!("/{}", mount.source.as_deref().unwrap_or("")));
    let lowers: Vec<PathBuf> = match &input.context {
        Some(context) => vec![context_view(task, &context.0, staging, number)?],
        None => input.chain.iter().rev().cloned().collect(),
    };
    // Writes to a `rw` bind land in a throwaway upper, never in the source.
    let upper = if mount.read_only {
        None
    } else {
        let dir = staging.join(format!("bind-{number}"));
        for sub in ["upper", "work"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(SolveError::io("create", &path))?;
        }
        Some((dir.join("upper"), dir.join("work")))
    };
    let empty = || {
        let empty = staging.join(format!("bind-{number}-empty"));
        std::fs::create_dir_all(&empty).map_err(SolveError::io("create", &empty))?;
        Ok::<_, SolveError>(empty)
    };
    Ok(match (lowers.as_slice(), upper) {
        // A read-only bind of the empty filesystem (a scratch stage).
        ([], None) => StepMount::Within {
            root: empty()?,
            path: "/".into(),
            destination: mount.target.clone(),
            readonly: true,
        },
        ([only], None) => StepMount::Within {
            root: only.clone(),
            path,
            destination: mount.target.clone(),
            readonly: true,
        },
        (_, upper) => {
            let lowers = if lowers.is_empty() {
                vec![empty()?]
            } else {
                lowers
            };
            StepMount::Overlay {
                lowers,
                upper,
                path,
                destination: mount.target.clone(),
            }
        }
    })
}

/// A secret mount of the step.
struct SecretRequest<'a> {
    id: &'a str,
    env: Option<&'a str>,
    required: bool,
    owner: &'a MountOwner,
    /// Empty: only the variable `env` gets it.
    target: &'a str,
}

/// A secret: the variable `env` and/or a private file bound read-only at the target.
/// A missing secret that is not required is skipped.
fn secret_mount(
    task: &Task,
    secret: &SecretRequest<'_>,
    staging: &Path,
    number: usize,
    out: &mut Mounts,
) -> Result<()> {
    let id = secret.id;
    let Some(source) = task.shared.options.secrets.get(id) else {
        if secret.required {
            return Err(task.step_error(
                format!("secret {id} not found (pass it with --secret id={id},src=FILE)"),
                Vec::new(),
            ));
        }
        return Ok(());
    };
    let value = source
        .read()
        .map_err(|e| task.step_failed(format!("reading secret {id}: {e}"), e))?;
    if let Some(name) = secret.env {
        out.env
            .push(format!("{name}={}", String::from_utf8_lossy(&value)));
        out.private
            .push((String::new(), format!("secret {id} in ${name}")));
    }
    if !secret.target.is_empty() {
        if out.secrets.is_none() {
            out.secrets = Some(SecretDir::create(staging)?);
        }
        let dir = &out.secrets.as_ref().expect("just made").0;
        let path = dir.join(number.to_string());
        std::fs::write(&path, &value).map_err(SolveError::io("write", &path))?;
        set_mode_and_owner(&path, secret.owner, 0o400)?;
        out.binds.push(BindMount {
            source: path,
            destination: secret.target.to_string(),
            readonly: true,
        });
        out.private.push((
            secret.target.to_string(),
            format!("secret {id} at {}", secret.target),
        ));
    }
    Ok(())
}

/// The build context as a bind mount sees it: the directory itself when nothing in it is
/// hidden, else a tree of just the selected entries (hard links where the filesystem
/// allows, copies otherwise), so `.dockerignore`d files stay out of RUN as out of COPY.
fn context_view(
    task: &Task,
    selection: &crate::source::Selection,
    staging: &Path,
    number: usize,
) -> Result<PathBuf> {
    let context = &task.shared.context;
    if !context.filters() {
        return Ok(context.root().to_path_buf());
    }
    let view = staging.join(format!("context-{number}"));
    std::fs::create_dir_all(&view).map_err(SolveError::io("create", &view))?;
    for entry in &selection.entries {
        let from = context.root().join(&entry.os_path);
        let to = view.join(&entry.os_path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(SolveError::io("create", parent))?;
        }
        match entry.kind {
            crate::source::FileKind::Dir => {
                std::fs::create_dir_all(&to).map_err(SolveError::io("create", &to))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(entry.mode))
                    .map_err(SolveError::io("chmod", &to))?;
            }
            crate::source::FileKind::Symlink => {
                if let Some(target) = &entry.link_target {
                    std::os::unix::fs::symlink(target, &to)
                        .map_err(SolveError::io("symlink", &to))?;
                }
            }
            crate::source::FileKind::File => {
                // link(2) never follows a link; the copy opens without following one and
                // checks it still has the file the walk selected.
                if std::fs::hard_link(&from, &to).is_err() {
                    let mut source = std::fs::File::options()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&from)
                        .map_err(SolveError::io("open", &from))?;
                    let meta = source.metadata().map_err(SolveError::io("stat", &from))?;
                    if (meta.dev(), meta.ino()) != entry.inode() {
                        return Err(task.step_error(
                            format!("{} changed while the build ran", entry.path),
                            Vec::new(),
                        ));
                    }
                    let mut target =
                        std::fs::File::create_new(&to).map_err(SolveError::io("create", &to))?;
                    std::io::copy(&mut source, &mut target)
                        .map_err(SolveError::io("copy", &from))?;
                    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(entry.mode))
                        .map_err(SolveError::io("chmod", &to))?;
                }
            }
            crate::source::FileKind::Other => {}
        }
    }
    Ok(view)
}

/// Runs `exec` over `chain` (bottom first); the layer ends up in `staging/fs`.
/// Returns (empty, size).
pub(in crate::solve) async fn run(
    task: &Task,
    exec: &Exec,
    chain: &[PathBuf],
    staging: &Path,
    vertex: &mut Vertex,
) -> Result<(bool, u64)> {
    check_runnable(task, exec)?;
    let lowers: Vec<PathBuf> = chain.iter().rev().cloned().collect();
    let prepared = overlay::prepare(&lowers, &staging.join("ov"))?;
    let network = match exec.network.as_str() {
        "none" => NetworkMode::None,
        _ => NetworkMode::Host,
    };
    let mut spec = Spec::new(
        Rootfs::Overlay {
            lowers,
            upper: prepared.upper.clone(),
            work: prepared.work.clone(),
        },
        exec.argv.clone(),
    )
    .with_network(&exec.hostname, network);
    spec.process.cwd = exec.workdir.clone();
    spec.process.user = exec.user.clone();
    if exec.security == "insecure" {
        // BuildKit's security.insecure: no seccomp filter, every capability (the build
        // only gets here with `--allow security.insecure`).
        spec.seccomp = Seccomp::Unconfined;
        spec.capabilities = capability::all();
        spec.no_new_privs = false;
    }

    let _permit = task.shared.job_permit().await?;
    // Cache locks may wait for another step: set the mounts up off the reactor.
    let mounts = {
        let setup = || mounts(task, exec, staging);
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => setup(),
            _ => tokio::task::block_in_place(setup),
        }?
    };
    let mut mounts = mounts;
    let mut env = process_env(exec);
    env.append(&mut mounts.env);
    spec.process.env = env;
    spec.mounts = std::mem::take(&mut mounts.binds);
    spec.step_mounts = std::mem::take(&mut mounts.step_mounts);
    let options = SpawnOptions {
        exe: task.shared.options.sandbox_exe.clone(),
        share_empty_net_ns: true,
        ..SpawnOptions::default()
    };
    let running = Sandbox::spawn(&spec, &options)
        .map_err(|e| task.step_failed(format!("starting the sandbox: {e}"), e))?;
    let (status, tail) = follow(task, running, vertex).await?;
    if let Some(reason) = status.setup_error {
        return Err(task.step_error(format!("sandbox setup failed: {reason}"), tail.finish()));
    }
    if !status.success() {
        // Cache locks released and secret files removed before the step is kept.
        let private = std::mem::take(&mut mounts.private);
        drop(mounts);
        keep_failed(task, exec, &spec, staging, private);
        let command = exec.argv.join(" ");
        return Err(task.step_error(
            format!(
                "process \"{command}\" did not complete successfully: exit code: {}",
                status.code
            ),
            tail.finish(),
        ));
    }
    drop(mounts);
    // The layer BuildKit's differ writes: what the step left unchanged in the upper goes.
    let settle = || {
        let scratch = staging.join("lower-view");
        snapshot::settle::settle(&prepared.upper, &prepared.lowers, &scratch)
    };
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => settle(),
        _ => tokio::task::block_in_place(settle),
    }?;
    commit_layer(&prepared, staging)
}

/// Keeps the failed step for `kiln debug` when it is the build's first, with the step's
/// own environment (no secret values). Failing to keep it is a warning.
fn keep_failed(
    task: &Task,
    exec: &Exec,
    spec: &Spec,
    staging: &Path,
    private: Vec<(String, String)>,
) {
    let mut slot = task
        .shared
        .failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if slot.is_some() {
        return;
    }
    let mut spec = spec.clone();
    spec.process.env = process_env(exec);
    let name = &task.op.metadata.name;
    match failed::keep(&task.shared.store, name, &spec, staging, private) {
        Ok(dir) => *slot = Some(dir),
        Err(error) => task.shared.sink.send(crate::progress::Event::BuildWarning {
            message: format!("{name}: the failed step was not kept for debugging: {error}"),
        }),
    }
}

/// What kiln cannot run: binaries of another platform.
fn check_runnable(task: &Task, exec: &Exec) -> Result<()> {
    let host = crate::plan::Platform::host();
    if let Ok(platform) = crate::plan::Platform::parse(&exec.platform)
        && !platform.runs_on(&host)
    {
        return check_foreign(task, &platform, &host);
    }
    Ok(())
}

/// A RUN for a platform not the host's runs when the CPU runs its binaries too (`386` on
/// amd64) or binfmt_misc has an emulator for them that works inside the sandbox; the
/// kernel then starts the emulator for every binary of it.
fn check_foreign(
    task: &Task,
    platform: &crate::plan::Platform,
    host: &crate::plan::Platform,
) -> Result<()> {
    if platform.os != host.os {
        return Err(task.unsupported(&format!("RUN for {platform} on this {host} machine")));
    }
    if emulation::runs_natively(&platform.architecture) {
        return Ok(());
    }
    match emulation::emulator_for(&platform.architecture, platform.variant.as_deref()) {
        Ok(_) => Ok(()),
        Err(error) => Err(task.step_failed(
            format!("cannot run {platform} binaries on this {host} machine: {error}"),
            SandboxError::from(error),
        )),
    }
}

/// The step's environment: its own, plus each proxy variable it does not set itself.
fn process_env(exec: &Exec) -> Vec<String> {
    let mut env = exec.env.clone();
    for (name, value) in &exec.proxy_env {
        if !env
            .iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |p| p.0) == name)
        {
            env.push(format!("{name}={value}"));
        }
    }
    env
}

/// Streams the sandbox's output to progress until it exits (killing it on cancel);
/// its exit status and the last lines of output.
async fn follow(
    task: &Task,
    mut running: Running,
    vertex: &mut Vertex,
) -> Result<(ExitStatus, Tail)> {
    let mut tail = Tail::default();
    let mut cancel = task.cancel.clone();
    let mut killed = false;
    loop {
        tokio::select! {
            event = running.events.recv() => match event {
                Some(event) => {
                    let stream = match event.stream {
                        crate::sandbox::Stream::Stdout => Stream::Stdout,
                        crate::sandbox::Stream::Stderr => Stream::Stderr,
                    };
                    tail.push(&event.data);
                    vertex.log(stream, &event.data);
                }
                None => break,
            },
            _ = cancelled(&mut cancel), if !killed => {
                killed = true;
                let _ = running.kill();
            }
        }
    }
    let status = running
        .wait()
        .await
        .map_err(|e| task.step_failed(format!("waiting for the sandbox: {e}"), e))?;
    if killed {
        return Err(SolveError::Cancelled);
    }
    Ok((status, tail))
}

/// Moves the overlay's upper to `staging/fs` and removes the rest of `staging`.
/// Returns (empty, size).
fn commit_layer(prepared: &overlay::Prepared, staging: &Path) -> Result<(bool, u64)> {
    let dest = staging.join("fs");
    overlay::commit(prepared, &dest)?;
    for leftover in std::fs::read_dir(staging).map_err(SolveError::io("read", staging))? {
        let leftover = leftover.map_err(SolveError::io("read", staging))?.path();
        if leftover != dest {
            let _ = std::fs::remove_dir_all(&leftover);
        }
    }
    let empty = std::fs::read_dir(&dest)
        .map_err(SolveError::io("read", &dest))?
        .next()
        .is_none();
    Ok((empty, 0))
}
