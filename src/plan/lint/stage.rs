//! Rules about the stages and their instructions: stage names, instruction casing
//! across the file, and, stage by stage, what BuildKit's dispatch checks (CMD and
//! ENTRYPOINT form, WORKDIR, repeated instructions, ENV/LABEL form, secrets in ARG/ENV,
//! EXPOSE, sources left out by `.dockerignore`).

use std::collections::BTreeSet;

use super::from::Base;
use super::rules::{
    CONSISTENT_INSTRUCTION_CASING, DUPLICATE_STAGE_NAME, EXPOSE_INVALID_FORMAT,
    EXPOSE_PROTO_CASING, JSON_ARGS_RECOMMENDED, LEGACY_KEY_VALUE_FORMAT,
    MULTIPLE_INSTRUCTIONS_DISALLOWED, RESERVED_STAGE_NAME, SECRETS_USED_IN_ARG_OR_ENV,
    WORKDIR_RELATIVE_PATH,
};
use super::{Emitter, IgnoreRules, Input, ResolvedImage, ignored};
use crate::gocompat::{go_lowercase, go_quote};
use crate::instruction::{Command, Instruction, KeyValue, Stages};
use crate::syntax::Span;

/// Names BuildKit gives a meaning of its own.
const RESERVED_STAGE_NAMES: [&str; 2] = ["context", "scratch"];

/// What a stage hands on to the stages built on it.
#[derive(Debug, Clone, Copy, Default)]
struct Inherited {
    /// A SHELL was set.
    shell: bool,
    /// A WORKDIR was set.
    workdir: bool,
}

/// `bases[i]`: what stage `i` is built on; `dispatched[i]`: whether the per-instruction
/// rules run over it.
pub(super) fn check(
    input: &Input,
    bases: &[Base],
    images: &[Option<ResolvedImage>],
    dispatched: &[bool],
    out: &mut Emitter,
) {
    let stages = input.stages;
    stage_names(stages, out);
    instruction_casing(stages, out);
    let mut handed_on: Vec<Inherited> = Vec::with_capacity(stages.stages.len());
    for (index, stage) in stages.stages.iter().enumerate() {
        if !dispatched.get(index).copied().unwrap_or(true) {
            handed_on.push(Inherited::default());
            continue;
        }
        let start = match (bases.get(index), images.get(index)) {
            (Some(Base::Stage(parent)), _) => handed_on.get(*parent).copied().unwrap_or_default(),
            (_, Some(Some(image))) => Inherited {
                shell: !image.config.shell.is_empty(),
                workdir: false,
            },
            _ => Inherited::default(),
        };
        handed_on.push(commands(&stage.commands, start, input.ignore, out));
    }
}

fn stage_names(stages: &Stages, out: &mut Emitter) {
    let mut seen = BTreeSet::new();
    for stage in &stages.stages {
        let Some(name) = &stage.name else {
            continue;
        };
        let span = stage.from.span;
        if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
            let message = format!(
                "Stage name should not use the same name as reserved stage {}",
                go_quote(name)
            );
            out.emit(&RESERVED_STAGE_NAME, &[], span, message);
        }
        if !seen.insert(name.as_str()) {
            let message = format!(
                "Duplicate stage name {}, stage names should be unique",
                go_quote(name)
            );
            out.emit(&DUPLICATE_STAGE_NAME, &[], span, message);
        }
    }
}

