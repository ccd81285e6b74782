//! A build for several platforms (`--platform linux/amd64,linux/arm64`): one plan per
//! platform, merged into one DAG ([`crate::plan::merge`]) so that steps whose keys are
//! equal across platforms — the `FROM --platform=$BUILDPLATFORM` stages — run once; then
//! each platform's image is exported and an OCI index over them is named in the store
//! (and pushed, for `--push`).

use std::sync::Arc;

use tokio::sync::watch;

use super::{Build, BuildError, BuildRequest, OutputSpec, base, layers};
use crate::export::{self, ExportOptions, Exported};
use crate::image;
use crate::oci::Reference;
use crate::plan::merge;
use crate::progress::{Clock, Sink};

/// Plans, solves and exports every platform of `request`, names the index `stored_names`
/// and carries out `outputs` (the store, or a push); returns what was pushed too.
pub(super) async fn solve_and_export(
    build: &Build,
    request: &BuildRequest,
    outputs: &[OutputSpec],
    stored_names: &[Reference],
    sink: &Sink,
    cancel: watch::Receiver<bool>,
) -> Result<(Exported, Vec<image::Pushed>), BuildError> {
    refuse_unsupported(request, outputs)?;
    let clock = Clock::start();
    let pulls = base::Pulls::new(sink.clone(), clock.clone(), cancel.clone());
    let mut plans = Vec::with_capacity(request.platforms.len());
    for platform in &request.platforms {
        let plan = base::plan(
            &build.store,
            &build.registry,
            request,
            &pulls,
            Some(platform),
        )
        .await?;
        plans.push(plan);
    }
    let merged = merge::merge(plans);
    let sink = &pulls.offset_sink();
    for warning in merged.plans.iter().flat_map(|plan| &plan.warnings) {
        sink.send(crate::progress::Event::BuildWarning {
            message: warning.clone(),
        });
    }
    let (solver, cache, _lease) = build.open_solver(request, None, sink, &clock).await?;
    let forward = super::forward_cancel(cancel, solver.canceller());
    let solved = solver.solve(&merged.solvable()).await;
    forward.abort();
    let solved = solved.map_err(|source| BuildError::Solve {
        source: Box::new(source),
        step_log: None,
        failed_step: solver.take_failed_step(),
    })?;
    let vertex_id = merged.graph.node_count() as u64 + 1;
    let vertex = sink.vertex(&clock, vertex_id, "exporting to image");
    let exported = async {
        let newest = solved.results.values().map(|r| r.created_at).max();
        let mut images = Vec::with_capacity(merged.plans.len());
        for plan in &merged.plans {
            let epoch = plan.source_date_epoch;
            let inputs = layers::inputs(plan, &solved, epoch, super::pushed_compression(outputs))?;
            layers::materialize_unexported(&solver, plan, &solved, &inputs).await?;
            let options = ExportOptions {
                inline_cache: None,
                source_date_epoch: epoch,
                created: match newest {
                    Some(t) if t > 0 => t,
                    _ => crate::cache::unix_now(),
                },
                tags: Vec::new(),
                written: Default::default(),
            };
            let platform = plan.image.platform.clone();
            let (store, cache, plan) = (build.store.clone(), cache.clone(), Arc::new(plan.clone()));
            let exported = tokio::task::spawn_blocking(move || {
                export::export(&store, &cache, &plan, &inputs, &options)
            })
            .await??;
            images.push((platform, exported));
        }
        let (store, names) = (build.store.clone(), stored_names.to_vec());
        let index =
            tokio::task::spawn_blocking(move || export::index(&store, &images, &names)).await??;
        Ok::<_, BuildError>(index)
    }
    .await;
    match &exported {
        Ok(_) => vertex.done(),
        Err(error) => vertex.error(error.to_string()),
    }
    let exported = exported?;
    let progress = super::output::Progress {
        sink,
        clock: &clock,
        first_vertex: vertex_id + 1,
    };
    let pushed = super::output::write(
        &build.store,
        &build.registry,
        &exported.manifest_digest,
        outputs,
        request.stdout.as_ref(),
        progress,
    )
    .await?;
    Ok((exported, pushed))
}

/// What a build for several platforms cannot do yet: say so before any work.
fn refuse_unsupported(request: &BuildRequest, outputs: &[OutputSpec]) -> Result<(), BuildError> {
    let usage = |what: &str| BuildError::Usage {
        message: format!("{what} is not supported yet in a build for several platforms"),
    };
    if !request.cache_from.is_empty() || !request.cache_to.is_empty() {
        return Err(usage("--cache-from/--cache-to"));
    }
    for output in outputs {
        let kind = match output {
            OutputSpec::Image(_) => continue,
            OutputSpec::Archive(_) => "an oci or docker archive output",
            OutputSpec::Local { .. } => "a local output",
            OutputSpec::Tar { .. } => "a tar output",
        };
        return Err(usage(kind));
    }
    Ok(())
}
