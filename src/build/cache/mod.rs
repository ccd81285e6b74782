//! Caches that leave the machine (`--cache-to`) and come back on another (`--cache-from`).
//!
//! An exported cache is an OCI image manifest: its config (media type
//! [`remote::CONFIG_MEDIA_TYPE`]) holds the records of the build's steps (key, layer index,
//! diff_id, what went into the key), its layers are the steps' layer blobs. It goes to a
//! registry like an image (blobs the target lacks, in parallel; nothing recompressed that
//! is already compressed), or into an OCI layout directory; `type=inline` puts the records
//! into the image's own config instead. Importing reads the manifest and config only; a
//! layer is fetched when a step that runs needs its files, or an output needs its bytes
//! ([`Fetcher`]).

pub(super) mod export;
pub mod spec;

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::cache::BlobRef;
use crate::cache::remote::{self, CacheConfig, ImportedCache};
use crate::export::{LayerInput, RemoteLayer};
use crate::oci::{Digest, Platform, media_type};
use crate::plan::Plan;
use crate::progress::{Event, Sink};
use crate::registry::{Client, RegistryRef, select_platform};
use crate::solve::{BlobFetcher, PullError};
use crate::store::Store;

use spec::CacheImport;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a blob an imported cache names can be fetched from.
#[derive(Debug, Clone)]
enum Location {
    /// A repository (`registry`, `repository`).
    Registry(RegistryRef),
    /// An OCI layout directory.
    Layout(PathBuf),
}

/// Fetches the blobs of lazy layers: from the cache they were imported from, or from a
/// registry repository the store knows to hold them (base image layers).
pub(super) struct Fetcher {
    store: Store,
    client: Client,
    locations: Mutex<HashMap<Digest, Location>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    pub(super) fn new(store: Store, client: Client) -> Fetcher {
        Fetcher {
            store,
            client,
            locations: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `digest` is known only from a cache directory, which no registry can mount
    /// from.
    fn only_in_a_directory(&self, digest: &Digest) -> bool {
        matches!(
            self.locations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(digest),
            Some(Location::Layout(_))
        )
    }

    fn locate(&self, digest: &Digest, location: Location) {
        self.locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(digest.clone())
            .or_insert(location);
    }

    async fn fetch_into_store(&self, digest: &Digest, size: u64) -> Result<(), BoxError> {
        if self.store.has_blob(digest) {
            return Ok(());
        }
        let known = self
            .locations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .cloned();
        let location = match known {
            Some(location) => location,
            None => {
                let store = self.store.clone();
                let wanted = digest.clone();
                let sources =
                    tokio::task::spawn_blocking(move || crate::image::sources_of(&store, &wanted))
                        .await?;
                let source = sources
                    .iter()
                    .find_map(|s| s.split_once('/'))
                    .ok_or_else(|| {
                        format!("blob {digest} is not stored and no registry is known to hold it")
                    })?;
                Location::Registry(RegistryRef::repo(source.0, source.1))
            }
        };
        match location {
            Location::Registry(repo) => {
                crate::image::fetch_blob(&self.store, &self.client, &repo, digest, size).await?;
            }
            Location::Layout(dir) => {
                let (store, digest) = (self.store.clone(), digest.clone());
                tokio::task::spawn_blocking(move || copy_from_layout(&store, &dir, &digest, size))
                    .await??;
            }
        }
        Ok(())
    }
}

impl BlobFetcher for Fetcher {
    fn fetch<'a>(
        &'a self,
        digest: &'a Digest,
        size: u64,
    ) -> Pin<Box<dyn Future<Output = Result<(), PullError>> + Send + 'a>> {
        Box::pin(self.fetch_into_store(digest, size))
    }
}

/// The blob file of `digest` in the OCI layout `dir`.
fn layout_blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().to_string())
        .join(digest.hex())
}

