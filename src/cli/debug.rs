//! `kiln debug`, and the shell `kiln build --on-error=shell` opens: the failed RUN step of
//! a recorded build, reopened.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::image::{GlobalArgs, open_store, runtime};
use crate::build::{debug, record};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// The build: its id or a unique prefix of it (`kiln build history ls`); default: the
    /// most recent build.
    #[arg(value_name = "BUILD", conflicts_with = "last")]
    build: Option<String>,
    /// The most recent build.
    #[arg(long = "last")]
    last: bool,
    /// A command to run (after `--`) instead of an interactive shell.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `kiln debug`: exits with the shell's or the command's exit code.
pub fn run(args: DebugArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let store = open_store(global)?;
    let saved = record::find(&store, args.build.as_deref())?;
    let dir = debug::failed_step_dir(&saved)?;
    let argv = (!args.command.is_empty()).then_some(args.command);
    let code = shell_in_failed_step(&runtime()?, &store, &dir, argv)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Runs `argv` (default: an interactive shell) in the failed step kept in `dir`, on this
/// terminal; says first what it is and which mounts are not there. Returns the exit code.
pub fn shell_in_failed_step(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    dir: &Path,
    argv: Option<Vec<String>>,
) -> Result<i32> {
    let state = debug::describe(dir)?;
    if argv.is_none() {
        eprintln!(
            "kiln: a shell in the failed step {}, its files as the command left them; \
             nothing done here is kept. Type exit to leave.",
            state.name
        );
    }
    for what in &state.omitted {
        eprintln!("kiln: not reopened: {what}");
    }
    Ok(runtime.block_on(debug::reopen(store, dir, argv))?)
}
