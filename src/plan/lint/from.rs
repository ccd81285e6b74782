//! Rules about FROM lines once expanded with the global ARGs, as BuildKit's
//! `buildDispatchStates`: undeclared ARGs, `--platform` set to a constant or to
//! `$TARGETPLATFORM`, and bases that only a `--build-arg` makes valid.

use std::collections::BTreeSet;

use super::rules::{
    FROM_PLATFORM_FLAG_CONST_DISALLOWED, INVALID_BASE_IMAGE_PLATFORM, INVALID_DEFAULT_ARG_IN_FROM,
    REDUNDANT_TARGET_PLATFORM, UNDEFINED_ARG_IN_FROM,
};
use super::{Emitter, Input, ResolvedImage};
use crate::gocompat::go_quote;
use crate::instruction::{self, Instruction, Stage};
use crate::oci::{Platform, Reference};
use crate::shell::{Expansion, Lexer};
use crate::syntax::Span;

/// The global ARGs as FROM sees them, and every name declared before the first FROM.
pub(super) struct GlobalArgs {
    pub env: Vec<(String, String)>,
    declared: BTreeSet<String>,
}

/// What a stage is built on, once its FROM is expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Base {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image (`scratch` included), for the platform.
    Image {
        reference: String,
        platform: Platform,
    },
    /// A FROM that does not expand.
    Unknown,
}

/// Runs the FROM rules; returns what each stage is built on.
pub(super) fn check(input: &Input, out: &mut Emitter) -> Vec<Base> {
    let lexer = Lexer::new(input.file.escape);
    invalid_default_args(input, &lexer, out);
    let globals = global_args(input, &lexer, true);
    let mut known: BTreeSet<&str> = globals.declared.iter().map(String::as_str).collect();
    known.extend(globals.env.iter().map(|(k, _)| k.as_str()));
    let stages = input.stages;
    let mut bases = Vec::with_capacity(stages.stages.len());
    for stage in &stages.stages {
        let comments = &stage.from.doc_comments;
        let span = stage.from.span;
        let base = lexer.process_word(&stage.base, &globals.env).ok();
        if let Some(base) = &base {
            undefined_args(&base.unmatched, &known, span, comments, out);
        }
        let mut platform = input.target_platform.clone();
        if let Some(written) = &stage.platform
            && let Ok(expanded) = lexer.process_word(written, &globals.env)
        {
            undefined_args(&expanded.unmatched, &known, span, comments, out);
            redundant_target_platform(written, &expanded, &globals.env, stage, out);
            constant_platform(&expanded, stage, out);
            platform = Platform::parse(&expanded.value).unwrap_or(platform);
        }
        bases.push(match base {
            None => Base::Unknown,
            Some(base) => match stages.find_before(&base.value, stage.index) {
                Some(parent) => Base::Stage(parent.index),
                None => Base::Image {
                    reference: base.value,
                    platform,
                },
            },
        });
    }
    bases
}

/// The base images `input.images` has at hand (`None` for stages on stages, `scratch`
/// and images it lacks); reports InvalidBaseImagePlatform for those of another platform.
pub(super) fn known_images(
    input: &Input,
    bases: &[Base],
    out: &mut Emitter,
) -> Vec<Option<ResolvedImage>> {
    let stages = input.stages.stages.iter();
    stages
        .zip(bases)
        .map(|(stage, base)| {
            let Base::Image {
                reference,
                platform,
            } = base
            else {
                return None;
            };
            if reference == "scratch" {
                return None;
            }
            let image = input.images?.find(reference, platform)?;
            if let Some(actual) = &image.platform {
                base_platform(reference, platform, actual, stage, out);
            }
            Some(image)
        })
        .collect()
}

/// InvalidBaseImagePlatform: the image at hand is for another OS or architecture.
fn base_platform(
    reference: &str,
    expected: &Platform,
    actual: &Platform,
    stage: &Stage,
    out: &mut Emitter,
) {
    if expected.os == actual.os && expected.architecture == actual.architecture {
        return;
    }
    out.emit(
        &INVALID_BASE_IMAGE_PLATFORM,
        &stage.from.doc_comments,
        stage.from.span,
        format!(
            "Base image {reference} was pulled with platform {}, expected {} for current build",
            go_quote(&actual.normalized().to_string()),
            go_quote(&expected.normalized().to_string())
        ),
    );
}

