//! `kiln save` and `kiln load`: docker-archive and OCI image layout tarballs.
//!
//! The docker format is what Docker 25+ writes: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) plus the legacy `manifest.json` and `repositories`, so
//! both old and new `docker load` and skopeo's `docker-archive:` read it. Layers are stored
//! as they are in the store (usually gzip); `docker load` decompresses them itself.
//!
//! `load` reads both kinds, and the legacy layout skopeo and old Docker write
//! (`<hex>.json` configs, `<id>/layer.tar` or `<hex>.tar` layers, often symlinked).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::compress::{self, LayerOptions};
use super::push::stored_image;
use super::{ImageError, Result, io_err, resolve, unpack_image};
use crate::oci::{
    ANNOTATION_REF_NAME, Compression, Descriptor, Digest, MediaType, Platform, Reference,
    media_type,
};
use crate::registry::select_platform;
use crate::store::{Store, StoreError};

/// Annotation containerd and Docker 25+ put on `index.json` entries: the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Metadata files are read into memory; anything bigger is not metadata.
const MAX_METADATA: u64 = 16 << 20;

/// Which tarball `kiln save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Docker 25+ layout: OCI layout plus `manifest.json` and `repositories`.
    Docker,
    /// A plain OCI image layout.
    Oci,
}

/// An image `kiln load` imported.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Familiar names (`busybox:latest`); empty if the archive did not name the image.
    pub names: Vec<String>,
    pub id: Digest,
}

/// One image as an archive holds it.
struct Saved {
    names: Vec<Reference>,
    manifest: Descriptor,
    manifest_bytes: Vec<u8>,
    config: Digest,
    layers: Vec<Digest>,
}

