//! `kiln pull`: resolve, download (verified, in parallel), unpack, tag.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{
    ANNOTATION_INDEX, ANNOTATION_REPO_DIGEST, ImageError, PARALLEL_TRANSFERS, Result, Status,
    blocking, short_id, sources, unpack_one,
};
use crate::oci::{Descriptor, Digest, ImageManifest, MediaType, Platform, Reference, media_type};
use crate::progress::Items;
use crate::registry::{Client, RegistryRef, Resolved, select_platform};
use crate::store::{Store, StoreError};

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub reference: Reference,
    /// What the registry resolved the reference to (an index or a manifest).
    pub digest: Digest,
    pub manifest_digest: Digest,
    /// The image id (config digest).
    pub id: Digest,
    /// False when every blob was already stored and the name already pointed here.
    pub downloaded: bool,
}

/// Pulls `reference` into `store` and tags it; layers are unpacked into snapshots.
///
/// Blobs go through store ingests (verified against their digests and sizes) and become
/// visible only when complete; the tag is written last, so an interrupted pull leaves at
/// most unreferenced complete blobs, and a rerun picks up from them.
pub async fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: Option<&Platform>,
    report: Items,
) -> Result<Pulled> {
    pull_and_maybe_tag(store, client, reference, platform, report, true).await
}

/// [`pull`] without naming the image: a build's base image for another platform than
/// this machine's, which must not change what the name means here. The caller holds a
/// lease while it uses the image.
pub async fn pull_untagged(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    report: Items,
) -> Result<Pulled> {
    pull_and_maybe_tag(store, client, reference, Some(platform), report, false).await
}

async fn pull_and_maybe_tag(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: Option<&Platform>,
    report: Items,
    tag: bool,
) -> Result<Pulled> {
    let rref = RegistryRef::from(reference);
    let (index, manifest) = resolve_manifest(client, &rref, platform).await?;
    let top_digest = index.as_ref().unwrap_or(&manifest).digest.clone();
    let what = format!("manifest {} of {rref}", manifest.digest);
    let parts = parse_manifest(&manifest, &what)?;

    // Held until the tag is written, so a concurrent prune cannot collect what we fetched.
    let lease_store = store.clone();
    let _lease = blocking(move || Ok(lease_store.lease()?)).await?;

    let mut downloaded = fetch_to_store(
        client,
        store,
        &rref,
        &parts.config,
        parts.config_size,
        None,
        &report,
    )
    .await?;
    let diff_ids = layer_diff_ids(store, &parts, &what).await?;
    downloaded |= fetch_layers(client, store, &rref, &parts.layers, &diff_ids, &report).await?;
    store_manifests(store, &manifest, index.as_ref()).await?;
    if tag {
        downloaded |=
            tag_manifest(store, reference, &manifest, &top_digest, index.is_some()).await?;
    }

    let mut all: Vec<Digest> = parts.layers.iter().map(|(d, _)| d.clone()).collect();
    all.push(parts.config.clone());
    let src_store = store.clone();
    let (registry, repository) = (rref.registry.clone(), rref.repository.clone());
    blocking(move || sources::record(&src_store, &registry, &repository, &all)).await?;
    if tag {
        let name = reference.to_string();
        store.record_event("image", "pull", &name, &[("name", &name)]);
    }

    Ok(Pulled {
        reference: reference.clone(),
        digest: top_digest,
        manifest_digest: manifest.digest,
        id: parts.config,
        downloaded,
    })
}

