//! BuildKit's Dockerfile build checks (`docker build --check`): the rules of BuildKit's
//! `linter` package, by their names and with their messages, run over a parsed
//! Dockerfile. Pure: what needs the files of the context or a pulled image is not checked
//! here.
//!
//! Rules about the text (casing, comments, continuation lines) read the syntax tree;
//! rules about a stage follow the stages in order, with what a stage inherits from the
//! stage it is built on (its SHELL, whether a WORKDIR was set); rules about FROM expand
//! the base and `--platform` with the global ARGs as the planner does. CopyIgnoredFile
//! reads the context's `.dockerignore` through [`IgnoreRules`]; UndefinedVar follows
//! each stage's environment from its base, known through [`BaseImages`].

mod config;
mod error;
mod from;
mod ignored;
mod reach;
mod rules;
mod stage;
#[cfg(test)]
mod tests;
mod text;
mod vars;

use std::collections::BTreeMap;

pub use config::Config;
pub use error::Error;
pub use ignored::IgnoreRules;
pub use rules::Rule;

use super::{Platform, ResolvedImage};
use crate::instruction::Stages;
use crate::syntax::{Dockerfile, Span};

/// Base images as far as they are at hand without pulling: their environment (for
/// UndefinedVar), SHELL (for JSONArgsRecommended) and platform (for
/// InvalidBaseImagePlatform).
pub trait BaseImages {
    /// The image `reference` for `platform`; `None` when it is not at hand.
    fn find(&self, reference: &str, platform: &Platform) -> Option<ResolvedImage>;
}

/// The build argument that replaces the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// What the checks look at.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub file: &'a Dockerfile,
    pub stages: &'a Stages,
    /// `--build-arg` values (`BUILDKIT_DOCKERFILE_CHECK` among them).
    pub build_args: &'a BTreeMap<String, String>,
    pub target_platform: &'a Platform,
    pub build_platform: &'a Platform,
    /// `--target` (for `TARGETSTAGE`, and the stages it needs); the last stage when `None`.
    pub target: Option<&'a str>,
    /// Run the per-instruction rules over every stage (`--call check` without
    /// `--target`), not only over the stages the target needs (a build).
    pub every_stage: bool,
    /// The context's `.dockerignore`, when there is one.
    pub ignore: Option<&'a dyn IgnoreRules>,
    /// The environment of base images, for UndefinedVar.
    pub images: Option<&'a dyn BaseImages>,
}

/// One rule broken at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// The instruction (or line) at fault.
    pub span: Span,
    /// The rule's message for this case (BuildKit's "detail").
    pub message: String,
}

impl Finding {
    /// BuildKit's one-line form: `Rule: message (line N)`.
    pub fn short(&self) -> String {
        format!(
            "{}: {} (line {})",
            self.rule.name, self.message, self.span.start.line
        )
    }
}

/// Every finding, in the order of the Dockerfile, and whether they fail the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// `error=true` was asked for.
    pub error: bool,
}

impl Report {
    /// BuildKit's error when `error=true` and a rule was broken.
    pub fn violation(&self) -> Option<String> {
        if !self.error || self.findings.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = self.findings.iter().map(|f| f.rule.name).collect();
        names.sort_unstable();
        names.dedup();
        Some(format!(
            "lint violation found for rules: {}",
            names.join(", ")
        ))
    }
}

/// Runs every enabled rule over `input`.
pub fn check(input: &Input) -> Result<Report, Error> {
    let config = match input.build_args.get(CHECK_BUILD_ARG) {
        Some(value) => Config::parse(value)?,
        None => input
            .file
            .directives
            .iter()
            .find(|d| d.name == "check")
            .map_or_else(|| Ok(Config::default()), |d| Config::parse(&d.value))?,
    };
    let mut out = Emitter {
        config: &config,
        findings: Vec::new(),
    };
    text::check(input.file, &mut out);
    let bases = from::check(input, &mut out);
    let images = from::known_images(input, &bases, &mut out);
    let dispatched = reach::dispatched(input, &bases);
    stage::check(input, &bases, &images, &dispatched, &mut out);
    vars::check(input, &bases, &images, &dispatched, &mut out);
    let mut findings = out.findings;
    findings.sort_by_key(|f| f.span.start.offset);
    Ok(Report {
        findings,
        error: config.error,
    })
}

/// Collects the findings of enabled rules.
struct Emitter<'a> {
    config: &'a Config,
    findings: Vec<Finding>,
}

impl Emitter<'_> {
    /// Records a finding of `rule` at `span` unless the configuration, with the
    /// `check=` comments right above the instruction, turns the rule off.
    fn emit(&mut self, rule: &'static Rule, comments: &[String], span: Span, message: String) {
        let enabled = if comments.is_empty() {
            self.config.enabled(rule)
        } else {
            self.config.with_comments(comments).enabled(rule)
        };
        if enabled {
            self.findings.push(Finding {
                rule,
                span,
                message,
            });
        }
    }
}
