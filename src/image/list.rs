//! Local image commands: tag, images, inspect, history, rm, prune.

use std::collections::{BTreeSet, HashSet};
use std::fs;

use serde_json::{Value, json};

use super::{ANNOTATION_INDEX, ANNOTATION_REPO_DIGEST, ImageError, Result, parse_rfc3339};
use crate::oci::{Descriptor, Digest, Platform, Reference, media_type};
use crate::registry::select_platform;
use crate::store::{Image, PruneReport, PruneRoots, Store, StoreError};

/// One row of `kiln images`: one name of one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// Familiar repository name (`busybox`, `127.0.0.1:5000/x`).
    pub repository: String,
    /// `None` for images named by digest only.
    pub tag: Option<String>,
    /// The manifest digest.
    pub digest: Digest,
    /// The image id (config digest).
    pub id: Digest,
    /// The config's `created`, as written.
    pub created: Option<String>,
    /// Sum of the (compressed) layer sizes: what the store holds and a push sends.
    pub size: u64,
}

/// One row of `kiln image history`, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    /// The image id on the top row, `None` (`<missing>`) below, as Docker shows it.
    pub id: Option<Digest>,
    pub created: Option<String>,
    pub created_by: String,
    /// Compressed size of the layer this step made (0 for metadata-only steps).
    pub size: u64,
    pub comment: String,
}

/// What `kiln image rm` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
}

fn not_found(query: &str) -> impl FnOnce(StoreError) -> ImageError + '_ {
    move |e| match e {
        StoreError::ImageNotFound(_) => ImageError::NotFound(query.to_string()),
        other => other.into(),
    }
}

/// Finds an image by name or id prefix, as `docker image inspect` does; for a name of an
/// image index (a build for several platforms), this machine's platform's image.
pub fn resolve(store: &Store, query: &str) -> Result<(Descriptor, Image)> {
    resolve_platform(store, query, None)
}

/// [`resolve`], choosing `platform` (default: this machine's) from an image index.
pub fn resolve_platform(
    store: &Store,
    query: &str,
    platform: Option<&Platform>,
) -> Result<(Descriptor, Image)> {
    let descriptor = store.resolve_image(query).map_err(not_found(query))?;
    let digest = Digest::from_oci(descriptor.digest()).map_err(StoreError::from)?;
    let manifest = if media_type::is_index(descriptor.media_type().as_ref()) {
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let index = store.read_blob(&digest)?;
        match select_platform(&index, &wanted) {
            Ok(entry) => entry.digest,
            // Without a platform asked for, an index lacking this machine's gives its
            // first image (what inspect, tag and rm then show and act on).
            Err(_) if platform.is_none() => index_platforms(store, &digest)?
                .into_iter()
                .next()
                .map(|(_, manifest)| manifest)
                .ok_or_else(|| ImageError::NotFound(query.to_string()))?,
            Err(source) => {
                return Err(ImageError::Platform {
                    image: query.to_string(),
                    source: Box::new(source),
                });
            }
        }
    } else {
        digest
    };
    let image = store.image(&manifest)?;
    Ok((descriptor, image))
}

/// The platforms and manifests of `digest` when the store holds it as an image index (a
/// build for several platforms), in its order.
pub(crate) fn stored_index(
    store: &Store,
    digest: &Digest,
) -> Result<Option<Vec<(Platform, Digest)>>> {
    let json: Value = serde_json::from_slice(&store.read_blob(digest)?).unwrap_or_default();
    let is_index = json["mediaType"].as_str().is_some_and(media_type::is_index)
        || (json.get("manifests").is_some() && json.get("config").is_none());
    Ok(is_index.then(|| entries_of(&json)))
}

/// The platforms of a stored image index, in its order.
fn index_platforms(store: &Store, index: &Digest) -> Result<Vec<(Platform, Digest)>> {
    let json: Value =
        serde_json::from_slice(&store.read_blob(index)?).map_err(|source| ImageError::Json {
            what: format!("image index {index}"),
            source,
        })?;
    Ok(entries_of(&json))
}

/// The (platform, manifest) entries of an index's JSON.
fn entries_of(json: &Value) -> Vec<(Platform, Digest)> {
    json["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let platform: Platform = serde_json::from_value(entry["platform"].clone()).ok()?;
            let digest = entry["digest"].as_str()?.parse().ok()?;
            Some((platform, digest))
        })
        .collect()
}

