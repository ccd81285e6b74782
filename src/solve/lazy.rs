//! Layers a result names before their files exist: base image layers whose blobs are
//! still in a registry, and steps an imported cache had. A cache hit needs neither; a step
//! that misses needs its inputs' files (so they are made first, [`materialize`]), and so
//! does an output that needs bytes. Each layer is made once per build, under its key's
//! lock across processes, through the same staging-then-rename as any step.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use super::step::{KEY_LOCKS, lock_key, snapshot_name, write_meta};
use super::{PullError, Result, Shared, SolveError, blocking, unique_suffix};
use crate::cache::remote::ImportedRecord;
use crate::cache::{self, Record, ResultRef};
use crate::oci::Digest;

/// Brings blobs that only exist elsewhere (a registry, a cache directory) into the store.
pub trait BlobFetcher: Send + Sync + fmt::Debug {
    /// Makes sure blob `digest` of `size` bytes is in the store, verified.
    fn fetch<'a>(
        &'a self,
        digest: &'a Digest,
        size: u64,
    ) -> Pin<Box<dyn Future<Output = Result<(), PullError>> + Send + 'a>>;
}

/// One layer of a chain whose directory may not exist yet.
pub struct LazyLayer {
    /// The `fs/` directory it becomes.
    pub dir: PathBuf,
    pending: Pending,
    made: OnceCell<()>,
}

enum Pending {
    /// A base image layer: its blob unpacked as the snapshot of its chain id.
    Image {
        parent: Option<Digest>,
        diff_id: Digest,
        blob: Digest,
        size: u64,
    },
    /// A step an imported cache had: its layer blob unpacked as the step's snapshot.
    Step(Arc<ImportedRecord>),
}

impl fmt::Debug for LazyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyLayer").field("dir", &self.dir).finish()
    }
}

impl LazyLayer {
    pub(super) fn image(
        dir: PathBuf,
        parent: Option<Digest>,
        diff_id: Digest,
        blob: Digest,
        size: u64,
    ) -> LazyLayer {
        LazyLayer {
            dir,
            pending: Pending::Image {
                parent,
                diff_id,
                blob,
                size,
            },
            made: OnceCell::new(),
        }
    }

    pub(super) fn step(dir: PathBuf, record: Arc<ImportedRecord>) -> LazyLayer {
        LazyLayer {
            dir,
            pending: Pending::Step(record),
            made: OnceCell::new(),
        }
    }

    async fn make(&self, shared: &Arc<Shared>) -> Result<()> {
        self.made
            .get_or_try_init(|| async {
                if self.dir.is_dir() {
                    return Ok(());
                }
                match &self.pending {
                    Pending::Image {
                        parent,
                        diff_id,
                        blob,
                        size,
                    } => {
                        fetch(shared, blob, *size).await?;
                        let (store, parent, diff_id, blob) = (
                            shared.store.clone(),
                            parent.clone(),
                            diff_id.clone(),
                            blob.clone(),
                        );
                        blocking(move || {
                            crate::image::unpack_one(&store, parent.as_ref(), &diff_id, &blob)
                        })
                        .await?
                        .map(|_| ())
                        .map_err(|e| SolveError::Pull(Box::new(e)))
                    }
                    Pending::Step(record) => make_step(shared, record).await,
                }
            })
            .await
            .map(|_| ())
    }
}

/// Makes every layer of `layers` that does not exist yet (in parallel).
pub(super) async fn materialize(shared: &Arc<Shared>, layers: &[Arc<LazyLayer>]) -> Result<()> {
    let mut running = JoinSet::new();
    for layer in layers {
        if layer.made.initialized() {
            continue;
        }
        let (layer, shared) = (layer.clone(), shared.clone());
        running.spawn(async move { layer.make(&shared).await });
    }
    let mut first = None;
    while let Some(done) = running.join_next().await {
        let outcome = done.map_err(SolveError::from).and_then(|r| r);
        if let Err(error) = outcome
            && first.is_none()
        {
            first = Some(error);
        }
    }
    first.map_or(Ok(()), Err)
}

