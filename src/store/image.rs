//! A read view of one stored image: manifest, config and layers.

use super::{Result, Store, StoreError};
use crate::oci::{Descriptor, Digest, ImageConfiguration, ImageManifest, MediaType, media_type};

/// A stored image, with Docker schema2 media types normalised to their OCI equivalents.
#[derive(Debug, Clone)]
pub struct Image {
    /// Digest of the manifest bytes as stored (unchanged by normalisation).
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: ImageManifest,
    /// The image id, as `docker images` shows it.
    pub config_digest: Digest,
    pub config_size: u64,
    pub config: ImageConfiguration,
    pub layers: Vec<Descriptor>,
    /// Uncompressed layer digests from the config, one per layer.
    pub diff_ids: Vec<Digest>,
}

impl Image {
    /// The image id (config digest), as Docker shows it.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Bytes of manifest, config and (compressed) layers.
    pub fn size(&self) -> u64 {
        self.manifest_size + self.config_size + self.layers.iter().map(|l| l.size()).sum::<u64>()
    }

    /// Snapshot ids of the layer stack, bottom first: `chain_ids()[i]` is the chain id of
    /// layers `0..=i`.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids)
    }
}

/// The chain id of every prefix of `diff_ids`.
pub(super) fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    (1..=diff_ids.len())
        .filter_map(|n| crate::oci::chain_id(&diff_ids[..n]))
        .collect()
}

fn not_json(digest: &Digest) -> impl FnOnce(serde_json::Error) -> StoreError {
    let digest = digest.clone();
    move |source| StoreError::BlobJson { digest, source }
}

fn normalise_media_type(media_type: &MediaType) -> MediaType {
    MediaType::from(media_type::to_oci(media_type.as_ref()))
}

/// The `mediaType` a manifest-like JSON document declares, if any.
pub(super) fn declared_media_type(json: &serde_json::Value) -> Option<&str> {
    json.get("mediaType").and_then(|m| m.as_str())
}

impl Store {
    /// Loads the image whose manifest has `manifest_digest`.
    pub fn image(&self, manifest_digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob(manifest_digest)?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(not_json(manifest_digest))?;
        let declared = declared_media_type(&json).unwrap_or(media_type::OCI_MANIFEST);
        if media_type::is_index(declared) || json.get("manifests").is_some() {
            return Err(StoreError::NotAManifest {
                digest: manifest_digest.clone(),
                media_type: declared.to_string(),
            });
        }
        let mut manifest: ImageManifest =
            serde_json::from_value(json).map_err(not_json(manifest_digest))?;
        manifest.set_media_type(Some(MediaType::ImageManifest));
        let mut config_descriptor = manifest.config().clone();
        config_descriptor.set_media_type(normalise_media_type(config_descriptor.media_type()));
        manifest.set_config(config_descriptor.clone());
        let layers: Vec<Descriptor> = manifest
            .layers()
            .iter()
            .map(|layer| {
                let mut layer = layer.clone();
                layer.set_media_type(normalise_media_type(layer.media_type()));
                layer
            })
            .collect();
        manifest.set_layers(layers.clone());

        let config_digest = Digest::from_oci(config_descriptor.digest())?;
        let config_bytes = self.read_blob(&config_digest)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(not_json(&config_digest))?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StoreError::BlobDiffId {
                digest: config_digest.clone(),
                source,
            })?;
        if diff_ids.len() != layers.len() {
            return Err(StoreError::CorruptBlob {
                digest: manifest_digest.clone(),
                reason: format!(
                    "manifest has {} layers but config {config_digest} has {} diff_ids",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        Ok(Image {
            manifest_digest: manifest_digest.clone(),
            manifest_size: bytes.len() as u64,
            manifest,
            config_digest,
            config_size: config_bytes.len() as u64,
            config,
            layers,
            diff_ids,
        })
    }
}
