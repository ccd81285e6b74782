//! A deterministic text form of a plan, for golden tests and `--debug` output.

use std::fmt::Write;

use petgraph::graph::NodeIndex;

use super::{Definition, Plan};

/// The plan as text: ops in creation order (with inputs), then the target image.
/// `Exec::explain` is left out (it restates argv, env, user and workdir).
pub fn dump(plan: &Plan) -> String {
    let mut out = String::new();
    let stage_names: Vec<String> = plan
        .stages
        .iter()
        .map(|s| match &s.name {
            Some(name) => format!("{} {name} -> #{}", s.index, s.result.index()),
            None => format!("{} -> #{}", s.index, s.result.index()),
        })
        .collect();
    let _ = writeln!(
        out,
        "target: stage {} -> #{}",
        plan.target_stage,
        plan.target.index()
    );
    let _ = writeln!(out, "stages: {}", stage_names.join(", "));
    for warning in &plan.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let _ = writeln!(out, "ops:");
    for node in plan.graph.node_indices() {
        dump_op(&mut out, plan, node);
    }
    dump_image(&mut out, plan);
    out
}

/// One op: number, kind, name, inputs and lines, then its definition's fields.
fn dump_op(out: &mut String, plan: &Plan, node: NodeIndex) {
    let op = &plan.graph[node];
    let inputs: Vec<String> = plan
        .inputs(node)
        .iter()
        .map(|n: &NodeIndex| format!("#{}", n.index()))
        .collect();
    let _ = write!(
        out,
        "  #{} {} {:?}",
        node.index(),
        op.definition.kind(),
        op.metadata.name
    );
    if !inputs.is_empty() {
        let _ = write!(out, " <- {}", inputs.join(" "));
    }
    if let Some(span) = op.metadata.span {
        let (first, last) = span.lines();
        let _ = write!(out, " @{first}");
        if last != first {
            let _ = write!(out, "-{last}");
        }
    }
    if op.metadata.onbuild {
        let _ = write!(out, " onbuild");
    }
    if op.metadata.ignore_cache {
        let _ = write!(out, " no-cache");
    }
    out.push('\n');
    let value = match &op.definition {
        Definition::Source(source) => serde_json::to_value(source),
        Definition::Exec(exec) => serde_json::to_value(exec),
        Definition::File(file) => serde_json::to_value(file),
    }
    .unwrap_or_default();
    if let Some(fields) = value.as_object() {
        for (key, field) in fields {
            if key == "explain" || key == "source" || key == "action" {
                continue;
            }
            let _ = writeln!(out, "      {key}: {field}");
        }
    }
    if let Definition::Exec(exec) = &op.definition
        && !exec.proxy_env.is_empty()
    {
        let proxies: Vec<String> = exec
            .proxy_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "      proxy_env (not in key): {}", proxies.join(" "));
    }
}

/// The target image: platform, base, layers, author, config and history.
fn dump_image(out: &mut String, plan: &Plan) {
    let image = &plan.image;
    let _ = writeln!(out, "image: {}", image.platform);
    match &image.base {
        Some(base) => {
            let _ = writeln!(
                out,
                "  base: {}@{} #{} ({} layers)",
                base.reference,
                base.manifest_digest,
                base.node.index(),
                base.diff_ids.len()
            );
        }
        None => {
            let _ = writeln!(out, "  base: scratch");
        }
    }
    for layer in &image.layers {
        let _ = writeln!(
            out,
            "  layer: #{} history[{}]",
            layer.node.index(),
            layer.history_index
        );
    }
    if let Some(author) = &image.author {
        let _ = writeln!(out, "  author: {author}");
    }
    let config = serde_json::to_string_pretty(&image.config).unwrap_or_default();
    let _ = writeln!(out, "  config: {}", config.replace('\n', "\n  "));
    let _ = writeln!(out, "  history:");
    for (index, entry) in image.history.iter().enumerate() {
        let _ = writeln!(
            out,
            "    [{index}]{} {:?}",
            if entry.empty_layer { " (empty)" } else { "" },
            entry.created_by
        );
    }
}
