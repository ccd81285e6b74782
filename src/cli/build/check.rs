//! `kiln build --call check` (as text or, with `format=json`, BuildKit's lint result), and
//! the lint findings a build prints at its end.

use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use serde::Serialize;

use super::{BuildArgs, DockerfileSource, options};
use crate::build::{CheckOptions, Diagnostic, ParsedDockerfile, Severity};
use crate::cli::EXIT_USAGE;
use crate::cli::image::GlobalArgs;
use crate::plan::Platform;
use crate::plan::lint::{Finding, Report};
use crate::store::{Store, select_root};
use crate::syntax::Span;

/// The inputs of the checks that come from the command line.
pub(super) struct CheckInputs {
    build_args: std::collections::BTreeMap<String, String>,
    platform: Option<Platform>,
    store: Option<Store>,
}

impl CheckInputs {
    pub(super) fn new(args: &BuildArgs, store: Option<Store>) -> anyhow::Result<CheckInputs> {
        // The checks look at the first platform asked for.
        let platform = options::parse_platforms(args.platform.as_deref())?
            .into_iter()
            .next();
        Ok(CheckInputs {
            build_args: options::key_values(&args.build_args, true)?,
            platform,
            store,
        })
    }

    pub(super) fn options<'a>(
        &'a self,
        args: &'a BuildArgs,
        source: &'a DockerfileSource,
    ) -> CheckOptions<'a> {
        CheckOptions {
            build_args: &self.build_args,
            platform: self.platform.as_ref(),
            target: args.target.as_deref(),
            context: (args.context() != "-").then(|| Path::new(args.context())),
            dockerfile_name: &source.display,
            store: self.store.as_ref(),
            // As BuildKit: a check without a target covers every stage, a build the
            // stages it needs.
            every_stage: args.target.is_none()
                && (args.check || args.call.method == super::Call::Check),
        }
    }
}

/// The store, when one exists already: a check creates nothing.
pub(super) fn existing_store(global: &GlobalArgs) -> Option<Store> {
    let root = select_root(global.root.as_deref()).ok()?;
    root.is_dir().then(|| Store::open(&root).ok()).flatten()
}

/// `--call check` of a Dockerfile that parsed.
pub(super) fn run(
    args: &BuildArgs,
    global: &GlobalArgs,
    source: &DockerfileSource,
    parsed: &ParsedDockerfile,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inputs = CheckInputs::new(args, existing_store(global))?;
    let options = inputs.options(args, source);
    let report = match parsed.lint(&options) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut errors = parsed.plan_problems(&options);
    if let Some(violation) = report.violation() {
        let span = report.findings.first().map(|f| f.span).unwrap_or_default();
        errors.push(Diagnostic {
            severity: Severity::Error,
            span,
            message: violation,
        });
    }
    if json {
        println!("{}", json_result(source, &report.findings, errors.first()));
    } else {
        print_text(source, &report, &errors);
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USAGE)
    })
}

/// `--call check` of a Dockerfile that did not parse.
pub(super) fn parse_failed(
    source: &DockerfileSource,
    diagnostics: &[Diagnostic],
    json: bool,
) -> ExitCode {
    let errors: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if json {
        println!("{}", json_result(source, &[], errors.first().copied()));
    } else {
        for d in diagnostics {
            show(source, d);
        }
        let plural = if errors.len() == 1 { "" } else { "s" };
        eprintln!("Check complete: {} problem{plural} found.", errors.len());
    }
    ExitCode::from(EXIT_USAGE)
}

fn print_text(source: &DockerfileSource, report: &Report, errors: &[Diagnostic]) {
    for finding in &report.findings {
        source.report(Severity::Warning, finding.span, &finding_text(finding));
    }
    for error in errors {
        show(source, error);
    }
    let warnings = report.findings.len();
    match (errors.len(), warnings) {
        (0, 0) => println!("Check complete: no problems found."),
        (0, 1) => println!("Check complete: no errors, 1 warning."),
        (0, n) => println!("Check complete: no errors, {n} warnings."),
        (1, _) => eprintln!("Check complete: 1 problem found."),
        (n, _) => eprintln!("Check complete: {n} problems found."),
    }
}

