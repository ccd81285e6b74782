//! `kiln push` and pushing outputs: upload only what the registry lacks, mounting across
//! repositories when we know where a blob already lives, then the manifest by tag.
//!
//! A layer the store does not hold (imported lazily) is mounted from a repository of the
//! same registry known to hold it, and only downloaded (verified, into the store) when it
//! is known on another registry alone or must be recompressed.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::compress::{LayerOptions, Outgoing};
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
    /// Digest of the manifest as pushed: the stored bytes, unless layers were replaced by
    /// compressed twins or the media types changed flavour.
    pub digest: Digest,
    pub size: u64,
    /// The pushed manifest's media type.
    pub media_type: String,
}

/// Pushes the local image named `reference` to its registry under the same name, its
/// layers compressed as `options` say.
pub async fn push(
    store: &Store,
    client: &Client,
    reference: &Reference,
    options: &LayerOptions,
    report: Items,
) -> Result<Pushed> {
    let manifest = {
        let (store, name) = (store.clone(), reference.clone());
        blocking(move || {
            let descriptor = store
                .lookup(&name)?
                .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
            Ok(Digest::from_oci(descriptor.digest()).map_err(StoreError::from)?)
        })
        .await?
    };
    push_image(store, client, &manifest, reference, options, report).await
}

/// Pushes the stored image whose manifest is `manifest` as `reference` (tagged in the
/// store or not). Blobs go first, the manifest last: a failure leaves nothing named.
pub async fn push_image(
    store: &Store,
    client: &Client,
    manifest: &Digest,
    reference: &Reference,
    options: &LayerOptions,
    report: Items,
) -> Result<Pushed> {
    if is_stored_index(store, manifest).await? {
        return push_index(store, client, manifest, reference, options, report).await;
    }
    push_manifest_image(store, client, manifest, reference, options, report, false).await
}

/// Whether the stored blob `digest` is an image index.
async fn is_stored_index(store: &Store, digest: &Digest) -> Result<bool> {
    let (store, digest) = (store.clone(), digest.clone());
    blocking(move || Ok(super::list::stored_index(&store, &digest)?.is_some())).await
}

/// Pushes a stored index (kiln's build for several platforms): each platform's image by
/// its digest, then an index of what was pushed (layers may have been compressed, so the
/// manifests' digests change) by `reference`.
async fn push_index(
    store: &Store,
    client: &Client,
    index: &Digest,
    reference: &Reference,
    options: &LayerOptions,
    report: Items,
) -> Result<Pushed> {
    let mut json: serde_json::Value = {
        let (store, digest) = (store.clone(), index.clone());
        let bytes = blocking(move || Ok(store.read_blob(&digest)?)).await?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            what: format!("image index {index}"),
            source,
        })?
    };
    let entries = json["manifests"]
        .as_array_mut()
        .ok_or_else(|| ImageError::Invalid {
            what: format!("image index {index}"),
            reason: "no manifests".into(),
        })?;
    for entry in entries.iter_mut() {
        let digest: Digest = entry["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(StoreError::from)?;
        let pushed = push_manifest_image(
            store,
            client,
            &digest,
            reference,
            options,
            report.clone(),
            true,
        )
        .await?;
        entry["digest"] = pushed.digest.to_string().into();
        entry["size"] = pushed.size.into();
        entry["mediaType"] = pushed.media_type.into();
    }
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    let target = RegistryRef::repo(reference.registry(), reference.repository());
    let index_ref = match reference.tag() {
        Some(tag) => target.with_tag(tag),
        None => target.with_tag("latest"),
    };
    let digest = client
        .push_manifest(&index_ref, media_type::OCI_INDEX, &bytes)
        .await?;
    Ok(Pushed {
        reference: reference.clone(),
        digest,
        size: bytes.len() as u64,
        media_type: media_type::OCI_INDEX.to_string(),
    })
}

/// Pushes one stored image manifest: by `reference`'s tag, or with `by_digest` by the
/// digest of what is pushed (a platform's image under an index).
async fn push_manifest_image(
    store: &Store,
    client: &Client,
    manifest: &Digest,
    reference: &Reference,
    options: &LayerOptions,
    report: Items,
    by_digest: bool,
) -> Result<Pushed> {
    let target = RegistryRef::repo(reference.registry(), reference.repository());
    let local = local_image(store, client, manifest, reference, options).await?;
    let mut blobs: Vec<(Digest, u64, bool)> = local
        .outgoing
        .layers
        .iter()
        .map(|layer| (layer.digest.clone(), layer.size, true))
        .collect();
    let config = &local.outgoing.config;
    blobs.push((config.digest.clone(), config.size, false));
    push_blobs(client, store, &target, &blobs, &local.known, &report).await?;

    let outgoing_digest = Digest::of(&local.outgoing.manifest_bytes);
    let manifest_ref = match (reference.tag(), reference.digest()) {
        _ if by_digest => target.clone().with_digest(outgoing_digest),
        (Some(tag), _) => target.clone().with_tag(tag),
        (None, Some(digest)) => target.clone().with_digest(digest.clone()),
        (None, None) => target.clone().with_tag("latest"),
    };
    let outgoing = local.outgoing;
    let digest = client
        .push_manifest(
            &manifest_ref,
            &outgoing.manifest_type,
            &outgoing.manifest_bytes,
        )
        .await?;

    let record_store = store.clone();
    let all: Vec<Digest> = blobs.into_iter().map(|(d, _, _)| d).collect();
    let (registry, repository) = (target.registry.clone(), target.repository.clone());
    blocking(move || sources::record(&record_store, &registry, &repository, &all)).await?;

    Ok(Pushed {
        reference: reference.clone(),
        digest,
        size: outgoing.manifest_bytes.len() as u64,
        media_type: outgoing.manifest_type,
    })
}