/// Where [`write_image`] puts an image layout.
pub enum ArchiveDest<'a> {
    /// A tar stream (a file or standard output).
    Tar(&'a mut (dyn Write + Send)),
    /// An OCI image layout directory, created if missing.
    Dir(&'a Path),
}

/// Writes the images `queries` (names or ids) as one archive to `out`.
pub fn save(
    store: &Store,
    queries: &[String],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<()> {
    // An image of several platforms is saved with its index, alone.
    for query in queries {
        let (descriptor, _) = resolve(store, query)?;
        if !media_type::is_index(descriptor.media_type().as_ref()) {
            continue;
        }
        let [_] = queries else {
            return Err(ImageError::Invalid {
                what: format!("kiln save {}", queries.join(" ")),
                reason: format!("{query} is an image of several platforms: save it alone"),
            });
        };
        let digest = Digest::from_oci(descriptor.digest()).map_err(StoreError::from)?;
        let platforms = super::list::stored_index(store, &digest)?.unwrap_or_default();
        let names: Vec<Reference> = query.parse::<Reference>().ok().into_iter().collect();
        // Layers as stored: kiln's uncompressed, pulled ones as they came.
        let as_stored = LayerOptions {
            compression: crate::oci::Compression::None,
            ..LayerOptions::default()
        };
        let archive = index_archive(store, &platforms, &names, format, &as_stored)?;
        let mut layout = Layout::Tar(tar::Builder::new(out));
        write_index_layout(&mut layout, store, &archive)?;
        return layout.finish();
    }
    let images = queries
        .iter()
        .map(|query| saved_image(store, query))
        .collect::<Result<Vec<_>>>()?;
    let mut layout = Layout::Tar(tar::Builder::new(out));
    write_layout(&mut layout, store, &images, format)?;
    layout.finish()
}

/// Writes the stored image `manifest` as an archive or layout named `names`, its layers
/// compressed and typed as `options` say (a docker archive with Docker media types, an
/// OCI one with OCI types, by the caller's choice).
pub fn write_image(
    store: &Store,
    manifest: &Digest,
    names: &[Reference],
    format: ArchiveFormat,
    options: &LayerOptions,
    dest: ArchiveDest<'_>,
) -> Result<()> {
    if let Some(platforms) = super::list::stored_index(store, manifest)? {
        return write_index_image(store, &platforms, names, format, options, dest);
    }
    let saved = Saved {
        names: names.to_vec(),
        ..outgoing_image(store, manifest, options)?
    };
    match dest {
        ArchiveDest::Tar(out) => {
            let mut layout = Layout::Tar(tar::Builder::new(out));
            write_layout(&mut layout, store, &[saved], format)?;
            layout.finish()
        }
        ArchiveDest::Dir(dir) => {
            let mut layout = Layout::<std::io::Sink>::Dir(dir);
            write_layout(&mut layout, store, &[saved], format)
        }
    }
}

/// The stored image `manifest` as an output sends it (layers compressed as `options`
/// say), unnamed.
fn outgoing_image(store: &Store, manifest: &Digest, options: &LayerOptions) -> Result<Saved> {
    let (image, stored, stored_type) = stored_image(store, manifest)?;
    let outgoing = compress::outgoing(store, &image, &stored, &stored_type, options)?;
    let manifest_digest = Digest::of(&outgoing.manifest_bytes);
    Ok(Saved {
        names: Vec::new(),
        manifest: Descriptor::new(
            MediaType::from(outgoing.manifest_type.as_str()),
            outgoing.manifest_bytes.len() as u64,
            manifest_digest.to_oci(),
        ),
        manifest_bytes: outgoing.manifest_bytes,
        config: outgoing.config.digest,
        layers: outgoing.layers.into_iter().map(|l| l.digest).collect(),
    })
}

/// An OCI layout whose `index.json` names an image index of several platforms' images
/// (as BuildKit's oci exporter writes one). A docker archive's `manifest.json`, which holds
/// one image per name, lists this machine's platform's image (else the first) under the
/// names, as `docker save` of a multi-platform image does: `docker load` gets that one,
/// OCI tools the whole index.
fn write_index_image(
    store: &Store,
    platforms: &[(crate::oci::Platform, Digest)],
    names: &[Reference],
    format: ArchiveFormat,
    options: &LayerOptions,
    dest: ArchiveDest<'_>,
) -> Result<()> {
    let archive = index_archive(store, platforms, names, format, options)?;
    match dest {
        ArchiveDest::Tar(out) => {
            let mut layout = Layout::Tar(tar::Builder::new(out));
            write_index_layout(&mut layout, store, &archive)?;
            layout.finish()
        }
        ArchiveDest::Dir(dir) => {
            write_index_layout(&mut Layout::<std::io::Sink>::Dir(dir), store, &archive)
        }
    }
}

/// What an archive of an image index holds: each platform's image, the index over them
/// (`top`, named; its bytes in `index_bytes`) and, for a docker archive, the image its
/// `manifest.json` names.
struct IndexArchive {
    images: Vec<Saved>,
    top: Saved,
    index_bytes: Vec<u8>,
    docker: Option<Saved>,
}

fn index_archive(
    store: &Store,
    platforms: &[(crate::oci::Platform, Digest)],
    names: &[Reference],
    format: ArchiveFormat,
    options: &LayerOptions,
) -> Result<IndexArchive> {
    let mut images = Vec::with_capacity(platforms.len());
    let mut entries = Vec::with_capacity(platforms.len());
    for (platform, manifest) in platforms {
        let image = outgoing_image(store, manifest, options)?;
        let mut entry = serde_json::to_value(&image.manifest).unwrap_or(Value::Null);
        entry["platform"] = serde_json::to_value(platform).unwrap_or(Value::Null);
        entries.push(entry);
        images.push(image);
    }
    let index_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap_or_default();
    let index_digest = Digest::of(&index_bytes);
    // Only named in `index.json`: its blob is written from `index_bytes`.
    let top = Saved {
        names: names.to_vec(),
        manifest: Descriptor::new(
            MediaType::from(media_type::OCI_INDEX),
            index_bytes.len() as u64,
            index_digest.to_oci(),
        ),
        manifest_bytes: Vec::new(),
        config: index_digest,
        layers: Vec::new(),
    };
    let host = crate::oci::Platform::host();
    let loaded = host
        .select(
            platforms
                .iter()
                .zip(&images)
                .map(|((p, _), image)| (p, image)),
        )
        .or(images.first());
    let docker = match (format, loaded) {
        (ArchiveFormat::Docker, Some(loaded)) => Some(Saved {
            names: names.to_vec(),
            manifest: loaded.manifest.clone(),
            manifest_bytes: loaded.manifest_bytes.clone(),
            config: loaded.config.clone(),
            layers: loaded.layers.clone(),
        }),
        _ => None,
    };
    Ok(IndexArchive {
        images,
        top,
        index_bytes,
        docker,
    })
}

/// The blobs of an [`IndexArchive`], the index, an `index.json` naming it and, for a
/// docker archive, `manifest.json`.
fn write_index_layout<W: Write>(
    layout: &mut Layout<'_, W>,
    store: &Store,
    archive: &IndexArchive,
) -> Result<()> {
    add_blobs(layout, store, &archive.images)?;
    let digest = Digest::from_oci(archive.top.manifest.digest()).map_err(StoreError::from)?;
    layout.bytes(
        &format!("blobs/sha256/{}", digest.hex()),
        &archive.index_bytes,
    )?;
    layout.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    layout.bytes(
        "index.json",
        &serde_json::to_vec(&oci_index(std::slice::from_ref(&archive.top))).unwrap_or_default(),
    )?;
    if let Some(docker) = &archive.docker {
        write_docker_metadata(layout, std::slice::from_ref(docker))?;
    }
    Ok(())
}

/// A docker archive's `manifest.json` and `repositories`, naming `images`.
fn write_docker_metadata<W: Write>(layout: &mut Layout<'_, W>, images: &[Saved]) -> Result<()> {
    let (manifest_json, repositories) = docker_metadata(images);
    layout.bytes(
        "manifest.json",
        &serde_json::to_vec(&manifest_json).unwrap_or_default(),
    )?;
    layout.bytes(
        "repositories",
        &serde_json::to_vec(&repositories).unwrap_or_default(),
    )
}

fn write_layout<W: Write>(
    layout: &mut Layout<'_, W>,
    store: &Store,
    images: &[Saved],
    format: ArchiveFormat,
) -> Result<()> {
    add_blobs(layout, store, images)?;
    layout.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    layout.bytes(
        "index.json",
        &serde_json::to_vec(&oci_index(images)).unwrap_or_default(),
    )?;
    if format == ArchiveFormat::Docker {
        write_docker_metadata(layout, images)?;
    }
    Ok(())
}

/// A tar stream or a directory, written the same way.
enum Layout<'a, W: Write> {
    Tar(tar::Builder<W>),
    Dir(&'a Path),
}

impl<W: Write> Layout<'_, W> {
    fn dir(&mut self, path: &str) -> Result<()> {
        match self {
            Layout::Tar(tar) => add_dir(tar, path).map_err(write_err),
            Layout::Dir(root) => {
                let dir = root.join(path);
                std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))
            }
        }
    }

    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<()> {
        match self {
            Layout::Tar(tar) => add_file(tar, path, size, data).map_err(write_err),
            Layout::Dir(root) => {
                let target = root.join(path);
                // Blobs are named by their content: one already there is the same.
                if path.starts_with("blobs/")
                    && std::fs::metadata(&target).is_ok_and(|m| m.len() == size)
                {
                    return Ok(());
                }
                let temp = root.join(format!(".{}.tmp", crate::store::random_name()));
                let mut file = std::fs::File::create(&temp).map_err(io_err("create", &temp))?;
                std::io::copy(&mut { data }, &mut file).map_err(io_err("write", &temp))?;
                std::fs::rename(&temp, &target).map_err(io_err("rename", &target))
            }
        }
    }

    fn bytes(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.file(path, bytes.len() as u64, bytes)
    }

    fn finish(self) -> Result<()> {
        match self {
            Layout::Tar(tar) => tar
                .into_inner()
                .map_err(write_err)?
                .flush()
                .map_err(write_err),
            Layout::Dir(_) => Ok(()),
        }
    }
}

