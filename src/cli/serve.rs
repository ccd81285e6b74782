//! `kiln serve`: the Docker Engine API on a unix socket, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::image::{GlobalArgs, client_config, open_store, runtime};
use crate::daemon::{self, ServeOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: unix:///PATH (default: unix:///run/kiln/kiln.sock as root,
    /// unix://$XDG_RUNTIME_DIR/kiln/kiln.sock without).
    #[arg(short = 'H', long, value_name = "unix:///PATH")]
    host: Option<String>,
    /// The group that may use the socket besides root (mode 0660, owner root:GROUP).
    /// Whoever can use the socket can do anything root can.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
}

pub fn run(args: &ServeArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let socket = match &args.host {
        Some(host) => daemon::socket_path(host)?,
        None => default_socket(),
    };
    let store = open_store(global)?;
    let registry = client_config(global);
    let options = ServeOptions {
        socket,
        group: args.group.clone(),
    };
    runtime()?.block_on(daemon::serve(store, registry, &options, |path| {
        eprintln!(
            "kiln: serving the Docker Engine API on unix://{}",
            path.display()
        );
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// `kiln.sock` in kiln's runtime directory: `/run/kiln` as root, `$XDG_RUNTIME_DIR/kiln`
/// without (the re-run child is told it in `KILN_RUNTIME_DIR`).
fn default_socket() -> PathBuf {
    crate::sandbox::runtime_dir().join("kiln.sock")
}
