//! `kiln push`: upload only what the registry lacks, mounting across repositories when we
//! know where a blob already lives, then the manifest by tag.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::compress::PushLayer;
use super::{
    ImageError, PARALLEL_TRANSFERS, Result, Status, blocking, compress, short_id, sources,
};
use crate::oci::{Digest, Reference, media_type};
use crate::progress::Items;
use crate::registry::{BlobSource, Client, RegistryRef};
use crate::store::{Image, Store, StoreError};

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: Reference,
    /// Digest of the manifest as pushed: the stored bytes, unless layers kiln built (stored
    /// uncompressed) were replaced by their gzip twins.
    pub digest: Digest,
    pub size: u64,
}

/// Pushes the local image named `reference` to its registry under the same name.
pub async fn push(
    store: &Store,
    client: &Client,
    reference: &Reference,
    report: Items,
) -> Result<Pushed> {
    let local = local_image(store, reference).await?;
    if !media_type::is_manifest(&local.manifest_type) {
        return Err(ImageError::UnsupportedMediaType {
            what: format!("pushing {reference}"),
            media_type: local.manifest_type,
        });
    }

    let target = RegistryRef::repo(reference.registry(), reference.repository());
    let mut blobs: Vec<(Digest, u64, bool)> = local
        .layers
        .into_iter()
        .map(|layer| (layer.digest, layer.size, true))
        .collect();
    blobs.push((
        local.image.config_digest.clone(),
        local.image.config_size,
        false,
    ));
    push_blobs(client, store, &target, &blobs, &local.known, &report).await?;

    let manifest_ref = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => target.clone().with_tag(tag),
        (None, Some(digest)) => target.clone().with_digest(digest.clone()),
        (None, None) => target.clone().with_tag("latest"),
    };
    let digest = client
        .push_manifest(&manifest_ref, &local.manifest_type, &local.manifest_bytes)
        .await?;

    let record_store = store.clone();
    let all: Vec<Digest> = blobs.into_iter().map(|(d, _, _)| d).collect();
    let (registry, repository) = (target.registry.clone(), target.repository.clone());
    blocking(move || sources::record(&record_store, &registry, &repository, &all)).await?;

    Ok(Pushed {
        reference: reference.clone(),
        digest,
        size: local.manifest_bytes.len() as u64,
    })
}

/// The stored image a push sends.
struct LocalImage {
    image: Image,
    /// The layers as pushed (gzip twins for the ones kiln built).
    layers: Vec<PushLayer>,
    /// The manifest as pushed (naming the twins).
    manifest_bytes: Vec<u8>,
    manifest_type: String,
    /// For each blob, the `registry/repository`s it is known to live in.
    known: HashMap<Digest, Vec<String>>,
}

/// Looks up `reference` in the store and readies its manifest and layers for a push.
async fn local_image(store: &Store, reference: &Reference) -> Result<LocalImage> {
    let store = store.clone();
    let name = reference.clone();
    blocking(move || {
        let descriptor = store
            .lookup(&name)?
            .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let digest = Digest::from_oci(descriptor.digest()).map_err(StoreError::from)?;
        let image = store.image(&digest)?;
        let stored = store.read_blob(&digest)?;
        // Push the bytes with the media type they declare, or the one the index recorded.
        let manifest_type = serde_json::from_slice::<serde_json::Value>(&stored)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_else(|| descriptor.media_type().to_string());
        // Layers kiln built are stored uncompressed: push their gzip twins.
        let (layers, manifest_bytes) = compress::for_push(&store, &image, &stored)?;
        let mut known = HashMap::new();
        for digest in layers
            .iter()
            .map(|l| l.digest.clone())
            .chain([image.config_digest.clone()])
        {
            let sources = sources::sources_of(&store, &digest);
            known.insert(digest, sources);
        }
        Ok(LocalImage {
            image,
            layers,
            manifest_bytes,
            manifest_type,
            known,
        })
    })
    .await
}

