//! `kiln build`: reading the Dockerfile and the `--call` front-end methods.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::EXIT_USAGE;
use super::diagnostic::{Severity, render};
use crate::instruction::{self, Stages};
use crate::syntax::{self, Span};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory, or `-` to read the Dockerfile from standard input.
    context: String,

    /// Path to the Dockerfile (default: CONTEXT/Dockerfile); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,

    /// Run a front-end method instead of building.
    #[arg(long = "call", value_enum, default_value_t = Call::Build)]
    call: Call,

    /// Shorthand for `--call check`.
    #[arg(long = "check")]
    check: bool,

    /// The stage to build (`outline` describes this stage).
    #[arg(long = "target", value_name = "STAGE")]
    target: Option<String>,
}

/// Front-end methods, named as in `docker buildx build --call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Call {
    /// Build the image.
    Build,
    /// Parse and validate the Dockerfile, reporting every problem.
    Check,
    /// Print the build arguments the target uses, with their defaults.
    Outline,
    /// List the stages that can be built.
    Targets,
}

/// A Dockerfile read from disk or standard input.
struct DockerfileSource {
    /// The name shown in messages, e.g. `Dockerfile` or `app/Dockerfile`.
    display: String,
    bytes: Vec<u8>,
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let call = if args.check { Call::Check } else { args.call };
    let source = read_dockerfile(&args)?;
    let text = String::from_utf8_lossy(&source.bytes).into_owned();

    let file = match syntax::parse(&source.bytes) {
        Ok(file) => file,
        Err(error) => {
            report(
                Severity::Error,
                &source,
                &text,
                error.span(),
                &error.to_string(),
            );
            if call == Call::Check {
                eprintln!("Check complete: 1 problem found.");
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    for warning in &file.warnings {
        report(
            Severity::Warning,
            &source,
            &text,
            warning.span,
            &warning.message,
        );
    }
    let stages = match instruction::parse(&file) {
        Ok(stages) => stages,
        Err(errors) => {
            for error in &errors {
                report(
                    Severity::Error,
                    &source,
                    &text,
                    error.span(),
                    &error.to_string(),
                );
            }
            if call == Call::Check {
                let plural = if errors.len() == 1 { "" } else { "s" };
                eprintln!("Check complete: {} problem{plural} found.", errors.len());
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };

    for warning in &stages.warnings {
        report(
            Severity::Warning,
            &source,
            &text,
            warning.span,
            &warning.message,
        );
    }
    let warnings = file.warnings.len() + stages.warnings.len();

    match call {
        Call::Check => {
            match warnings {
                0 => println!("Check complete: no problems found."),
                1 => println!("Check complete: no errors, 1 warning."),
                n => println!("Check complete: no errors, {n} warnings."),
            }
            Ok(ExitCode::SUCCESS)
        }
        Call::Targets => {
            print!("{}", targets_table(&stages));
            Ok(ExitCode::SUCCESS)
        }
        Call::Outline => {
            let Some(target) = stages.target(args.target.as_deref()) else {
                return Ok(unknown_target(
                    &stages,
                    args.target.as_deref().unwrap_or(""),
                ));
            };
            print!("{}", outline_text(&stages, target));
            Ok(ExitCode::SUCCESS)
        }
        Call::Build => bail!(
            "building images is not available yet in this version of kiln; \
             use --call check, --call outline or --call targets"
        ),
    }
}

fn report(severity: Severity, source: &DockerfileSource, text: &str, span: Span, message: &str) {
    eprint!("{}", render(severity, &source.display, text, span, message));
}

fn read_dockerfile(args: &BuildArgs) -> anyhow::Result<DockerfileSource> {
    let from_stdin =
        args.file.as_deref() == Some("-") || (args.file.is_none() && args.context == "-");
    if from_stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the Dockerfile from standard input")?;
        return Ok(DockerfileSource {
            display: "Dockerfile".to_string(),
            bytes,
        });
    }
    let path = match &args.file {
        Some(file) => PathBuf::from(file),
        None => default_dockerfile(Path::new(&args.context))?,
    };
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading the Dockerfile {}", path.display()))?;
    Ok(DockerfileSource {
        display: path
            .strip_prefix(&args.context)
            .unwrap_or(&path)
            .display()
            .to_string(),
        bytes,
    })
}

/// `CONTEXT/Dockerfile`, or `CONTEXT/dockerfile` when only that exists.
fn default_dockerfile(context: &Path) -> anyhow::Result<PathBuf> {
    if !context.is_dir() {
        bail!("the build context {} is not a directory", context.display());
    }
    let upper = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    if !upper.exists() && lower.exists() {
        return Ok(lower);
    }
    Ok(upper)
}

fn unknown_target(stages: &Stages, target: &str) -> ExitCode {
    let names: Vec<&str> = stages
        .stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    let hint = instruction::closest(target, names.iter().copied())
        .map(|name| format!(" (did you mean {name}?)"))
        .unwrap_or_default();
    eprintln!("error: target stage {target:?} could not be found{hint}");
    ExitCode::from(EXIT_USAGE)
}

/// Formats rows as left-aligned columns separated by three spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn targets_table(stages: &Stages) -> String {
    let last = stages.stages.len().saturating_sub(1);
    let mut rows = vec![vec![
        "INDEX".to_string(),
        "TARGET".to_string(),
        "BASE".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    for stage in &stages.stages {
        let mut name = stage.name.clone().unwrap_or_else(|| "-".to_string());
        if stage.index == last {
            name.push_str(" (default)");
        }
        rows.push(vec![
            stage.index.to_string(),
            name,
            stage.base.clone(),
            stage.description().unwrap_or_default(),
        ]);
    }
    table(&rows)
}

fn outline_text(stages: &Stages, target: &instruction::Stage) -> String {
    let mut out = format!("TARGET:      {}\n", target.display_name());
    if let Some(description) = target.description() {
        out.push_str(&format!("DESCRIPTION: {description}\n"));
    }
    out.push('\n');
    let mut rows = vec![vec![
        "STAGE".to_string(),
        "BUILD ARG".to_string(),
        "VALUE".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    for stage_args in instruction::outline(stages, target) {
        let stage = match stage_args.stage {
            Some(index) => stages.stages[index].display_name(),
            None => "(global)".to_string(),
        };
        for arg in stage_args.args {
            rows.push(vec![
                stage.clone(),
                arg.name,
                arg.default.unwrap_or_else(|| "<unset>".to_string()),
                arg.description.unwrap_or_default(),
            ]);
        }
    }
    if rows.len() == 1 {
        out.push_str("No build arguments are used.\n");
    } else {
        out.push_str(&table(&rows));
    }
    out
}