/// The stored image `query` names, with the name it keeps in the archive.
fn saved_image(store: &Store, query: &str) -> Result<Saved> {
    let (descriptor, image) = resolve(store, query)?;
    // Docker keeps the name only when the image was named by it.
    let name = query
        .parse::<Reference>()
        .ok()
        .filter(|r| r.tag().is_some() && store.lookup(r).ok().flatten().is_some());
    let mut manifest = Descriptor::new(
        descriptor.media_type().clone(),
        image.manifest_size,
        image.manifest_digest.to_oci(),
    );
    manifest.set_platform(descriptor.platform().clone());
    Ok(Saved {
        names: name.into_iter().collect(),
        manifest,
        manifest_bytes: store.read_blob(&image.manifest_digest)?,
        config: image.config_digest.clone(),
        layers: image
            .layers
            .iter()
            .map(|l| Digest::from_oci(l.digest()))
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)?,
    })
}

/// `blobs/sha256/…`: every layer, config and manifest of `images`, each once.
fn add_blobs<W: Write>(layout: &mut Layout<'_, W>, store: &Store, images: &[Saved]) -> Result<()> {
    layout.dir("blobs/")?;
    layout.dir("blobs/sha256/")?;
    let mut written = std::collections::HashSet::new();
    for image in images {
        for digest in image.layers.iter().chain([&image.config]) {
            if !written.insert(digest.clone()) {
                continue;
            }
            let file = store.open_blob(digest)?;
            let size = store.blob_size(digest)?;
            layout.file(&format!("blobs/sha256/{}", digest.hex()), size, file)?;
        }
        let manifest = Digest::from_oci(image.manifest.digest()).map_err(StoreError::from)?;
        if written.insert(manifest.clone()) {
            layout.bytes(
                &format!("blobs/sha256/{}", manifest.hex()),
                &image.manifest_bytes,
            )?;
        }
    }
    Ok(())
}

