//! `kiln build history ls|inspect|logs`: the records of past builds, as
//! `docker buildx history` shows them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};

use crate::build::record::{self, SavedRecord};
use crate::cli::container::table;
use crate::cli::image::{GlobalArgs, open_store};

#[derive(Debug, Subcommand)]
pub enum BuildSubcommand {
    /// The records of past builds: list them, inspect one, print its logs.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// List the recorded builds, newest first.
    Ls {
        #[arg(long = "format", value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one build: what was built, how it ended, its steps.
    Inspect {
        /// The build's id or a unique prefix of it; default: the most recent build.
        #[arg(value_name = "BUILD")]
        build: Option<String>,
        #[arg(long = "format", value_enum, default_value = "table")]
        format: Format,
    },
    /// Print a build's complete output, step by step (as `--progress=plain` shows it).
    Logs {
        /// The build's id or a unique prefix of it; default: the most recent build.
        #[arg(value_name = "BUILD")]
        build: Option<String>,
        /// Only this step (its `#N` number).
        #[arg(long = "step", value_name = "N")]
        step: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(command: HistoryCommand, global: &GlobalArgs) -> Result<ExitCode> {
    let store = open_store(global)?;
    let mut out = std::io::stdout().lock();
    match command {
        HistoryCommand::Ls { format } => {
            let records = record::list(&store)?;
            let text = match format {
                Format::Table => list_table(&records, crate::cache::unix_now()),
                Format::Json => {
                    let all: Vec<serde_json::Value> = records.iter().map(as_json).collect();
                    serde_json::to_string_pretty(&all)? + "\n"
                }
            };
            out.write_all(text.as_bytes())?;
        }
        HistoryCommand::Inspect { build, format } => {
            let saved = record::find(&store, build.as_deref())?;
            let text = match format {
                Format::Table => inspect_text(&saved),
                Format::Json => serde_json::to_string_pretty(&as_json(&saved))? + "\n",
            };
            out.write_all(text.as_bytes())?;
        }
        HistoryCommand::Logs { build, step } => {
            let saved = record::find(&store, build.as_deref())?;
            if let Some(step) = step
                && !saved.record.steps.contains_key(&step)
            {
                anyhow::bail!("build {} has no step #{step}", saved.id);
            }
            for (number, name) in &saved.record.steps {
                if step.is_some_and(|only| only != *number) {
                    continue;
                }
                let log = match saved.log(*number) {
                    Some(path) => std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                    None => String::new(),
                };
                out.write_all(step_log(*number, name, &log, &saved).as_bytes())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a build was called: its names, else its Dockerfile.
fn build_name(saved: &SavedRecord) -> String {
    let record = &saved.record;
    let mut name = if record.tags.is_empty() {
        record.dockerfile.clone()
    } else {
        record.tags.join(",")
    };
    if let Some(target) = &record.target {
        name.push_str(&format!(" (target {target})"));
    }
    name
}

fn duration(saved: &SavedRecord) -> String {
    let record = &saved.record;
    format!("{}s", record.finished_at.saturating_sub(record.started_at))
}

fn list_table(records: &[SavedRecord], now: u64) -> String {
    let mut rows = vec![
        ["BUILD ID", "NAME", "STATUS", "CREATED AT", "DURATION"]
            .map(String::from)
            .to_vec(),
    ];
    for saved in records {
        let since = now.saturating_sub(saved.record.started_at);
        rows.push(vec![
            saved.id.clone(),
            build_name(saved),
            saved.record.status.clone(),
            crate::image::humanize_since(i64::try_from(since).unwrap_or(i64::MAX)),
            duration(saved),
        ]);
    }
    table(&rows)
}

fn inspect_text(saved: &SavedRecord) -> String {
    let record = &saved.record;
    let at = |seconds: u64| {
        crate::oci::time::format_rfc3339(i64::try_from(seconds).unwrap_or(i64::MAX), None)
    };
    let mut lines = vec![
        ("Build ID", saved.id.clone()),
        ("Context", record.context.clone()),
        ("Dockerfile", record.dockerfile.clone()),
    ];
    if let Some(target) = &record.target {
        lines.push(("Target", target.clone()));
    }
    if !record.tags.is_empty() {
        lines.push(("Names", record.tags.join(", ")));
    }
    lines.push(("Started", at(record.started_at)));
    lines.push(("Duration", duration(saved)));
    lines.push(("Status", record.status.clone()));
    if let Some(image) = &record.image_id {
        lines.push(("Image", image.clone()));
    }
    if let Some(error) = &record.error {
        lines.push(("Error", error.clone()));
    }
    if let Some(step) = record.failed_step {
        let debug = if saved.failed_step_dir().is_some() {
            format!(" (kiln debug {} reopens it)", saved.id)
        } else {
            String::new()
        };
        lines.push(("Failed step", format!("#{step}{debug}")));
    }
    let mut text: String = lines
        .into_iter()
        .map(|(key, value)| format!("{:<13}{value}\n", format!("{key}:")))
        .collect();
    text.push_str("\nSteps:\n");
    for (number, name) in &record.steps {
        text.push_str(&format!("#{number:<3} {name}\n"));
    }
    text
}

fn as_json(saved: &SavedRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(&saved.record).unwrap_or_default();
    value["id"] = saved.id.clone().into();
    value["debuggable"] = saved.failed_step_dir().is_some().into();
    value
}

/// One step's output as plain progress shows it: `#N name`, then its lines prefixed
/// with `#N `, then `#N ERROR: …` for the step the build failed at.
fn step_log(number: u64, name: &str, log: &str, saved: &SavedRecord) -> String {
    let mut text = format!("#{number} {name}\n");
    for line in log.lines() {
        text.push_str(&format!("#{number} {line}\n"));
    }
    if saved.record.failed_step == Some(number)
        && let Some(error) = &saved.record.error
    {
        text.push_str(&format!("#{number} ERROR: {error}\n"));
    }
    text.push('\n');
    text
}
