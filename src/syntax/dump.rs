//! BuildKit's `result` notation of a parsed file, with Go `strconv.Quote` quoting.

use super::ast::{Dockerfile, Node};
use crate::gocompat::{go_lowercase, go_quote};

/// One `(keyword …)` line per instruction, each followed by `\n`.
pub fn dump(file: &Dockerfile) -> String {
    let mut out = String::new();
    for node in &file.instructions {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// The inside of one node's parentheses.
pub fn dump_node(node: &Node) -> String {
    let mut out = go_lowercase(&node.keyword);
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(&f.text)).collect();
        out.push_str(" [");
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    if let Some(inner) = &node.onbuild {
        out.push_str(" (");
        out.push_str(&dump_node(inner));
        out.push(')');
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&go_quote(&arg.value));
    }
    // BuildKit trims the node text, which only matters for an empty keyword.
    out.trim().to_string()
}