/// The archive's `index.json`: one entry per image, named as containerd and Docker 25+ do.
fn oci_index(images: &[Saved]) -> Value {
    let mut index_entries = Vec::new();
    for image in images {
        let entry = serde_json::to_value(&image.manifest).unwrap_or(Value::Null);
        if image.names.is_empty() {
            index_entries.push(entry.clone());
        }
        for name in &image.names {
            let mut entry = entry.clone();
            entry["annotations"] = json!({
                ANNOTATION_CONTAINERD_NAME: name.to_string(),
                ANNOTATION_REF_NAME: name.tag().unwrap_or("latest"),
            });
            index_entries.push(entry);
        }
    }
    json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": index_entries,
    })
}

/// The legacy `manifest.json` and `repositories` of a docker archive.
fn docker_metadata(images: &[Saved]) -> (Vec<Value>, BTreeMap<String, BTreeMap<String, String>>) {
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let tags: Vec<String> = image
            .names
            .iter()
            .map(|n| format!("{}:{}", n.familiar(), n.tag().unwrap_or("latest")))
            .collect();
        manifest_json.push(json!({
            "Config": format!("blobs/sha256/{}", image.config.hex()),
            "RepoTags": tags,
            "Layers": image.layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect::<Vec<_>>(),
        }));
        for name in &image.names {
            let Some(top) = image.layers.last() else {
                break;
            };
            repositories.entry(name.familiar()).or_default().insert(
                name.tag().unwrap_or("latest").to_string(),
                top.hex().to_string(),
            );
        }
    }
    (manifest_json, repositories)
}

