//! Rules about how instructions are written: continuation lines, the casing of FROM's
//! `AS` and stage name, MAINTAINER, and description comments.

use super::Emitter;
use super::rules::{
    FROM_AS_CASING, INVALID_DEFINITION_DESCRIPTION, MAINTAINER_DEPRECATED, NO_EMPTY_CONTINUATION,
    STAGE_NAME_CASING,
};
use crate::gocompat::go_lowercase;
use crate::syntax::{Dockerfile, Node};

pub(super) fn check(file: &Dockerfile, out: &mut Emitter) {
    // The parser's only warnings are empty continuation lines.
    for warning in &file.warnings {
        out.emit(
            &NO_EMPTY_CONTINUATION,
            &[],
            warning.span,
            "Empty continuation line".to_string(),
        );
    }
    for node in &file.instructions {
        match node.keyword_lower().as_str() {
            "from" => from_casing(node, out),
            "maintainer" => out.emit(
                &MAINTAINER_DEPRECATED,
                &node.doc_comments,
                node.span,
                "Maintainer instruction is deprecated in favor of using label".to_string(),
            ),
            "arg" => {
                let keys: Vec<String> = node
                    .args
                    .iter()
                    .map(|arg| arg.value.split('=').next().unwrap_or_default().to_string())
                    .collect();
                definition_description("ARG", &keys, node, out);
            }
            _ => {}
        }
    }
}

fn is_lower(text: &str) -> bool {
    go_lowercase(text) == text
}

fn is_upper(text: &str) -> bool {
    text.to_uppercase() == text
}

/// StageNameCasing and FromAsCasing (`FROM image AS name`), and the stage's description.
fn from_casing(node: &Node, out: &mut Emitter) {
    let [_, as_word, name] = node.args.as_slice() else {
        return;
    };
    let (as_word, name) = (&as_word.value, &name.value);
    if !is_lower(name) {
        out.emit(
            &STAGE_NAME_CASING,
            &node.doc_comments,
            node.span,
            format!("Stage name '{name}' should be lowercase"),
        );
    }
    // A keyword of mixed case is ConsistentInstructionCasing's business.
    let keyword = &node.keyword;
    let mismatch = (is_lower(keyword) && !is_lower(as_word))
        || (!is_lower(keyword) && is_upper(keyword) && !is_upper(as_word));
    if mismatch {
        out.emit(
            &FROM_AS_CASING,
            &node.doc_comments,
            node.span,
            format!("'{as_word}' and '{keyword}' keywords' casing do not match"),
        );
    }
    definition_description("FROM", &[go_lowercase(name)], node, out);
}

/// InvalidDefinitionDescription: the comment right above an ARG or a named FROM must
/// start with the name it describes.
fn definition_description(instruction: &str, keys: &[String], node: &Node, out: &mut Emitter) {
    let Some(last) = node.doc_comments.last() else {
        return;
    };
    if keys.is_empty() {
        return;
    }
    let first_word = last.split(' ').next().unwrap_or_default();
    if keys.iter().any(|key| key == first_word) {
        return;
    }
    let example = match keys {
        [only] => only.as_str(),
        _ => "<arg_key>",
    };
    out.emit(
        &INVALID_DEFINITION_DESCRIPTION,
        &node.doc_comments,
        node.span,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    );
}
