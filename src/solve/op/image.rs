//! A base image: unpacked from the store (the planner's resolver already pulled it), its
//! layer snapshots as the chain.

use std::path::PathBuf;

use crate::cache;
use crate::oci::Digest;
use crate::solve::error::StepCause;
use crate::solve::step::Task;
use crate::solve::{NodeResult, Result, blocking};
use crate::store::Store;

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
        Ok(chain) => {
            vertex.done();
            let key = cache::key(&task.op.definition.cache_definition(), &[]);
            Ok(NodeResult::source(key, chain))
        }
        Err(cause) => {
            let message = cause.to_string();
            vertex.error(&message);
            Err(task.step_failed(message, *cause))
        }
    }
}

/// Unpacks the image's layers (those not unpacked yet); their `fs/` directories, bottom first.
fn unpacked_chain(store: &Store, digest: &Digest) -> Result<Vec<PathBuf>, StepCause> {
    let image = store.image(digest)?;
    crate::image::unpack_image(store, &image)?;
    let snapshots = store.snapshots_dir();
    Ok(image
        .chain_ids()
        .iter()
        .map(|c| snapshots.join(c.hex()).join("fs"))
        .collect())
}
