//! `kiln build`: the command line turned into a [`BuildRequest`], the outcome rendered;
//! and the `--call` front-end methods.

mod check;
mod history;
mod methods;
mod options;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tokio::sync::watch;

use super::EXIT_USAGE;
use super::UsageError;
use super::diagnostic::render;
use super::image::GlobalArgs;
use super::progress::{self, ProgressMode};
use crate::build::{
    Build, BuildError, BuildOutcome, BuildRequest, CacheExport, CacheImport, OutputSpec,
    OutputStream, ParsedDockerfile, Severity, resolve_outputs,
};
use crate::oci::Reference;
use crate::progress::Clock;
use crate::solve::SolveError;
use crate::syntax::Span;

/// `kiln build`: a build, or `kiln build history …` over the records of past builds
/// (a context directory named `history` is written `./history`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BuildCommand {
    #[command(subcommand)]
    history: Option<history::BuildSubcommand>,
    #[command(flatten)]
    args: BuildArgs,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory, or `-` to read the Dockerfile from standard input.
    #[arg(required = true)]
    context: Option<String>,

    /// Path to the Dockerfile (default: CONTEXT/Dockerfile); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,

    /// Run a front-end method instead of building: build, check, outline or targets;
    /// `check,format=json` prints the check's result as BuildKit's JSON.
    #[arg(long = "call", value_name = "METHOD", default_value = "build", value_parser = CallSpec::parse)]
    call: CallSpec,

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

    /// Steps running at once (default: twice the number of CPUs, per platform built).
    #[arg(long = "jobs", value_name = "N")]
    jobs: Option<usize>,

    /// Pull base images again, even those already in the store.
    #[arg(long = "pull")]
    pull: bool,

    /// Network of RUN steps that do not choose one: default (the host's), none or host.
    #[arg(long = "network", value_name = "MODE", value_parser = ["default", "none", "host"])]
    network: Option<String>,

    /// Grant an entitlement (BuildKit's): security.insecure lets `RUN --security=insecure`
    /// run without seccomp and with every capability; network.host is always granted.
    #[arg(
        long = "allow",
        value_name = "ENTITLEMENT",
        value_delimiter = ',',
        value_parser = ["security.insecure", "network.host"]
    )]
    allow: Vec<String>,

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

    /// The platforms to build for (comma-separated; this machine's by default); several make
    /// an image index. RUN steps of another architecture run through binfmt_misc emulation
    /// (see `kiln system binfmt`).
    #[arg(long = "platform", value_name = "OS/ARCH[,…]")]
    platform: Option<String>,

    /// Import a build cache: REF, type=registry,ref=REF or type=local,src=DIR (repeatable;
    /// tried in order). Layers are fetched only when a step or output needs them.
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,

    /// Export the build cache: type=registry,ref=REF, type=local,dest=DIR or type=inline,
    /// with mode=min|max, compression=…, ignore-error=true (repeatable).
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Where the result goes (repeatable): type=image|registry|oci|docker|local|tar,KEY=VALUE,…;
    /// DIR is type=local,dest=DIR and - is type=tar,dest=- (default: type=image).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,

    /// Push the image to the registry of each -t name (type=registry), without naming it
    /// in the local store unless --load or type=image asks for that too.
    #[arg(long = "push")]
    push: bool,

    /// Name the image in the local store (type=image), also when other outputs are given.
    #[arg(long = "load")]
    load: bool,

    /// When a RUN fails: fail (the default), or open an interactive shell in the failed
    /// step (its filesystem as the command left it, its mounts, environment, user and
    /// working directory); the build still fails once the shell exits.
    #[arg(
        long = "on-error",
        value_enum,
        value_name = "ACTION",
        default_value = "fail"
    )]
    on_error: OnError,
}

impl BuildArgs {
    /// The context argument (clap requires it whenever a build runs).
    fn context(&self) -> &str {
        self.context.as_deref().unwrap_or(".")
    }
}

/// What `--on-error` does when a RUN fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnError {
    Fail,
    Shell,
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

/// `--call METHOD[,format=text|json]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallSpec {
    method: Call,
    json: bool,
}

impl CallSpec {
    fn parse(text: &str) -> Result<CallSpec, String> {
        let mut parts = text.split(',');
        let method = Call::from_str(parts.next().unwrap_or_default(), true)?;
        let mut json = false;
        for option in parts {
            json = match option {
                "format=json" if method == Call::Check => true,
                "format=text" => false,
                other => return Err(format!("unsupported option {other:?} for --call {text}")),
            };
        }
        Ok(CallSpec { method, json })
    }
}

/// A Dockerfile read from disk or standard input.
struct DockerfileSource {
    /// The name shown in messages, e.g. `Dockerfile` or `app/Dockerfile`.
    display: String,
    bytes: Vec<u8>,
    text: String,
}

impl DockerfileSource {
    fn report(&self, severity: Severity, span: Span, message: &str) {
        eprint!(
            "{}",
            render(severity, &self.display, &self.text, span, message)
        );
    }
}

