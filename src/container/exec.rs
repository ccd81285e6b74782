//! Running a container: in the foreground (output copied to the log), or detached under
//! a `kiln __monitor <id>` process; and stopping one.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::io_err;
use super::state::{remove_dir, wait_exit};
use super::{
    Container, ContainerError, ProcessId, Result, SIGKILL, Status, load, now_rfc3339, resolve,
};
use crate::sandbox::child::EXIT_SETUP_FAILED;
use crate::sandbox::{NetworkMode, Sandbox, SpawnOptions, Spec, StdioMode, Stream};
use crate::store::Store;

/// The hidden subcommand of the monitor process.
pub const MONITOR_COMMAND: &str = "__monitor";

/// How a foreground run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The command's exit code (128 + n for signal n; 125 when the sandbox failed).
    pub code: i32,
    /// Why the sandbox could not start the command, when it could not.
    pub setup_error: Option<String>,
}

impl RunOutcome {
    /// kiln could not start the command (exit 125), because of `error`.
    fn setup_failed(error: impl std::fmt::Display) -> RunOutcome {
        RunOutcome {
            code: i32::from(EXIT_SETUP_FAILED),
            setup_error: Some(error.to_string()),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ContainerError::Runtime)
}

fn record_start(
    container: &mut Container,
    pid: Option<u32>,
    ports: Vec<crate::network::PortBinding>,
) -> Result<()> {
    let pid = pid.and_then(|p| i32::try_from(p).ok());
    container.state.status = Status::Running;
    container.state.ports = ports;
    container.state.pid = pid;
    container.state.process = pid.and_then(ProcessId::of);
    container.state.owner = ProcessId::current();
    container.state.started_at = Some(now_rfc3339());
    container.save_state()?;
    super::state::event(container, "start", &[]);
    Ok(())
}

fn record_end(container: &mut Container, outcome: &RunOutcome) -> Result<()> {
    // Someone may have removed it meanwhile (`rm -f`): then there is nothing to record.
    if !container.dir.exists() {
        return Ok(());
    }
    container.state.status = Status::Exited;
    container.state.ports.clear();
    container.state.exit_code = Some(outcome.code);
    container.state.finished_at = Some(now_rfc3339());
    container.state.error = outcome.setup_error.clone();
    if container.state.started_at.is_none() {
        container.state.started_at = container.state.finished_at.clone();
    }
    container.save_state()?;
    super::state::event(container, "die", &[("exitCode", &outcome.code.to_string())]);
    if container.config.auto_remove {
        remove_dir(container)?;
    }
    Ok(())
}

/// A container's network namespace, plugged into its bridge networks, and its published
/// ports; held while it runs.
struct Wired {
    namespace: OwnedFd,
    published: crate::network::Published,
}

impl Wired {
    /// The path the sandbox joins the namespace by.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.namespace.as_raw_fd()
        ))
    }
}

/// Joins the container's networks in a new namespace, publishes its ports and writes
/// its `/etc/hosts` into `spec`; nothing for the host's network or none.
fn wire(store: &Store, container: &Container, spec: &mut Spec) -> Result<Option<Wired>> {
    let config = &container.config;
    if config.network != NetworkMode::Bridge {
        return Ok(None);
    }
    let namespace = crate::sys::namespace::new_empty_net_ns()?;
    let member = crate::network::Member {
        id: config.id.clone(),
        name: config.name.clone(),
        hostname: config.hostname.clone(),
    };
    let endpoints = crate::network::join(store, &member, &config.networks, &namespace)?;
    let wired = (|| {
        let first = endpoints.first().map(|e| e.address);
        let published = match first {
            Some(address) => crate::network::publish(&config.ports, address)?,
            None => crate::network::Published {
                bindings: Vec::new(),
            },
        };
        spec.etc.hosts = crate::network::hosts_for(store, &config.id, &config.hostname)?;
        Ok::<_, ContainerError>(Wired {
            namespace,
            published,
        })
    })();
    if wired.is_err() {
        let _ = crate::network::leave(store, &config.id);
    }
    wired.map(Some)
}

/// Spawns the sandbox, records it running, forwards (and logs) its output, waits.
async fn supervise(
    store: &Store,
    container: &mut Container,
    stdio: StdioMode,
    log: Option<&mut fs::File>,
) -> Result<RunOutcome> {
    let mut spec = container.spec();
    let wired = match wire(store, container, &mut spec) {
        Ok(wired) => wired,
        Err(error) => return Ok(RunOutcome::setup_failed(error)),
    };
    let outcome = run_wired(store, container, &spec, wired.as_ref(), stdio, log).await;
    if wired.is_some() {
        drop(wired);
        crate::network::leave(store, &container.config.id)?;
    }
    outcome
}

