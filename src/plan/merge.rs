//! The plans of a multi-platform build (one per target platform) as one DAG: an op with
//! the same definition over the same (merged) inputs is one node, as in a single plan,
//! so what does not depend on the target platform — above all the stages built
//! `FROM --platform=$BUILDPLATFORM`, the cross-compilation pattern — is solved once.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::{Op, Plan};

/// The merged graph, and each platform's plan over it: the same graph, with its target,
/// stages, base and layers pointing at the merged nodes.
#[derive(Debug, Clone)]
pub struct MergedPlans {
    pub graph: DiGraph<Op, usize>,
    pub plans: Vec<Plan>,
}

impl MergedPlans {
    /// A plan of the whole merged graph, for solving it: the first platform's plan with
    /// the merged graph (the solver runs every node of its graph).
    pub fn solvable(&self) -> Plan {
        let mut plan = self.plans[0].clone();
        plan.graph = self.graph.clone();
        plan
    }

    /// [`Self::solvable`] whose image layers are every platform's (each node once): what a
    /// cache export of the images' steps (`mode=min`) sends.
    pub fn cache_plan(&self) -> Plan {
        let mut plan = self.solvable();
        for other in &self.plans[1..] {
            for layer in &other.image.layers {
                if !plan.image.layers.iter().any(|l| l.node == layer.node) {
                    plan.image.layers.push(*layer);
                }
            }
        }
        plan
    }
}

/// Merges `plans` (at least one) into one graph. The first plan that has an op names it.
pub fn merge(plans: Vec<Plan>) -> MergedPlans {
    let mut graph: DiGraph<Op, usize> = DiGraph::new();
    let mut dedupe: HashMap<(Vec<u8>, bool, Vec<NodeIndex>), NodeIndex> = HashMap::new();
    let mut merged_plans = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut map: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        // Inputs before their users: a topological order of this plan's graph.
        let order = petgraph::algo::toposort(&plan.graph, None)
            .unwrap_or_else(|_| plan.graph.node_indices().collect());
        for node in order {
            let op = &plan.graph[node];
            let mut inputs: Vec<(usize, NodeIndex)> = plan
                .graph
                .edges_directed(node, Direction::Incoming)
                .map(|edge| (*edge.weight(), map[&edge.source()]))
                .collect();
            inputs.sort();
            let inputs: Vec<NodeIndex> = inputs.into_iter().map(|(_, input)| input).collect();
            let key = (
                op.definition.cache_definition(),
                op.metadata.ignore_cache,
                inputs.clone(),
            );
            let merged = *dedupe.entry(key).or_insert_with(|| {
                let merged = graph.add_node(op.clone());
                for (number, input) in inputs.iter().enumerate() {
                    graph.add_edge(*input, merged, number);
                }
                merged
            });
            map.insert(node, merged);
        }
        merged_plans.push(remap(plan, &map));
    }
    for plan in &mut merged_plans {
        plan.graph = graph.clone();
    }
    MergedPlans {
        graph,
        plans: merged_plans,
    }
}

/// `plan` with its node references moved to the merged graph (by `map`).
fn remap(mut plan: Plan, map: &HashMap<NodeIndex, NodeIndex>) -> Plan {
    plan.target = map[&plan.target];
    for stage in &mut plan.stages {
        stage.result = map[&stage.result];
    }
    if let Some(base) = &mut plan.image.base {
        base.node = map[&base.node];
    }
    for layer in &mut plan.image.layers {
        layer.node = map[&layer.node];
    }
    plan
}

/// The edges of `graph` as (from, to, input number), for tests and dumps.
#[cfg(test)]
fn edges(graph: &DiGraph<Op, usize>) -> Vec<(usize, usize, usize)> {
    let mut all: Vec<(usize, usize, usize)> = graph
        .edge_references()
        .map(|e| (e.source().index(), e.target().index(), *e.weight()))
        .collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ImageResolver, Options, Platform, ResolveError, ResolvedImage};

    // ARGs in scope are part of a RUN's environment (and key): TARGETARCH comes after
    // the shared step, as cross-compiling Dockerfiles write it.
    const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
        RUN echo compile > /tool\n\
        ARG TARGETARCH\n\
        RUN echo for-$TARGETARCH > /out\n\
        FROM busybox\n\
        COPY --from=build /out /out\n\
        RUN uname -m > /m\n";

    /// Every image exists, with a manifest per platform.
    struct AnyImage;

    impl ImageResolver for AnyImage {
        fn resolve(
            &mut self,
            reference: &str,
            platform: &Platform,
        ) -> Result<ResolvedImage, ResolveError> {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (reference, platform.to_string()).hash(&mut hasher);
            let digest = format!("{:016x}", hasher.finish()).repeat(4);
            Ok(ResolvedImage {
                reference_normalised: format!("docker.io/library/{reference}:latest"),
                manifest_digest: format!("sha256:{digest}"),
                platform: Some(platform.clone()),
                ..ResolvedImage::default()
            })
        }
    }

    fn plan_for(target: &str) -> Plan {
        let options = Options {
            target_platform: Platform::parse(target).unwrap(),
            build_platform: Platform::parse("linux/amd64").unwrap(),
            prefix_platform: true,
            ..Options::default()
        };
        let file = crate::syntax::parse(CROSS.as_bytes()).unwrap();
        let stages = crate::instruction::parse(&file).unwrap();
        crate::plan::build(&stages, &options, &mut AnyImage).unwrap()
    }

    #[test]
    fn steps_that_do_not_depend_on_the_target_are_one_node() {
        let amd64 = plan_for("linux/amd64");
        let arm64 = plan_for("linux/arm64");
        let (amd64_nodes, arm64_nodes) = (amd64.graph.node_count(), arm64.graph.node_count());
        let merged = merge(vec![amd64, arm64]);
        let names: Vec<&str> = merged
            .graph
            .node_weights()
            .map(|op| op.metadata.name.as_str())
            .collect();
        // The builder stage's base and its first RUN are shared; the RUN that uses
        // $TARGETARCH and the final stage are per platform.
        let compile = names.iter().filter(|n| n.contains("echo compile")).count();
        assert_eq!(compile, 1, "{names:#?}");
        let per_target = names.iter().filter(|n| n.contains("echo for-")).count();
        assert_eq!(per_target, 2, "{names:#?}");
        let final_runs = names.iter().filter(|n| n.contains("uname -m")).count();
        assert_eq!(final_runs, 2, "{names:#?}");
        assert!(merged.graph.node_count() < amd64_nodes + arm64_nodes);
        assert!(
            names.iter().any(|n| n.starts_with("[linux/amd64 build ")),
            "{names:#?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("[linux/arm64 stage-1 ")),
            "{names:#?}"
        );
        // Each plan's references point into the merged graph, at its own target.
        let [a, b] = [&merged.plans[0], &merged.plans[1]];
        assert_ne!(a.target, b.target);
        for plan in &merged.plans {
            assert_eq!(edges(&plan.graph), edges(&merged.graph));
            for layer in &plan.image.layers {
                assert!(merged.graph.node_weight(layer.node).is_some());
            }
        }
        assert_eq!(
            merged.solvable().graph.node_count(),
            merged.graph.node_count()
        );
    }
}