/// Copies blob `digest` from the layout `dir` into the store, verified.
fn copy_from_layout(store: &Store, dir: &Path, digest: &Digest, size: u64) -> Result<(), BoxError> {
    let path = layout_blob(dir, digest);
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ingest = store.ingest()?;
    // No more than the manifest says (and one byte to tell a longer file): a file planted
    // in the directory (a symlink to /dev/zero) must not fill the disk.
    std::io::copy(
        &mut BufReader::new(file).take(size.saturating_add(1)),
        &mut ingest,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    ingest.commit(Some(digest), Some(size))?;
    Ok(())
}

/// Reads every cache of `imports` (in order; the first that has a key wins). A source that
/// cannot be read is a warning: the build goes on without it.
pub(super) async fn import(
    imports: &[CacheImport],
    fetcher: &Fetcher,
    sink: &Sink,
) -> ImportedCache {
    let mut imported = ImportedCache::new();
    for source in imports {
        let (what, read) = match source {
            CacheImport::Registry(reference) => {
                let rref = RegistryRef::from(reference);
                (reference.to_string(), read_registry(fetcher, &rref).await)
            }
            CacheImport::Local { dir, tag } => {
                let read = {
                    let (dir, tag) = (dir.clone(), tag.clone());
                    tokio::task::spawn_blocking(move || read_layout(&dir, &tag))
                        .await
                        .map_err(BoxError::from)
                        .and_then(|r| r)
                };
                (dir.display().to_string(), read)
            }
        };
        let added = read.and_then(|(config, layers, location)| {
            let added = imported.add(&config, &layers)?;
            for layer in &layers {
                if let Ok(digest) = layer.digest.parse::<Digest>() {
                    fetcher.locate(&digest, location.clone());
                }
            }
            Ok::<_, BoxError>(added)
        });
        if let Err(error) = added {
            sink.send(Event::BuildWarning {
                message: format!("importing the cache from {what}: {error}; going on without it"),
            });
        }
    }
    imported
}

/// A cache's records, the blobs its layer indices name, and where they are.
type ReadCache = (CacheConfig, Vec<BlobRef>, Location);

async fn read_registry(fetcher: &Fetcher, rref: &RegistryRef) -> Result<ReadCache, BoxError> {
    let client = &fetcher.client;
    let top = client.resolve(rref).await?;
    let mut manifest: Value = serde_json::from_slice(&top.bytes)?;
    if manifest.get("manifests").is_some() {
        // An image index (an image with an inline cache, for several platforms).
        let entry = select_platform(&top.bytes, &Platform::host())?;
        let by_digest = RegistryRef {
            tag: None,
            ..rref.clone()
        }
        .with_digest(entry.digest);
        manifest = serde_json::from_slice(&client.resolve(&by_digest).await?.bytes)?;
    }
    let (config_digest, config_size, config_type) = config_of(&manifest)?;
    let mut config = Vec::new();
    client
        .fetch_blob(rref, &config_digest, Some(config_size), &mut config, None)
        .await?;
    let repo = RegistryRef::repo(rref.registry.clone(), rref.repository.clone());
    let (records, layers) = records_of(&manifest, &config_type, &config)?;
    // Pushes to the same registry mount these blobs from here.
    let digests: Vec<Digest> = layers
        .iter()
        .filter_map(|l| l.digest.parse().ok())
        .collect();
    let (store, registry, repository) = (
        fetcher.store.clone(),
        repo.registry.clone(),
        repo.repository.clone(),
    );
    tokio::task::spawn_blocking(move || {
        crate::image::record_sources(&store, &registry, &repository, &digests)
    })
    .await??;
    Ok((records, layers, Location::Registry(repo)))
}

/// The most a layout's `index.json`, cache manifest or cache config may hold: they are read
/// into memory, and a directory restored from elsewhere is not trusted.
const MAX_LAYOUT_DOCUMENT: u64 = 64 << 20;

/// The file at `path`, refused when bigger than `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, BoxError> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()).into());
    }
    Ok(bytes)
}

fn read_layout(dir: &Path, tag: &str) -> Result<ReadCache, BoxError> {
    let index_path = dir.join("index.json");
    let index: Value = serde_json::from_slice(&read_limited(&index_path, MAX_LAYOUT_DOCUMENT)?)?;
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or("index.json has no manifests")?;
    let entry = manifests
        .iter()
        .find(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(Value::as_str)
                == Some(tag)
        })
        .ok_or_else(|| format!("no manifest tagged {tag:?} in {}", index_path.display()))?;
    let digest: Digest = entry
        .get("digest")
        .and_then(Value::as_str)
        .ok_or("a manifest entry without a digest")?
        .parse()?;
    let read_blob = |digest: &Digest| -> Result<Vec<u8>, BoxError> {
        let path = layout_blob(dir, digest);
        let bytes = read_limited(&path, MAX_LAYOUT_DOCUMENT)?;
        if Digest::of(&bytes) != *digest {
            return Err(format!("{} does not match its digest", path.display()).into());
        }
        Ok(bytes)
    };
    let manifest: Value = serde_json::from_slice(&read_blob(&digest)?)?;
    let (config_digest, _, config_type) = config_of(&manifest)?;
    let config = read_blob(&config_digest)?;
    let (records, layers) = records_of(&manifest, &config_type, &config)?;
    Ok((records, layers, Location::Layout(dir.to_path_buf())))
}