async fn run_wired(
    store: &Store,
    container: &mut Container,
    spec: &Spec,
    wired: Option<&Wired>,
    stdio: StdioMode,
    log: Option<&mut fs::File>,
) -> Result<RunOutcome> {
    let options = SpawnOptions {
        stdio,
        net_ns: wired.map(Wired::path),
        ..Default::default()
    };
    // Not while a `cp` has the stopped container's layer mounted; held until it is
    // recorded running, after which a `cp` goes through its PID 1.
    let _lock = super::networks::lock_config(container)?;
    let mut running = match Sandbox::spawn(spec, &options) {
        Ok(running) => running,
        Err(error) => return Ok(RunOutcome::setup_failed(error)),
    };
    let ports = match wired {
        Some(wired) => {
            let hosts = running.state_dir().join("hosts");
            crate::network::set_hosts_file(store, &container.config.id, &hosts)?;
            wired.published.bindings.clone()
        }
        None => Vec::new(),
    };
    record_start(container, running.pid(), ports)?;
    drop(_lock);
    if let Some(log) = log {
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        while let Some(event) = running.events.recv().await {
            // A closed terminal must not stop the container; the log still gets it.
            let _ = match event.stream {
                Stream::Stdout => stdout.write_all(&event.data).and_then(|()| stdout.flush()),
                Stream::Stderr => stderr.write_all(&event.data),
            };
            let _ = log.write_all(&event.data);
        }
    }
    let status = running.wait().await?;
    Ok(RunOutcome {
        code: status.code,
        setup_error: status.setup_error,
    })
}

/// Runs a created container in the foreground: stdin forwarded when `interactive`,
/// stdout/stderr forwarded and copied to the log. Records the exit and, with `--rm`,
/// removes the container.
pub fn run_foreground(
    store: &Store,
    mut container: Container,
    interactive: bool,
) -> Result<RunOutcome> {
    let log_path = container.log_path();
    let mut log = fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(io_err("open", &log_path))?;
    let stdio = if interactive {
        StdioMode::PipedWithStdin
    } else {
        StdioMode::Piped
    };
    let outcome = runtime()?.block_on(supervise(store, &mut container, stdio, Some(&mut log)));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => RunOutcome::setup_failed(error),
    };
    record_end(&mut container, &outcome)?;
    Ok(outcome)
}

/// `kiln run -d`: starts `kiln __monitor <id>` in its own session with stdio on the
/// container's log, waits until the container is running (or already ended), and
/// returns.
pub fn start_detached(store: &Store, container: &Container) -> Result<()> {
    // The monitor must outlive this process: it is deliberately never waited for.
    start_monitor(store, container).map(drop)?;
    match start_failure(container) {
        Some(reason) => Err(ContainerError::StartFailed(reason)),
        None => Ok(()),
    }
}

/// Why a container that [`start_monitor`] just started could not run (a port already
/// allocated, a network gone), as its monitor recorded it; `None` when it runs or ran.
pub fn start_failure(container: &Container) -> Option<String> {
    let now = load(&container.dir).ok()?;
    match (now.state.status, now.state.error) {
        (Status::Exited, Some(reason)) => Some(reason),
        _ => None,
    }
}

