//! Base images for the planner: looked up in the store, pulled when missing.

use crate::oci::{Digest, Reference};
use crate::plan::{History, ImageConfig, ImageResolver, Platform, ResolvedImage};
use crate::store::Store;

/// Pulls `reference` into the store (the CLI supplies one that talks to registries).
pub type Puller<'a> = Box<dyn FnMut(&Reference, &Platform) -> Result<(), String> + 'a>;

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

    fn stored(&self, reference: &Reference) -> Result<Option<ResolvedImage>, String> {
        let Some(descriptor) = self.store.lookup(reference).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let digest = Digest::from_oci(descriptor.digest()).map_err(|e| e.to_string())?;
        let image = self.store.image(&digest).map_err(|e| e.to_string())?;
        let raw = self
            .store
            .read_blob(&image.config_digest)
            .map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
        let config: ImageConfig = json
            .get("config")
            .filter(|c| !c.is_null())
            .map(|c| serde_json::from_value(c.clone()))
            .transpose()
            .map_err(|e| format!("image config of {reference}: {e}"))?
            .unwrap_or_default();
        let history: Vec<History> = json
            .get("history")
            .filter(|h| !h.is_null())
            .map(|h| serde_json::from_value(h.clone()))
            .transpose()
            .map_err(|e| format!("image history of {reference}: {e}"))?
            .unwrap_or_default();
        Ok(Some(ResolvedImage {
            reference_normalised: reference.to_string(),
            manifest_digest: image.manifest_digest.to_string(),
            config,
            history,
            diff_ids: image.diff_ids.iter().map(ToString::to_string).collect(),
            author: json
                .get("author")
                .and_then(|a| a.as_str())
                .map(str::to_string),
        }))
    }
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&mut self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let parsed: Reference = reference.parse().map_err(|e| format!("{e}"))?;
        // A digest names content: a stored one needs no pull, even with --pull.
        let pinned = parsed.digest().is_some();
        if (!self.always_pull || pinned)
            && let Some(found) = self.stored(&parsed)?
        {
            return Ok(found);
        }
        match &mut self.puller {
            Some(pull) => {
                pull(&parsed, platform)?;
                self.stored(&parsed)?
                    .ok_or_else(|| format!("{parsed} is not in the store after pulling it"))
            }
            None => Err(format!(
                "{parsed} is not in the store (kiln pull {reference})"
            )),
        }
    }
}
