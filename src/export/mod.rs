//! The exporter: a solved plan to an OCI image in the store (layer L5).
//!
//! For each layer of the target image (`plan.image.layers`): the diff of that op's upper
//! (`snapshot::diff`; an empty diff too, as BuildKit keeps it), written as an uncompressed tar into a store ingest, whose digest is the
//! diff_id. Local layers stay uncompressed, as in Docker's own image store: compressing is
//! work only a transfer needs, so `image::push` compresses (once per layer, remembered)
//! and a local build never pays for it. Layers are written in parallel (one thread per
//! CPU). The blob is remembered in the cache index under a key derived from the step's key
//! and `SOURCE_DATE_EPOCH`, so a warm rebuild writes nothing. Base image layers are reused
//! as they are. Then the config (the plan's config, `rootfs.diff_ids`, history with
//! `created` times, platform), the OCI manifest, and the tags.
//!
//! Blocking: callers run [`export`] in `spawn_blocking`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

pub use crate::cache::BlobRef;
use crate::cache::remote::{self, CacheConfig};
use crate::cache::{self, CacheIndex, Record};
use crate::oci::{Descriptor, Digest, MediaType, Reference, media_type};
use crate::plan::Plan;
use crate::snapshot::diff::{self, DiffOptions};
use crate::store::Store;

mod error;

pub use error::ExportError;

type Result<T, E = ExportError> = std::result::Result<T, E>;

/// A written layer: its diff_id and blob.
pub type Blob = (String, BlobRef);

/// One layer the build made: the op's layer directory and cache key.
#[derive(Debug, Clone)]
pub struct LayerInput {
    pub dir: PathBuf,
    pub key: String,
    /// The display name of the op, for messages.
    pub name: String,
    /// A step an imported cache had, whose directory was never made: its layer as the
    /// cache holds it (written with the same `SOURCE_DATE_EPOCH`).
    pub remote: Option<RemoteLayer>,
}

/// The layer of an imported step, as the cache stored it.
#[derive(Debug, Clone)]
pub struct RemoteLayer {
    pub diff_id: String,
    pub blob: BlobRef,
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// `SOURCE_DATE_EPOCH`: history times and file mtimes clamped to it.
    pub source_date_epoch: Option<u64>,
    /// The image's `created` time (Unix seconds) when `source_date_epoch` is unset: the
    /// solver's newest step, so that a rebuild from the cache gives the same image id.
    pub created: u64,
    pub tags: Vec<Reference>,
    /// Keep the image without a name when `tags` is empty (an image of a multi-platform
    /// build is not: the index names it).
    pub keep_unnamed: bool,
    /// Layers already written (by [`write_layer`] while the build ran), by step key.
    pub written: HashMap<String, (String, BlobRef)>,
    /// `--cache-to type=inline`: the image's step records, written into the config with
    /// the index and diff_id of each step's layer filled in.
    pub inline_cache: Option<CacheConfig>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The image id: the config digest.
    pub image_id: Digest,
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    /// Layers written in this export (0 on a warm rebuild).
    pub written: usize,
}

