//! A base image: unpacked from the store (the planner's resolver already pulled it), its
//! layer snapshots as the chain.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache;
use crate::oci::Digest;
use crate::solve::error::StepCause;
use crate::solve::lazy::LazyLayer;
use crate::solve::step::Task;
use crate::solve::{NodeResult, Result, blocking};
use crate::store::{Store, StoreError};

/// The chain of the image whose manifest is `manifest_digest`.
pub(in crate::solve) async fn run(task: &Task, manifest_digest: String) -> Result<NodeResult> {
    let vertex = task.vertex();
    let digest: Digest = match manifest_digest.parse() {
        Ok(digest) => digest,
        Err(error) => {
            let message = format!("manifest digest {manifest_digest}: {error}");
            vertex.error(&message);
            return Err(task.step_failed(message, error));
        }
    };
    let store = task.shared.store.clone();
    let outcome = blocking(move || unpacked_chain(&store, &digest).map_err(Box::new)).await?;
    match outcome {
        Ok((chain, lazy)) => {
            vertex.done();
            let key = cache::key(&task.op.definition.cache_definition(), &[]);
            Ok(NodeResult {
                lazy,
                ..NodeResult::source(key, chain)
            })
        }
        Err(cause) => {
            let message = cause.to_string();
            vertex.error(&message);
            Err(task.step_failed(message, *cause))
        }
    }
}

/// The image's layers' `fs/` directories, bottom first. When every layer blob is stored,
/// the ones not unpacked yet are unpacked now; otherwise (a base image resolved without
/// downloading its layers) each missing one is a lazy layer, made if a step needs it.
fn unpacked_chain(
    store: &Store,
    digest: &Digest,
) -> Result<(Vec<PathBuf>, Vec<Arc<LazyLayer>>), StepCause> {
    let image = store.image(digest)?;
    let snapshots = store.snapshots_dir();
    let chain_ids = image.chain_ids();
    let dirs: Vec<PathBuf> = chain_ids
        .iter()
        .map(|c| snapshots.join(c.hex()).join("fs"))
        .collect();
    let mut blobs = Vec::with_capacity(image.layers.len());
    for layer in &image.layers {
        blobs.push(Digest::from_oci(layer.digest()).map_err(StoreError::from)?);
    }
    if blobs.iter().all(|blob| store.has_blob(blob)) {
        crate::image::unpack_image(store, &image)?;
        return Ok((dirs, Vec::new()));
    }
    let mut lazy = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        if crate::snapshot::open_snapshot(store, &chain_ids[i])?.is_some() {
            continue;
        }
        lazy.push(Arc::new(LazyLayer::image(
            dir.clone(),
            i.checked_sub(1).map(|p| chain_ids[p].clone()),
            image.diff_ids[i].clone(),
            blobs[i].clone(),
            image.layers[i].size(),
        )));
    }
    Ok((dirs, lazy))
}
