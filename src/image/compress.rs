//! Compressing local layers for a push.
//!
//! `kiln build` stores the layers it makes as uncompressed tars (compression is work only a
//! transfer needs; Docker's own store keeps layers uncompressed too). Before a push, each
//! uncompressed layer gets a gzip twin, made once and remembered in
//! `<root>/image-v1/gzip/<hex of the tar>` (the twin's digest and size), and the manifest
//! that is pushed names the twins. The config, and so the image id, stays the same: the
//! diff_ids are the digests of the uncompressed tars either way.
//!
//! The twins are ordinary blobs that no tagged manifest references; `image prune` may
//! remove them, and the next push then compresses again.

use std::fs;
use std::io::{self, BufReader};
use std::path::PathBuf;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

use super::{ImageError, Result, io_err};
use crate::oci::{Digest, media_type};
use crate::store::{Image, Store, StoreError};

const DIR: &str = "image-v1/gzip";

/// A layer as it is pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushLayer {
    pub digest: Digest,
    pub size: u64,
}

/// What to push for `image`: its layers (gzip twins for uncompressed ones) and the manifest
/// bytes naming them. An image with no uncompressed layer is pushed as stored.
pub(crate) fn for_push(
    store: &Store,
    image: &Image,
    manifest_bytes: &[u8],
) -> Result<(Vec<PushLayer>, Vec<u8>)> {
    let mut layers = Vec::with_capacity(image.layers.len());
    let mut replaced = Vec::new();
    for (index, layer) in image.layers.iter().enumerate() {
        let digest = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        if layer.media_type().to_string() == media_type::OCI_LAYER {
            let twin = gzip_twin(store, &digest)?;
            replaced.push((index, twin.clone()));
            layers.push(twin);
        } else {
            layers.push(PushLayer {
                digest,
                size: layer.size(),
            });
        }
    }
    if replaced.is_empty() {
        return Ok((layers, manifest_bytes.to_vec()));
    }
    let invalid = |reason: String| ImageError::Invalid {
        what: format!("manifest {}", image.manifest_digest),
        reason,
    };
    let json = |source| ImageError::Json {
        what: format!("manifest {}", image.manifest_digest),
        source,
    };
    let mut manifest: Value = serde_json::from_slice(manifest_bytes).map_err(json)?;
    let descriptors = manifest
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| invalid("no layers array".to_string()))?;
    for (index, twin) in replaced {
        let descriptor = descriptors
            .get_mut(index)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| invalid(format!("layer {index} is not an object")))?;
        descriptor.insert("mediaType".into(), media_type::OCI_LAYER_GZIP.into());
        descriptor.insert("digest".into(), twin.digest.to_string().into());
        descriptor.insert("size".into(), twin.size.into());
    }
    let bytes = serde_json::to_vec(&manifest).map_err(json)?;
    Ok((layers, bytes))
}

fn record_path(store: &Store, tar: &Digest) -> PathBuf {
    store.root().join(DIR).join(tar.hex())
}

/// The gzip twin of the uncompressed layer blob `tar`: the remembered one while its blob
/// is still stored, else a new one.
fn gzip_twin(store: &Store, tar: &Digest) -> Result<PushLayer> {
    let record = record_path(store, tar);
    if let Ok(text) = fs::read_to_string(&record)
        && let Some((digest, size)) = text.trim().split_once(' ')
        && let (Ok(digest), Ok(size)) = (digest.parse::<Digest>(), size.parse::<u64>())
        && store.blob_size(&digest).ok() == Some(size)
    {
        return Ok(PushLayer { digest, size });
    }
    let mut source = BufReader::with_capacity(1 << 20, store.open_blob(tar)?);
    let mut gzip = GzEncoder::new(store.ingest()?, Compression::new(6));
    io::copy(&mut source, &mut gzip).map_err(io_err("compress", store.blob_path(tar)))?;
    let ingest = gzip
        .finish()
        .map_err(io_err("compress", store.blob_path(tar)))?;
    let (digest, size) = ingest.commit(None, None)?;
    let dir = store.root().join(DIR);
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    // A reader sees the old record, the new one, or none.
    crate::store::write_atomic(&record, format!("{digest} {size}\n").as_bytes())?;
    Ok(PushLayer { digest, size })
}

/// The gzip twin of the uncompressed layer blob `tar` (made once, remembered): its digest
/// and size.
pub fn gzip_layer(store: &Store, tar: &Digest) -> Result<(Digest, u64)> {
    gzip_twin(store, tar).map(|twin| (twin.digest, twin.size))
}
