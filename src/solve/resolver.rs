//! Base images for the planner: looked up in the store, pulled when missing.

use super::error::{PullError, SolveError};
use crate::oci::{Digest, Reference};
use crate::plan::{History, ImageConfig, ImageResolver, Platform, ResolveError, ResolvedImage};
use crate::store::Store;

/// Pulls `reference` into the store (the CLI supplies one that talks to registries). It
/// either tags the image (`None`), or stores its manifest untagged, layers left in the
/// registry, and returns the manifest's digest.
pub type Puller<'a> =
    Box<dyn FnMut(&Reference, &Platform) -> Result<Option<Digest>, PullError> + 'a>;

/// An [`ImageResolver`] over the image store: a name already stored is used as is; a
/// missing one is pulled with `puller` (none: an error saying how to get it).
pub struct StoreResolver<'a> {
    store: Store,
    puller: Option<Puller<'a>>,
    /// `--pull`: pull every base image again, even one already stored.
    always_pull: bool,
}

impl<'a> StoreResolver<'a> {
    pub fn new(store: Store, puller: Option<Puller<'a>>) -> StoreResolver<'a> {
        StoreResolver {
            store,
            puller,
            always_pull: false,
        }
    }

    /// `--pull`: resolve names against their registry, not the store.
    pub fn always_pull(mut self, always: bool) -> StoreResolver<'a> {
        self.always_pull = always;
        self
    }

    /// The stored image `reference` names, for `platform`: the tagged image when it is
    /// for that platform (or says none, or came alone, not from an index: used as is, as
    /// Docker does); else that platform's image from the index the name came from (or
    /// names), when stored. `None`: pull it.
    fn stored(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, SolveError> {
        let Some(descriptor) = self.store.lookup(reference)? else {
            return Ok(None);
        };
        let digest = Digest::from_oci(descriptor.digest())?;
        let index = if crate::oci::media_type::is_index(descriptor.media_type().as_ref()) {
            Some(digest.clone())
        } else {
            let tagged = self.manifest(reference, &digest)?;
            let from_index = descriptor
                .annotations()
                .as_ref()
                .and_then(|a| a.get(crate::image::ANNOTATION_INDEX))
                .and_then(|d| d.parse::<Digest>().ok());
            let fits = tagged
                .platform
                .as_ref()
                .is_none_or(|p| platform.select(std::iter::once((p, ()))).is_some());
            match from_index {
                Some(index) if !fits => Some(index),
                _ => return Ok(Some(tagged)),
            }
        };
        let Some(index) = index.filter(|index| self.store.has_blob(index)) else {
            return Ok(None);
        };
        let bytes = self.store.read_blob(&index)?;
        let Ok(entry) = crate::registry::select_platform(&bytes, platform) else {
            return Ok(None);
        };
        if !self.store.has_blob(&entry.digest) {
            return Ok(None);
        }
        self.manifest(reference, &entry.digest).map(Some)
    }

    /// The stored image whose manifest is `digest`, as `reference`.
    fn manifest(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<ResolvedImage, SolveError> {
        let image = self.store.image(digest)?;
        let raw = self.store.read_blob(&image.config_digest)?;
        let json: serde_json::Value =
            serde_json::from_slice(&raw).map_err(SolveError::ConfigBlob)?;
        let field = |what: &'static str, source| SolveError::ImageConfig {
            what,
            reference: reference.to_string(),
            source,
        };
        let config: ImageConfig = json
            .get("config")
            .filter(|c| !c.is_null())
            .map(|c| serde_json::from_value(c.clone()))
            .transpose()
            .map_err(|e| field("config", e))?
            .unwrap_or_default();
        let history: Vec<History> = json
            .get("history")
            .filter(|h| !h.is_null())
            .map(|h| serde_json::from_value(h.clone()))
            .transpose()
            .map_err(|e| field("history", e))?
            .unwrap_or_default();
        Ok(ResolvedImage {
            reference_normalised: reference.to_string(),
            manifest_digest: image.manifest_digest.to_string(),
            config,
            history,
            diff_ids: image.diff_ids.iter().map(ToString::to_string).collect(),
            author: json
                .get("author")
                .and_then(|a| a.as_str())
                .map(str::to_string),
            platform: config_platform(&json),
        })
    }

    /// The stored image `reference` names, pulled first when missing (or with `--pull`).
    fn find_or_pull(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, SolveError> {
        let parsed: Reference = reference.parse()?;
        // A digest names content: a stored one needs no pull, even with --pull.
        let pinned = parsed.digest().is_some();
        if (!self.always_pull || pinned)
            && let Some(found) = self.stored(&parsed, platform)?
        {
            return Ok(found);
        }
        match &mut self.puller {
            Some(pull) => {
                if let Some(manifest) = pull(&parsed, platform).map_err(SolveError::Pull)? {
                    return self.manifest(&parsed, &manifest);
                }
                self.stored(&parsed, platform)?
                    .ok_or_else(|| SolveError::NotPulled {
                        reference: parsed.to_string(),
                    })
            }
            None => Err(SolveError::NotStored {
                reference: parsed.to_string(),
                written: reference.to_string(),
            }),
        }
    }
}

/// The `os`, `architecture` and `variant` of an image config, when it has the first two.
fn config_platform(json: &serde_json::Value) -> Option<Platform> {
    let field = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    Some(Platform::new(
        field("os")?,
        field("architecture")?,
        field("variant"),
    ))
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, ResolveError> {
        Ok(self.find_or_pull(reference, platform)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let platform = Platform::parse("linux/amd64").unwrap();

        let mut resolver = StoreResolver::new(store.clone(), None);
        let error = resolver.resolve("alpine", &platform).unwrap_err();
        assert_eq!(
            error.to_string(),
            "docker.io/library/alpine:latest is not in the store (kiln pull alpine)"
        );
        assert!(matches!(
            error.downcast_ref::<SolveError>(),
            Some(SolveError::NotStored { .. })
        ));

        let puller: Puller<'_> =
            Box::new(|_, _| Err(std::io::Error::other("registry unreachable").into()));
        let mut resolver = StoreResolver::new(store, Some(puller));
        let error = resolver.resolve("alpine", &platform).unwrap_err();
        assert_eq!(error.to_string(), "registry unreachable");
        let Some(SolveError::Pull(cause)) = error.downcast_ref::<SolveError>() else {
            panic!("not a pull error: {error:?}");
        };
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
    }
}