/// `Rule: message` and where the rule is described.
fn finding_text(finding: &Finding) -> String {
    let rule = finding.rule;
    let about = rule.url().unwrap_or_else(|| rule.description.to_string());
    format!("{}: {} ({about})", rule.name, finding.message)
}

fn show(source: &DockerfileSource, diagnostic: &Diagnostic) {
    // Some problems (an unknown --target) are about no line of the Dockerfile.
    if diagnostic.span.start.line == 0 {
        eprintln!("error: {}", diagnostic.message);
    } else {
        source.report(diagnostic.severity, diagnostic.span, &diagnostic.message);
    }
}

/// BuildKit's lint result (`result.json` of its `frontend.lint` request), fields in its
/// order: the warnings, the Dockerfile as source 0, the error that stopped the check.
#[derive(Serialize)]
struct LintResult<'a> {
    warnings: Vec<JsonWarning<'a>>,
    sources: [JsonSource<'a>; 1],
    #[serde(rename = "buildError", skip_serializing_if = "Option::is_none")]
    build_error: Option<JsonError<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonWarning<'a> {
    rule_name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    detail: &'a str,
    location: JsonLocation,
}

#[derive(Serialize)]
struct JsonSource<'a> {
    filename: &'a str,
    data: String,
    language: &'static str,
}

#[derive(Serialize)]
struct JsonError<'a> {
    message: &'a str,
    location: JsonLocation,
}

/// A location in source 0 by lines, as BuildKit gives them (protobuf's JSON leaves out
/// the zero `sourceIndex` and characters).
#[derive(Serialize)]
struct JsonLocation {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ranges: Vec<JsonRange>,
}

#[derive(Serialize)]
struct JsonRange {
    start: JsonLine,
    end: JsonLine,
}

#[derive(Serialize)]
struct JsonLine {
    line: usize,
}

impl JsonLocation {
    fn of(span: Span) -> JsonLocation {
        let (first, last) = span.lines();
        let ranges = (first > 0)
            .then_some(JsonRange {
                start: JsonLine { line: first },
                end: JsonLine { line: last },
            })
            .into_iter()
            .collect();
        JsonLocation { ranges }
    }
}

fn json_result(
    source: &DockerfileSource,
    findings: &[Finding],
    error: Option<&Diagnostic>,
) -> String {
    let result = LintResult {
        warnings: findings
            .iter()
            .map(|f| JsonWarning {
                rule_name: f.rule.name,
                description: f.rule.description,
                url: f.rule.url(),
                detail: &f.message,
                location: JsonLocation::of(f.span),
            })
            .collect(),
        sources: [JsonSource {
            filename: &source.display,
            data: base64::engine::general_purpose::STANDARD.encode(&source.bytes),
            language: "Dockerfile",
        }],
        build_error: error.map(|e| JsonError {
            message: &e.message,
            location: JsonLocation::of(e.span),
        }),
    };
    serde_json::to_string_pretty(&result).unwrap_or_default()
}

/// After a build: `N warnings found:` and one line per finding, as buildx ends a build.
pub(super) fn print_summary(findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let plural = if findings.len() == 1 { "" } else { "s" };
    eprintln!("{} warning{plural} found:", findings.len());
    for finding in findings {
        eprintln!(" - {}", finding.short());
    }
}

/// Before a build: a broken rule under `error=true` stops it, as BuildKit does.
pub(super) fn stops_build(source: &DockerfileSource, report: &Report) -> Option<ExitCode> {
    let violation = report.violation()?;
    for finding in &report.findings {
        source.report(Severity::Warning, finding.span, &finding_text(finding));
    }
    eprintln!("error: {violation}");
    Some(ExitCode::FAILURE)
}
