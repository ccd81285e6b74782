//! A process in a running sandbox's namespaces (`kiln exec`): kiln re-executes itself as
//! the hidden `kiln __enter STATE_DIR`, single-threaded from its start, which joins the
//! namespaces of the sandbox's PID 1 (its mount namespace last: that makes the
//! container's root its root), forks into the pid namespace, and becomes the command as
//! the sandbox's own init does (working directory, user from the container's passwd,
//! capabilities, seccomp), while the first process forwards signals and returns the
//! exit status.

use std::path::Path;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use super::child::{self, ERROR_FILE, EXIT_SETUP_FAILED};
use super::error::{SandboxError, io_err};
use super::spec::Spec;
use crate::sys;
use crate::sys::process::Fork;

const ENTER_FILE: &str = "enter.json";

/// What `kiln __enter` is handed.
#[derive(Debug, Serialize, Deserialize)]
struct EnterConfig {
    /// The sandbox's PID 1, as the host sees it.
    target: i32,
    spec: Spec,
}

/// Runs `spec`'s command in the namespaces of the sandbox whose PID 1 is `target` (a
/// host pid), on this process's standard output and error (and input with `stdin`);
/// returns its exit code (128 + n when killed by signal n).
pub fn enter(target: i32, spec: &Spec, stdin: bool) -> Result<i32, SandboxError> {
    let exe = std::env::current_exe().map_err(SandboxError::NoExecutable)?;
    let state_dir = super::parent::new_state_dir()?;
    let run = || -> Result<i32, SandboxError> {
        let config = EnterConfig {
            target,
            spec: spec.clone(),
        };
        let path = state_dir.join(ENTER_FILE);
        std::fs::write(&path, serde_json::to_vec(&config)?).map_err(io_err("write", &path))?;
        let mut command = std::process::Command::new(&exe);
        command.arg(ENTER_COMMAND).arg(&state_dir);
        if !stdin {
            command.stdin(std::process::Stdio::null());
        }
        let status = command.status().map_err(SandboxError::Spawn)?;
        if let Ok(reason) = std::fs::read_to_string(state_dir.join(ERROR_FILE)) {
            return Err(SandboxError::Enter(reason));
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    };
    let outcome = run();
    let _ = std::fs::remove_dir_all(&state_dir);
    outcome
}

/// A command started by [`start`] in a running sandbox: read its output from `child`'s
/// pipes, then [`Entered::finish`].
pub struct Entered {
    pub child: tokio::process::Child,
    state_dir: std::path::PathBuf,
}

impl Entered {
    /// Waits for the command; its exit code (128 + n for signal n). Cleans up.
    pub async fn finish(mut self) -> Result<i32, SandboxError> {
        let status = self.child.wait().await.map_err(SandboxError::Wait);
        let error = std::fs::read_to_string(self.state_dir.join(ERROR_FILE));
        let _ = std::fs::remove_dir_all(&self.state_dir);
        let status = status?;
        if let Ok(reason) = error {
            return Err(SandboxError::Enter(reason));
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}

/// [`enter`] for a caller that streams the output (the daemon's exec): standard output and
/// error are piped, and standard input too with `stdin` (else it is empty). Must be called
/// inside a tokio runtime.
pub fn start(target: i32, spec: &Spec, stdin: bool) -> Result<Entered, SandboxError> {
    let exe = std::env::current_exe().map_err(SandboxError::NoExecutable)?;
    let state_dir = super::parent::new_state_dir()?;
    let started = (|| {
        let config = EnterConfig {
            target,
            spec: spec.clone(),
        };
        let path = state_dir.join(ENTER_FILE);
        std::fs::write(&path, serde_json::to_vec(&config)?).map_err(io_err("write", &path))?;
        tokio::process::Command::new(&exe)
            .arg(ENTER_COMMAND)
            .arg(&state_dir)
            .stdin(if stdin {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(SandboxError::Spawn)
    })();
    match started {
        Ok(child) => Ok(Entered { child, state_dir }),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&state_dir);
            Err(error)
        }
    }
}

/// The hidden command that [`enter`] runs.
pub const ENTER_COMMAND: &str = "__enter";

/// Entry point of `kiln __enter STATE_DIR`.
pub fn enter_main(state_dir: &Path) -> ExitCode {
    match join_and_run(state_dir) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(error) => {
            let _ = std::fs::write(state_dir.join(ERROR_FILE), error.to_string());
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn join_and_run(state_dir: &Path) -> Result<i32, SandboxError> {
    let path = state_dir.join(ENTER_FILE);
    let text = std::fs::read(&path).map_err(io_err("read", &path))?;
    let config: EnterConfig = serde_json::from_slice(&text)?;
    sys::process::die_with_parent()?;
    sys::namespace::join_all(config.target)?;
    sys::process::block_supervised_signals()?;
    match sys::process::fork()? {
        Fork::Parent(pid) => Ok(sys::process::supervise(pid)?),
        Fork::Child => {
            sys::process::die_with_parent()?;
            child::become_command(&config.spec)
        }
    }
}
