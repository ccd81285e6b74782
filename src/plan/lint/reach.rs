//! Which stages BuildKit dispatches, and so runs its per-instruction rules over: the
//! stages the target needs, or every stage for `--call check` without `--target`.

use super::Input;
use super::from::Base;
use crate::gocompat::go_lowercase;
use crate::instruction::{Instruction, Stage};

/// `needed[i]`: stage `i` is dispatched.
pub(super) fn dispatched(input: &Input, bases: &[Base]) -> Vec<bool> {
    let stages = &input.stages.stages;
    if input.every_stage || stages.is_empty() {
        return vec![true; stages.len()];
    }
    let target = input
        .target
        .map(go_lowercase)
        .and_then(|name| {
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(name.as_str()))
        })
        .unwrap_or(stages.len().saturating_sub(1));
    let mut needed = vec![false; stages.len()];
    needed[target] = true;
    // A stage only uses earlier stages: one pass from the target down.
    for (index, stage) in stages.iter().enumerate().take(target + 1).rev() {
        if !needed[index] {
            continue;
        }
        if let Some(Base::Stage(parent)) = bases.get(index) {
            needed[*parent] = true;
        }
        for used in used_stages(input, stage) {
            needed[used] = true;
        }
    }
    needed
}

/// The earlier stages `COPY --from` and `RUN --mount from=` of `stage` name.
fn used_stages(input: &Input, stage: &Stage) -> Vec<usize> {
    let mut names: Vec<String> = Vec::new();
    for command in &stage.commands {
        match &command.instruction {
            Instruction::Copy(copy) => names.extend(copy.from.clone()),
            Instruction::Run(run) => names.extend(run.mounts.iter().filter_map(|spec| {
                spec.resolve(&mut |value| Ok(value.to_string()), 0)
                    .ok()?
                    .from
            })),
            _ => {}
        }
    }
    names
        .iter()
        .filter_map(|name| input.stages.find_before(name, stage.index))
        .map(|found| found.index)
        .collect()
}