/// Resolves `reference` and stores its manifest and config only: the layers stay in the
/// registry (recorded as their source) until something needs their bytes
/// ([`fetch_blob`]). Nothing is tagged; the caller holds a lease while it uses the image.
/// Returns the manifest's digest.
pub async fn pull_metadata(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<Digest> {
    let rref = RegistryRef::from(reference);
    let (index, manifest) = resolve_manifest(client, &rref, platform).await?;
    let what = format!("manifest {} of {rref}", manifest.digest);
    let parts = parse_manifest(&manifest, &what)?;
    let none = Items::discard();
    fetch_to_store(
        client,
        store,
        &rref,
        &parts.config,
        parts.config_size,
        None,
        &none,
    )
    .await?;
    store_manifests(store, &manifest, index.as_ref()).await?;
    let mut all: Vec<Digest> = parts.layers.iter().map(|(d, _)| d.clone()).collect();
    all.push(parts.config.clone());
    let src_store = store.clone();
    let (registry, repository) = (rref.registry.clone(), rref.repository.clone());
    blocking(move || sources::record(&src_store, &registry, &repository, &all)).await?;
    Ok(manifest.digest)
}

/// Fetches blob `digest` (`size` bytes) of repository `rref` into the store, verified;
/// `false` when it was stored already.
pub async fn fetch_blob(
    store: &Store,
    client: &Client,
    rref: &RegistryRef,
    digest: &Digest,
    size: u64,
) -> Result<bool> {
    fetch_to_store(client, store, rref, digest, size, None, &Items::discard()).await
}

/// What the reference resolves to: the index (when it names one) and the manifest of
/// `platform` (the host's by default) picked from it, or just the manifest.
async fn resolve_manifest(
    client: &Client,
    rref: &RegistryRef,
    platform: Option<&Platform>,
) -> Result<(Option<Resolved>, Resolved)> {
    let top = client.resolve(rref).await?;
    let looks_like_index = serde_json::from_slice::<serde_json::Value>(&top.bytes)
        .ok()
        .is_some_and(|v| v.get("manifests").is_some());
    if !media_type::is_index(&top.media_type) && !looks_like_index {
        return Ok((None, top));
    }
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let entry = select_platform(&top.bytes, &wanted)?;
    let by_digest = RegistryRef {
        tag: None,
        ..rref.clone()
    }
    .with_digest(entry.digest);
    let manifest = client.resolve(&by_digest).await?;
    Ok((Some(top), manifest))
}

/// The blobs an image manifest names.
struct ManifestParts {
    config: Digest,
    config_size: u64,
    /// Digest and size of each layer, bottom first.
    layers: Vec<(Digest, u64)>,
}

/// Reads an image manifest (`what` names it in errors); every layer must be of a kind
/// kiln can unpack.
fn parse_manifest(manifest: &Resolved, what: &str) -> Result<ManifestParts> {
    if !media_type::is_manifest(&manifest.media_type) {
        return Err(ImageError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: manifest.media_type.clone(),
        });
    }
    let parsed: ImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|source| ImageError::Json {
            what: what.to_string(),
            source,
        })?;
    let config = Digest::from_oci(parsed.config().digest()).map_err(StoreError::from)?;
    let mut layers = Vec::new();
    for layer in parsed.layers() {
        let mt = layer.media_type().to_string();
        if media_type::layer_compression(&mt).is_none() {
            return Err(ImageError::UnsupportedMediaType {
                what: format!("a layer of {what}"),
                media_type: mt,
            });
        }
        let digest = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        layers.push((digest, layer.size()));
    }
    Ok(ManifestParts {
        config,
        config_size: parsed.config().size(),
        layers,
    })
}

/// The diff_ids of the stored config, one per layer of the manifest.
async fn layer_diff_ids(store: &Store, parts: &ManifestParts, what: &str) -> Result<Vec<Digest>> {
    let config_store = store.clone();
    let config_for_read = parts.config.clone();
    let config_bytes = blocking(move || Ok(config_store.read_blob(&config_for_read)?)).await?;
    let diff_ids = diff_ids(&config_bytes, &parts.config)?;
    if diff_ids.len() != parts.layers.len() {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            reason: format!(
                "{} layers but config {} lists {} diff_ids",
                parts.layers.len(),
                parts.config,
                diff_ids.len()
            ),
        });
    }
    Ok(diff_ids)
}

/// Stores the manifest and the index it came from: last, so that once they are stored,
/// everything they name is.
async fn store_manifests(
    store: &Store,
    manifest: &Resolved,
    index: Option<&Resolved>,
) -> Result<()> {
    let write_store = store.clone();
    let manifest_bytes = manifest.bytes.clone();
    let index_bytes = index.map(|i| i.bytes.clone());
    blocking(move || {
        write_store.write_blob(&manifest_bytes)?;
        if let Some(bytes) = index_bytes {
            write_store.write_blob(&bytes)?;
        }
        Ok(())
    })
    .await
}

