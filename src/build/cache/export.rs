//! `--cache-to`: the records of the build's steps and their layer blobs, to a registry or
//! an OCI layout directory (an inline cache is written by the image exporter instead:
//! [`inline_records`]).

use std::collections::HashMap;
use std::path::Path;

use petgraph::graph::NodeIndex;
use serde_json::json;

use super::spec::{CacheExport, CacheMode, CacheTarget};
use super::{BoxError, Fetcher, layout_blob};
use crate::build::BuildError;
use crate::cache::remote::{self, CacheConfig, RemoteRecord, RemoteStep};
use crate::cache::{self, BlobRef, CacheIndex, Explain, Record};
use crate::oci::{Compression, Digest, media_type};
use crate::plan::{Definition, Plan};
use crate::registry::{Client, RegistryRef};
use crate::solve::{NodeResult, Solved};
use crate::store::Store;

/// What an export reads: the build's plan and results, and where their blobs are.
pub(in crate::build) struct Source<'a> {
    pub store: &'a Store,
    pub cache: &'a CacheIndex,
    pub client: &'a Client,
    pub fetcher: &'a Fetcher,
    pub plan: &'a Plan,
    pub solved: &'a Solved,
    /// Layer tars written while the build ran, by step key.
    pub written: &'a HashMap<String, crate::export::Blob>,
    pub epoch: Option<u64>,
    /// The Dockerfile's name in its context.
    pub dockerfile: &'a str,
}