/// The config descriptor of an image manifest: digest, size and media type.
fn config_of(manifest: &Value) -> Result<(Digest, u64, String), BoxError> {
    let config = manifest.get("config").ok_or("the manifest has no config")?;
    let digest: Digest = config
        .get("digest")
        .and_then(Value::as_str)
        .ok_or("the manifest's config has no digest")?
        .parse()?;
    let size = config.get("size").and_then(Value::as_u64).unwrap_or(0);
    let media = config
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((digest, size, media))
}

/// The records of a cache manifest, or of an image's inline cache, and the layers they
/// index.
fn records_of(
    manifest: &Value,
    config_type: &str,
    config: &[u8],
) -> Result<(CacheConfig, Vec<BlobRef>), BoxError> {
    let layers: Vec<BlobRef> = manifest
        .get("layers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|layer| {
            Ok(BlobRef {
                digest: layer
                    .get("digest")
                    .and_then(Value::as_str)
                    .ok_or("a layer without a digest")?
                    .to_string(),
                size: layer.get("size").and_then(Value::as_u64).unwrap_or(0),
                media_type: layer
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or(media_type::OCI_LAYER_GZIP)
                    .to_string(),
            })
        })
        .collect::<Result<_, BoxError>>()?;
    if config_type == remote::CONFIG_MEDIA_TYPE {
        return Ok((serde_json::from_slice(config)?, layers));
    }
    let image: Value = serde_json::from_slice(config)?;
    let inline = image
        .get(remote::INLINE_FIELD)
        .ok_or("neither a kiln cache nor an image with an inline cache (--cache-to type=inline)")?;
    Ok((serde_json::from_value(inline.clone())?, layers))
}

/// A build's remote caches: what it imported, and the client and fetcher for their blobs.
pub(super) struct Remote {
    pub(super) imported: Arc<ImportedCache>,
    pub(super) fetcher: Arc<Fetcher>,
    pub(super) client: Client,
}

impl Remote {
    /// Opens the client and imports every `--cache-from` (`None` when the build neither
    /// imports nor exports a cache).
    pub(super) async fn open(
        store: &Store,
        registry: &crate::registry::ClientConfig,
        request: &super::BuildRequest,
        sink: &Sink,
    ) -> Result<Option<Remote>, super::BuildError> {
        if request.cache_from.is_empty() && request.cache_to.is_empty() {
            return Ok(None);
        }
        let client = Client::new(registry.clone()).map_err(super::BuildError::RegistryClient)?;
        let fetcher = Fetcher::new(store.clone(), client.clone());
        let imported = import(&request.cache_from, &fetcher, sink).await;
        Ok(Some(Remote {
            imported: Arc::new(imported),
            fetcher: Arc::new(fetcher),
            client,
        }))
    }

    /// Fetches the layer blobs the image being exported names but the store lacks
    /// (layers of imported steps, of base images resolved without their layers), before
    /// the image is named: a failure or a kill leaves no name on an image the store does
    /// not hold whole. With `all` false (the outputs only push) only the blobs no registry
    /// can serve are fetched: those of a local cache directory.
    pub(super) async fn fetch_missing_layers(
        &self,
        store: &Store,
        plan: &Plan,
        layers: &[LayerInput],
        all: bool,
    ) -> Result<(), BoxError> {
        let mut wanted: Vec<(Digest, u64)> = Vec::new();
        if let Some(base) = &plan.image.base {
            let (store, manifest) = (store.clone(), base.manifest_digest.parse::<Digest>()?);
            let image = tokio::task::spawn_blocking(move || store.image(&manifest)).await??;
            for layer in &image.layers {
                wanted.push((Digest::from_oci(layer.digest())?, layer.size()));
            }
        }
        for layer in layers {
            if let Some(RemoteLayer { blob, .. }) = &layer.remote {
                wanted.push((blob.digest.parse()?, blob.size));
            }
        }
        let mut fetches = tokio::task::JoinSet::new();
        for (digest, size) in wanted {
            if store.has_blob(&digest) || !(all || self.fetcher.only_in_a_directory(&digest)) {
                continue;
            }
            let fetcher = self.fetcher.clone();
            fetches.spawn(async move { fetcher.fetch_into_store(&digest, size).await });
        }
        while let Some(done) = fetches.join_next().await {
            done??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_blob_is_read_no_further_than_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let layout = dir.path().join("cache");
        let digest = Digest::of(b"layer bytes");
        let path = layout_blob(&layout, &digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Sparse: 64 MiB that take no room.
        let big = std::fs::File::create(&path).unwrap();
        big.set_len(64 << 20).unwrap();
        let error = copy_from_layout(&store, &layout, &digest, 11)
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected 11 bytes, got 12"), "{error}");
        assert!(!store.has_blob(&digest));
    }
}