pub fn run(command: BuildCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match command.history {
        Some(history::BuildSubcommand::History { command }) => history::run(command, global),
        None => build_or_call(command.args, global),
    }
}

fn build_or_call(args: BuildArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let call = if args.check {
        CallSpec {
            method: Call::Check,
            json: false,
        }
    } else {
        args.call
    };
    let source = read_dockerfile(&args)?;
    let parsed = match ParsedDockerfile::parse(&source.bytes) {
        Ok(parsed) => parsed,
        Err(diagnostics) if call.method == Call::Check => {
            return Ok(check::parse_failed(&source, &diagnostics, call.json));
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                source.report(d.severity, d.span, &d.message);
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let stages = &parsed.stages;
    match call.method {
        Call::Check => check::run(&args, global, &source, &parsed, call.json),
        Call::Targets => {
            print!("{}", methods::targets_table(stages));
            Ok(ExitCode::SUCCESS)
        }
        Call::Outline => {
            let target_name = args.target.as_deref();
            let Some(target) = stages.target(target_name) else {
                return Ok(methods::unknown_target(stages, target_name.unwrap_or("")));
            };
            print!("{}", methods::outline_text(stages, target));
            Ok(ExitCode::SUCCESS)
        }
        Call::Build => build(&args, global, &source, parsed),
    }
}

/// `kiln build`: the request, the build under a progress renderer, the outcome.
fn build(
    args: &BuildArgs,
    global: &GlobalArgs,
    source: &DockerfileSource,
    parsed: ParsedDockerfile,
) -> anyhow::Result<ExitCode> {
    // `kiln build -` reads the Dockerfile from stdin and has no context: an empty one.
    let empty_context = (args.context() == "-")
        .then(options::EmptyDir::create)
        .transpose()?;
    let store = super::image::open_store(global)?;
    let debug_store = store.clone();
    let checks = check::CheckInputs::new(args, Some(store.clone()))?;
    let lint = parsed.lint(&checks.options(args, source));
    let lint = match lint {
        Ok(report) => report,
        Err(error) => return Ok(report_failure(source, error)),
    };
    if let Some(code) = check::stops_build(source, &lint) {
        return Ok(code);
    }
    let request = request(args, source, parsed, empty_context.as_ref())?;
    let stdout_taken = request.stdout.is_some();
    let builder = Build::new(store, super::image::client_config(global));
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::resolve(
            args.progress,
            std::env::var("BUILDKIT_PROGRESS").ok().as_deref(),
            progress::stderr_is_terminal(),
        )
    };
    let runtime = super::image::runtime()?;
    let renderer = progress::stderr_renderer(mode, Clock::start());
    let outcome = runtime.block_on(progress::rendered(renderer, |sink| async move {
        let (cancel, cancelled) = watch::channel(false);
        let signals = tokio::spawn(cancel_on_signal(cancel));
        let outcome = builder.run(request, &sink, cancelled).await;
        signals.abort();
        outcome
    }));
    if !args.quiet {
        check::print_summary(&lint.findings);
    }
    match outcome {
        Ok(outcome) => finish(args, &outcome, stdout_taken),
        Err(error) => {
            let failed_step = match (&error, args.on_error) {
                (BuildError::Solve { failed_step, .. }, OnError::Shell) => failed_step.clone(),
                _ => None,
            };
            let code = report_failure(source, error);
            if let Some(dir) = failed_step {
                super::debug::shell_in_failed_step(&runtime, &debug_store, &dir, None)?;
            }
            Ok(code)
        }
    }
}

/// The [`BuildRequest`] the command line asks for.
fn request(
    args: &BuildArgs,
    source: &DockerfileSource,
    parsed: ParsedDockerfile,
    empty_context: Option<&options::EmptyDir>,
) -> anyhow::Result<BuildRequest> {
    let platforms = options::parse_platforms(args.platform.as_deref())?;
    let tags = args
        .tags
        .iter()
        .map(|t| {
            t.parse::<Reference>()
                .map_err(|e| anyhow::anyhow!("invalid tag {t:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut build_args = options::key_values(&args.build_args, true)?;
    options::source_date_epoch_from_env(&mut build_args);
    let outputs = args
        .outputs
        .iter()
        .map(|spec| {
            OutputSpec::parse(spec).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outputs = resolve_outputs(outputs, args.push, args.load);
    let context: PathBuf = match empty_context {
        Some(empty) => empty.0.clone(),
        None => PathBuf::from(args.context()),
    };
    let dockerfile_path = match &args.file {
        _ if empty_context.is_some() => "-".to_string(),
        Some(f) if f == "-" => "-".to_string(),
        file => std::fs::canonicalize(
            file.as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(args.context()).join(&source.display)),
        )
        .map_or_else(|_| source.display.clone(), |p| p.display().to_string()),
    };
    Ok(BuildRequest {
        stages: parsed.stages,
        escape: parsed.escape,
        dockerfile_name: source.display.clone(),
        dockerfile_path,
        context,
        target: args.target.clone(),
        tags,
        build_args,
        labels: options::key_values(&args.labels, false)?,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        pull: args.pull,
        network: args.network.clone(),
        allow_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        secrets: options::parse_secrets(&args.secrets)?,
        ssh: options::parse_ssh(&args.ssh)?,
        platforms,
        jobs: args.jobs,
        cache_from: options::cache_specs(&args.cache_from, CacheImport::parse)?,
        cache_to: options::cache_specs(&args.cache_to, CacheExport::parse)?,
        stdout: outputs
            .iter()
            .any(OutputSpec::to_stdout)
            .then(|| OutputStream::new(std::io::stdout())),
        outputs,
    })
}

/// Ctrl-C or SIGTERM cancels the build.
async fn cancel_on_signal(cancel: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
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
    let _ = cancel.send(true);
}

/// Writes `--iidfile` and `--metadata-file`, names the tags and prints the image id
/// (unless an output took standard output).
fn finish(
    args: &BuildArgs,
    outcome: &BuildOutcome,
    stdout_taken: bool,
) -> anyhow::Result<ExitCode> {
    let id = outcome.exported.image_id.to_string();
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &id).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome.metadata())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.quiet {
        for tag in &outcome.tags {
            eprintln!("naming to {tag}");
        }
        for pushed in &outcome.pushed {
            eprintln!("pushed {}@{}", pushed.reference, pushed.digest);
        }
    }
    // Standard output carrying an archive (dest=-) takes nothing else.
    if !stdout_taken {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Says why the build failed: the Dockerfile excerpt where that is known, a failing
/// step's last lines and the file with its whole output.
fn report_failure(source: &DockerfileSource, error: BuildError) -> ExitCode {
    if error.is_cancelled() {
        eprintln!("error: the build was cancelled");
        return ExitCode::from(EXIT_CANCELLED);
    }
    let code = if error.is_usage() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::FAILURE
    };
    let step = match &error {
        BuildError::Solve { source, .. } => match &**source {
            SolveError::Step { message, tail, .. } => Some((message, tail)),
            _ => None,
        },
        _ => None,
    };
    let (message, span) = match step {
        Some((message, tail)) => {
            if !tail.is_empty() {
                eprintln!("------");
                for line in tail {
                    eprintln!(" > {line}");
                }
                eprintln!("------");
            }
            (message.to_string(), error.span())
        }
        _ => (error.to_string(), error.span()),
    };
    match span {
        Some(span) => source.report(Severity::Error, span, &message),
        None => eprintln!("error: {error}"),
    }
    if let BuildError::Solve {
        step_log: Some(log),
        ..
    } = &error
    {
        eprintln!("the step's full output: {}", log.display());
    }
    code
}

fn read_dockerfile(args: &BuildArgs) -> anyhow::Result<DockerfileSource> {
    let from_stdin =
        args.file.as_deref() == Some("-") || (args.file.is_none() && args.context() == "-");
    if from_stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the Dockerfile from standard input")?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        return Ok(DockerfileSource {
            display: "Dockerfile".to_string(),
            bytes,
            text,
        });
    }
    let path = match &args.file {
        Some(file) => PathBuf::from(file),
        None => default_dockerfile(Path::new(args.context()))?,
    };
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading the Dockerfile {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(DockerfileSource {
        text,
        display: name_in_context(&path, Path::new(args.context())),
        bytes,
    })
}

/// The Dockerfile's name relative to the context when it is inside it (`-f $PWD/Dockerfile .`
/// too): exported caches identify steps by it, so it must not hold a machine's paths.
fn name_in_context(path: &Path, context: &Path) -> String {
    if let Ok(inner) = path.strip_prefix(context) {
        return inner.display().to_string();
    }
    if let (Ok(real_path), Ok(real_context)) =
        (std::fs::canonicalize(path), std::fs::canonicalize(context))
        && let Ok(inner) = real_path.strip_prefix(&real_context)
    {
        return inner.display().to_string();
    }
    path.display().to_string()
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

/// Exit status after Ctrl-C or SIGTERM, as shells report a SIGINT death.
const EXIT_CANCELLED: u8 = 130;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_name_leaves_out_the_context_path() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        std::fs::create_dir_all(context.join("docker")).unwrap();
        std::fs::write(context.join("docker/Dockerfile"), "FROM scratch\n").unwrap();
        let absolute = context.join("docker/Dockerfile");
        assert_eq!(name_in_context(&absolute, &context), "docker/Dockerfile");
        // An absolute -f with the context given as another spelling of the same directory.
        let spelled = dir.path().join("ctx/../ctx");
        assert_eq!(name_in_context(&absolute, &spelled), "docker/Dockerfile");
        let outside = dir.path().join("Dockerfile.ci");
        std::fs::write(&outside, "FROM scratch\n").unwrap();
        assert_eq!(
            name_in_context(&outside, &context),
            outside.display().to_string()
        );
    }
}