/// The stored image a push sends.
struct LocalImage {
    /// Its layers and manifest as pushed.
    outgoing: Outgoing,
    /// For each blob, the `registry/repository`s it is known to live in.
    known: HashMap<Digest, Vec<String>>,
}

/// Readies the stored image `manifest` for a push: a layer that must be recompressed but
/// is not stored is downloaded first from where it is known to live.
async fn local_image(
    store: &Store,
    client: &Client,
    manifest: &Digest,
    reference: &Reference,
    options: &LayerOptions,
) -> Result<LocalImage> {
    let (image, stored, stored_type) = {
        let (store, manifest) = (store.clone(), manifest.clone());
        blocking(move || stored_image(&store, &manifest)).await?
    };
    if !media_type::is_manifest(&stored_type) {
        return Err(ImageError::UnsupportedMediaType {
            what: format!("pushing {reference}"),
            media_type: stored_type,
        });
    }
    for layer in &image.layers {
        let digest = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        if compress::needs_bytes(layer.media_type().as_ref(), options) && !store.has_blob(&digest) {
            let known = {
                let (store, digest) = (store.clone(), digest.clone());
                blocking(move || Ok(sources::sources_of(&store, &digest))).await?
            };
            fetch_known(client, store, (&digest, layer.size()), &known, None).await?;
        }
    }
    let (store, options) = (store.clone(), options.clone());
    blocking(move || {
        let outgoing = compress::outgoing(&store, &image, &stored, &stored_type, &options)?;
        let blobs = outgoing.layers.iter().chain([&outgoing.config]);
        let known = sources::sources_of_all(&store, blobs.map(|blob| &blob.digest));
        Ok(LocalImage { outgoing, known })
    })
    .await
}

/// The stored image `manifest`, its manifest bytes and the media type they declare.
pub(crate) fn stored_image(store: &Store, manifest: &Digest) -> Result<(Image, Vec<u8>, String)> {
    let image = store.image(manifest)?;
    let stored = store.read_blob(manifest)?;
    let stored_type = serde_json::from_slice::<serde_json::Value>(&stored)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
    Ok((image, stored, stored_type))
}

/// Downloads the blob `digest` into the store (verified) from one of the
/// `registry/repository`s it is known to live in.
async fn fetch_known(
    client: &Client,
    store: &Store,
    (digest, size): (&Digest, u64),
    known: &[String],
    progress: Option<&crate::progress::ByteCounter>,
) -> Result<()> {
    let mut failure = None;
    for location in known {
        let Some((registry, repository)) = location.split_once('/') else {
            continue;
        };
        let source = RegistryRef::repo(registry, repository);
        let ingest = {
            let store = store.clone();
            blocking(move || Ok(store.ingest()?)).await?
        };
        match client
            .fetch_blob_to_writer(&source, digest, Some(size), ingest, progress)
            .await
        {
            Ok(ingest) => {
                let expected = digest.clone();
                blocking(move || Ok(ingest.commit(Some(&expected), Some(size))?)).await?;
                return Ok(());
            }
            Err(error) => failure = Some(error),
        }
    }
    Err(match failure {
        Some(error) => error.into(),
        None => StoreError::BlobNotFound(digest.clone()).into(),
    })
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
    if !store.has_blob(digest) {
        // Known only on another registry (or not mountable here): fetch it, then upload.
        let others: Vec<String> = known
            .iter()
            .filter(|location| !location.starts_with(&prefix))
            .chain(
                known
                    .iter()
                    .filter(|location| location.starts_with(&prefix)),
            )
            .cloned()
            .collect();
        fetch_known(client, store, (digest, size), &others, None).await?;
    }
    let progress = id.map(|id| report.counter(id, Status::Pushing, Some(size)));
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

/// Makes every blob of `blobs` (from the store) present in `target`'s repository: HEAD,
/// else a mount from a repository of the same registry known to hold it, else an upload.
pub async fn push_blobs_to(
    store: &Store,
    client: &Client,
    target: &RegistryRef,
    blobs: &[(Digest, u64)],
) -> Result<()> {
    let repo = RegistryRef::repo(target.registry.clone(), target.repository.clone());
    let listed: Vec<(Digest, u64, bool)> =
        blobs.iter().map(|(d, s)| (d.clone(), *s, false)).collect();
    let known = known_sources(store, blobs).await?;
    push_blobs(client, store, &repo, &listed, &known, &Items::discard()).await
}

/// Where the store knows each blob of `blobs` to live.
async fn known_sources(
    store: &Store,
    blobs: &[(Digest, u64)],
) -> Result<HashMap<Digest, Vec<String>>> {
    let known_store = store.clone();
    let digests: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    blocking(move || Ok(sources::sources_of_all(&known_store, &digests))).await
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
    push_blobs_to(store, client, target, blobs).await?;
    let repo = RegistryRef::repo(target.registry.clone(), target.repository.clone());
    let digest = client
        .push_manifest(target, manifest_type, manifest_bytes)
        .await?;
    let record_store = store.clone();
    let all: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
    let (registry, repository) = (repo.registry.clone(), repo.repository.clone());
    blocking(move || sources::record(&record_store, &registry, &repository, &all)).await?;
    Ok(digest)
}
