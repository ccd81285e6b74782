//! The command line: the only place that prints, formats errors for people and
//! picks exit codes (0 success, 1 failure, 2 bad usage or an invalid Dockerfile).

mod build;
mod container;
mod debug;
mod diagnostic;
mod generate;
mod image;
mod network;
pub mod progress;
mod rootless;
mod serve;
mod system;
mod volume;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The program's name in usage, completions and man pages.
const NAME: &str = "kiln";

/// Exit code for a Dockerfile or command line that is wrong.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = NAME,
    version,
    about = "Build container images from Dockerfiles, daemonless",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: image::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile; `kiln build history` lists past builds.
    Build(Box<build::BuildCommand>),
    /// Reopen the failed RUN step of a recorded build: a shell, or COMMAND, in its
    /// filesystem as the command left it, with its mounts, environment, user and working
    /// directory. Nothing done there is kept.
    Debug(debug::DebugArgs),
    /// Internal: the sandbox child that kiln re-executes for each RUN step.
    #[command(name = "__sandbox", hide = true)]
    Sandbox {
        /// The sandbox's state directory (holds spec.json).
        state_dir: std::path::PathBuf,
    },
    #[command(flatten)]
    Image(image::ImageCommand),
    #[command(flatten)]
    Container(container::ContainerCommand),
    /// Manage bridge networks.
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// Manage named volumes.
    Volume {
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// Manage the build cache.
    Builder {
        #[command(subcommand)]
        command: system::BuilderCommand,
    },
    /// Serve the Docker Engine API on a unix socket, so the docker CLI and the Docker
    /// SDKs drive kiln (until SIGINT or SIGTERM).
    Serve(serve::ServeArgs),
    /// Store-wide information.
    System {
        #[command(subcommand)]
        command: system::SystemCommand,
    },
    /// Print the shell completion script for SHELL (e.g. `source <(kiln completion bash)`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages, one per command (kiln.1, kiln-build.1, …), into DIR.
    Man {
        /// Where the pages go (made when missing), e.g. /usr/local/share/man/man1.
        dir: std::path::PathBuf,
    },
}

impl Command {
    /// Whether the command reads or writes the store (and, without root, must run in a
    /// user namespace).
    /// `kiln exec`: without root, it runs in the user's own namespace and joins the
    /// container's.
    fn joins_a_container(&self) -> bool {
        matches!(
            self,
            Command::Container(container::ContainerCommand::Exec { .. })
        )
    }

    fn uses_the_store(&self) -> bool {
        !matches!(
            self,
            Command::Completion { .. }
                | Command::Man { .. }
                | Command::Sandbox { .. }
                | Command::System {
                    command: system::SystemCommand::Check | system::SystemCommand::Binfmt { .. }
                }
        )
    }
}

/// Runs the command line and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    if let Err(error) = rootless::enter_if_child() {
        eprintln!("error: {error:#}");
        return ExitCode::from(125);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    // Commands that only print end quietly when their reader goes (`kiln images | head`).
    // Not `run` (a closed terminal must not stop the container), not `serve` (a client
    // that goes must not stop the daemon).
    if matches!(
        cli.command,
        Command::Image(_)
            | Command::Volume { .. }
            | Command::Network { .. }
            | Command::System { .. }
            | Command::Builder { .. }
    ) {
        crate::sys::process::default_sigpipe();
    }
    if rootless::needed() && cli.command.uses_the_store() {
        return match crate::store::select_root(cli.global.root.as_deref()) {
            Ok(root) => {
                rootless::rerun(&root, !cli.command.joins_a_container()).unwrap_or_else(|error| {
                    eprintln!("error: running without root: {error:#}");
                    ExitCode::from(125)
                })
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome = match cli.command {
        Command::Build(args) => build::run(*args, &cli.global),
        Command::Debug(args) => debug::run(args, &cli.global),
        Command::Sandbox { state_dir } => return crate::sandbox::child_main(&state_dir),
        Command::Image(command) => image::run(command, &cli.global),
        Command::Container(command) => container::run(command, &cli.global),
        Command::Serve(args) => serve::run(&args, &cli.global),
        Command::Volume { command } => volume::run(command, &cli.global),
        Command::Network { command } => network::run(command, &cli.global),
        Command::Builder { command } => system::builder(command, &cli.global),
        Command::System { command } => system::system(command, &cli.global),
        Command::Completion { shell } => generate::completion(shell, Cli::command()),
        Command::Man { dir } => generate::man_pages(&dir, Cli::command()),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // Each cause once: an error that shows its source in its message is not repeated.
            eprintln!("error: {}", image::render(&error));
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command-line value that is wrong (exit status 2), found after clap's parsing.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