/// A failed write of the archive (to `-`: the output is a stream).
fn write_err(source: std::io::Error) -> ImageError {
    ImageError::Io {
        action: "write archive",
        path: PathBuf::from("-"),
        source,
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, path, std::io::empty())
}

fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Regular, size, 0o644);
    tar.append_data(&mut h, path, data)
}

/// What one pass over the archive found.
#[derive(Default)]
struct Contents {
    /// Archive path → digest of the stored file.
    files: HashMap<String, Digest>,
    /// Link path → what it points at (archive-relative).
    links: HashMap<String, String>,
    /// Small metadata files by path.
    metadata: HashMap<String, Vec<u8>>,
}

impl Contents {
    fn digest_of(&self, path: &str) -> Option<&Digest> {
        let mut path = normalise(path)?;
        for _ in 0..16 {
            if let Some(d) = self.files.get(&path) {
                return Some(d);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }
}

/// `./a//b` → `a/b`; `None` for paths that climb out.
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Wraps what went wrong with `part` of the archive at `path`.
fn part_err<E: std::error::Error + Send + Sync + 'static>(
    path: &Path,
    part: impl Into<String>,
) -> impl FnOnce(E) -> ImageError {
    let (path, part) = (path.to_path_buf(), part.into());
    move |source| ImageError::ArchivePart {
        path,
        part,
        source: Box::new(source),
    }
}

fn is_metadata(path: &str) -> bool {
    matches!(
        path,
        "manifest.json" | "index.json" | "repositories" | "oci-layout"
    )
}

/// Imports every image of a docker or OCI archive (optionally gzip-compressed) from
/// `input`; `source` names it in errors. Blobs are verified, layers unpacked, names tagged.
pub fn load(store: &Store, input: impl Read, source: &Path) -> Result<Vec<Loaded>> {
    let _lease = store.lease()?;
    let contents = read_entries(store, decompressed(input, source)?, source)?;
    let wanted = wanted_images(store, &contents, source)?;
    wanted
        .into_iter()
        .map(|(manifest, names)| import_image(store, &manifest, &names, source))
        .collect()
}

/// `input`, decompressed if it is gzip or zstd.
fn decompressed<'a>(input: impl Read + 'a, source: &Path) -> Result<Box<dyn Read + 'a>> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input.fill_buf().map_err(io_err("read", source))?;
    Ok(match Compression::detect(head) {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(input).map_err(io_err("read", source))?)
        }
        Compression::None => Box::new(input),
    })
}

fn archive_err(path: &Path, reason: String) -> ImageError {
    ImageError::Archive {
        path: path.to_path_buf(),
        reason,
    }
}

/// The images an archive holds: the manifest of each and the names to tag it with. A
/// docker archive's `manifest.json` wins over its OCI `index.json` (it has the names).
fn wanted_images(
    store: &Store,
    contents: &Contents,
    source: &Path,
) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let oci_manifests = match contents.metadata.get("index.json") {
        Some(bytes) => oci_images(store, bytes).map_err(part_err(source, "index.json"))?,
        None => Vec::new(),
    };
    let wanted = if let Some(bytes) = contents.metadata.get("manifest.json") {
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(bytes).map_err(part_err(source, "manifest.json"))?;
        entries
            .iter()
            .map(|entry| docker_image(store, contents, entry, &oci_manifests, source))
            .collect::<Result<Vec<_>>>()?
    } else if contents.metadata.contains_key("index.json") {
        oci_manifests
            .into_iter()
            .map(|(manifest, _, names)| (manifest, names))
            .collect()
    } else {
        return Err(archive_err(
            source,
            "not an image archive: it has neither manifest.json (docker) nor index.json (OCI)"
                .into(),
        ));
    };
    if wanted.is_empty() {
        return Err(archive_err(source, "the archive holds no images".into()));
    }
    Ok(wanted)
}

