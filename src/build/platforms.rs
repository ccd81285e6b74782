//! A build for several platforms (`--platform linux/amd64,linux/arm64`): one plan per
//! platform, merged into one DAG ([`crate::plan::merge`]) so that steps whose keys are
//! equal across platforms — the `FROM --platform=$BUILDPLATFORM` stages — run once; then
//! each platform's image is exported and an OCI index over them is named in the store.
//! The outputs take the index as they take an image: pushed as an index, written as one
//! into an OCI layout, and as one directory per platform (`linux_arm64/`) by `local`
//! and `tar`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Build, BuildError, BuildRequest, CacheTarget, OutputSpec, base, cache};
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
    refuse_unsupported(request)?;
    let clock = Clock::start();
    let pulls = base::Pulls::new(sink.clone(), clock.clone(), cancel.clone());
    // The imported caches are read while the plans are made.
    let plans = async {
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
        Ok::<_, BuildError>(plans)
    };
    let remote = cache::Remote::open(&build.store, &build.registry, request, sink);
    let (plans, remote) = tokio::join!(plans, remote);
    let plans = plans?;
    if !request.allow_insecure {
        for plan in &plans {
            super::refuse_insecure(plan)?;
        }
    }
    let (merged, remote) = (merge::merge(plans), remote?);
    let sink = &pulls.offset_sink();
    for warning in merged.plans.iter().flat_map(|plan| &plan.warnings) {
        sink.send(crate::progress::Event::BuildWarning {
            message: warning.clone(),
        });
    }
    let (solver, cache) = build
        .open_solver(request, remote.as_ref(), sink, &clock)
        .await?;
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
        let created = super::image_created(&solved);
        let mut images = Vec::with_capacity(merged.plans.len());
        for plan in &merged.plans {
            let inputs = build
                .ready_layers(&solver, plan, &solved, outputs, remote.as_ref())
                .await?;
            let options = ExportOptions {
                inline_cache: None,
                source_date_epoch: plan.source_date_epoch,
                created,
                tags: Vec::new(),
                keep_unnamed: false,
                written: Default::default(),
            };
            let exported = build
                .export_plan(&cache, Arc::new(plan.clone()), inputs, options)
                .await?;
            images.push((plan.image.platform.clone(), exported));
        }
        let (store, names) = (build.store.clone(), stored_names.to_vec());
        let index =
            tokio::task::spawn_blocking(move || export::index(&store, &images, &names)).await??;
        Ok::<_, BuildError>(index)
    }
    .await;
    let exported = super::ended(vertex, exported)?;
    let first_vertex = vertex_id + 1;
    let (clock, remote, cache, solved, merged) = (&clock, &remote, &cache, &solved, &merged);
    let caches = |outputs_done| async move {
        let Some(remote) = remote else {
            return Ok(());
        };
        // Every platform's steps: the cache plan has the merged graph and, as the image
        // steps `mode=min` sends, the layers of every platform's image.
        let cache_plan = merged.cache_plan();
        let written = HashMap::new();
        let source = build.cache_source(remote, cache, (&cache_plan, solved, &written), request);
        let first_vertex = first_vertex + outputs.len() as u64;
        build
            .export_caches(&source, request, (sink, clock, first_vertex), outputs_done)
            .await
    };
    let pushed = build
        .outputs_beside_caches(
            request,
            outputs,
            &exported,
            (sink, clock, first_vertex),
            caches,
        )
        .await?;
    Ok((exported, pushed))
}

/// What a build for several platforms cannot do: say so before any work.
fn refuse_unsupported(request: &BuildRequest) -> Result<(), BuildError> {
    if request
        .cache_to
        .iter()
        .any(|spec| spec.target == CacheTarget::Inline)
    {
        return Err(BuildError::Usage {
            message: "--cache-to type=inline keeps the cache in one image's config; a build \
                      for several platforms needs type=registry or type=local"
                .into(),
        });
    }
    Ok(())
}
