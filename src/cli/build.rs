//! `kiln build`: reading the Dockerfile and the `--call` front-end methods.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::EXIT_USAGE;
use super::diagnostic::{Severity, render};
use super::image::GlobalArgs;
use super::progress::ProgressMode;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use petgraph::graph::NodeIndex;

use crate::cache::CacheIndex;
use crate::cli::progress;
use crate::export::{self, ExportOptions, LayerInput};
use crate::image;
use crate::instruction::{self, Stages};
use crate::oci::Reference;
use crate::plan;
use crate::progress::{Clock, LogStore, Sink};
use crate::registry;
use crate::solve::{
    Puller, SecretSource, SolveError, SolveOptions, Solver, StoreResolver, history,
};
use crate::source::{Context as SourceContext, IgnoreFile, PatternMatcher};
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

    /// Name (and optionally tag) the image: `name[:tag]` (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,

    /// Set a build argument: `K=V`, or `K` to take its value from the environment.
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,

    /// Add a label to the image: `K=V` (repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,

    /// Do not use the cache: run every step.
    #[arg(long = "no-cache")]
    no_cache: bool,

    /// How to show progress.
    #[arg(long = "progress", value_enum, value_name = "MODE")]
    progress: Option<ProgressMode>,

    /// Print only the image id.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,

    /// Write the image id to this file.
    #[arg(long = "iidfile", value_name = "FILE")]
    iidfile: Option<PathBuf>,

    /// Steps running at once (default: twice the number of CPUs).
    #[arg(long = "jobs", value_name = "N")]
    jobs: Option<usize>,

    /// Pull base images again, even those already in the store.
    #[arg(long = "pull")]
    pull: bool,

    /// Network of RUN steps that do not choose one: default (the host's), none or host.
    #[arg(long = "network", value_name = "MODE", value_parser = ["default", "none", "host"])]
    network: Option<String>,

    /// Write the build's result (image id, manifest digest, names) as JSON to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,

    /// Do not use the cache for these stages (repeatable, or comma-separated).
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,

    /// A secret for RUN --mount=type=secret: id=ID[,src=FILE | ,env=VAR] (repeatable).
    #[arg(long = "secret", value_name = "SPEC")]
    secrets: Vec<String>,

    /// An SSH agent for RUN --mount=type=ssh: default, or ID=SOCKET (repeatable).
    #[arg(long = "ssh", value_name = "SPEC")]
    ssh: Vec<String>,

    /// The platform to build for; only this machine's is supported so far.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    platform: Option<String>,
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

