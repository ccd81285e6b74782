//! `index.json`: the names of tagged images.

use std::collections::HashMap;
use std::fs;
use std::io;

use super::{IoContext, Result, Store, StoreError, fsutil};
use crate::oci::{
    ANNOTATION_REF_NAME, Descriptor, Digest, ImageIndex, MediaType, Reference, media_type,
};

impl Store {
    /// Creates an empty `index.json` unless one exists.
    pub(super) fn init_index(&self) -> Result<()> {
        let path = self.index_path();
        if path.exists() {
            return Ok(());
        }
        let _lock = self.lock_index()?;
        if !path.exists() {
            self.write_index(&empty_index())?;
        }
        Ok(())
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(empty_index()),
            Err(e) => return Err(e).io_context("read", &path),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::CorruptFile { path, source })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let path = self.index_path();
        let bytes = serde_json::to_vec(index).map_err(|source| StoreError::CorruptFile {
            path: path.clone(),
            source,
        })?;
        fsutil::write_atomic(&path, &bytes)
    }

    /// Read-modify-write of `index.json` under the index lock (and a lease).
    fn update_index<R>(&self, change: impl FnOnce(&mut Vec<Descriptor>) -> R) -> Result<R> {
        let _lease = self.lease()?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let result = change(&mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(result)
    }

    /// Names `manifest` (a manifest or index descriptor) as `reference`, replacing what the
    /// name pointed to before. The manifest must already be stored.
    pub fn tag(&self, reference: &Reference, manifest: &Descriptor) -> Result<()> {
        let digest = Digest::from_oci(manifest.digest())?;
        if !self.has_blob(&digest) {
            return Err(StoreError::BlobNotFound(digest));
        }
        let name = reference.to_string();
        let mut entry = manifest.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_string(), name.clone());
        entry.set_annotations(Some(annotations));
        self.update_index(|manifests| {
            manifests.retain(|d| ref_name(d) != Some(name.as_str()));
            manifests.push(entry);
        })
    }

    /// Keeps `manifest` in `index.json` without a name (as `docker load` keeps an image
    /// saved by id), unless an entry for the same digest is already there.
    pub fn keep_unnamed(&self, manifest: &Descriptor) -> Result<()> {
        let digest = Digest::from_oci(manifest.digest())?;
        if !self.has_blob(&digest) {
            return Err(StoreError::BlobNotFound(digest));
        }
        let mut entry = manifest.clone();
        if let Some(annotations) = entry.annotations().clone() {
            let mut annotations = annotations;
            annotations.remove(ANNOTATION_REF_NAME);
            entry.set_annotations((!annotations.is_empty()).then_some(annotations));
        }
        self.update_index(|manifests| {
            if !manifests.iter().any(|d| d.digest() == entry.digest()) {
                manifests.push(entry);
            }
        })
    }

    /// Removes the name `reference`; returns what it pointed to, if anything.
    pub fn untag(&self, reference: &Reference) -> Result<Option<Descriptor>> {
        let name = reference.to_string();
        self.update_index(|manifests| {
            let position = manifests
                .iter()
                .position(|d| ref_name(d) == Some(name.as_str()))?;
            Some(manifests.remove(position))
        })
    }

    /// The descriptor named `reference`. A digest reference (`repo@sha256:…`) also matches
    /// any tag of the same repository whose manifest has that digest.
    pub fn lookup(&self, reference: &Reference) -> Result<Option<Descriptor>> {
        let index = self.read_index()?;
        let name = reference.to_string();
        if let Some(found) = index
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name.as_str()))
        {
            return Ok(Some(found.clone()));
        }
        let Some(digest) = reference.digest() else {
            return Ok(None);
        };
        Ok(self.list()?.into_iter().find_map(|(r, d)| {
            (r.name() == reference.name() && d.digest().to_string() == digest.to_string())
                .then_some(d)
        }))
    }

    /// Every named image in `index.json`, in index order. Entries without a parsable name
    /// (written by other tools) are skipped.
    pub fn list(&self) -> Result<Vec<(Reference, Descriptor)>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| Some((ref_name(d)?.parse().ok()?, d.clone())))
            .collect())
    }

    /// All manifest descriptors in `index.json`, named or not.
    pub(super) fn index_manifests(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.manifests().clone())
    }

    /// Finds an image the way `docker image inspect` does: by name first, then by a prefix
    /// of its id (the config digest, with or without `sha256:`).
    pub fn resolve_image(&self, query: &str) -> Result<Descriptor> {
        if let Ok(reference) = query.parse::<Reference>()
            && let Some(found) = self.lookup(&reference)?
        {
            return Ok(found);
        }
        let prefix = query.strip_prefix("sha256:").unwrap_or(query);
        let is_id_prefix = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_id_prefix {
            return Err(StoreError::ImageNotFound(query.to_string()));
        }
        let mut matches: HashMap<Digest, Descriptor> = HashMap::new();
        for descriptor in self.index_manifests()? {
            let Ok(digest) = Digest::from_oci(descriptor.digest()) else {
                continue;
            };
            // An index (a build for several platforms) has no single config: its id is
            // its own digest, as `kiln images` shows it.
            if media_type::is_index(descriptor.media_type().as_ref()) {
                if digest.hex().starts_with(prefix) {
                    matches.entry(digest).or_insert(descriptor);
                }
                continue;
            }
            let Ok(image) = self.image(&digest) else {
                continue;
            };
            if image.config_digest.hex().starts_with(prefix) {
                matches.entry(image.config_digest).or_insert(descriptor);
            }
        }
        match matches.len() {
            0 => Err(StoreError::ImageNotFound(query.to_string())),
            1 => Ok(matches.into_values().next().expect("one match")),
            _ => {
                let mut candidates: Vec<String> = matches.keys().map(|d| d.to_string()).collect();
                candidates.sort();
                Err(StoreError::AmbiguousImage {
                    query: query.to_string(),
                    candidates,
                })
            }
        }
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

fn empty_index() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(Vec::new());
    index
}