/// The manifest and names of one `manifest.json` entry: the archive's own manifest when
/// its OCI index has one for that config, else one written for the entry's layers.
fn docker_image(
    store: &Store,
    contents: &Contents,
    entry: &DockerEntry,
    oci_manifests: &[(Digest, Digest, Vec<Reference>)],
    source: &Path,
) -> Result<(Digest, Vec<Reference>)> {
    let config = contents
        .digest_of(&entry.config)
        .ok_or_else(|| {
            archive_err(
                source,
                format!(
                    "manifest.json names {} but the archive lacks it",
                    entry.config
                ),
            )
        })?
        .clone();
    let mut names = Vec::new();
    for tag in entry.repo_tags.iter().flatten() {
        names.push(
            tag.parse::<Reference>()
                .map_err(part_err(source, "manifest.json"))?,
        );
    }
    // Keep the original manifest (and its digest) when the OCI index has it.
    if let Some((digest, _, _)) = oci_manifests.iter().find(|(_, c, _)| *c == config) {
        return Ok((digest.clone(), names));
    }
    let mut layers = Vec::new();
    for layer in &entry.layers {
        let digest = contents.digest_of(layer).ok_or_else(|| {
            archive_err(
                source,
                format!("manifest.json names layer {layer} but the archive lacks it"),
            )
        })?;
        layers.push(digest.clone());
    }
    Ok((build_manifest(store, &config, &layers)?, names))
}

/// Unpacks one imported image and tags it with `names` (or keeps it unnamed).
fn import_image(
    store: &Store,
    manifest: &Digest,
    names: &[Reference],
    source: &Path,
) -> Result<Loaded> {
    let image = store
        .image(manifest)
        .map_err(|e| ImageError::ArchiveImage {
            path: source.to_path_buf(),
            source: e,
        })?;
    for layer in &image.layers {
        let digest = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        if !store.has_blob(&digest) {
            return Err(archive_err(
                source,
                format!("layer {digest} is missing from the archive"),
            ));
        }
    }
    unpack_image(store, &image)?;
    let descriptor = Descriptor::new(
        MediaType::from(
            serde_json::from_slice::<Value>(&store.read_blob(manifest)?)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string())
                .as_str(),
        ),
        image.manifest_size,
        manifest.to_oci(),
    );
    let mut shown = Vec::new();
    for name in names {
        store.tag(name, &descriptor)?;
        shown.push(match name.tag() {
            Some(tag) => format!("{}:{tag}", name.familiar()),
            None => name.to_string(),
        });
    }
    if names.is_empty() {
        store.keep_unnamed(&descriptor)?;
    }
    Ok(Loaded {
        names: shown,
        id: image.config_digest.clone(),
    })
}

#[derive(serde::Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// One pass over the tar: blobs into the store (verified when named by digest), links and
/// metadata remembered.
fn read_entries(store: &Store, input: impl Read, source: &Path) -> Result<Contents> {
    let mut contents = Contents::default();
    let mut archive = tar::Archive::new(input);
    let not_tar = || part_err(source, "not a tar archive");
    let entries = archive.entries().map_err(not_tar())?;
    for entry in entries {
        let mut entry = entry.map_err(not_tar())?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalise(&raw_path) else {
            return Err(archive_err(
                source,
                format!("entry {raw_path:?} climbs out of the archive"),
            ));
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                // Symlinks are relative to their directory; hard links to the archive root.
                let joined = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                    match path.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{target}"),
                        None => target,
                    }
                } else {
                    target
                };
                if let Some(target) = normalise(&joined) {
                    contents.links.insert(path, target);
                }
                continue;
            }
            _ => continue,
        }
        if is_metadata(&path) {
            if entry.size() > MAX_METADATA {
                return Err(archive_err(source, format!("{path} is implausibly large")));
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(part_err(source, format!("reading {path}")))?;
            contents.metadata.insert(path, bytes);
            continue;
        }
        let expected = path
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::from_sha256_hex(hex).ok());
        if let Some(expected) = &expected
            && store.has_blob(expected)
        {
            contents.files.insert(path, expected.clone());
            continue;
        }
        let size = entry.size();
        let mut ingest = store.ingest()?;
        std::io::copy(&mut entry, &mut ingest)
            .map_err(part_err(source, format!("reading {path}")))?;
        let (digest, _) = ingest
            .commit(expected.as_ref(), Some(size))
            .map_err(part_err(source, &path))?;
        contents.files.insert(path, digest);
    }
    Ok(contents)
}

