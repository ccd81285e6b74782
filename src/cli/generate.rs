//! Shell completion scripts and man pages, generated at run time from the command line's
//! own definition: they always describe the binary that prints them, and building kiln
//! needs no build script for them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Command;
use clap_complete::Shell;

/// `kiln completion SHELL`: the completion script on standard output.
pub(super) fn completion(shell: Shell, command: Command) -> anyhow::Result<ExitCode> {
    let mut command = without_hidden(command);
    let name = command.get_name().to_string();
    // Into memory first: the generator panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// `kiln man DIR`: one page per command (`kiln.1`, `kiln-build.1`, `kiln-image-ls.1`, …)
/// in `dir`; hidden commands get none.
pub(super) fn man_pages(dir: &Path, command: Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing the man pages into {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `command` without its hidden subcommands (the internal `__sandbox` and `__monitor`):
/// the bash generator would offer them.
fn without_hidden(command: Command) -> Command {
    let visible: Vec<Command> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    let mut kept = Command::new(super::NAME)
        .args(command.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = command.get_about() {
        kept = kept.about(about.clone());
    }
    if command.get_version().is_some() {
        kept = kept.version(env!("CARGO_PKG_VERSION"));
    }
    kept
}
