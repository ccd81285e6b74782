//! Container commands: run, ps, rm, logs, stop (and the hidden `__monitor`). Output and
//! exit codes follow the docker CLI's: `run` exits with the container's code, or 125
//! when kiln itself failed.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::progress::{self, Output};
use crate::container::{self, ContainerError, RunOptions, Status};
use crate::image::{self, ImageError};
use crate::sandbox::CgroupLimits;
use crate::store::Store;

use super::image::{GlobalArgs, client, open_store, render, runtime, shown_name};

/// Docker's exit code when `docker run` itself fails.
const EXIT_RUN_FAILED: u8 = 125;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Name the container.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (K=V, or K to take kiln's value).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Bind mount a host directory: SRC:DST[:ro] (SRC is created if missing).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    volume: Vec<String>,
    /// Working directory inside the container (created if missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User: name|uid[:group|gid].
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Replace the image's ENTRYPOINT (and clear its CMD).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Network: host (default), none, bridge, or the name of a network (`kiln network
    /// create`).
    #[arg(long, default_value = "host")]
    network: String,
    /// Another name the container is reached by on its network.
    #[arg(long = "network-alias", value_name = "NAME")]
    network_alias: Vec<String>,
    /// Publish a port on the host: [IP:][HOST_PORT:]PORT[/tcp|udp] (IP defaults to
    /// 127.0.0.1; without --network, the container joins the default `bridge`).
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOST:]PORT")]
    publish: Vec<String>,
    /// Container host name (default: the short container id).
    #[arg(long)]
    hostname: Option<String>,
    /// The platform to run from a multi-platform image (default: this machine's); pulled
    /// for it when missing.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = super::image::parse_platform)]
    platform: Option<crate::plan::Platform>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Maximum number of processes (0 or -1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Keep stdin open and forward it to the container.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Accepted for compatibility: kiln allocates no pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Run a minimal init as PID 1 that forwards signals to the command and reaps
    /// zombies (otherwise the command is PID 1).
    #[arg(long)]
    init: bool,
    /// Add a Linux capability (CAP_NET_ADMIN, net_admin, or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a Linux capability (CAP_CHOWN, chown, or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json (Docker's format),
    /// no-new-privileges[=true|false].
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// The image (pulled when missing).
    image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a container from an image.
    Run(Box<RunArgs>),
    /// List containers.
    Ps {
        /// Show all containers (default: only running ones).
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate ids and commands.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove containers (their writable layer and state; bind-mounted host
    /// directories stay).
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Remove the container's anonymous volumes too (named ones stay).
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Print a container's output (stdout and stderr combined).
    Logs {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Stop running containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", alias = "timeout", default_value_t = 10)]
        time: u64,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Run a command in a running container: its namespaces, root, environment, user and
    /// working directory (unless changed), capabilities and seccomp profile.
    Exec {
        /// Forward standard input.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Accepted for compatibility: kiln allocates no pseudo-terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// Set an environment variable: K=V, or K from kiln's environment (repeatable).
        #[arg(short = 'e', long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// The user (name or uid[:gid]) instead of the container's.
        #[arg(short = 'u', long = "user")]
        user: Option<String>,
        /// The working directory instead of the container's.
        #[arg(short = 'w', long = "workdir")]
        workdir: Option<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Start created or stopped containers again (with their config and filesystem).
    Start {
        /// Stay attached: print the container's output and exit with its exit code.
        #[arg(short = 'a', long = "attach")]
        attach: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Stop running containers (as `stop`), then start them again.
    Restart {
        /// Seconds to wait for the stop before killing.
        #[arg(short = 't', long = "time", alias = "timeout", default_value_t = 10)]
        time: u64,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Internal: owns a detached container (`run -d`).
    #[command(name = "__monitor", hide = true)]
    Monitor { id: String },
    /// Internal: the process `exec` starts in a running container.
    #[command(name = "__enter", hide = true)]
    Enter { state_dir: std::path::PathBuf },
}

/// Runs a container command.
pub fn run(command: ContainerCommand, global: &GlobalArgs) -> Result<ExitCode> {
    let result = match command {
        ContainerCommand::Run(args) => return Ok(run_container(&args, global)),
        ContainerCommand::Ps {
            all,
            quiet,
            no_trunc,
        } => ps(&open_store(global)?, all, quiet, no_trunc),
        ContainerCommand::Rm {
            force,
            volumes,
            containers,
        } => each(&open_store(global)?, &containers, |store, query| {
            container::remove_with_volumes(store, query, force, volumes)
        }),
        ContainerCommand::Logs { container } => logs(&open_store(global)?, &container),
        ContainerCommand::Stop { time, containers } => {
            each(&open_store(global)?, &containers, |store, query| {
                container::stop(store, query, Duration::from_secs(time)).map(|_| ())
            })
        }
        ContainerCommand::Exec {
            interactive,
            tty: _,
            env,
            user,
            workdir,
            container,
            command,
        } => {
            let options = container::ExecOptions {
                argv: command,
                env,
                user,
                workdir,
                stdin: interactive,
            };
            container::exec(&open_store(global)?, &container, &options)
                .map(|code| ExitCode::from(u8::try_from(code).unwrap_or(255)))
                .map_err(anyhow::Error::from)
        }
        ContainerCommand::Start { attach, containers } => {
            let store = open_store(global)?;
            if let ([one], true) = (containers.as_slice(), attach) {
                return start_attached(&store, one);
            }
            each(&store, &containers, |store, query| {
                start_detached(store, query)
            })
        }
        ContainerCommand::Restart { time, containers } => {
            each(&open_store(global)?, &containers, |store, query| {
                container::stop(store, query, Duration::from_secs(time))?;
                start_detached(store, query)
            })
        }
        ContainerCommand::Enter { state_dir } => {
            return Ok(crate::sandbox::enter::enter_main(&state_dir));
        }
        ContainerCommand::Monitor { id } => {
            // Nothing opened yet: whatever descriptors the starter left open (a daemon's,
            // a shell's lock) must not be held for the container's whole life.
            crate::sys::process::close_fds_from_3()?;
            let store = open_store(global)?;
            let code = container::monitor_main(&store, &id)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)));
        }
    };
    match result {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {}", render(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Applies `action` to each named container, printing the name as given on success
/// (as docker does) and every failure; fails if any failed.
fn each(
    store: &Store,
    queries: &[String],
    action: impl Fn(&Store, &str) -> Result<(), ContainerError>,
) -> Result<ExitCode> {
    let mut failed = false;
    for query in queries {
        match action(store, query) {
            Ok(()) => println!("{query}"),
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn logs(store: &Store, query: &str) -> Result<ExitCode> {
    let container = container::resolve(store, query)?;
    let bytes = container::read_log(&container)?;
    let mut out = io::stdout().lock();
    let _ = out.write_all(&bytes);
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// Writes rows as Go's tabwriter does for docker (min width 10, padding 3).
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
            (widest + 3).max(10)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn ps(store: &Store, all: bool, quiet: bool, no_trunc: bool) -> Result<ExitCode> {
    let now = container::now_secs();
    let containers: Vec<_> = container::list(store)?
        .into_iter()
        .filter(|c| all || c.state.status == Status::Running)
        .collect();
    let id = |c: &container::Container| {
        if no_trunc {
            c.config.id.clone()
        } else {
            c.short_id().to_string()
        }
    };
    let mut out = io::stdout().lock();
    if quiet {
        for c in &containers {
            let _ = writeln!(out, "{}", id(c));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for c in &containers {
        let created = image::parse_rfc3339(&c.config.created)
            .map(|t| image::humanize_since(now - t))
            .unwrap_or_default();
        rows.push(vec![
            id(c),
            c.config.image_ref.clone(),
            container::command_text(&c.config.command, no_trunc),
            created,
            container::status_text(c, now),
            container::ports_text(c),
            c.config.name.clone(),
        ]);
    }
    let _ = out.write_all(table(&rows).as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// Makes sure the image is in the store, pulling it (with docker's messages) if not.
fn ensure_image(
    store: &Store,
    global: &GlobalArgs,
    name: &str,
    platform: Option<&crate::plan::Platform>,
) -> Result<()> {
    match image::resolve_platform(store, name, platform) {
        Ok(_) => return Ok(()),
        Err(ImageError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let reference = image::parse_reference(name)?;
    eprintln!("Unable to find image '{}' locally", shown_name(&reference));
    let tag = reference
        .digest()
        .map(|d| d.to_string())
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".to_string());
    eprintln!("{tag}: Pulling from {}", reference.repository());
    let client = client(global)?;
    // Docker prints the pull before a `run` on stderr.
    let pulled = runtime()?.block_on(progress::transfer(
        Output::Stderr,
        false,
        format!("pulling {reference}"),
        |items| image::pull(store, &client, &reference, platform, items),
    ))?;
    eprintln!("Digest: {}", pulled.digest);
    eprintln!(
        "Status: Downloaded newer image for {}",
        shown_name(&reference)
    );
    Ok(())
}

fn run_options(args: &RunArgs) -> Result<RunOptions> {
    let memory_bytes = args
        .memory
        .as_deref()
        .map(container::parse_memory)
        .transpose()?;
    let pids = args.pids_limit.filter(|n| *n > 0).map(|n| n as u64);
    let (network, networks) = container::network_choice(&args.network, &args.network_alias);
    Ok(RunOptions {
        name: args.name.clone(),
        image_ref: args.image.clone(),
        args: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        network,
        networks,
        ports: args
            .publish
            .iter()
            .map(|spec| crate::network::PortBinding::parse(spec))
            .collect::<std::result::Result<_, _>>()?,
        volumes: args.volume.clone(),
        limits: CgroupLimits { memory_bytes, pids },
        auto_remove: args.rm,
        init: args.init,
        platform: args.platform.clone(),
        security: container::parse_security(&args.security_opt, &args.cap_add, &args.cap_drop)?,
        stdin: Default::default(),
        labels: Default::default(),
        tty: args.tty,
    })
}

fn run_container(args: &RunArgs, global: &GlobalArgs) -> ExitCode {
    let attempt = || -> Result<ExitCode> {
        let store = open_store(global)?;
        let options = run_options(args)?;
        ensure_image(&store, global, &args.image, args.platform.as_ref())?;
        let created = container::create(&store, &options).context("creating the container")?;
        if args.detach {
            container::start_detached(&store, &created)?;
            println!("{}", created.config.id);
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = container::run_foreground(&store, created, args.interactive)?;
        if outcome.code == 125
            && let Some(error) = outcome.setup_error
        {
            eprintln!("error: {}", error.trim());
        }
        Ok(ExitCode::from(u8::try_from(outcome.code).unwrap_or(255)))
    };
    match attempt() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", render(&error));
            ExitCode::from(EXIT_RUN_FAILED)
        }
    }
}

/// `start`: a created or stopped container runs again under a monitor, as `run -d` does.
fn start_detached(store: &Store, query: &str) -> container::Result<()> {
    let mut found = container::resolve(store, query)?;
    if container::ready_to_start(&mut found)? {
        container::start_detached(store, &found)?;
    }
    Ok(())
}

/// `start -a`: runs a created or stopped container again in the foreground.
fn start_attached(store: &Store, query: &str) -> Result<ExitCode> {
    let mut found = container::resolve(store, query)?;
    if !container::ready_to_start(&mut found)? {
        return Err(container::ContainerError::Usage(format!(
            "container {query} is running: attach with kiln logs"
        ))
        .into());
    }
    let outcome = container::run_foreground(store, found, false)?;
    Ok(ExitCode::from(u8::try_from(outcome.code).unwrap_or(255)))
}
