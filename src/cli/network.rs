//! `kiln network create|ls|inspect|rm|connect|disconnect|prune`: bridge networks, as
//! `docker network` shows them.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::container::table;
use super::image::{GlobalArgs, open_store};
use crate::network::{self, Attachment, PSEUDO};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network (inside kiln's own network namespace).
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        /// Only the bridge driver exists.
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Its IPv4 subnet (default: a free 10.89.x.0/24).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// Its gateway (default: the subnet's first address).
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// A label: K=V (repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        /// Recorded as Docker does; kiln's networks never reach outside anyway.
        #[arg(long)]
        internal: bool,
    },
    /// List networks.
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON (with the running containers on them).
    Inspect {
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Remove networks (refused while a running container is on one).
    Rm {
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Connect a container to a network (at once when it runs).
    Connect {
        /// Another name the container is reached by on this network.
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// A fixed IPv4 address.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Accepted as docker does.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove the networks no running container is on.
    Prune {
        /// Do not ask (kiln never asks).
        #[arg(short, long)]
        force: bool,
    },
}

fn labels(pairs: &[String]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

pub fn run(command: NetworkCommand, global: &GlobalArgs) -> Result<ExitCode> {
    let store = open_store(global)?;
    match command {
        NetworkCommand::Create {
            name,
            driver,
            subnet,
            gateway,
            labels: pairs,
            internal,
        } => {
            if driver != "bridge" {
                anyhow::bail!("plugin \"{driver}\" not found: kiln has only the bridge driver");
            }
            let options = network::CreateOptions {
                subnet,
                gateway,
                labels: labels(&pairs),
                options: Default::default(),
                internal,
            };
            println!("{}", network::create(&store, &name, options)?.id);
        }
        NetworkCommand::Ls { quiet } => {
            let mut rows = vec![vec![
                "NETWORK ID".to_string(),
                "NAME".to_string(),
                "DRIVER".to_string(),
                "SCOPE".to_string(),
            ]];
            let mut all: Vec<(String, String, String)> = PSEUDO
                .iter()
                .map(|(name, driver)| {
                    (
                        network::pseudo_id(name),
                        name.to_string(),
                        driver.to_string(),
                    )
                })
                .collect();
            all.extend(
                network::list(&store)?
                    .into_iter()
                    .map(|n| (n.id, n.name, "bridge".to_string())),
            );
            all.sort_by(|a, b| a.1.cmp(&b.1));
            for (id, name, driver) in all {
                if quiet {
                    println!("{}", &id[..12]);
                } else {
                    rows.push(vec![id[..12].to_string(), name, driver, "local".into()]);
                }
            }
            if !quiet {
                print!("{}", table(&rows));
            }
        }
        NetworkCommand::Inspect { names } => {
            let shown = names
                .iter()
                .map(|name| crate::daemon::network_json(&store, name))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        NetworkCommand::Rm { names } => {
            let mut failed = false;
            for name in &names {
                match network::remove(&store, name) {
                    Ok(_) => println!("{name}"),
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
        NetworkCommand::Connect {
            aliases,
            ip,
            network,
            container,
        } => {
            let attachment = Attachment {
                network,
                aliases,
                address: ip,
            };
            crate::container::connect_network(&store, &container, attachment)?;
        }
        NetworkCommand::Disconnect {
            network, container, ..
        } => crate::container::disconnect_network(&store, &container, &network)?,
        NetworkCommand::Prune { .. } => {
            let removed = network::prune(&store)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for network in &removed {
                    println!("{}", network.name);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
