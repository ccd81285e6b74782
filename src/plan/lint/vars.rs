//! UndefinedVar: a variable an instruction expands that neither the stage's environment
//! (its base's, its ENVs, its ARGs with values) nor a declared ARG defines, followed as
//! BuildKit's dispatch expands each instruction's words.

use std::collections::BTreeSet;

use super::ResolvedImage;
use super::from::{Base, GlobalArgs, global_args};
use super::rules::UNDEFINED_VAR;
use super::{Emitter, Input};
use crate::instruction::{self, ArgDecl, Command, Instruction, Source, Stage};
use crate::shell::Lexer;

/// BuildKit's PATH when the base image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Build args BuildKit never puts in the environment.
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

type Env = Vec<(String, String)>;

/// Follows every stage whose starting environment is known (`scratch`, an earlier
/// stage, an image at hand in `images`): a stage on an unknown image is not checked,
/// since any name might come from it.
pub(super) fn check(
    input: &Input,
    bases: &[Base],
    images: &[Option<ResolvedImage>],
    dispatched: &[bool],
    out: &mut Emitter,
) {
    let lexer = Lexer::new(input.file.escape);
    let globals = global_args(input, &lexer, true);
    let mut final_envs: Vec<Option<Env>> = Vec::with_capacity(bases.len());
    let stages = input.stages.stages.iter().zip(dispatched);
    for ((stage, dispatched), (base, image)) in stages.zip(bases.iter().zip(images)) {
        let start = match (base, image) {
            _ if !dispatched => None,
            (Base::Stage(parent), _) => final_envs.get(*parent).cloned().flatten(),
            (Base::Image { reference, .. }, _) if reference == "scratch" => Some(Vec::new()),
            (_, Some(image)) => Some(image.config.env.iter().map(|e| split_entry(e)).collect()),
            _ => None,
        };
        let end = start.map(|mut env| {
            if !env.iter().any(|(k, _)| k == "PATH") {
                env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
            }
            let mut dispatch = Dispatch {
                input,
                lexer,
                globals: &globals,
                env,
                declared: BTreeSet::new(),
            };
            dispatch.stage(stage, out);
            dispatch.env
        });
        final_envs.push(end);
    }
}

fn split_entry(entry: &str) -> (String, String) {
    let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
    (key.to_string(), value.to_string())
}

/// One stage being followed.
struct Dispatch<'a> {
    input: &'a Input<'a>,
    lexer: Lexer,
    globals: &'a GlobalArgs,
    env: Env,
    /// Names of the stage's ARGs so far (with or without a value).
    declared: BTreeSet<String>,
}

impl Dispatch<'_> {
    fn stage(&mut self, stage: &Stage, out: &mut Emitter) {
        for command in &stage.commands {
            match &command.instruction {
                Instruction::Arg(decls) => {
                    for decl in decls {
                        self.arg(decl, command, out);
                    }
                }
                Instruction::Env(pairs) => {
                    let expanded: Vec<(String, String)> = pairs
                        .iter()
                        .map(|pair| {
                            (
                                self.word(&pair.key, command, out),
                                self.word(&pair.value, command, out),
                            )
                        })
                        .collect();
                    for (key, value) in expanded {
                        self.set(key, value);
                    }
                }
                _ => {
                    for word in words(&command.instruction) {
                        self.word(word, command, out);
                    }
                }
            }
        }
    }

    /// BuildKit's `dispatchArg`: a build arg, else the global ARG of that name, else the
    /// default expanded here.
    fn arg(&mut self, decl: &ArgDecl, command: &Command, out: &mut Emitter) {
        let name = &decl.name;
        let value = match (self.input.build_args.get(name), &decl.default) {
            (Some(given), _) => Some(given.clone()),
            (None, Some(default)) => Some(self.word(default, command, out)),
            (None, None) => self
                .globals
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        };
        if let Some(value) = value
            && !NON_ENV_ARGS.contains(&name.as_str())
        {
            self.set(name.clone(), value);
        }
        self.declared.insert(name.clone());
    }

    fn set(&mut self, key: String, value: String) {
        match self.env.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.env.push((key, value)),
        }
    }

    /// Expands `word`, reporting the names it uses that nothing defines; returns the
    /// expansion (the word itself when it does not expand).
    fn word(&self, word: &str, command: &Command, out: &mut Emitter) -> String {
        let Ok(expansion) = self.lexer.process_word(word, &self.env) else {
            return word.to_string();
        };
        let undefined = expansion.unmatched.iter().filter(|name| {
            !self.declared.contains(*name) && !NON_ENV_ARGS.contains(&name.as_str())
        });
        for name in undefined {
            let hint = instruction::closest(name, self.env.iter().map(|(k, _)| k.as_str()))
                .map(|s| format!(" (did you mean ${s}?)"))
                .unwrap_or_default();
            out.emit(
                &UNDEFINED_VAR,
                &command.doc_comments,
                command.span,
                format!("Usage of undefined variable '${name}'{hint}"),
            );
        }
        expansion.value
    }
}

/// The words BuildKit expands in an instruction other than ARG and ENV.
fn words(instruction: &Instruction) -> Vec<&String> {
    match instruction {
        Instruction::Label(pairs) => pairs.iter().flat_map(|p| [&p.key, &p.value]).collect(),
        Instruction::Copy(copy) => transfer_words(&copy.transfer, None),
        Instruction::Add(add) => transfer_words(&add.transfer, add.checksum.as_ref()),
        Instruction::Workdir(word) | Instruction::User(word) | Instruction::StopSignal(word) => {
            vec![word]
        }
        Instruction::Volume(paths) => paths.iter().collect(),
        _ => Vec::new(),
    }
}

fn transfer_words<'a>(
    transfer: &'a instruction::Transfer,
    checksum: Option<&'a String>,
) -> Vec<&'a String> {
    let mut words: Vec<&String> = [&transfer.chown, &transfer.chmod]
        .into_iter()
        .flatten()
        .chain(checksum)
        .collect();
    words.extend(transfer.sources.iter().filter_map(|source| match source {
        Source::Path(path) => Some(path),
        Source::Heredoc(_) => None,
    }));
    words.push(&transfer.dest);
    words
}
