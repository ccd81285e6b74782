//! `kiln volume create|ls|inspect|rm|prune`: named volumes, as `docker volume` shows them.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::container::table;
use super::image::{GlobalArgs, open_store};
use crate::container::volume::{self, Volume};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create {
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// A label: K=V (repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// List volumes.
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove volumes (refused for a volume a container mounts).
    Rm {
        /// Accepted as docker does; a volume in use is still refused.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes no container mounts (all unused ones with --all).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Do not ask (kiln never asks).
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(command: VolumeCommand, global: &GlobalArgs) -> Result<ExitCode> {
    let store = open_store(global)?;
    match command {
        VolumeCommand::Create { name, labels } => {
            let labels = labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.clone(), String::new()),
                })
                .collect();
            let volume = volume::create(&store, name.as_deref(), labels)?;
            println!("{}", volume.name);
        }
        VolumeCommand::Ls { quiet } => {
            let volumes = volume::list(&store)?;
            if quiet {
                for v in &volumes {
                    println!("{}", v.name);
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                rows.extend(
                    volumes
                        .iter()
                        .map(|v| vec!["local".to_string(), v.name.clone()]),
                );
                print!("{}", table(&rows));
            }
        }
        VolumeCommand::Inspect { names } => {
            let shown = names
                .iter()
                .map(|name| volume::get(&store, name).map(|v| inspect_json(&v)))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        VolumeCommand::Rm { names, .. } => {
            let mut failed = false;
            for name in &names {
                match volume::remove(&store, name) {
                    Ok(()) => println!("{name}"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Prune { all, .. } => {
            let removed = volume::prune(&store, all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for name in &removed {
                    println!("{name}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `docker volume inspect`'s object.
pub fn inspect_json(volume: &Volume) -> serde_json::Value {
    json!({
        "CreatedAt": volume.created,
        "Driver": "local",
        "Labels": volume.labels,
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": {},
        "Scope": "local",
    })
}