/// ConsistentInstructionCasing: each keyword all lower or all upper case, as most of
/// the keywords of the stages are (upper case on a tie).
fn instruction_casing(stages: &Stages, out: &mut Emitter) {
    let all = || {
        stages
            .stages
            .iter()
            .flat_map(|stage| std::iter::once(&stage.from).chain(&stage.commands))
    };
    let (mut lower, mut upper) = (0usize, 0usize);
    for command in all() {
        let keyword = &command.keyword;
        if go_lowercase(keyword) == *keyword {
            lower += 1;
        } else if keyword.to_uppercase() == *keyword {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for command in all() {
        let keyword = &command.keyword;
        let casing = if majority_lower && go_lowercase(keyword) != *keyword {
            "lowercase"
        } else if !majority_lower && keyword.to_uppercase() != *keyword {
            "uppercase"
        } else {
            continue;
        };
        out.emit(
            &CONSISTENT_INSTRUCTION_CASING,
            &[],
            command.span,
            format!("Command '{keyword}' should match the case of the command majority ({casing})"),
        );
    }
}

/// Where CMD, ENTRYPOINT and HEALTHCHECK were last set in the stage.
#[derive(Default)]
struct LastSet {
    cmd: Option<Span>,
    entrypoint: Option<Span>,
    healthcheck: Option<Span>,
}

/// The per-instruction rules of one stage; returns what the stage hands on.
fn commands(
    commands: &[Command],
    mut state: Inherited,
    ignore: Option<&dyn IgnoreRules>,
    out: &mut Emitter,
) -> Inherited {
    let mut last = LastSet::default();
    for command in commands {
        if let Some(ignore) = ignore {
            ignored::check(command, ignore, out);
        }
        let comments = &command.doc_comments;
        match &command.instruction {
            Instruction::Shell(_) => state.shell = true,
            Instruction::Cmd(line) | Instruction::Entrypoint(line) => {
                let slot = match &command.instruction {
                    Instruction::Cmd(_) => &mut last.cmd,
                    _ => &mut last.entrypoint,
                };
                used_once(command, slot, out);
                if line.prepend_shell && !state.shell {
                    out.emit(
                        &JSON_ARGS_RECOMMENDED,
                        comments,
                        command.span,
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            command.keyword
                        ),
                    );
                }
            }
            Instruction::Healthcheck(_) => used_once(command, &mut last.healthcheck, out),
            Instruction::Workdir(path) => {
                // Only the first WORKDIR of the chain matters: it fixes the later ones.
                // A path starting with a variable cannot be judged before expansion.
                if !state.workdir && !path.starts_with('/') && !path.starts_with('$') {
                    out.emit(
                        &WORKDIR_RELATIVE_PATH,
                        comments,
                        command.span,
                        format!(
                            "Relative workdir {} can have unexpected results if the base image changes",
                            go_quote(path)
                        ),
                    );
                }
                state.workdir = true;
            }
            Instruction::Env(pairs) => {
                key_values(command, pairs, out);
                for pair in pairs {
                    secret_name("ENV", &pair.key, command, out);
                }
            }
            Instruction::Label(pairs) => key_values(command, pairs, out),
            Instruction::Arg(decls) => {
                for decl in decls {
                    secret_name("ARG", &decl.name, command, out);
                }
            }
            Instruction::Expose(ports) => {
                for port in ports {
                    expose(port, command, out);
                }
            }
            _ => {}
        }
    }
    state
}

/// MultipleInstructionsDisallowed: reported at the earlier instruction, the one that
/// has no effect.
fn used_once(command: &Command, last: &mut Option<Span>, out: &mut Emitter) {
    if let Some(earlier) = last.replace(command.span) {
        out.emit(
            &MULTIPLE_INSTRUCTIONS_DISALLOWED,
            &command.doc_comments,
            earlier,
            format!(
                "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                command.keyword
            ),
        );
    }
}

/// LegacyKeyValueFormat: `ENV key value`.
fn key_values(command: &Command, pairs: &[KeyValue], out: &mut Emitter) {
    let name = &command.keyword;
    for _ in pairs.iter().filter(|pair| pair.legacy) {
        out.emit(
            &LEGACY_KEY_VALUE_FORMAT,
            &command.doc_comments,
            command.span,
            format!(
                "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
            ),
        );
    }
}

/// Words of a name that suggest a secret, and words that say it is not one.
const SECRET_WORDS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const NOT_SECRET_WORDS: [&str; 3] = ["public", "file", "version"];

/// SecretsUsedInArgOrEnv: a name with a `_`-separated word that suggests a secret.
fn secret_name(instruction: &str, name: &str, command: &Command, out: &mut Emitter) {
    let has_word = |words: &[&str]| {
        name.split('_')
            .any(|part| words.iter().any(|w| part.eq_ignore_ascii_case(w)))
    };
    if has_word(&SECRET_WORDS) && !has_word(&NOT_SECRET_WORDS) {
        out.emit(
            &SECRETS_USED_IN_ARG_OR_ENV,
            &command.doc_comments,
            command.span,
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
                go_quote(name)
            ),
        );
    }
}

/// ExposeProtoCasing and ExposeInvalidFormat, for one `[[ip:]host:]port[/proto]`.
fn expose(raw: &str, command: &Command, out: &mut Emitter) {
    let parts: Vec<&str> = raw.split(':').collect();
    let (container, mapping) = parts.split_last().unwrap_or((&"", &[]));
    // `ip:host:port` or `host:port`: either given is a mapping EXPOSE cannot make.
    let maps_host = mapping.iter().any(|part| !part.is_empty());
    let mut proto = container.split('/');
    if proto.next().is_none_or(str::is_empty) {
        return; // An invalid port: the planner rejects it.
    }
    let proto = proto.next().unwrap_or_default();
    if go_lowercase(proto) != proto {
        out.emit(
            &EXPOSE_PROTO_CASING,
            &command.doc_comments,
            command.span,
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
        );
    }
    if maps_host {
        out.emit(
            &EXPOSE_INVALID_FORMAT,
            &command.doc_comments,
            command.span,
            format!(
                "EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"
            ),
        );
    }
}