/// Points `reference` at the manifest, annotated with what the registry resolved (and the
/// index it came from); returns whether the name pointed elsewhere before.
async fn tag_manifest(
    store: &Store,
    reference: &Reference,
    manifest: &Resolved,
    top_digest: &Digest,
    from_index: bool,
) -> Result<bool> {
    let mut annotations = HashMap::new();
    annotations.insert(
        ANNOTATION_REPO_DIGEST.to_string(),
        format!("{}@{top_digest}", reference.name()),
    );
    if from_index {
        annotations.insert(ANNOTATION_INDEX.to_string(), top_digest.to_string());
    }
    let mut descriptor = Descriptor::new(
        MediaType::from(manifest.media_type.as_str()),
        manifest.bytes.len() as u64,
        manifest.digest.to_oci(),
    );
    descriptor.set_annotations(Some(annotations));
    let tag_store = store.clone();
    let tag_ref = reference.clone();
    let previous = blocking(move || {
        let previous = tag_store.lookup(&tag_ref)?;
        tag_store.tag(&tag_ref, &descriptor)?;
        Ok(previous)
    })
    .await?;
    Ok(previous.is_none_or(|p: Descriptor| p.digest() != &manifest.digest.to_oci()))
}

/// `rootfs.diff_ids` of an image config.
pub(crate) fn diff_ids(config: &[u8], digest: &Digest) -> Result<Vec<Digest>> {
    let what = || format!("image config {digest}");
    let invalid = |reason: &str| ImageError::Invalid {
        what: what(),
        reason: reason.to_string(),
    };
    let json: serde_json::Value =
        serde_json::from_slice(config).map_err(|source| ImageError::Json {
            what: what(),
            source,
        })?;
    let ids = json
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .ok_or_else(|| invalid("no rootfs.diff_ids"))?;
    ids.iter()
        .map(|id| {
            id.as_str()
                .ok_or_else(|| invalid("a diff_id is not a string"))?
                .parse::<Digest>()
                .map_err(|source| ImageError::Digest {
                    what: what(),
                    source,
                })
        })
        .collect()
}

/// Downloads one blob into the store unless it is there; returns whether it downloaded.
async fn fetch_to_store(
    client: &Client,
    store: &Store,
    rref: &RegistryRef,
    digest: &Digest,
    size: u64,
    id: Option<&str>,
    report: &Items,
) -> Result<bool> {
    if store.has_blob(digest) {
        return Ok(false);
    }
    let ingest_store = store.clone();
    let ingest = blocking(move || Ok(ingest_store.ingest()?)).await?;
    let progress = id.map(|id| report.counter(id, Status::Downloading, Some(size)));
    let ingest = client
        .fetch_blob_to_writer(rref, digest, Some(size), ingest, progress.as_ref())
        .await?;
    let expected = digest.clone();
    blocking(move || {
        ingest.commit(Some(&expected), Some(size))?;
        Ok(())
    })
    .await?;
    Ok(true)
}

