//! The image layers of a build: written as soon as their step is done, while later steps
//! run, and handed to the exporter in the plan's order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use petgraph::graph::NodeIndex;

use super::BuildError;
use crate::export::{self, Blob, ExportError, LayerInput, RemoteLayer};
use crate::oci::{Compression, media_type};
use crate::plan::{Definition, Plan};
use crate::solve::{Solved, Solver};
use crate::store::Store;

type LayerJob = tokio::task::JoinHandle<Result<Blob, ExportError>>;

/// Layers being written while the build goes on: (step key, is an image layer, job).
#[derive(Clone, Default)]
pub(super) struct EarlyLayers(Arc<Mutex<Vec<(String, bool, LayerJob)>>>);

impl EarlyLayers {
    /// Waits for every layer started; the ones written, by step key (a failed one is left
    /// to the exporter, which writes it again and reports its error).
    pub(super) async fn collect(self) -> HashMap<String, Blob> {
        self.collect_where(|_| true).await
    }

    /// Waits for the image's layers only (the exporter needs them; the others are for a
    /// cache export, which collects them later).
    pub(super) async fn collect_image(&self) -> HashMap<String, Blob> {
        self.collect_where(|image| image).await
    }

    async fn collect_where(&self, wanted: impl Fn(bool) -> bool) -> HashMap<String, Blob> {
        let jobs: Vec<(String, bool, LayerJob)> = {
            let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let (taken, kept) = std::mem::take(&mut *all)
                .into_iter()
                .partition(|(_, image, _)| wanted(*image));
            *all = kept;
            taken
        };
        let mut written = HashMap::new();
        for (key, _, job) in jobs {
            if let Ok(Ok(layer)) = job.await {
                written.insert(key, layer);
            }
        }
        written
    }
}

/// What to make early, besides each image layer's tar.
#[derive(Debug, Clone, Default)]
pub(super) struct Early {
    /// Every step's layer, not only the image's (a `mode=max` cache export sends them).
    pub all_steps: bool,
    /// The compressed copies pushes and cache exports will send (compression, level).
    pub compressions: Vec<(Compression, Option<i32>)>,
}

/// Starts writing each image layer (with `early.all_steps`, each step's) as soon as its
/// step is done, on a blocking thread, so that a big COPY's layer is written (and
/// compressed, when a push or a cache export will want that) while the steps after it run.
pub(super) fn write_early(
    solver: &mut Solver,
    plan: &Plan,
    store: &Store,
    source_date_epoch: Option<u64>,
    early: Early,
) -> EarlyLayers {
    // By node: whether it is an image layer (else only a cache export wants it, and not
    // when empty).
    let mut layers: HashMap<NodeIndex, bool> = HashMap::new();
    if early.all_steps {
        for node in plan.graph.node_indices() {
            if matches!(
                plan.graph[node].definition,
                Definition::Exec(_) | Definition::File(_)
            ) {
                layers.insert(node, false);
            }
        }
    }
    for layer in &plan.image.layers {
        layers.insert(layer.node, true);
    }
    let written = EarlyLayers::default();
    let jobs = written.clone();
    let store = store.clone();
    let runtime = tokio::runtime::Handle::current();
    let compressions = Arc::new(early.compressions);
    solver.on_done(Box::new(move |node, result| {
        let Some(&image) = layers.get(&node) else {
            return;
        };
        // A cached step's layer is usually recorded already; the exporter checks.
        if result.cached || (!image && result.empty) {
            return;
        }
        let Some(dir) = result.layer.clone() else {
            return;
        };
        let (store, compressions) = (store.clone(), compressions.clone());
        let job = runtime.spawn_blocking(move || {
            let written = export::write_layer(&store, &dir, source_date_epoch)?;
            // Remembered on disk: the push or export that needs it finds it made.
            if let (Ok(blob), Ok(diff_id)) = (written.1.digest.parse(), written.0.parse()) {
                for (compression, level) in compressions.iter() {
                    let _ = crate::image::compress::layer_twin(
                        &store,
                        &blob,
                        &diff_id,
                        *compression,
                        *level,
                    );
                }
            }
            Ok(written)
        });
        jobs.0.lock().unwrap_or_else(PoisonError::into_inner).push((
            result.key.clone(),
            image,
            job,
        ));
    }));
    written
}

/// The layer each of the image's layer steps made, in the image's order. A step an
/// imported cache had, whose files were never made, is exported from the cache's blob when
/// that was written with the same `SOURCE_DATE_EPOCH` (`epoch`).
pub(super) fn inputs(
    plan: &Plan,
    solved: &Solved,
    epoch: Option<u64>,
    compression: Compression,
) -> Result<Vec<LayerInput>, BuildError> {
    plan.image
        .layers
        .iter()
        .map(|layer| {
            let op = &plan.graph[layer.node];
            let name = op.metadata.name.clone();
            let result = solved
                .results
                .get(&layer.node)
                .ok_or_else(|| ExportError::MissingResult(name.clone()))?;
            let dir = result
                .layer
                .clone()
                .ok_or_else(|| ExportError::MissingResult(name.clone()))?;
            let remote = result
                .imported
                .as_ref()
                .filter(|_| !result.layer_exists())
                .and_then(|imported| imported.layer.as_ref())
                .filter(|cached| cached.epoch == epoch)
                // A layer the push would send in another compression than the image's is
                // written again from its files, so every runner pushes the same layers.
                .filter(
                    |cached| match media_type::layer_compression(&cached.blob.media_type) {
                        Some(Compression::None) => true,
                        found => found == Some(compression),
                    },
                )
                .map(|cached| RemoteLayer {
                    diff_id: cached.diff_id.clone(),
                    blob: cached.blob.clone(),
                });
            Ok(LayerInput {
                dir,
                key: result.key.clone(),
                name,
                remote,
            })
        })
        .collect()
}

/// Makes the directories of the image's layers that an imported cache had but whose blob
/// cannot be used as it is (written with another `SOURCE_DATE_EPOCH`, or an empty layer
/// the image keeps): the exporter writes those layers from their files.
pub(super) async fn materialize_unexported(
    solver: &Solver,
    plan: &Plan,
    solved: &Solved,
    inputs: &[LayerInput],
) -> Result<(), BuildError> {
    let mut wanted = Vec::new();
    for (layer, input) in plan.image.layers.iter().zip(inputs) {
        let Some(result) = solved.results.get(&layer.node) else {
            continue;
        };
        if input.remote.is_some() || result.layer_exists() {
            continue;
        }
        wanted.extend(result.lazy.iter().filter(|l| l.dir == input.dir).cloned());
    }
    if wanted.is_empty() {
        return Ok(());
    }
    solver
        .materialize(&wanted)
        .await
        .map_err(|source| BuildError::Solve {
            source: Box::new(source),
            step_log: None,
            failed_step: None,
        })
}