pub fn run(args: BuildArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
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
        Call::Build => build(&args, global, &source, &text, file.escape, &stages),
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

/// `K=V` pairs; a bare `K` takes its value from the environment (skipped when unset), as
/// `docker build --build-arg` does.
fn key_values(items: &[String], from_env: bool) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            None => bail!("invalid value {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `kiln build`: plan, solve, export, tag.
fn build(
    args: &BuildArgs,
    global: &GlobalArgs,
    source: &DockerfileSource,
    text: &str,
    escape: char,
    stages: &Stages,
) -> anyhow::Result<ExitCode> {
    if let Some(platform) = &args.platform {
        let wanted = plan::Platform::parse(platform).map_err(|m| anyhow::anyhow!(m))?;
        let host = plan::Platform::host();
        if !wanted.runs_on(&host) {
            bail!(
                "--platform {platform}: kiln builds for this machine's platform ({host}) only; \
                 multi-platform builds are not supported yet"
            );
        }
    }
    let secrets = parse_secrets(&args.secrets)?;
    let ssh = parse_ssh(&args.ssh)?;
    // `kiln build -` reads the Dockerfile from stdin and has no context: an empty one.
    let empty_context = (args.context == "-").then(EmptyDir::create).transpose()?;
    let context_dir: PathBuf = match &empty_context {
        Some(empty) => empty.0.clone(),
        None => PathBuf::from(&args.context),
    };
    let tags = args
        .tags
        .iter()
        .map(|t| {
            t.parse::<Reference>()
                .map_err(|e| anyhow::anyhow!("invalid tag {t:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let build_args = key_values(&args.build_args, true)?;
    let options = plan::Options {
        target: args.target.clone(),
        labels: key_values(&args.labels, false)?,
        escape,
        dockerfile_name: source.display.clone(),
        build_args: build_args.clone(),
        no_cache_filter: args.no_cache_filter.clone(),
        network: args.network.clone(),
        ..plan::Options::default()
    };
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))
        })
        .transpose()?;

    let store = super::image::open_store(global)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // Plan, pulling base images that are not in the store yet.
    let planned = {
        let pull_store = store.clone();
        let handle = runtime.handle().clone();
        let mut client = None;
        let quiet = args.quiet;
        let puller: Puller<'_> = Box::new(move |reference, platform| {
            if client.is_none() {
                client = Some(super::image::client(global).map_err(|e| format!("{e:#}"))?);
            }
            let client = client.as_ref().expect("just set");
            if !quiet {
                eprintln!("pulling {reference}");
            }
            let platform = registry::Platform {
                os: platform.os.clone(),
                architecture: platform.architecture.clone(),
                variant: platform.variant.clone(),
            };
            handle
                .block_on(image::pull(
                    &pull_store,
                    client,
                    reference,
                    Some(&platform),
                    image::quiet(),
                ))
                .map(|_| ())
                .map_err(Into::into)
        });
        let mut resolver = StoreResolver::new(store.clone(), Some(puller)).always_pull(args.pull);
        plan::build(stages, &options, &mut resolver)
    };
    let plan = match planned {
        Ok(plan) => plan,
        Err(error) => {
            report(
                Severity::Error,
                source,
                text,
                error.span(),
                &error.to_string(),
            );
            // A base image that cannot be found or pulled is a failure, not a usage error.
            return Ok(match error {
                plan::Error::Resolve { .. } => ExitCode::FAILURE,
                _ => ExitCode::from(EXIT_USAGE),
            });
        }
    };
    for warning in &plan.warnings {
        eprintln!("{warning}");
    }

    let ignore = match IgnoreFile::locate(&context_dir, &source.display) {
        Some(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Some(PatternMatcher::new(IgnoreFile::parse_bytes(&bytes))?)
        }
        None => None,
    };
    let context = Arc::new(SourceContext::open(&context_dir, ignore)?);
    let cache = Arc::new(CacheIndex::for_store(&store)?);
    let dockerfile = match &args.file {
        _ if empty_context.is_some() => "-".to_string(),
        Some(f) if f == "-" => "-".to_string(),
        _ => std::fs::canonicalize(
            args.file
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(&args.context).join(&source.display)),
        )
        .map_or_else(|_| source.display.clone(), |p| p.display().to_string()),
    };
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::resolve(
            args.progress,
            std::env::var("BUILDKIT_PROGRESS").ok().as_deref(),
            progress::stderr_is_terminal(),
        )
    };
    let clock = Clock::start();
    // Steps often wait (on the network, on disk, on `sleep`): two per CPU keep the CPUs
    // busy where one per CPU would leave them idle.
    let jobs = args.jobs.unwrap_or_else(|| {
        2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    });

    let started_at = crate::cache::unix_now();
    let logs = LogStore::new();
    // From the first step to the tag: layers written early are not referenced by any
    // manifest until the export, and `image prune` must not take them meanwhile.
    let lease = store.lease()?;
    let outcome = runtime.block_on(async {
        let (sink, rx) = Sink::channel();
        let renderer = progress::stderr_renderer(mode, clock.clone());
        let drive = tokio::spawn(progress::drive(rx, renderer, logs.clone()));
        let mut solver = Solver::new(
            store.clone(),
            cache.clone(),
            context,
            sink.clone(),
            clock.clone(),
            SolveOptions {
                jobs,
                no_cache: args.no_cache,
                dockerfile,
                sandbox_exe: None,
                secrets,
                ssh,
            },
        );
        let early_layers = write_layers_early(&mut solver, &plan, &store, source_date_epoch);
        let canceller = solver.canceller();
        let signals = tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(term) => {
                        term.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            let _ = canceller.send(true);
        });
        let solved = solver.solve(&plan).await;
        signals.abort();
        let result = match solved {
            Ok(solved) => {
                let vertex_id = plan.graph.node_count() as u64 + 1;
                let vertex = sink.vertex(&clock, vertex_id, "exporting to image");
                // Layers started while the build ran are part of exporting.
                let written = early_layers.collect().await;
                let layers: Result<Vec<LayerInput>, String> = plan
                    .image
                    .layers
                    .iter()
                    .map(|layer| {
                        let op = &plan.graph[layer.node];
                        let result = solved
                            .results
                            .get(&layer.node)
                            .ok_or_else(|| format!("no result for {}", op.metadata.name))?;
                        Ok(LayerInput {
                            dir: result
                                .layer
                                .clone()
                                .ok_or_else(|| format!("{} made no layer", op.metadata.name))?,
                            key: result.key.clone(),
                            name: op.metadata.name.clone(),
                        })
                    })
                    .collect();
                match layers {
                    Err(message) => {
                        vertex.error(message.clone());
                        Err(BuildFailure::Other(anyhow::anyhow!(message)))
                    }
                    Ok(layers) => {
                        let export_store = store.clone();
                        let export_cache = cache.clone();
                        let plan = plan.clone();
                        let newest = solved.results.values().map(|r| r.created_at).max();
                        let created = match newest {
                            Some(t) if t > 0 => t,
                            _ => crate::cache::unix_now(),
                        };
                        let options = ExportOptions {
                            source_date_epoch,
                            created,
                            tags: tags.clone(),
                            written,
                        };
                        let exported = tokio::task::spawn_blocking(move || {
                            export::export(&export_store, &export_cache, &plan, &layers, &options)
                        })
                        .await;
                        match exported {
                            Ok(Ok(exported)) => {
                                vertex.done();
                                Ok(exported)
                            }
                            Ok(Err(error)) => {
                                vertex.error(error.to_string());
                                Err(BuildFailure::Other(error.into()))
                            }
                            Err(error) => {
                                vertex.error(error.to_string());
                                Err(BuildFailure::Other(error.into()))
                            }
                        }
                    }
                }
            }
            Err(error) => {
                // Let layers being written finish (their blobs are collectable garbage).
                early_layers.collect().await;
                Err(BuildFailure::Solve(error))
            }
        };
        drop(solver);
        drop(sink);
        let _ = drive.await;
        result
    });

    drop(lease);
    // The build record keeps every step's whole output; a failure points at it.
    let record = history::BuildRecord {
        started_at,
        finished_at: crate::cache::unix_now(),
        dockerfile: source.display.clone(),
        context: context_dir.display().to_string(),
        target: args.target.clone(),
        tags: tags.iter().map(ToString::to_string).collect(),
        status: match &outcome {
            Ok(_) => "succeeded",
            Err(BuildFailure::Solve(SolveError::Cancelled)) => "cancelled",
            Err(_) => "failed",
        }
        .to_string(),
        image_id: outcome.as_ref().ok().map(|e| e.image_id.to_string()),
        error: match &outcome {
            Ok(_) => None,
            Err(BuildFailure::Solve(error)) => Some(error.to_string()),
            Err(BuildFailure::Other(error)) => Some(format!("{error:#}")),
        },
        steps: logs.names(),
    };
    let saved = history::save(&store, &record, &logs.all());
    if let Err(error) = &saved {
        eprintln!("warning: the build record was not saved: {error}");
    }

    match outcome {
        Ok(exported) => {
            let id = exported.image_id.to_string();
            if let Some(path) = &args.iidfile {
                std::fs::write(path, &id).with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &args.metadata_file {
                let metadata = build_metadata(&exported, &tags);
                std::fs::write(path, serde_json::to_vec_pretty(&metadata)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if args.quiet {
                println!("{id}");
            } else {
                for tag in &tags {
                    eprintln!("naming to {tag}");
                }
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildFailure::Solve(SolveError::Cancelled)) => {
            eprintln!("error: the build was cancelled");
            Ok(ExitCode::from(EXIT_CANCELLED))
        }
        Err(BuildFailure::Solve(error)) => {
            match (&error, error.span()) {
                (SolveError::Step { message, tail, .. }, Some(span)) => {
                    if !tail.is_empty() {
                        eprintln!("------");
                        for line in tail {
                            eprintln!(" > {line}");
                        }
                        eprintln!("------");
                    }
                    report(Severity::Error, source, text, span, message);
                }
                (_, Some(span)) => report(Severity::Error, source, text, span, &error.to_string()),
                (_, None) => eprintln!("error: {error}"),
            }
            if let (SolveError::Step { name, .. }, Ok(dir)) = (&error, &saved)
                && let Some((step, _)) = record.steps.iter().find(|(_, n)| *n == name)
                && history::log_path(dir, *step).exists()
            {
                eprintln!(
                    "the step's full output: {}",
                    history::log_path(dir, *step).display()
                );
            }
            Ok(ExitCode::FAILURE)
        }
        Err(BuildFailure::Other(error)) => Err(error),
    }
}

/// Image layers being written while the build goes on.
#[derive(Clone, Default)]
struct EarlyLayers(Arc<Mutex<Vec<(String, LayerJob)>>>);

type LayerJob = tokio::task::JoinHandle<Result<(String, export::BlobRef), String>>;

impl EarlyLayers {
    /// Waits for every layer started; the ones written, by step key (a failed one is left
    /// to the exporter, which reports it).
    async fn collect(self) -> HashMap<String, (String, export::BlobRef)> {
        let jobs = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        let mut written = HashMap::new();
        for (key, job) in jobs {
            if let Ok(Ok(layer)) = job.await {
                written.insert(key, layer);
            }
        }
        written
    }
}

/// Starts writing each image layer as soon as its step is done, on a blocking thread, so
/// that a big COPY's layer is written while the steps after it run.
fn write_layers_early(
    solver: &mut Solver,
    plan: &plan::Plan,
    store: &crate::store::Store,
    source_date_epoch: Option<u64>,
) -> EarlyLayers {
    let layers: HashMap<NodeIndex, bool> = plan
        .image
        .layers
        .iter()
        .map(|layer| (layer.node, layer.skip_if_empty))
        .collect();
    let early = EarlyLayers::default();
    let jobs = early.clone();
    let store = store.clone();
    let runtime = tokio::runtime::Handle::current();
    solver.on_done(Box::new(move |node, result| {
        let Some(&skip_if_empty) = layers.get(&node) else {
            return;
        };
        // A cached step's layer is usually recorded already; the exporter checks.
        if result.cached || (skip_if_empty && result.empty) {
            return;
        }
        let Some(dir) = result.layer.clone() else {
            return;
        };
        let store = store.clone();
        let job =
            runtime.spawn_blocking(move || export::write_layer(&store, &dir, source_date_epoch));
        jobs.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((result.key.clone(), job));
    }));
    early
}

/// What `--metadata-file` holds, with the keys `docker buildx build` writes.
fn build_metadata(exported: &export::Exported, tags: &[Reference]) -> serde_json::Value {
    let mut metadata = serde_json::json!({
        "containerimage.config.digest": exported.image_id.to_string(),
        "containerimage.digest": exported.manifest_digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": crate::oci::media_type::OCI_MANIFEST,
            "digest": exported.manifest_digest.to_string(),
            "size": exported.manifest_size,
        },
    });
    if !tags.is_empty() {
        let names: Vec<String> = tags.iter().map(ToString::to_string).collect();
        metadata["image.name"] = names.join(",").into();
    }
    metadata
}

/// `--secret id=ID[,src=FILE|,source=FILE][,env=VAR][,type=file|env]`; with neither
/// `src` nor `env`, the environment variable named like the id.
fn parse_secrets(specs: &[String]) -> anyhow::Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                usage(format!(
                    "--secret {spec}: expected KEY=VALUE, got {field:?}"
                ))
            })?;
            match key {
                "id" => id = Some(value.to_string()),
                "src" | "source" => src = Some(value.to_string()),
                "env" => env = Some(value.to_string()),
                "type" if value == "file" || value == "env" => kind = Some(value.to_string()),
                _ => return Err(usage(format!("--secret {spec}: unexpected {field:?}"))),
            }
        }
        let id = id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| usage(format!("--secret {spec}: id= is required")))?;
        let source = match (kind.as_deref(), src, env) {
            (Some("env"), Some(_), _) | (Some("file"), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(usage(format!("--secret {spec}: give either src= or env=")));
            }
            (Some("file"), None, None) => {
                return Err(usage(format!("--secret {spec}: type=file needs src=")));
            }
            (_, Some(src), None) => SecretSource::File(PathBuf::from(src)),
            (_, None, Some(env)) => SecretSource::Env(env),
            (_, None, None) => SecretSource::Env(id.clone()),
        };
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ssh default` (`$SSH_AUTH_SOCK`) or `--ssh ID=SOCKET`: agent sockets only.
fn parse_ssh(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let socket = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                    usage(format!(
                        "--ssh {spec}: SSH_AUTH_SOCK is not set (give {spec}=SOCKET)"
                    ))
                })?;
                (spec.clone(), PathBuf::from(socket))
            }
        };
        if path.as_os_str().to_string_lossy().contains(',') {
            return Err(usage(format!(
                "--ssh {spec}: one agent socket per id (keys are not supported)"
            )));
        }
        let is_socket = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            return Err(usage(format!(
                "--ssh {spec}: {} is not an agent socket (kiln forwards SSH agents, not key files)",
                path.display()
            )));
        }
        out.insert(id, path);
    }
    Ok(out)
}

/// A usage error (exit status 2).
fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(super::UsageError(message))
}

/// An empty directory removed on drop: the context of `kiln build -`.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn create() -> anyhow::Result<EmptyDir> {
        let dir = std::env::temp_dir().join(format!(
            "kiln-empty-context-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(EmptyDir(dir))
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Exit status after Ctrl-C or SIGTERM, as shells report a SIGINT death.
const EXIT_CANCELLED: u8 = 130;

enum BuildFailure {
    Solve(SolveError),
    Other(anyhow::Error),
}
