//! RUN: a fresh overlay upper over the input chain, the command in the sandbox, its output
//! streamed to progress, and the upper committed as the step's layer.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{NodeResult, Result, SolveError, Task, cancelled};
use crate::plan::Exec;
use crate::progress::{Stream, Vertex};
use crate::sandbox::{BindMount, NetworkMode, Rootfs, Sandbox, SpawnOptions, Spec};
use crate::snapshot::overlay;

/// Output lines kept for the error message of a failed step.
const TAIL_LINES: usize = 10;

pub(super) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

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

/// The mounts of the step, as bind mounts of the sandbox.
fn mounts(task: &Task, exec: &Exec, staging: &Path) -> Result<Vec<BindMount>> {
    let mut binds = Vec::new();
    for (i, file) in exec.files.iter().enumerate() {
        let dir = staging.join("files");
        std::fs::create_dir_all(&dir).map_err(SolveError::io("create", &dir))?;
        let path = dir.join(i.to_string());
        std::fs::write(&path, &file.content).map_err(SolveError::io("write", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
            .map_err(SolveError::io("chmod", &path))?;
        binds.push(BindMount {
            source: path,
            destination: file.path.clone(),
            readonly: true,
        });
    }
    for mount in &exec.mounts {
        match mount.kind.as_str() {
            "cache" => {
                let id = mount.id.clone().unwrap_or_else(|| mount.target.clone());
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
                let name = format!("{name}-{}", &crate::cache::key(id.as_bytes(), &[])[..12]);
                let dir = task.shared.store.cache_dir().join("mounts").join(name);
                std::fs::create_dir_all(&dir).map_err(SolveError::io("create", &dir))?;
                binds.push(BindMount {
                    source: dir,
                    destination: mount.target.clone(),
                    readonly: mount.read_only,
                });
            }
            "bind" => {
                let input: &NodeResult = mount
                    .input
                    .and_then(|i| task.inputs.get(i))
                    .ok_or_else(|| SolveError::Internal("bind mount without an input".into()))?;
                let rel = mount
                    .source
                    .as_deref()
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let base: PathBuf = if input.context.is_some() {
                    task.shared.context.root().to_path_buf()
                } else if input.chain.len() == 1 {
                    input.chain[0].clone()
                } else {
                    return Err(task
                        .unsupported("RUN --mount=type=bind from a filesystem of several layers"));
                };
                binds.push(BindMount {
                    source: base.join(rel),
                    destination: mount.target.clone(),
                    readonly: mount.read_only,
                });
            }
            other => {
                return Err(task.unsupported(&format!("RUN --mount=type={other}")));
            }
        }
    }
    Ok(binds)
}

/// Runs `exec` over `chain` (bottom first); the layer ends up in `staging/fs`.
/// Returns (empty, size).
pub(super) async fn run(
    task: &Task,
    exec: &Exec,
    chain: &[PathBuf],
    staging: &Path,
    vertex: &mut Vertex,
) -> Result<(bool, u64)> {
    let binds = mounts(task, exec, staging)?;
    if exec.security == "insecure" {
        return Err(task.unsupported("RUN --security=insecure"));
    }
    let lowers: Vec<PathBuf> = chain.iter().rev().cloned().collect();
    let prepared = overlay::prepare(&lowers, &staging.join("ov"))
        .map_err(|e| SolveError::Internal(e.to_string()))?;
    let network = match exec.network.as_str() {
        "none" => NetworkMode::None,
        _ => NetworkMode::Host,
    };
    let mut env = exec.env.clone();
    for (name, value) in &exec.proxy_env {
        if !env
            .iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |p| p.0) == name)
        {
            env.push(format!("{name}={value}"));
        }
    }
    let mut spec = Spec::new(
        Rootfs::Overlay {
            lowers,
            upper: prepared.upper.clone(),
            work: prepared.work.clone(),
        },
        exec.argv.clone(),
    )
    .with_network(&exec.hostname, network);
    spec.process.env = env;
    spec.process.cwd = exec.workdir.clone();
    spec.process.user = exec.user.clone();
    spec.mounts = binds;

    let _permit = task
        .shared
        .jobs
        .acquire()
        .await
        .map_err(|e| SolveError::Internal(e.to_string()))?;
    let options = SpawnOptions {
        exe: task.shared.options.sandbox_exe.clone(),
        share_empty_net_ns: true,
        ..SpawnOptions::default()
    };
    let mut running = Sandbox::spawn(&spec, &options)
        .map_err(|e| task.step_error(format!("starting the sandbox: {e}"), Vec::new()))?;
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
        .map_err(|e| task.step_error(format!("waiting for the sandbox: {e}"), Vec::new()))?;
    if killed {
        return Err(SolveError::Cancelled);
    }
    if let Some(reason) = status.setup_error {
        return Err(task.step_error(format!("sandbox setup failed: {reason}"), tail.finish()));
    }
    if !status.success() {
        let command = exec.argv.join(" ");
        return Err(task.step_error(
            format!(
                "process \"{command}\" did not complete successfully: exit code: {}",
                status.code
            ),
            tail.finish(),
        ));
    }
    let dest = staging.join("fs");
    overlay::commit(&prepared, &dest).map_err(|e| SolveError::Internal(e.to_string()))?;
    let _ = std::fs::remove_dir_all(staging.join("files"));
    let empty = std::fs::read_dir(&dest)
        .map_err(SolveError::io("read", &dest))?
        .next()
        .is_none();
    Ok((empty, 0))
}