/// Downloads the layers (a few at a time), unpacking each one while it downloads.
///
/// A layer's snapshot depends only on its own bytes (its parent matters for the chain id,
/// not the content), so layers unpack in parallel; the tar stream is verified against the
/// config's diff_id, and the pull tags nothing until every snapshot exists. Layers already
/// stored are unpacked from the store. Returns whether anything was downloaded.
async fn fetch_layers(
    client: &Client,
    store: &Store,
    rref: &RegistryRef,
    layers: &[(Digest, u64)],
    diff_ids: &[Digest],
    report: &Items,
) -> Result<bool> {
    let chains: Vec<Digest> = (1..=diff_ids.len())
        .filter_map(|n| crate::oci::chain_id(&diff_ids[..n]))
        .collect();
    let permits = Arc::new(Semaphore::new(PARALLEL_TRANSFERS));
    let mut tasks: JoinSet<Result<bool>> = JoinSet::new();
    for (i, (digest, size)) in layers.iter().enumerate() {
        let id = short_id(digest);
        let parent = i.checked_sub(1).map(|p| chains[p].clone());
        let diff_id = diff_ids[i].clone();
        let (client, store, rref, report) =
            (client.clone(), store.clone(), rref.clone(), report.clone());
        let (digest, size, permits) = (digest.clone(), *size, permits.clone());
        if store.has_blob(&digest) {
            report.status(&id, Status::AlreadyExists);
        } else {
            report.status(&id, Status::Waiting);
        }
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            if store.has_blob(&digest) {
                blocking(move || unpack_one(&store, parent.as_ref(), &diff_id, &digest)).await?;
                return Ok(false);
            }
            report.status(&id, Status::Downloading);
            fetch_and_unpack(
                &client,
                &store,
                &rref,
                (&digest, size),
                (parent, diff_id),
                &id,
                &report,
            )
            .await?;
            report.status(&id, Status::PullComplete);
            Ok(true)
        });
    }

    let mut downloaded = false;
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(ImageError::from).and_then(|r| r) {
            Ok(fetched) => downloaded |= fetched,
            Err(e) => {
                // Stop the other transfers; their ingests and temp snapshots go when dropped.
                tasks.abort_all();
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(downloaded),
    }
}

/// Streams one layer into a store ingest and, through a bounded pipe, into the unpacker.
async fn fetch_and_unpack(
    client: &Client,
    store: &Store,
    rref: &RegistryRef,
    (digest, size): (&Digest, u64),
    (parent, diff_id): (Option<Digest>, Digest),
    id: &str,
    report: &Items,
) -> Result<()> {
    let ingest_store = store.clone();
    let ingest = blocking(move || Ok(ingest_store.ingest()?)).await?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(PIPE_CHUNKS);
    let unpack_store = store.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        crate::snapshot::unpack_layer(
            &unpack_store,
            parent.as_ref(),
            &diff_id,
            PipeReader::new(rx),
        )
    });
    let progress = report.counter(id, Status::Downloading, Some(size));
    let tee = Tee {
        ingest,
        pipe: Some(tx),
    };
    let fetched = client
        .fetch_blob_to_writer(rref, digest, Some(size), tee, Some(&progress))
        .await;
    let fetched = match fetched {
        Ok(tee) => tee,
        Err(e) => {
            // The pipe closed without its end marker: the unpacker fails and cleans up.
            let _ = unpacker.await;
            return Err(e.into());
        }
    };
    let Tee { ingest, pipe } = fetched;
    if let Some(pipe) = pipe {
        let _ = pipe.send(Chunk::End);
    }
    report.status(id, Status::DownloadComplete);
    let expected = digest.clone();
    let committed = blocking(move || {
        ingest.commit(Some(&expected), Some(size))?;
        Ok(())
    })
    .await;
    let unpacked = unpacker.await?;
    committed?;
    unpacked?;
    Ok(())
}

/// Chunks in flight between a download and its unpacker (bounded: backpressure).
const PIPE_CHUNKS: usize = 64;

enum Chunk {
    Data(Vec<u8>),
    /// The download completed; without it, a closed pipe means it was cut short.
    End,
}

/// Writes to the ingest and copies every byte to the unpacker.
struct Tee {
    ingest: crate::store::Ingest,
    /// `None` once the unpacker stopped listening (it had the snapshot already, or failed).
    pipe: Option<std::sync::mpsc::SyncSender<Chunk>>,
}

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.ingest.write(buf)?;
        if let Some(pipe) = &self.pipe
            && pipe.send(Chunk::Data(buf[..n].to_vec())).is_err()
        {
            self.pipe = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ingest.flush()
    }
}

/// The unpacker's end of the pipe.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<Chunk>,
    current: Vec<u8>,
    offset: usize,
    ended: bool,
}

impl PipeReader {
    fn new(rx: std::sync::mpsc::Receiver<Chunk>) -> PipeReader {
        PipeReader {
            rx,
            current: Vec::new(),
            offset: 0,
            ended: false,
        }
    }
}

impl std::io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(data)) => {
                    self.current = data;
                    self.offset = 0;
                }
                Ok(Chunk::End) => self.ended = true,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "layer download interrupted",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}