/// Makes every blob present in `target`, a few at a time; the first failure stops the rest.
async fn push_blobs(
    client: &Client,
    store: &Store,
    target: &RegistryRef,
    blobs: &[(Digest, u64, bool)],
    known: &HashMap<Digest, Vec<String>>,
    report: &Items,
) -> Result<()> {
    let permits = Arc::new(Semaphore::new(PARALLEL_TRANSFERS));
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    for (digest, size, is_layer) in blobs.iter().cloned() {
        let id = is_layer.then(|| short_id(&digest));
        if let Some(id) = &id {
            report.status(id, Status::Waiting);
        }
        let (client, store, target, report, permits) = (
            client.clone(),
            store.clone(),
            target.clone(),
            report.clone(),
            permits.clone(),
        );
        let known = known.get(&digest).cloned().unwrap_or_default();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let status = push_blob(
                &client,
                &store,
                &target,
                (&digest, size, &known),
                id.as_deref(),
                &report,
            )
            .await?;
            if let Some(id) = id {
                report.status(&id, status);
            }
            Ok(())
        });
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.map_err(ImageError::from).and_then(|r| r) {
            tasks.abort_all();
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Makes one blob present in `target`: HEAD, else mount from a known repository of the same
/// registry, else upload it from the store.
async fn push_blob(
    client: &Client,
    store: &Store,
    target: &RegistryRef,
    (digest, size, known): (&Digest, u64, &[String]),
    id: Option<&str>,
    report: &Items,
) -> Result<Status> {
    if client.blob_exists(target, digest).await? {
        return Ok(Status::LayerAlreadyExists);
    }
    let prefix = format!("{}/", target.registry);
    let mount_from = known.iter().filter_map(|location| {
        location
            .strip_prefix(&prefix)
            .filter(|repo| *repo != target.repository && !repo.is_empty())
    });
    for from in mount_from {
        if client.mount_blob(target, from, digest).await? {
            return Ok(Status::MountedFrom(from.to_string()));
        }
    }
    if let Some(id) = id {
        report.status(id, Status::Pushing);
    }
    let progress = id.map(|id| report.counter(id, Status::Pushing, Some(size)));
    if !store.has_blob(digest) {
        return Err(StoreError::BlobNotFound(digest.clone()).into());
    }
    client
        .push_blob(
            target,
            digest,
            size,
            BlobSource::Path(store.blob_path(digest)),
            progress,
        )
        .await?;
    Ok(Status::Pushed)
}

/// Pushes an artifact that is not a stored image (a build cache): `blobs` from the store
/// (HEAD first, mounted from a repository of the same registry that holds them, else
/// uploaded; a few at a time), then `manifest_bytes` under `target`'s tag. Records that
/// the repository holds them. Returns the manifest's digest.
pub async fn push_artifact(
    store: &Store,
    client: &Client,
    target: &RegistryRef,
    blobs: &[(Digest, u64)],
    manifest_type: &str,
    manifest_bytes: &[u8],
) -> Result<Digest> {
    let repo = RegistryRef::repo(target.registry.clone(), target.repository.clone());
    let listed: Vec<(Digest, u64, bool)> =
        blobs.iter().map(|(d, s)| (d.clone(), *s, false)).collect();
    let known_store = store.clone();
    let digests: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    let known = blocking(move || {
        Ok(digests
            .into_iter()
            .map(|d| {
                let sources = sources::sources_of(&known_store, &d);
                (d, sources)
            })
            .collect::<HashMap<_, _>>())
    })
    .await?;
    push_blobs(client, store, &repo, &listed, &known, &Items::discard()).await?;
    let digest = client
        .push_manifest(target, manifest_type, manifest_bytes)
        .await?;
    let record_store = store.clone();
    let all: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    let (registry, repository) = (repo.registry.clone(), repo.repository.clone());
    blocking(move || sources::record(&record_store, &registry, &repository, &all)).await?;
    Ok(digest)
}