/// Writes the image of `plan` into `store`. `layers[i]` is the result of
/// `plan.image.layers[i].node`.
pub fn export(
    store: &Store,
    cache_index: &CacheIndex,
    plan: &Plan,
    layers: &[LayerInput],
    options: &ExportOptions,
) -> Result<Exported> {
    let _lease = store.lease()?;
    let history = plan.image.history.clone();
    let (mut diff_ids, mut descriptors) = base_layers(store, plan)?;
    let mut kept = kept_layers(store, cache_index, layers, options)?;
    let written = write_missing(store, cache_index, &mut kept, options)?;
    let mut inline = options.inline_cache.clone();
    for layer in kept {
        let (diff_id, blob) = layer.blob.expect("every kept layer has a blob now");
        if let Some(inline) = &mut inline {
            for record in inline
                .records
                .iter_mut()
                .filter(|r| r.key == layer.input.key)
            {
                record.layer = Some(diff_ids.len());
                record.diff_id = Some(diff_id.clone());
                record.epoch = options.source_date_epoch;
            }
        }
        diff_ids.push(diff_id);
        descriptors.push(json!({
            "mediaType": blob.media_type,
            "digest": blob.digest,
            "size": blob.size,
        }));
    }
    let (config_digest, config_size) =
        write_config(store, plan, history, diff_ids, inline.as_ref(), options)?;
    // An image whose layers are not all here (imported steps, a base image never
    // downloaded: a build that only pushes) is not kept: nothing local could use it.
    let whole = descriptors.iter().all(|layer| {
        layer["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok())
            .is_some_and(|digest| store.has_blob(&digest))
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": media_type::OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_size,
        },
        "layers": descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = store.write_blob(&manifest_bytes)?;
    let descriptor = Descriptor::new(
        MediaType::from(media_type::OCI_MANIFEST),
        manifest_bytes.len() as u64,
        manifest_digest.to_oci(),
    );
    for tag in &options.tags {
        store.tag(tag, &descriptor)?;
    }
    if options.tags.is_empty() && options.keep_unnamed && whole {
        store.keep_unnamed(&descriptor)?;
    }
    Ok(Exported {
        image_id: config_digest,
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        written,
    })
}

/// Writes an OCI index over the images of a build for several platforms (in order, each
/// with its platform) and names it `tags`. The index's digest is its id.
pub fn index(
    store: &Store,
    images: &[(crate::plan::Platform, Exported)],
    tags: &[Reference],
) -> Result<Exported> {
    let manifests: Vec<Value> = images
        .iter()
        .map(|(platform, exported)| {
            json!({
                "mediaType": media_type::OCI_MANIFEST,
                "digest": exported.manifest_digest.to_string(),
                "size": exported.manifest_size,
                "platform": platform,
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).unwrap_or_default();
    let digest = store.write_blob(&bytes)?;
    let descriptor = Descriptor::new(
        MediaType::from(media_type::OCI_INDEX),
        bytes.len() as u64,
        digest.to_oci(),
    );
    for tag in tags {
        store.tag(tag, &descriptor)?;
    }
    if tags.is_empty() {
        store.keep_unnamed(&descriptor)?;
    }
    Ok(Exported {
        image_id: digest.clone(),
        manifest_digest: digest,
        manifest_size: bytes.len() as u64,
        written: images.iter().map(|(_, e)| e.written).sum(),
    })
}

/// The base image's layers as they are: their diff_ids and manifest descriptors.
fn base_layers(store: &Store, plan: &Plan) -> Result<(Vec<String>, Vec<Value>)> {
    let (mut diff_ids, mut descriptors) = (Vec::new(), Vec::new());
    let Some(base) = &plan.image.base else {
        return Ok((diff_ids, descriptors));
    };
    let digest: Digest = base
        .manifest_digest
        .parse()
        .map_err(|source| ExportError::Base {
            reference: base.reference.clone(),
            source,
        })?;
    let image = store.image(&digest)?;
    for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
        diff_ids.push(diff_id.to_string());
        descriptors.push(json!({
            "mediaType": layer.media_type().to_string(),
            "digest": layer.digest().to_string(),
            "size": layer.size(),
        }));
    }
    Ok((diff_ids, descriptors))
}

/// A layer of the image the build made.
struct Kept<'a> {
    input: &'a LayerInput,
    /// Where the cache index remembers its blob.
    blob_key: String,
    blob: Option<Blob>,
    /// Written while the build ran, not yet recorded in the cache index.
    fresh: bool,
}

/// The build's layers, each with its blob when one exists already (written while the
/// build ran, or remembered from an earlier build). Every layer step keeps its layer, an
/// empty one included (as BuildKit: see docs/architecture.md, "Layers and history").
fn kept_layers<'a>(
    store: &Store,
    cache_index: &CacheIndex,
    layers: &'a [LayerInput],
    options: &ExportOptions,
) -> Result<Vec<Kept<'a>>> {
    let mut kept = Vec::new();
    for input in layers {
        if let Some(RemoteLayer { diff_id, blob }) = &input.remote {
            kept.push(Kept {
                input,
                blob_key: cache::layer_blob_key(&input.key, options.source_date_epoch),
                blob: Some((diff_id.clone(), blob.clone())),
                fresh: false,
            });
            continue;
        }
        let blob_key = cache::layer_blob_key(&input.key, options.source_date_epoch);
        let stored = |blob: &BlobRef| {
            blob.digest
                .parse()
                .is_ok_and(|digest: Digest| store.has_blob(&digest))
        };
        if let Some(made) = options.written.get(&input.key)
            && stored(&made.1)
        {
            kept.push(Kept {
                input,
                blob_key,
                blob: Some(made.clone()),
                fresh: true,
            });
            continue;
        }
        let cached = cache_index.get(&blob_key)?.and_then(|record| {
            let blob = record.result.blob?;
            let diff_id = record.result.diff_id?;
            stored(&blob).then_some((diff_id, blob))
        });
        kept.push(Kept {
            input,
            blob_key,
            blob: cached,
            fresh: false,
        });
    }
    Ok(kept)
}

/// Writes the layers that have no blob yet, in parallel (one layer per worker at a time),
/// and records every new blob in the cache index. Returns how many layers were written in
/// this build.
fn write_missing(
    store: &Store,
    cache_index: &CacheIndex,
    kept: &mut [Kept<'_>],
    options: &ExportOptions,
) -> Result<usize> {
    let missing: Vec<usize> = (0..kept.len())
        .filter(|i| kept[*i].blob.is_none())
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(missing.len());
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Result<Blob>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = missing.get(n) else { break };
                    let input = kept[i].input;
                    let made = write_layer(store, &input.dir, options.source_date_epoch)
                        .map_err(|e| layer_error(input, e));
                    done.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((i, made));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    let fresh: Vec<(usize, Result<Blob>)> = kept
        .iter()
        .enumerate()
        .filter(|(_, k)| k.fresh)
        .filter_map(|(i, k)| k.blob.clone().map(|blob| (i, Ok(blob))))
        .collect();
    let written = done.len() + fresh.len();
    done.extend(fresh);
    let mut puts = cache_index.batch();
    for (i, made) in done {
        let (diff_id, blob) = made?;
        puts.put(
            kept[i].blob_key.clone(),
            Record::layer_blob(&kept[i].input.key, &diff_id, &blob),
            None,
        );
        kept[i].blob = Some((diff_id, blob));
    }
    puts.commit()?;
    Ok(written)
}

/// Writes the image config: the plan's config and history (dated), the layers' diff_ids,
/// the platform and author. Returns its digest (the image id) and size.
fn write_config(
    store: &Store,
    plan: &Plan,
    mut history: Vec<crate::plan::History>,
    diff_ids: Vec<String>,
    inline_cache: Option<&CacheConfig>,
    options: &ExportOptions,
) -> Result<(Digest, usize)> {
    let created = rfc3339(options.source_date_epoch.unwrap_or(options.created));
    for entry in &mut history {
        if entry.created.is_none() {
            entry.created = Some(created.clone());
        }
    }
    let platform = &plan.image.platform;
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": serde_json::to_value(&plan.image.config).unwrap_or(Value::Null),
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": serde_json::to_value(&history).unwrap_or(Value::Null),
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    if let Some(author) = &plan.image.author {
        config["author"] = json!(author);
    }
    if let Some(inline) = inline_cache {
        config[remote::INLINE_FIELD] = serde_json::to_value(inline).unwrap_or(Value::Null);
    }
    let bytes = serde_json::to_vec(&config).unwrap_or_default();
    Ok((store.write_blob(&bytes)?, bytes.len()))
}

fn layer_error(input: &LayerInput, source: ExportError) -> ExportError {
    ExportError::Layer {
        name: input.name.clone(),
        source: Box::new(source),
    }
}

/// Writes the layer directory `dir` as an uncompressed tar into a store ingest; returns
/// the diff_id (the blob's own digest) and the blob. `epoch` is `SOURCE_DATE_EPOCH`.
pub fn write_layer(store: &Store, dir: &std::path::Path, epoch: Option<u64>) -> Result<Blob> {
    let ingest = store.ingest_direct()?;
    let ingest = diff::diff(
        dir,
        &DiffOptions {
            source_date_epoch: epoch,
        },
        ingest,
    )?;
    let (digest, size) = ingest.commit(None, None)?;
    Ok((
        digest.to_string(),
        BlobRef {
            digest: digest.to_string(),
            size,
            media_type: media_type::OCI_LAYER.to_string(),
        },
    ))
}

/// `seconds` since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(seconds: u64) -> String {
    crate::oci::time::format_rfc3339(i64::try_from(seconds).unwrap_or(i64::MAX), None)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