/// ARGs before the first FROM, over the predefined platform ARGs; with the build args
/// when `with_build_args`, else from their defaults only.
pub(super) fn global_args(input: &Input, lexer: &Lexer, with_build_args: bool) -> GlobalArgs {
    let mut env = predefined_args(input);
    let mut declared = BTreeSet::new();
    for command in &input.stages.global_args {
        let Instruction::Arg(decls) = &command.instruction else {
            continue;
        };
        for decl in decls {
            declared.insert(decl.name.clone());
            let given = with_build_args
                .then(|| input.build_args.get(&decl.name).cloned())
                .flatten();
            let value = given.or_else(|| {
                let default = decl.default.as_ref()?;
                lexer.process_word(default, &env).ok().map(|e| e.value)
            });
            if let Some(value) = value {
                env.retain(|(k, _)| *k != decl.name);
                env.push((decl.name.clone(), value));
            }
        }
    }
    GlobalArgs { env, declared }
}

fn predefined_args(input: &Input) -> Vec<(String, String)> {
    let (build, target) = (input.build_platform, input.target_platform);
    let target_stage = input
        .target
        .map(str::to_string)
        .or_else(|| input.stages.stages.last().and_then(|s| s.name.clone()))
        .unwrap_or_default();
    let values = [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
        ("TARGETSTAGE", target_stage),
    ];
    values
        .into_iter()
        .map(|(name, value)| {
            let value = input.build_args.get(name).cloned().unwrap_or(value);
            (name.to_string(), value)
        })
        .collect()
}

/// UndefinedArgInFrom: a variable of FROM that no global ARG declares.
fn undefined_args(
    unmatched: &BTreeSet<String>,
    known: &BTreeSet<&str>,
    span: Span,
    comments: &[String],
    out: &mut Emitter,
) {
    for name in unmatched.iter().filter(|n| !known.contains(n.as_str())) {
        let hint = instruction::closest(name, known.iter().copied())
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        out.emit(
            &UNDEFINED_ARG_IN_FROM,
            comments,
            span,
            format!("FROM argument '{name}' is not declared{hint}"),
        );
    }
}

/// RedundantTargetPlatform: `--platform=$TARGETPLATFORM` alone.
fn redundant_target_platform(
    written: &str,
    expanded: &Expansion,
    env: &[(String, String)],
    stage: &Stage,
    out: &mut Emitter,
) {
    const TARGET_PLATFORM: &str = "TARGETPLATFORM";
    let only_target = expanded.unmatched.is_empty()
        && expanded.matched.len() == 1
        && expanded.matched.contains(TARGET_PLATFORM);
    let value = env.iter().rev().find(|(k, _)| k == TARGET_PLATFORM);
    if only_target && value.is_some_and(|(_, v)| *v == expanded.value) {
        out.emit(
            &REDUNDANT_TARGET_PLATFORM,
            &stage.from.doc_comments,
            stage.from.span,
            format!(
                "Setting platform to predefined {written} in FROM is redundant as this is the default behavior"
            ),
        );
    }
}

/// FromPlatformFlagConstDisallowed: a constant `--platform`, unless the stage's name
/// says which platform it is for.
fn constant_platform(expanded: &Expansion, stage: &Stage, out: &mut Emitter) {
    if !expanded.matched.is_empty() || !expanded.unmatched.is_empty() {
        return;
    }
    let Ok(platform) = Platform::parse(&expanded.value) else {
        return;
    };
    // BuildKit compares with the lower-cased stage name.
    let name = stage.name.as_deref().unwrap_or_default();
    if name.contains(&platform.os) || name.contains(&platform.architecture) {
        return;
    }
    out.emit(
        &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
        &stage.from.doc_comments,
        stage.from.span,
        format!(
            "FROM --platform flag should not use constant value {}",
            go_quote(&expanded.value)
        ),
    );
}

/// InvalidDefaultArgInFrom: with no build args, a base that expands to no valid image
/// name. Gives up (as BuildKit does) when a default cannot be expanded.
fn invalid_default_args(input: &Input, lexer: &Lexer, out: &mut Emitter) {
    let defaults = global_args(input, lexer, false);
    for stage in &input.stages.stages {
        let Ok(base) = lexer.process_word(&stage.base, &defaults.env) else {
            return;
        };
        if base.value.parse::<Reference>().is_err() {
            out.emit(
                &INVALID_DEFAULT_ARG_IN_FROM,
                &[],
                stage.from.span,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    stage.base
                ),
            );
        }
    }
}