/// `kiln tag SRC DST`: names the image `src` also as `dst`.
pub fn tag(store: &Store, src: &str, dst: &Reference) -> Result<()> {
    let (descriptor, image) = resolve(store, src)?;
    let _lease = store.lease()?;
    store.tag(dst, &descriptor)?;
    let name = dst.to_string();
    store.record_event(
        "image",
        "tag",
        &image.config_digest.to_string(),
        &[("name", &name)],
    );
    Ok(())
}

fn layers_size(image: &Image) -> u64 {
    image.layers.iter().map(|l| l.size()).sum()
}

fn created(image: &Image) -> Option<String> {
    image.config.created().clone()
}

/// Every named image, newest first (then by name).
pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let mut rows = Vec::new();
    for (reference, descriptor) in store.list()? {
        let Ok(digest) = Digest::from_oci(descriptor.digest()) else {
            continue;
        };
        let row = if media_type::is_index(descriptor.media_type().as_ref()) {
            // A build for several platforms: one row, its id the index's digest, its size
            // what the store holds of all its images.
            let images: Vec<Image> = index_platforms(store, &digest)?
                .iter()
                .filter_map(|(_, manifest)| store.image(manifest).ok())
                .collect();
            let Some(newest) = images.iter().filter_map(created).max() else {
                continue;
            };
            ImageSummary {
                repository: reference.familiar(),
                tag: reference.tag().map(str::to_string),
                id: digest.clone(),
                digest,
                created: Some(newest),
                size: images.iter().map(layers_size).sum(),
            }
        } else {
            let image = store.image(&digest)?;
            ImageSummary {
                repository: reference.familiar(),
                tag: reference.tag().map(str::to_string),
                digest,
                id: image.config_digest.clone(),
                created: created(&image),
                size: layers_size(&image),
            }
        };
        rows.push(row);
    }
    rows.sort_by(|a, b| {
        let ta = a.created.as_deref().and_then(parse_rfc3339);
        let tb = b.created.as_deref().and_then(parse_rfc3339);
        tb.cmp(&ta)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    Ok(rows)
}

/// Names in the index that point at `manifest`.
fn names_of(store: &Store, manifest: &Digest) -> Result<Vec<(Reference, Descriptor)>> {
    Ok(store
        .list()?
        .into_iter()
        .filter(|(_, d)| d.digest().to_string() == manifest.to_string())
        .collect())
}

/// `docker image inspect`'s object for one image.
pub fn inspect(store: &Store, query: &str) -> Result<Value> {
    let (top, image) = resolve(store, query)?;
    let top_digest = Digest::from_oci(top.digest()).map_err(StoreError::from)?;
    let is_index = media_type::is_index(top.media_type().as_ref());
    let config: Value =
        serde_json::from_slice(&store.read_blob(&image.config_digest)?).map_err(|e| {
            ImageError::Json {
                what: format!("image config {}", image.config_digest),
                source: e,
            }
        })?;
    let mut tags = Vec::new();
    let mut digests = BTreeSet::new();
    for (reference, descriptor) in names_of(store, &top_digest)? {
        match reference.tag() {
            Some(tag) => tags.push(format!("{}:{tag}", reference.familiar())),
            None => {
                digests.insert(format!("{}@{top_digest}", reference.familiar()));
            }
        }
        let repo_digest = descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REPO_DIGEST));
        if let Some(repo_digest) = repo_digest
            && let Ok(parsed) = repo_digest.parse::<Reference>()
            && let Some(digest) = parsed.digest()
        {
            digests.insert(format!("{}@{digest}", parsed.familiar()));
        }
    }
    let field = |name: &str| config.get(name).cloned().unwrap_or(Value::Null);
    let mut object = json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": digests.into_iter().collect::<Vec<_>>(),
        "Parent": "",
        "Comment": "",
        "Created": field("created"),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Config": field("config"),
        "Architecture": field("architecture"),
        "Os": field("os"),
        "Size": layers_size(&image),
        "RootFS": {
            "Type": "layers",
            "Layers": image.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    });
    if let Some(variant) = config.get("variant") {
        object["Variant"] = variant.clone();
    }
    if is_index {
        // An index of several platforms: the fields above are this machine's image.
        let platforms: Vec<String> = index_platforms(store, &top_digest)?
            .iter()
            .map(|(platform, _)| platform.to_string())
            .collect();
        object["Platforms"] = json!(platforms);
        object["Index"] = json!(top_digest.to_string());
    }
    Ok(object)
}

