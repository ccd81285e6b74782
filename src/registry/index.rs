//! Picking one manifest out of an OCI index or Docker manifest list.

use serde::Deserialize;

use super::error::{RegistryError, Result};
use crate::oci::{Digest, Platform, media_type};

/// The entry of an index chosen for a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
}

/// An entry as the index writes it. Only the chosen entry's digest is parsed, so a bad
/// digest elsewhere in the index does not stand in the way.
#[derive(Deserialize)]
struct WrittenEntry {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<WrittenEntry>>,
}

/// Choose the manifest for `wanted` from an index (OCI index or Docker manifest list JSON),
/// as [`Platform::select`] matches.
pub fn select_platform(index_json: &[u8], wanted: &Platform) -> Result<IndexEntry> {
    let doc: IndexDoc =
        serde_json::from_slice(index_json).map_err(|e| RegistryError::NotAnIndex(e.to_string()))?;
    if let Some(mt) = &doc.media_type
        && !media_type::is_index(mt)
    {
        return Err(RegistryError::NotAnIndex(format!("media type {mt}")));
    }
    let entries = doc
        .manifests
        .ok_or_else(|| RegistryError::NotAnIndex("no \"manifests\" array".into()))?;
    let with_platform = || {
        entries
            .iter()
            .filter_map(|e| Some((e.platform.as_ref()?, e)))
    };
    if let Some(chosen) = wanted.select(with_platform()) {
        return Ok(IndexEntry {
            media_type: chosen.media_type.clone(),
            digest: chosen.digest.parse()?,
            size: chosen.size,
            platform: chosen.platform.clone(),
        });
    }
    let available = with_platform()
        .map(|(p, _)| shown(p))
        .filter(|p| p != "unknown/unknown")
        .collect();
    Err(RegistryError::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available,
    })
}

/// An entry's platform as an error lists it: normalised, but with the variant the index
/// writes, so `arm64/v8` reads as the index has it.
fn shown(platform: &Platform) -> String {
    Platform {
        variant: platform
            .variant
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase),
        ..platform.normalized()
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","size":1,"platform":{"architecture":"amd64","os":"linux"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v6"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5","size":1,"platform":{"architecture":"s390x","os":"linux"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6","size":1,"platform":{"architecture":"amd64","os":"windows","os.version":"10.0"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:not-a-digest","size":1,"platform":{"architecture":"unknown","os":"unknown"}}
      ]}"#;

    /// The digest of entry `n` of [`INDEX`].
    fn entry_digest(n: u8) -> Digest {
        format!("sha256:{}", format!("a{n}").repeat(32))
            .parse()
            .unwrap()
    }

    #[test]
    fn selection_table() {
        let cases = [
            ("linux/amd64", Some(1)),
            ("linux/x86_64", Some(1)),
            ("linux/arm64", Some(4)),
            ("linux/arm64/v8", Some(4)),
            ("linux/aarch64", Some(4)),
            ("linux/arm", Some(3)),
            ("linux/armhf", Some(3)),
            ("linux/arm/v6", Some(2)),
            ("linux/armel", Some(2)),
            ("linux/arm/v5", None),
            ("linux/s390x", Some(5)),
            ("windows/amd64", Some(6)),
            ("linux/ppc64le", None),
            ("darwin/arm64", None),
        ];
        for (p, want) in cases {
            let got = select_platform(INDEX.as_bytes(), &Platform::parse_full(p).unwrap());
            match want {
                Some(n) => assert_eq!(got.unwrap().digest, entry_digest(n), "{p}"),
                None => assert!(
                    matches!(got, Err(RegistryError::NoMatchingPlatform { .. })),
                    "{p}"
                ),
            }
        }
    }

    #[test]
    fn error_lists_platforms() {
        let err = select_platform(
            INDEX.as_bytes(),
            &Platform::parse_full("linux/ppc64le").unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "no manifest for platform linux/ppc64le in the index; available: linux/amd64, \
             linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/s390x, windows/amd64"
        );
    }

    #[test]
    fn docker_manifest_list_and_variantless_amd64() {
        let list = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
          "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
          "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":7,
          "platform":{"architecture":"amd64","os":"linux","variant":"v3"}}]}"#;
        let e = select_platform(
            list.as_bytes(),
            &Platform::parse_full("linux/amd64").unwrap(),
        )
        .unwrap();
        assert_eq!((e.digest, e.size), (Digest::of(b""), 7));
        assert!(
            select_platform(
                list.as_bytes(),
                &Platform::parse_full("linux/amd64/v2").unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn rejects_non_index_and_bad_digests() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert!(matches!(
            select_platform(m.as_bytes(), &Platform::host()),
            Err(RegistryError::NotAnIndex(_))
        ));
        assert!(select_platform(b"not json", &Platform::host()).is_err());
        let unknown = Platform::parse_full("unknown/unknown").unwrap();
        assert!(matches!(
            select_platform(INDEX.as_bytes(), &unknown),
            Err(RegistryError::InvalidDigest(_))
        ));
    }
}