/// [`start_detached`], returning the monitor process: a long-lived caller (the daemon)
/// waits for it, so that ended monitors do not stay behind as zombies.
// The monitor is returned to the caller, who waits for it.
#[allow(clippy::zombie_processes)]
pub fn start_monitor(store: &Store, container: &Container) -> Result<Child> {
    let exe = std::env::current_exe().map_err(io_err("locate", "/proc/self/exe"))?;
    let log_path = container.log_path();
    let open_log = || {
        fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(io_err("open", &log_path))
    };
    let root = fs::canonicalize(store.root()).map_err(io_err("resolve", store.root()))?;
    // The command's standard input, inherited through the monitor: the fifo an attach
    // writes into, opened here so that it is open before the container runs.
    let stdin = if container.config.stdin.open {
        let fifo = container.stdin_path();
        Stdio::from(crate::sys::fifo::open_reader(&fifo).map_err(io_err("open", &fifo))?)
    } else {
        Stdio::null()
    };
    let mut child = Command::new(&exe)
        .arg("--root")
        .arg(&root)
        .arg(MONITOR_COMMAND)
        .arg(&container.config.id)
        .stdin(stdin)
        .stdout(open_log()?)
        .stderr(open_log()?)
        .spawn()
        .map_err(io_err("start", &exe))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut current = container.clone();
    loop {
        let _ = current.reload();
        if current.state.status != Status::Created {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // A quick container may have run, ended and (with `--rm`) gone since the
            // last look: that monitor did take over.
            if !current.dir.exists()
                || (current.reload().is_ok() && current.state.status != Status::Created)
            {
                return Ok(child);
            }
            // It ended before taking over: say why (it wrote to the log).
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(ContainerError::MonitorExited {
                status,
                log: log.trim().to_string(),
            });
        }
        if !current.dir.exists() || Instant::now() >= deadline {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Entry point of `kiln __monitor <id>`: owns a detached container until it exits.
pub fn monitor_main(store: &Store, id: &str) -> Result<i32> {
    // Leave the caller's session: its terminal's hangup or Ctrl-C must not reach us.
    let _ = crate::sys::process::new_session();
    let dir = store.containers_dir().join(id);
    let mut container = load(&dir)?;
    container.state.owner = ProcessId::current();
    container.save_state()?;
    // Input open beyond the first attach: a writer kept until the command ends, so that
    // the command never reads the end of it.
    let stdin = &container.config.stdin;
    let _keeper = if stdin.open && !stdin.once {
        let fifo = container.stdin_path();
        Some(crate::sys::fifo::open_keeper(&fifo).map_err(io_err("open", &fifo))?)
    } else {
        None
    };
    // Our stdin is the container's, our stdout and stderr are the log; the sandbox
    // inherits them.
    let outcome = runtime()?.block_on(supervise(store, &mut container, StdioMode::Inherit, None));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => RunOutcome::setup_failed(error),
    };
    if let Some(error) = &outcome.setup_error {
        eprintln!("kiln: {error}");
    }
    record_end(&mut container, &outcome)?;
    Ok(outcome.code)
}

/// `kiln stop`: the stop signal (the image's StopSignal, else SIGTERM), then SIGKILL
/// after `timeout`; waits for the exit. A container that is not running is left alone.
pub fn stop(store: &Store, query: &str, timeout: Duration) -> Result<Container> {
    let mut container = resolve(store, query)?;
    if container.state.status != Status::Running {
        return Ok(container);
    }
    let signal_it = |container: &Container, signal: i32| {
        if let Some(process) = container.state.process
            && process.is_alive()
        {
            let _ = crate::sys::process::send_signal(process.pid, signal);
        }
    };
    signal_it(&container, container.config.stop_signal);
    if !wait_exit(&mut container, timeout) {
        signal_it(&container, SIGKILL);
        wait_exit(&mut container, Duration::from_secs(10));
    }
    Ok(container)
}

/// `kill`: sends `signal` to a running container's command.
pub fn kill(store: &Store, query: &str, signal: i32) -> Result<Container> {
    let container = resolve(store, query)?;
    let process = container
        .state
        .process
        .filter(|p| container.state.status == Status::Running && p.is_alive());
    let Some(process) = process else {
        return Err(ContainerError::NotRunning(container.config.id.clone()));
    };
    crate::sys::process::send_signal(process.pid, signal)?;
    Ok(container)
}

/// What `kiln exec` runs in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub argv: Vec<String>,
    /// `-e K=V` (or `K`, from kiln's environment), over the container's environment.
    pub env: Vec<String>,
    /// `-u`: else the container's user.
    pub user: Option<String>,
    /// `-w`: else the container's working directory.
    pub workdir: Option<String>,
    /// `-i`: standard input forwarded.
    pub stdin: bool,
}

/// `kiln exec`: runs a command in the running container `query` — its namespaces and
/// root, its environment, user and working directory unless `options` change them, its
/// capabilities and seccomp profile — on this terminal; returns the exit code.
pub fn exec(store: &Store, query: &str, options: &ExecOptions) -> Result<i32> {
    let (init, spec) = exec_spec(store, query, options)?;
    Ok(crate::sandbox::enter::enter(init, &spec, options.stdin)?)
}

/// [`exec`] with the output piped, for the daemon: the started command.
pub fn exec_start(
    store: &Store,
    query: &str,
    options: &ExecOptions,
) -> Result<crate::sandbox::enter::Entered> {
    let (init, spec) = exec_spec(store, query, options)?;
    Ok(crate::sandbox::enter::start(init, &spec, options.stdin)?)
}

/// The host pid of a running container's PID 1.
pub(super) fn init_pid(container: &Container) -> Result<i32> {
    let outer = match (container.state.status, container.state.process) {
        (Status::Running, Some(process)) if process.is_alive() => process.pid,
        _ => return Err(ContainerError::NotRunning(container.config.name.clone())),
    };
    // The sandbox's first process waits outside; its child is the container's PID 1.
    let children =
        fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| ContainerError::NotRunning(container.config.name.clone()))
}

/// The running container's PID 1 (a host pid) and the spec of `options`' command in it.
fn exec_spec(store: &Store, query: &str, options: &ExecOptions) -> Result<(i32, Spec)> {
    if crate::sys::userns::in_user_namespace() {
        return Err(ContainerError::Usage(
            "kiln exec without root is not supported yet".to_string(),
        ));
    }
    let mut container = resolve(store, query)?;
    let _ = super::refresh(&mut container);
    let init = init_pid(&container)?;
    let mut spec = container.spec();
    spec.process.argv = options.argv.clone();
    spec.process.env = super::create::environment(
        Some(container.config.env.as_slice()),
        &container.config.hostname,
        &options.env,
    );
    if let Some(user) = &options.user {
        spec.process.user = user.clone();
    }
    if let Some(workdir) = &options.workdir {
        spec.process.cwd = workdir.clone();
    }
    Ok((init, spec))
}
