//! Splitting typed instructions into stages: global ARGs, then one stage per FROM.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::convert::parse_command;
use super::{Command, Error, From, Instruction};
use crate::gocompat::go_lowercase;
use crate::syntax::{Dockerfile, Node, Warning};

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    /// The base as written: an image reference, `scratch`, or an earlier stage.
    pub base: String,
    pub platform: Option<String>,
    /// The FROM line.
    pub from: Command,
    /// Instructions after FROM.
    pub commands: Vec<Command>,
}

impl Stage {
    /// The description from the comment above FROM (`# name does things`).
    pub fn description(&self) -> Option<String> {
        self.from.description_of(self.name.as_deref()?)
    }

    /// The name `--target` and progress output use: the AS name, else the index.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A Dockerfile split into stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// ARG lines before the first FROM.
    pub global_args: Vec<Command>,
    pub stages: Vec<Stage>,
    /// Problems that do not stop the build (a stage name used twice).
    pub warnings: Vec<Warning>,
}

impl Stages {
    /// A stage by name (case-insensitive) or index, as the whole file sees it.
    pub fn find(&self, reference: &str) -> Option<&Stage> {
        self.find_before(reference, self.stages.len())
    }

    /// A stage by name or index among the stages before `before`: what an
    /// instruction of stage `before` can refer to. When a name is used twice the
    /// later stage wins, as in BuildKit.
    pub fn find_before(&self, reference: &str, before: usize) -> Option<&Stage> {
        let earlier = &self.stages[..before.min(self.stages.len())];
        let lower = go_lowercase(reference);
        earlier
            .iter()
            .rev()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                reference
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| earlier.get(index))
            })
    }
}

/// Types every instruction of `file` and splits them into stages. Returns every
/// problem found, in source order, not just the first.
pub fn parse(file: &Dockerfile) -> Result<Stages, Vec<Error>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut global_args = Vec::new();
    let mut first_line_of_name = HashMap::new();
    let mut stages: Vec<Stage> = Vec::new();

    for node in &file.instructions {
        let command = match parse_command(node) {
            Ok(command) => command,
            Err(error) => {
                errors.push(error);
                // Keep the stage structure even when FROM is malformed, so later
                // instructions are not all reported as outside a stage.
                if node.keyword_lower() == "from" {
                    stages.push(placeholder_stage(node, stages.len()));
                }
                continue;
            }
        };
        match &command.instruction {
            Instruction::From(from) => {
                // A map, not a scan of earlier stages: files with thousands of
                // stages stay linear.
                if let Some(name) = &from.name {
                    match first_line_of_name.entry(name.clone()) {
                        Entry::Occupied(first) => warnings.push(Warning {
                            message: format!(
                                "DuplicateStageName: stage name {name:?} is also used at line {}; references resolve to the latest stage",
                                first.get()
                            ),
                            span: command.span,
                        }),
                        Entry::Vacant(slot) => {
                            slot.insert(command.span.start.line);
                        }
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: from.name.clone(),
                    base: from.image.clone(),
                    platform: from.platform.clone(),
                    from: command,
                    commands: Vec::new(),
                });
            }
            _ => match stages.last_mut() {
                Some(stage) => stage.commands.push(command),
                None if matches!(command.instruction, Instruction::Arg(_)) => {
                    global_args.push(command)
                }
                None => errors.push(Error::NoStage {
                    keyword: command.keyword.to_uppercase(),
                    span: command.span,
                }),
            },
        }
    }
    if stages.is_empty() && errors.is_empty() {
        let span = file.instructions.last().map(|n| n.span).unwrap_or_default();
        errors.push(Error::NoStages { span });
    }
    if errors.is_empty() {
        Ok(Stages {
            global_args,
            stages,
            warnings,
        })
    } else {
        Err(errors)
    }
}

fn placeholder_stage(node: &Node, index: usize) -> Stage {
    let from = Command {
        instruction: Instruction::From(From {
            image: String::new(),
            name: None,
            platform: None,
        }),
        keyword: node.keyword.clone(),
        original: node.original.clone(),
        span: node.span,
        doc_comments: Vec::new(),
    };
    Stage {
        index,
        name: None,
        base: String::new(),
        platform: None,
        from,
        commands: Vec::new(),
    }
}
