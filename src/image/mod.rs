//! Image operations: pull, push, save, load, tag, list, inspect, history, rm, prune.
//!
//! Everything here works on the local store (`store`), unpacks layers into snapshots
//! (`snapshot`) and talks to registries (`registry`). Besides the store's own layout it
//! keeps one file, `<root>/image-v1/blob-sources.json`: for each blob, the
//! `registry/repository`s it is known to live in, so that a push can mount it from there
//! instead of uploading it again; and `<root>/image-v1/compressed/`, the compressed twins a
//! push or an archive made of layers (see `compress`).
//!
//! Two kiln annotations ride on the `index.json` entries of tagged images:
//! - `io.kiln.image.repo-digest`: `registry/repo@digest` of what a pull resolved (the index
//!   digest for multi-platform images), shown as `RepoDigests`;
//! - `io.kiln.image.index`: the digest of the pulled index, kept by [`prune`].
//!
//! L5: may use `oci`, `sys`, `store`, `snapshot`, `registry`. Async operations do their
//! hashing, disk writes and unpacking on blocking threads.

mod archive;
pub mod compress;
mod error;
mod list;
mod pull;
mod push;
mod rootfs;
mod sources;
mod time;

use crate::oci::{Digest, Reference};
use crate::store::{Image, Store, StoreError};

pub use archive::{ArchiveDest, ArchiveFormat, Loaded, load, save, write_image};
pub use compress::{DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, LayerOptions};
pub use error::{ImageError, Result};
pub use list::{
    HistoryRow, ImageSummary, Removed, history, inspect, list, prune, remove, resolve,
    resolve_platform, tag,
};
pub use pull::{Pulled, fetch_blob, pull, pull_metadata, pull_untagged};
pub use push::{Pushed, push, push_artifact, push_blobs_to, push_image};
pub use rootfs::{write_rootfs, write_rootfs_tar};
pub use sources::{record as record_sources, sources_of};
pub use time::{human_size, humanize_since, parse_rfc3339};

pub(crate) use error::io_err;

/// Annotation naming what a pull resolved: `registry/repository@digest`.
pub const ANNOTATION_REPO_DIGEST: &str = "io.kiln.image.repo-digest";
/// Annotation holding the digest of the index an image was picked from.
pub const ANNOTATION_INDEX: &str = "io.kiln.image.index";

/// How many blobs a pull or push transfers at once.
const PARALLEL_TRANSFERS: usize = 4;

/// What a transfer is doing, in `docker pull`'s words: the status of a layer's progress item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Waiting,
    AlreadyExists,
    Downloading,
    DownloadComplete,
    Extracting,
    PullComplete,
    Pushing,
    Pushed,
    LayerAlreadyExists,
    /// Mounted from this repository.
    MountedFrom(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Waiting => f.write_str("Waiting"),
            Status::AlreadyExists => f.write_str("Already exists"),
            Status::Downloading => f.write_str("Downloading"),
            Status::DownloadComplete => f.write_str("Download complete"),
            Status::Extracting => f.write_str("Extracting"),
            Status::PullComplete => f.write_str("Pull complete"),
            Status::Pushing => f.write_str("Pushing"),
            Status::Pushed => f.write_str("Pushed"),
            Status::LayerAlreadyExists => f.write_str("Layer already exists"),
            Status::MountedFrom(repo) => write!(f, "Mounted from {repo}"),
        }
    }
}

pub(crate) fn short_id(digest: &Digest) -> String {
    digest.hex()[..12].to_string()
}

/// Runs blocking work (disk, hashing, unpacking) off the reactor.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await?
}

/// Unpacks every layer of `image` into snapshots, bottom first (existing ones are reused).
pub(crate) fn unpack_image(store: &Store, image: &Image) -> Result<()> {
    let mut parent: Option<Digest> = None;
    for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
        let digest = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        let snapshot = unpack_one(store, parent.as_ref(), diff_id, &digest)?;
        parent = Some(snapshot);
    }
    Ok(())
}

/// Unpacks one stored layer blob on top of `parent`; returns its chain id.
pub(crate) fn unpack_one(
    store: &Store,
    parent: Option<&Digest>,
    diff_id: &Digest,
    blob: &Digest,
) -> Result<Digest> {
    let chain = crate::oci::chain_id(parent.into_iter().chain([diff_id]))
        .unwrap_or_else(|| diff_id.clone());
    // Skip opening the blob when the snapshot is already there.
    if crate::snapshot::open_snapshot(store, &chain)?.is_some() {
        return Ok(chain);
    }
    let file = std::io::BufReader::with_capacity(1 << 20, store.open_blob(blob)?);
    let snapshot = crate::snapshot::unpack_layer(store, parent, diff_id, file)?;
    Ok(snapshot.meta.chain_id)
}

/// The reference a user means by `name` when they give no registry: parsed and normalised.
pub fn parse_reference(name: &str) -> Result<Reference> {
    Ok(name.parse::<Reference>()?)
}
