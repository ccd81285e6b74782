//! The cache as it travels between machines: the records of a build's steps, written into a
//! registry (an OCI image manifest whose config is a [`CacheConfig`] and whose layers are
//! the steps' layer blobs), an OCI layout directory, or an image's own config (inline), and
//! read back as an [`ImportedCache`].
//!
//! Keys are the local ones: they hash definitions and content digests only, never a path,
//! inode or mtime, so a record made on one machine is a hit on another. A record carries
//! what its key was made of (as local records do), so a miss explains itself against an
//! imported cache as it would against a local one; step identities leave out the absolute
//! paths a local identity has, which differ between machines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{BlobRef, CacheError, Explain, StepIdentity};

/// The media type of a cache manifest's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";
/// The image config field an inline cache lives in.
pub const INLINE_FIELD: &str = "io.kiln.cache.v1";
/// The format version this kiln writes and reads.
pub const VERSION: u32 = 1;

/// A cache's records (the config blob of a cache manifest, or an inline cache).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub records: Vec<RemoteRecord>,
    /// File maps (path → content digest) of the records' `files` inputs, shared by the
    /// sha256 of their encoding: every step copying the same context shares one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, BTreeMap<String, String>>,
}

/// One step's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteRecord {
    pub key: String,
    /// Unix seconds: when the step first ran (the image's `created` comes from it).
    pub created_at: u64,
    /// The step changed no files.
    pub empty: bool,
    /// Its layer: an index into the manifest's layers (into the image's layers, inline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// The layer's uncompressed digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    /// The `SOURCE_DATE_EPOCH` the layer was written with (mtimes are clamped to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<RemoteStep>,
    /// What went into the key ([`Explain::values`]).
    pub inputs: BTreeMap<String, String>,
    /// The key of its file map in [`CacheConfig::files`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
}

/// "The same step" without the machine's paths: the Dockerfile's name in its context,
/// the stage and the step's position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteStep {
    pub dockerfile: String,
    pub stage: String,
    pub step: u32,
}

impl CacheConfig {
    pub fn new() -> CacheConfig {
        CacheConfig {
            version: VERSION,
            ..CacheConfig::default()
        }
    }

    /// Adds the record of `key`; `inputs.files`, when loaded, goes into the shared maps.
    pub fn push(&mut self, mut record: RemoteRecord, inputs: &Explain) {
        record.inputs = inputs.values.clone();
        if let Some(files) = &inputs.files {
            let encoded = serde_json::to_vec(files).unwrap_or_default();
            let id = super::hex(&Sha256::digest(&encoded));
            self.files
                .entry(id.clone())
                .or_insert_with(|| files.clone());
            record.files = Some(id);
        }
        self.records.push(record);
    }
}

/// A layer an imported record names, fetched only when something needs its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedLayer {
    pub blob: BlobRef,
    pub diff_id: String,
    pub epoch: Option<u64>,
}

/// An imported record, ready for the solver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRecord {
    pub key: String,
    pub created_at: u64,
    pub empty: bool,
    pub layer: Option<ImportedLayer>,
    /// What went into the key, with its file map.
    pub inputs: Explain,
    pub step: Option<RemoteStep>,
}

/// Every imported cache of a build, merged: the first source that has a key wins.
#[derive(Debug, Default)]
pub struct ImportedCache {
    records: HashMap<String, Arc<ImportedRecord>>,
    by_step: HashMap<RemoteStep, String>,
}