/// Exports the cache `spec` describes (registry or local; inline is the image's).
/// `outputs_done` turns true once the build's outputs (its image pushes) are written.
pub(in crate::build) async fn export(
    source: &Source<'_>,
    spec: &CacheExport,
    mut outputs_done: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let nodes = steps(source.plan, source.solved, spec.mode);
    let (config, blobs) = records(source, &nodes, spec).await?;
    let config_bytes = serde_json::to_vec(&config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": remote::CONFIG_MEDIA_TYPE,
            "digest": Digest::of(&config_bytes).to_string(),
            "size": config_bytes.len(),
        },
        "layers": blobs.iter().map(|b| json!({
            "mediaType": b.media_type,
            "digest": b.digest,
            "size": b.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    match &spec.target {
        CacheTarget::Registry(reference) => {
            let target = RegistryRef::from(reference);
            let store = source.store.clone();
            let config_digest = {
                let bytes = config_bytes.clone();
                tokio::task::spawn_blocking(move || store.write_blob(&bytes)).await??
            };
            let mut all = Vec::with_capacity(blobs.len() + 1);
            for blob in &blobs {
                let digest: Digest = blob.digest.parse()?;
                bring_unless_mountable(source, &target, &digest, blob.size).await?;
                all.push((digest, blob.size));
            }
            // The blobs that are not the image's go up while the image is pushed; the
            // rest once that push is done (the registry has them then: nothing is sent
            // twice).
            let image_layers = image_layer_blobs(source, &nodes, &blobs, &config);
            let own: Vec<(Digest, u64)> = all
                .iter()
                .filter(|(digest, _)| !image_layers.contains(&digest.to_string()))
                .cloned()
                .collect();
            crate::image::push_blobs_to(source.store, source.client, &target, &own).await?;
            let _ = outputs_done.wait_for(|done| *done).await;
            all.push((config_digest, config_bytes.len() as u64));
            crate::image::push_artifact(
                source.store,
                source.client,
                &target,
                &all,
                media_type::OCI_MANIFEST,
                &manifest_bytes,
            )
            .await?;
        }
        CacheTarget::Local(dir) => {
            for blob in &blobs {
                let digest: Digest = blob.digest.parse()?;
                source.fetcher.fetch_into_store(&digest, blob.size).await?;
            }
            let (store, dir, tag) = (source.store.clone(), dir.clone(), spec.tag.clone());
            tokio::task::spawn_blocking(move || {
                write_layout(&store, &dir, &tag, &blobs, &config_bytes, &manifest_bytes)
            })
            .await??;
        }
        CacheTarget::Inline => {}
    }
    Ok(())
}

/// The digests of the blobs of `config`'s records that are layers of the image.
fn image_layer_blobs(
    source: &Source<'_>,
    nodes: &[NodeIndex],
    blobs: &[BlobRef],
    config: &CacheConfig,
) -> std::collections::HashSet<String> {
    let image_keys: std::collections::HashSet<&str> = source
        .plan
        .image
        .layers
        .iter()
        .filter(|layer| nodes.contains(&layer.node))
        .filter_map(|layer| source.solved.results.get(&layer.node))
        .map(|result| result.key.as_str())
        .collect();
    config
        .records
        .iter()
        .filter(|record| image_keys.contains(record.key.as_str()))
        .filter_map(|record| blobs.get(record.layer?))
        .map(|blob| blob.digest.clone())
        .collect()
}

/// A blob the target registry can neither have nor mount (no repository of that registry
/// is known to hold it) must be uploaded, so it must be in the store.
async fn bring_unless_mountable(
    source: &Source<'_>,
    target: &RegistryRef,
    digest: &Digest,
    size: u64,
) -> Result<(), BoxError> {
    if source.store.has_blob(digest) {
        return Ok(());
    }
    let prefix = format!("{}/", target.registry);
    let (store, wanted) = (source.store.clone(), digest.clone());
    let sources =
        tokio::task::spawn_blocking(move || crate::image::sources_of(&store, &wanted)).await?;
    if sources.iter().any(|s| s.starts_with(&prefix)) {
        return Ok(());
    }
    source.fetcher.fetch_into_store(digest, size).await
}

/// The steps an export carries, in plan order: the image's (min) or every step that ran
/// or was cached (max).
fn steps(plan: &Plan, solved: &Solved, mode: CacheMode) -> Vec<NodeIndex> {
    match mode {
        CacheMode::Min => plan.image.layers.iter().map(|l| l.node).collect(),
        CacheMode::Max => {
            let mut nodes: Vec<NodeIndex> = solved
                .results
                .keys()
                .copied()
                .filter(|n| {
                    matches!(
                        plan.graph[*n].definition,
                        Definition::Exec(_) | Definition::File(_)
                    )
                })
                .collect();
            nodes.sort();
            nodes
        }
    }
}

/// The records of `nodes` and the layer blobs they name (each once, compressed as asked
/// unless it already is). Layers are prepared in parallel, one per CPU.
async fn records(
    source: &Source<'_>,
    nodes: &[NodeIndex],
    spec: &CacheExport,
) -> Result<(CacheConfig, Vec<BlobRef>), BoxError> {
    let results: Vec<&NodeResult> = nodes
        .iter()
        .filter_map(|node| source.solved.results.get(node))
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(workers));
    let mut jobs = tokio::task::JoinSet::new();
    let mut layers: Vec<Option<(String, BlobRef, Option<u64>)>> = vec![None; results.len()];
    for (i, result) in results.iter().enumerate() {
        if result.empty {
            continue;
        }
        match prepare_layer(source, result, spec)? {
            Prepared::Ready(layer) => layers[i] = Some(layer),
            Prepared::Work(work) => {
                let permits = permits.clone();
                jobs.spawn(async move {
                    let _permit = permits.acquire_owned().await?;
                    let done = tokio::task::spawn_blocking(work).await??;
                    Ok::<_, BoxError>((i, done))
                });
            }
        }
    }
    let mut index_puts = source.cache.batch();
    while let Some(joined) = jobs.join_next().await {
        let (i, (layer, indexed)) = joined??;
        if let Some((blob_key, record)) = indexed {
            index_puts.put(blob_key, record, None);
        }
        layers[i] = Some(layer);
    }
    // The next export of these steps (cache hits then) finds their tars.
    index_puts.commit()?;
    let mut config = CacheConfig::new();
    let mut blobs: Vec<BlobRef> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (result, layer) in results.iter().zip(layers) {
        let (mut record, inputs) = record_of(source, result)?;
        if let Some((diff_id, blob, epoch)) = layer {
            let index = *index_of.entry(blob.digest.clone()).or_insert_with(|| {
                blobs.push(blob.clone());
                blobs.len() - 1
            });
            record.layer = Some(index);
            record.diff_id = Some(diff_id);
            record.epoch = epoch;
        }
        config.push(record, &inputs);
    }
    Ok((config, blobs))
}

/// A step's record without its layer, and what went into its key.
fn record_of(
    source: &Source<'_>,
    result: &NodeResult,
) -> Result<(RemoteRecord, Explain), BoxError> {
    let inputs = match &result.imported {
        Some(imported) => imported.inputs.clone(),
        None => source
            .cache
            .get_with_files(&result.key)?
            .map(|r| r.inputs)
            .unwrap_or_default(),
    };
    let step = match (&result.imported, &result.identity) {
        (Some(imported), _) if imported.step.is_some() => imported.step.clone(),
        (_, Some(identity)) => Some(RemoteStep {
            dockerfile: source.dockerfile.to_string(),
            stage: identity.stage.clone(),
            step: identity.step,
        }),
        _ => None,
    };
    let record = RemoteRecord {
        key: result.key.clone(),
        created_at: result.created_at,
        empty: result.empty,
        step,
        ..RemoteRecord::default()
    };
    Ok((record, inputs))
}

/// A step's layer as the export sends it: known now, or work for a blocking thread that
/// gives it (and the index record of the tar it wrote, if it wrote one).
enum Prepared {
    Ready((String, BlobRef, Option<u64>)),
    Work(Box<dyn FnOnce() -> Result<PreparedLayer, BoxError> + Send>),
}

type PreparedLayer = ((String, BlobRef, Option<u64>), Option<(String, Record)>);

/// The layer blob of a step: the imported one as it is, or the local layer's tar (written
/// now when neither the build nor an earlier export wrote it) compressed as `spec` asks.
fn prepare_layer(
    source: &Source<'_>,
    result: &NodeResult,
    spec: &CacheExport,
) -> Result<Prepared, BoxError> {
    if let Some(layer) = result.imported.as_ref().and_then(|i| i.layer.clone())
        && !result.layer_exists()
    {
        return Ok(Prepared::Ready((layer.diff_id, layer.blob, layer.epoch)));
    }
    let dir = result
        .layer
        .clone()
        .ok_or_else(|| format!("step {} has no layer", result.key))?;
    let (store, key, epoch) = (source.store.clone(), result.key.clone(), source.epoch);
    let blob_key = cache::layer_blob_key(&key, epoch);
    let remembered = match source.written.get(&key) {
        Some(written) => Some(written.clone()),
        None => source.cache.get(&blob_key)?.and_then(|record| {
            let blob = record.result.blob?;
            let diff_id = record.result.diff_id?;
            let digest: Digest = blob.digest.parse().ok()?;
            store.has_blob(&digest).then_some((diff_id, blob))
        }),
    };
    let indexed = remembered.is_some() && !source.written.contains_key(&key);
    let spec = spec.clone();
    Ok(Prepared::Work(Box::new(move || {
        let (diff_id, tar) = match remembered {
            Some(found) => found,
            None => crate::export::write_layer(&store, &dir, epoch)?,
        };
        let sent = compressed(&store, &diff_id, tar.clone(), &spec)?;
        let record = (!indexed).then(|| (blob_key, Record::layer_blob(&key, &diff_id, &tar)));
        Ok(((diff_id, sent, epoch), record))
    })))
}

/// `blob` as the export sends it: an uncompressed layer compressed (once, remembered),
/// a compressed one as it is.
fn compressed(
    store: &Store,
    diff_id: &str,
    blob: BlobRef,
    spec: &CacheExport,
) -> Result<BlobRef, BoxError> {
    if blob.media_type != media_type::OCI_LAYER || spec.compression == Compression::None {
        return Ok(blob);
    }
    let (digest, size) = crate::image::compress::layer_twin(
        store,
        &blob.digest.parse()?,
        &diff_id.parse()?,
        spec.compression,
        spec.compression_level,
    )?;
    Ok(BlobRef {
        digest: digest.to_string(),
        size,
        media_type: media_type::layer_type(spec.compression, true).to_string(),
    })
}

/// Writes an OCI layout at `dir` (created when missing) holding the cache manifest under
/// `tag`, copying the blobs it lacks from the store.
fn write_layout(
    store: &Store,
    dir: &Path,
    tag: &str,
    blobs: &[BlobRef],
    config: &[u8],
    manifest: &[u8],
) -> Result<(), BoxError> {
    let sha = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&sha).map_err(|e| format!("{}: {e}", sha.display()))?;
    let write = |name: &Path, bytes: &[u8]| -> Result<(), BoxError> {
        crate::store::write_atomic(name, bytes)?;
        Ok(())
    };
    write(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    for blob in blobs {
        let digest: Digest = blob.digest.parse()?;
        let to = layout_blob(dir, &digest);
        if to.exists() {
            continue;
        }
        copy_blob(store, &digest, &to)?;
    }
    let config_digest = Digest::of(config);
    write(&layout_blob(dir, &config_digest), config)?;
    let manifest_digest = Digest::of(manifest);
    write(&layout_blob(dir, &manifest_digest), manifest)?;
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({ "schemaVersion": 2, "manifests": [] }));
    let entry = json!({
        "mediaType": media_type::OCI_MANIFEST,
        "digest": manifest_digest.to_string(),
        "size": manifest.len(),
        "annotations": { "org.opencontainers.image.ref.name": tag },
    });
    let manifests = index
        .get_mut("manifests")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or("index.json has no manifests array")?;
    manifests.retain(|m| {
        m.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(serde_json::Value::as_str)
            != Some(tag)
    });
    manifests.push(entry);
    write(&index_path, &serde_json::to_vec_pretty(&index)?)?;
    Ok(())
}

/// Copies the stored blob `digest` to `to` through a temporary file of a new name: never
/// through a file (or symlink) already in the directory, which may be shared with others.
fn copy_blob(store: &Store, digest: &Digest, to: &Path) -> Result<(), BoxError> {
    let from = store.blob_path(digest);
    let temp = to.with_file_name(format!(
        ".{}.tmp-{}",
        digest.hex(),
        crate::store::random_name()
    ));
    let copied = (|| {
        let mut source = std::fs::File::open(&from)?;
        let mut target = std::fs::File::create_new(&temp)?;
        std::io::copy(&mut source, &mut target)?;
        std::fs::rename(&temp, to)
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("copying {} to {}: {e}", from.display(), to.display()).into());
    }
    Ok(())
}

/// The records an inline cache carries (the image's steps), without layer indices: the
/// image exporter fills them in from the layers it keeps.
pub(in crate::build) fn inline_records(source: &Source<'_>) -> Result<CacheConfig, BuildError> {
    let mut config = CacheConfig::new();
    for node in steps(source.plan, source.solved, CacheMode::Min) {
        let Some(result) = source.solved.results.get(&node) else {
            continue;
        };
        let (record, inputs) =
            record_of(source, result).map_err(|source| BuildError::CacheExport {
                target: "the image (inline)".into(),
                source,
            })?;
        config.push(record, &inputs);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache directory may be shared (restored from a CI cache): a file planted there
    /// must not lead the export's writes out of it.
    #[test]
    fn layout_blobs_are_not_written_through_planted_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let digest = store.write_blob(b"layer bytes").unwrap();
        let blob = BlobRef {
            digest: digest.to_string(),
            size: 11,
            media_type: media_type::OCI_LAYER.to_string(),
        };
        let layout = dir.path().join("cache");
        let sha = layout.join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        for planted in [
            format!("{}.tmp", digest.hex()),
            format!(".{}.tmp", digest.hex()),
        ] {
            std::os::unix::fs::symlink(&victim, sha.join(planted)).unwrap();
        }
        write_layout(&store, &layout, "latest", &[blob], b"{}", b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read(sha.join(digest.hex())).unwrap(),
            b"layer bytes"
        );
    }
}