async fn fetch(shared: &Shared, digest: &Digest, size: u64) -> Result<()> {
    let store = shared.store.clone();
    let wanted = digest.clone();
    if blocking(move || store.has_blob(&wanted)).await? {
        return Ok(());
    }
    match &shared.options.fetcher {
        Some(fetcher) => fetcher.fetch(digest, size).await.map_err(SolveError::Pull),
        None => Err(SolveError::Pull(
            format!("blob {digest} is not in the store, and nothing says where to fetch it").into(),
        )),
    }
}

/// The imported step `record` as a local snapshot (and cache record), its layer fetched
/// and unpacked.
async fn make_step(shared: &Arc<Shared>, record: &Arc<ImportedRecord>) -> Result<()> {
    let snapshots = shared.store.snapshots_dir();
    let key = record.key.clone();
    let lock = snapshots.join(KEY_LOCKS).join(&key);
    // Making a layer is not a step: it finishes even when the build is cancelled.
    let (_keep, never) = tokio::sync::watch::channel(false);
    let _held = blocking(move || lock_key(&lock, &never)).await??;
    let name = snapshot_name(&record.key);
    if snapshots.join(&name).join("fs").is_dir() {
        return Ok(());
    }
    if let Some(layer) = &record.layer {
        let digest: Digest =
            layer.blob.digest.parse().map_err(|e| {
                SolveError::Pull(format!("imported cache record {key}: {e}").into())
            })?;
        fetch(shared, &digest, layer.blob.size).await?;
    }
    let (shared2, record2) = (shared.clone(), record.clone());
    blocking(move || unpack_step(&shared2, &record2)).await??;
    // Recorded locally as well: the next build here hits without the import.
    let result = ResultRef {
        snapshot: Some(name),
        empty_layer: record.empty,
        ..ResultRef::default()
    };
    let mut local = Record::new(result, record.inputs.clone(), 0);
    local.created_at = record.created_at;
    shared.queue_put(record.key.clone(), local, None);
    // An uncompressed imported blob is the layer's tar: the exporter may use it as it is.
    // A compressed one is not recorded: an image pushed in another compression would
    // otherwise carry it instead of its own.
    if let Some(layer) = &record.layer
        && layer.blob.media_type == crate::oci::media_type::OCI_LAYER
    {
        let blob_key = cache::layer_blob_key(&record.key, layer.epoch);
        let blob = Record::layer_blob(&record.key, &layer.diff_id, &layer.blob);
        shared.queue_put(blob_key, blob, None);
    }
    Ok(())
}

/// Unpacks the step's layer into a staging directory, checks its diff_id, and renames it
/// into place as `build-<key>` (blocking).
fn unpack_step(shared: &Shared, record: &ImportedRecord) -> Result<()> {
    let snapshots = shared.store.snapshots_dir();
    let staging = snapshots.join(format!(
        "tmp-import-{}-{}",
        &record.key[..16.min(record.key.len())],
        unique_suffix()
    ));
    let fs_dir = staging.join("fs");
    let made = (|| {
        std::fs::create_dir_all(&fs_dir).map_err(SolveError::io("create", &fs_dir))?;
        if let Some(layer) = &record.layer {
            let digest: Digest = layer
                .blob
                .digest
                .parse()
                .map_err(|e| SolveError::Pull(format!("cache layer: {e}").into()))?;
            let file = std::io::BufReader::with_capacity(
                1 << 20,
                shared
                    .store
                    .open_blob(&digest)
                    .map_err(|e| SolveError::Pull(Box::new(e)))?,
            );
            let stats = crate::snapshot::unpack_tar(file, &fs_dir)
                .map_err(|e| SolveError::Pull(Box::new(e)))?;
            if stats.diff_id.to_string() != layer.diff_id {
                return Err(SolveError::Pull(
                    format!(
                        "imported cache layer {} of step {}: its content is {}, the cache says {}",
                        layer.blob.digest, record.key, stats.diff_id, layer.diff_id
                    )
                    .into(),
                ));
            }
        }
        write_meta(
            &staging,
            &record.key,
            "imported",
            (record.empty, record.created_at),
        )?;
        let to = snapshots.join(snapshot_name(&record.key));
        std::fs::rename(&staging, &to).map_err(SolveError::io("rename", &staging))
    })();
    if made.is_err() {
        let _ = crate::snapshot::overlay::remove(&staging);
    }
    made
}