impl ImportedCache {
    pub fn new() -> ImportedCache {
        ImportedCache::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds `config`'s records; `layers` are the blobs its layer indices name. Checked
    /// whole first: a bad config adds nothing.
    pub fn add(&mut self, config: &CacheConfig, layers: &[BlobRef]) -> Result<usize, CacheError> {
        if config.version != VERSION {
            return Err(CacheError::RemoteVersion {
                found: config.version,
            });
        }
        let mut imported = Vec::with_capacity(config.records.len());
        for record in &config.records {
            let layer = match record.layer {
                None => None,
                Some(index) => {
                    let blob = layers.get(index).ok_or_else(|| CacheError::RemoteLayer {
                        key: record.key.clone(),
                        index,
                        count: layers.len(),
                    })?;
                    let diff_id =
                        record
                            .diff_id
                            .clone()
                            .ok_or_else(|| CacheError::RemoteDiffId {
                                key: record.key.clone(),
                            })?;
                    Some(ImportedLayer {
                        blob: blob.clone(),
                        diff_id,
                        epoch: record.epoch,
                    })
                }
            };
            let mut inputs = Explain::new();
            inputs.values = record.inputs.clone();
            inputs.files = record
                .files
                .as_ref()
                .and_then(|id| config.files.get(id))
                .cloned();
            imported.push(ImportedRecord {
                key: record.key.clone(),
                created_at: record.created_at,
                empty: record.empty,
                layer,
                inputs,
                step: record.step.clone(),
            });
        }
        let mut added = 0;
        for record in imported {
            if self.records.contains_key(&record.key) {
                continue;
            }
            if let Some(step) = &record.step {
                self.by_step
                    .entry(step.clone())
                    .or_insert_with(|| record.key.clone());
            }
            self.records.insert(record.key.clone(), Arc::new(record));
            added += 1;
        }
        Ok(added)
    }

    pub fn get(&self, key: &str) -> Option<Arc<ImportedRecord>> {
        self.records.get(key).cloned()
    }

    /// The imported record of the same step, to explain a miss when the local index has
    /// none.
    pub fn previous(
        &self,
        identity: &StepIdentity,
        dockerfile: &str,
    ) -> Option<Arc<ImportedRecord>> {
        let step = RemoteStep {
            dockerfile: dockerfile.to_string(),
            stage: identity.stage.clone(),
            step: identity.step,
        };
        self.by_step.get(&step).and_then(|key| self.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8) -> BlobRef {
        BlobRef {
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: u64::from(n),
            media_type: crate::oci::media_type::OCI_LAYER_GZIP.to_string(),
        }
    }

    fn record(key: &str, layer: Option<usize>, step: u32) -> RemoteRecord {
        RemoteRecord {
            key: key.to_string(),
            created_at: 7,
            layer,
            diff_id: layer.map(|i| format!("sha256:{i}")),
            step: Some(RemoteStep {
                dockerfile: "Dockerfile".into(),
                stage: "0".into(),
                step,
            }),
            ..RemoteRecord::default()
        }
    }

    #[test]
    fn round_trip_shares_file_maps() {
        let mut config = CacheConfig::new();
        let files = Explain::new()
            .with("files", "sha256:f")
            .with_files([("a.txt", "sha256:1")]);
        config.push(record("k1", Some(0), 1), &files);
        config.push(record("k2", None, 2), &files);
        assert_eq!(config.files.len(), 1);
        let text = serde_json::to_string(&config).unwrap();
        let back: CacheConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config);

        let mut imported = ImportedCache::new();
        assert_eq!(imported.add(&back, &[blob(1)]).unwrap(), 2);
        let k1 = imported.get("k1").unwrap();
        assert_eq!(k1.layer.as_ref().unwrap().blob, blob(1));
        assert_eq!(k1.inputs.files.as_ref().unwrap()["a.txt"], "sha256:1");
        let identity = StepIdentity {
            dockerfile: "/elsewhere/Dockerfile".into(),
            context: "/elsewhere".into(),
            stage: "0".into(),
            step: 2,
        };
        assert_eq!(
            imported.previous(&identity, "Dockerfile").unwrap().key,
            "k2"
        );
    }

    #[test]
    fn first_source_wins_and_bad_configs_add_nothing() {
        let mut first = CacheConfig::new();
        first.push(record("k1", Some(0), 1), &Explain::new());
        let mut second = CacheConfig::new();
        second.push(record("k1", Some(0), 1), &Explain::new());
        second.push(record("k3", Some(0), 3), &Explain::new());
        let mut imported = ImportedCache::new();
        imported.add(&first, &[blob(1)]).unwrap();
        assert_eq!(imported.add(&second, &[blob(2)]).unwrap(), 1);
        assert_eq!(
            imported.get("k1").unwrap().layer.as_ref().unwrap().blob,
            blob(1)
        );

        let mut bad = CacheConfig::new();
        bad.push(record("k4", Some(0), 4), &Explain::new());
        bad.push(record("k5", Some(3), 5), &Explain::new());
        let error = imported.add(&bad, &[blob(1)]).unwrap_err();
        assert!(
            matches!(error, CacheError::RemoteLayer { index: 3, .. }),
            "{error}"
        );
        assert!(imported.get("k4").is_none());
        bad.version = 9;
        assert!(matches!(
            imported.add(&bad, &[]),
            Err(CacheError::RemoteVersion { found: 9 })
        ));
    }
}
