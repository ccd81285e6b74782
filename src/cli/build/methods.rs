//! The front-end methods of `kiln build --call`: `targets` and `outline` as tables.

use std::process::ExitCode;

use crate::cli::EXIT_USAGE;
use crate::instruction::{self, Stages};

pub(super) fn unknown_target(stages: &Stages, target: &str) -> ExitCode {
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

pub(super) fn targets_table(stages: &Stages) -> String {
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

pub(super) fn outline_text(stages: &Stages, target: &instruction::Stage) -> String {
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