/// `kiln image history`: the config's history with each layer's size, newest first.
pub fn history(store: &Store, query: &str) -> Result<Vec<HistoryRow>> {
    let (_, image) = resolve(store, query)?;
    let mut sizes = image.layers.iter().map(|l| l.size());
    let mut rows: Vec<HistoryRow> = match image.config.history() {
        Some(history) if !history.is_empty() => history
            .iter()
            .map(|h| HistoryRow {
                id: None,
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                size: if h.empty_layer().unwrap_or(false) {
                    0
                } else {
                    sizes.next().unwrap_or(0)
                },
                comment: h.comment().clone().unwrap_or_default(),
            })
            .collect(),
        // No history: one row per layer, as Docker shows images built without it.
        _ => sizes
            .map(|size| HistoryRow {
                id: None,
                created: created(&image),
                created_by: String::new(),
                size,
                comment: String::new(),
            })
            .collect(),
    };
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = Some(image.config_digest.clone());
    }
    Ok(rows)
}

/// The id of a container (under `containers-v1/`) whose config uses image `id`, if any.
fn container_using(store: &Store, id: &Digest) -> Option<String> {
    let entries = fs::read_dir(store.containers_dir()).ok()?;
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path().join("config.json")) else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let image = config.get("image").and_then(Value::as_str).unwrap_or("");
        if !image.is_empty() && image.strip_prefix("sha256:").unwrap_or(image) == id.hex() {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// `kiln image rm`: removes a name, or every name of an image given by id (with `force`
/// when there are several). Content is freed by [`prune`]. Refuses while a container uses
/// the image and this would remove its last name, unless `force`.
pub fn remove(store: &Store, query: &str, force: bool) -> Result<Vec<Removed>> {
    let (descriptor, image) = resolve(store, query)?;
    // The names point at the index, for an image of several platforms.
    let top = Digest::from_oci(descriptor.digest()).map_err(StoreError::from)?;
    let names = names_of(store, &top)?;
    let by_name = query
        .parse::<Reference>()
        .ok()
        .filter(|r| names.iter().any(|(n, _)| n == r));
    let doomed: Vec<Reference> = match by_name {
        Some(reference) => vec![reference],
        None => {
            if names.len() > 1 && !force {
                return Err(ImageError::MultipleReferences {
                    id: image.config_digest.hex()[..12].to_string(),
                    names: names.iter().map(|(n, _)| n.familiar()).collect(),
                });
            }
            names.iter().map(|(n, _)| n.clone()).collect()
        }
    };
    let last_name = doomed.len() >= names.len();
    if last_name
        && !force
        && let Some(container) = container_using(store, &image.config_digest)
    {
        return Err(ImageError::InUse {
            image: query.to_string(),
            container,
        });
    }
    let mut removed = Vec::new();
    for reference in doomed {
        if store.untag(&reference)?.is_some() {
            let shown = match reference.tag() {
                Some(tag) => format!("{}:{tag}", reference.familiar()),
                None => reference.to_string(),
            };
            let name = reference.to_string();
            let id = image.config_digest.to_string();
            store.record_event("image", "untag", &id, &[("name", &name)]);
            removed.push(Removed::Untagged(shown));
        }
    }
    Ok(removed)
}

/// `kiln image prune`: removes blobs and snapshots that no name reaches (keeping pulled
/// indexes of tagged images and the snapshots of containers).
pub fn prune(store: &Store) -> Result<PruneReport> {
    let mut roots = PruneRoots::default();
    let mut kept = HashSet::new();
    for (_, descriptor) in store.list()? {
        if let Some(index) = descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_INDEX))
            .and_then(|d| d.parse::<Digest>().ok())
        {
            kept.insert(index);
        }
    }
    roots.blobs = kept;
    roots.snapshots = container_snapshots(store);
    Ok(store.prune(&roots)?)
}

/// The snapshots containers run on (`"snapshots"` in their `config.json`): kept by
/// [`prune`] even when their image has lost its names.
fn container_snapshots(store: &Store) -> HashSet<Digest> {
    let mut out = HashSet::new();
    let Ok(entries) = fs::read_dir(store.containers_dir()) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path().join("config.json")) else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let chains = config.get("snapshots").and_then(Value::as_array);
        for chain in chains.into_iter().flatten() {
            if let Some(digest) = chain.as_str().and_then(|s| s.parse::<Digest>().ok()) {
                out.insert(digest);
            }
        }
    }
    out
}