/// Manifests of an OCI `index.json` (nested indexes resolved to the host platform), with
/// their config digests and names.
fn oci_images(store: &Store, index: &[u8]) -> Result<Vec<(Digest, Digest, Vec<Reference>)>> {
    let json: Value = serde_json::from_slice(index).map_err(|source| ImageError::Json {
        what: "index.json".into(),
        source,
    })?;
    let entries = json
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| ImageError::Invalid {
            what: "index.json".into(),
            reason: "no manifests".into(),
        })?;
    let mut out: Vec<(Digest, Digest, Vec<Reference>)> = Vec::new();
    for entry in entries {
        let mut digest: Digest = entry
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or("")
            .parse()
            .map_err(|source| ImageError::Digest {
                what: "index.json".into(),
                source,
            })?;
        let annotation =
            |key: &str| entry.pointer(&format!("/annotations/{}", key.replace('/', "~1")));
        let name = annotation(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| annotation(ANNOTATION_REF_NAME))
            .and_then(Value::as_str)
            // A bare tag ("latest") names no repository: the image stays unnamed.
            .filter(|n| n.contains(':') || n.contains('/'))
            .and_then(|n| n.parse::<Reference>().ok());
        let mut declared = entry
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(media_type::OCI_MANIFEST)
            .to_string();
        // An index (multi-platform image): take the host's manifest.
        for _ in 0..4 {
            if !media_type::is_index(&declared) {
                break;
            }
            let bytes = store.read_blob(&digest)?;
            let chosen = select_platform(&bytes, &Platform::host())?;
            digest = chosen.digest;
            declared = chosen.media_type;
        }
        let what = || format!("index.json: manifest {digest}");
        let manifest: Value =
            serde_json::from_slice(&store.read_blob(&digest)?).map_err(|source| {
                ImageError::Json {
                    what: what(),
                    source,
                }
            })?;
        let config: Digest = manifest
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .unwrap_or("")
            .parse()
            .map_err(|source| ImageError::Digest {
                what: what(),
                source,
            })?;
        match out.iter_mut().find(|(d, _, _)| *d == digest) {
            Some((_, _, names)) => names.extend(name),
            None => out.push((digest, config, name.into_iter().collect())),
        }
    }
    Ok(out)
}

/// Writes an OCI manifest for a legacy docker archive entry; returns its digest.
fn build_manifest(store: &Store, config: &Digest, layers: &[Digest]) -> Result<Digest> {
    let mut descriptors = Vec::new();
    for layer in layers {
        let mut head = [0u8; 4];
        let mut file = store.open_blob(layer)?;
        let n = file
            .read(&mut head)
            .map_err(io_err("read", store.blob_path(layer)))?;
        let media_type = match Compression::detect(&head[..n]) {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            Compression::None => media_type::OCI_LAYER,
        };
        descriptors.push(json!({
            "mediaType": media_type,
            "digest": layer.to_string(),
            "size": store.blob_size(layer)?,
        }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": media_type::OCI_CONFIG,
            "digest": config.to_string(),
            "size": store.blob_size(config)?,
        },
        "layers": descriptors,
    });
    Ok(store.write_blob(&serde_json::to_vec(&manifest).unwrap_or_default())?)
}
