//! What the cache index stores: records, their explained inputs, step identities.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a cached result lives. Every field is optional so one type covers snapshots
/// (RUN/COPY results), layers and metadata-only results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResultRef {
    /// The snapshot holding the result (`snapshots-v1/<id>`).
    pub snapshot: Option<String>,
    /// Chain ids of the snapshot's parents, base first.
    pub chain: Vec<String>,
    /// The layer's uncompressed digest.
    pub diff_id: Option<String>,
    /// The layer blob, once compressed.
    pub blob: Option<BlobRef>,
    /// The step changed no files (`"empty_layer": true` in the image history).
    pub empty_layer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// What went into a cache key, kept so that a miss can say what changed.
///
/// `values` names each input: `command`, `user`, `workdir`, `shell`, `env:NAME`, `arg:NAME`,
/// `network`, `mount:N`, `base` (image manifest digest), `files` (content digest of the
/// selected files), `parent` (or `parent:N`: the keys of input steps). `files` maps each
/// selected path to its content digest; the index stores it in its own table keyed by a hash
/// of the map, so records of unchanged contexts share one copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    pub values: BTreeMap<String, String>,
    /// Not loaded by [`super::CacheIndex::get`] (hits do not need it); loaded by
    /// [`super::CacheIndex::previous`].
    #[serde(skip)]
    pub files: Option<BTreeMap<String, String>>,
}

impl Explain {
    pub fn new() -> Explain {
        Explain::default()
    }

    /// Adds one named input (builder style).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Explain {
        self.values.insert(name.into(), value.into());
        self
    }

    /// Sets the per-file digests (builder style).
    pub fn with_files<P: Into<String>, D: Into<String>>(
        mut self,
        files: impl IntoIterator<Item = (P, D)>,
    ) -> Explain {
        self.files = Some(
            files
                .into_iter()
                .map(|(p, d)| (p.into(), d.into()))
                .collect(),
        );
        self
    }
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub result: ResultRef,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; updated (in batches) by lookups.
    pub last_used_at: u64,
    pub size_bytes: u64,
    pub inputs: Explain,
}

impl Record {
    /// The record of the layer tar (or blob) written for the step with key `step_key`,
    /// stored under [`super::layer_blob_key`].
    pub fn layer_blob(step_key: &str, diff_id: &str, blob: &BlobRef) -> Record {
        let result = ResultRef {
            diff_id: Some(diff_id.to_string()),
            blob: Some(blob.clone()),
            ..ResultRef::default()
        };
        Record::new(result, Explain::new().with("step", step_key), blob.size)
    }

    /// A record created and used now.
    pub fn new(result: ResultRef, inputs: Explain, size_bytes: u64) -> Record {
        let now = super::unix_now();
        Record {
            result,
            created_at: now,
            last_used_at: now,
            size_bytes,
            inputs,
        }
    }
}

/// The serialized form of a record; the file map lives in the files table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRecord {
    pub v: u32,
    pub result: ResultRef,
    pub created_at: u64,
    pub last_used_at: u64,
    pub size_bytes: u64,
    pub inputs: BTreeMap<String, String>,
    #[serde(default)]
    pub files_ref: Option<String>,
}

/// "The same step of the same Dockerfile" across builds, to find what a miss replaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepIdentity {
    /// Absolute path of the Dockerfile (or `-` for stdin).
    pub dockerfile: String,
    /// Absolute path of the build context.
    pub context: String,
    /// Stage name, or its index when unnamed.
    pub stage: String,
    /// The step's index within its stage.
    pub step: u32,
}

impl StepIdentity {
    /// The table key. Paths and stage names cannot contain NUL, so this is unambiguous.
    pub(super) fn encode(&self) -> String {
        format!(
            "{}\0{}\0{}\0{}",
            self.dockerfile, self.context, self.stage, self.step
        )
    }
}
