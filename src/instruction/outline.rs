//! Which build arguments a target uses: the data behind `--call outline`.

use std::collections::BTreeSet;

use super::{Command, Instruction, Stage, Stages};

/// One build argument a stage declares and uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedArg {
    pub name: String,
    /// The default as written, if any.
    pub default: Option<String>,
    /// The comment block above the ARG line.
    pub description: Option<String>,
    /// Declared before the first FROM.
    pub global: bool,
}

/// The build arguments one stage uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageArgs {
    /// The stage index; `None` for the global ARGs used by FROM lines.
    pub stage: Option<usize>,
    pub args: Vec<UsedArg>,
}

impl Stages {
    /// The stage that `--target` names, or the last stage.
    pub fn target(&self, target: Option<&str>) -> Option<&Stage> {
        match target {
            // Targets are named; an index is not a target.
            Some(name) => self.find(name).filter(|stage| stage.name.is_some()),
            None => self.stages.last(),
        }
    }

    /// Indexes of the stages `stage` needs (itself included), in source order:
    /// through `FROM stage`, `COPY --from` and `RUN --mount=from=`.
    pub fn dependencies(&self, stage: usize) -> Vec<usize> {
        let mut needed = BTreeSet::new();
        let mut pending = vec![stage];
        while let Some(index) = pending.pop() {
            if !needed.insert(index) {
                continue;
            }
            let Some(stage) = self.stages.get(index) else {
                continue;
            };
            let references = std::iter::once(stage.base.clone())
                .chain(stage.commands.iter().flat_map(stage_references));
            for reference in references {
                // Only earlier stages can be referenced, which also rules out cycles.
                if let Some(found) = self.find_before(&reference, index) {
                    pending.push(found.index);
                }
            }
        }
        needed.into_iter().collect()
    }
}

fn stage_references(command: &Command) -> Vec<String> {
    match &command.instruction {
        Instruction::Copy(copy) => copy.from.iter().cloned().collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter_map(|spec| spec.resolve(&mut |v| Ok(v.to_string()), 0).ok())
            .filter_map(|mount| mount.from)
            .collect(),
        _ => Vec::new(),
    }
}

/// For each stage the target needs, the build arguments it declares and uses.
/// A global ARG counts when a FROM line of those stages uses it, or when a stage
/// redeclares and uses it; a stage ARG counts when a later line of the stage
/// mentions it (RUN lines included: the shell sees build arguments).
pub fn outline(stages: &Stages, target: &Stage) -> Vec<StageArgs> {
    let needed = stages.dependencies(target.index);
    let globals: Vec<UsedArg> = stages
        .global_args
        .iter()
        .flat_map(|command| declared(command, true))
        .collect();
    let mut result = Vec::new();

    let mut globals_in_from = BTreeSet::new();
    for &index in &needed {
        let stage = &stages.stages[index];
        globals_in_from.extend(mentioned(&stage.from.original));
    }
    let global_used: Vec<UsedArg> = globals
        .iter()
        .filter(|arg| globals_in_from.contains(&arg.name))
        .cloned()
        .collect();
    if !global_used.is_empty() {
        result.push(StageArgs {
            stage: None,
            args: global_used,
        });
    }

    for &index in &needed {
        let stage = &stages.stages[index];
        let mut args = Vec::new();
        for (position, command) in stage.commands.iter().enumerate() {
            for mut arg in declared(command, false) {
                let later = &stage.commands[position + 1..];
                let used = later.iter().any(|c| {
                    mentioned(&c.original).contains(&arg.name)
                        || heredoc_text(c).is_some_and(|t| mentioned(&t).contains(&arg.name))
                });
                if !used {
                    continue;
                }
                // A redeclared global without a default inherits the global one.
                if let Some(global) = globals.iter().find(|g| g.name == arg.name) {
                    arg.global = true;
                    if arg.default.is_none() {
                        arg.default = global.default.clone();
                    }
                    if arg.description.is_none() {
                        arg.description = global.description.clone();
                    }
                }
                args.push(arg);
            }
        }
        result.push(StageArgs {
            stage: Some(index),
            args,
        });
    }
    result
}

fn declared(command: &Command, global: bool) -> Vec<UsedArg> {
    match &command.instruction {
        Instruction::Arg(decls) => decls
            .iter()
            .map(|decl| UsedArg {
                name: decl.name.clone(),
                default: decl.default.clone(),
                description: command.description_of(&decl.name),
                global,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn heredoc_text(command: &Command) -> Option<String> {
    let heredocs = match &command.instruction {
        Instruction::Run(run) => &run.heredocs,
        _ => return None,
    };
    Some(heredocs.iter().map(|h| h.content.as_str()).collect())
}

/// Variable names that `$NAME` or `${NAME…}` mention in `text`.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        rest = &rest[dollar + 1..];
        let body = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            names.insert(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mentions() {
        let names = mentioned("echo $A ${B:-x} ${C#p} $1 $$ ${}");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["A", "B", "C"]);
    }
}
