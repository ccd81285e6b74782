//! Picking one manifest out of an OCI index or Docker manifest list.

use std::fmt;

use serde::Deserialize;

use super::error::{RegistryError, Result};
use super::media;

/// `os/arch[/variant]`, normalised the way containerd does it for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(RegistryError::InvalidPlatform(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The platform kiln runs on (`linux/amd64` on x86_64, `linux/arm64` on aarch64).
    pub fn host() -> Platform {
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: normalize_arch(std::env::consts::ARCH).to_string(),
            variant: None,
        }
    }

    /// Default variant filled in, so `linux/arm64` matches `linux/arm64/v8`.
    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            (_, v) => v,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Rust/uname architecture names to the GOARCH names images use.
fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" | "x86" => "386",
        "armhf" | "armel" => "arm",
        "powerpc64le" => "ppc64le",
        other => other,
    }
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<EntryPlatform>,
}

/// The `platform` object of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntryPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

/// Is this media type an index / manifest list?
pub fn is_index_media_type(mt: &str) -> bool {
    mt == media::OCI_INDEX || mt == media::DOCKER_MANIFEST_LIST
}

/// Choose the manifest for `wanted` from an index (OCI index or Docker manifest list JSON).
///
/// An exact variant match wins; with no variant asked for (and none implied, as for arm64/arm),
/// an entry of any variant of that os/arch is accepted.
pub fn select_platform(index_json: &[u8], wanted: &Platform) -> Result<IndexEntry> {
    let doc: IndexDoc =
        serde_json::from_slice(index_json).map_err(|e| RegistryError::NotAnIndex(e.to_string()))?;
    if let Some(mt) = &doc.media_type
        && !is_index_media_type(mt)
    {
        return Err(RegistryError::NotAnIndex(format!("media type {mt}")));
    }
    let entries = doc
        .manifests
        .ok_or_else(|| RegistryError::NotAnIndex("no \"manifests\" array".into()))?;

    let as_platform = |p: &EntryPlatform| Platform {
        os: p.os.to_ascii_lowercase(),
        architecture: normalize_arch(&p.architecture.to_ascii_lowercase()).to_string(),
        variant: p
            .variant
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase),
    };
    let want_variant = wanted.normalized_variant();
    let mut loose: Option<&IndexEntry> = None;
    for e in &entries {
        let Some(p) = e.platform.as_ref().map(as_platform) else {
            continue;
        };
        if p.os != wanted.os || p.architecture != wanted.architecture {
            continue;
        }
        let have = p.normalized_variant();
        if have == want_variant {
            return Ok(e.clone());
        }
        if want_variant.is_none() && loose.is_none() {
            loose = Some(e);
        }
    }
    if let Some(e) = loose {
        return Ok(e.clone());
    }
    let available = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .map(|p| as_platform(p).to_string())
        .filter(|p| p != "unknown/unknown")
        .collect();
    Err(RegistryError::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a1","size":1,"platform":{"architecture":"amd64","os":"linux"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a2","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v6"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a3","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a4","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a5","size":1,"platform":{"architecture":"s390x","os":"linux"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a6","size":1,"platform":{"architecture":"amd64","os":"windows","os.version":"10.0"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:att","size":1,"platform":{"architecture":"unknown","os":"unknown"}}
      ]}"#;

    #[test]
    fn selection_table() {
        let cases = [
            ("linux/amd64", Some("sha256:a1")),
            ("linux/x86_64", Some("sha256:a1")),
            ("linux/arm64", Some("sha256:a4")),
            ("linux/arm64/v8", Some("sha256:a4")),
            ("linux/aarch64", Some("sha256:a4")),
            ("linux/arm", Some("sha256:a3")),
            ("linux/arm/v6", Some("sha256:a2")),
            ("linux/arm/v5", None),
            ("linux/s390x", Some("sha256:a5")),
            ("windows/amd64", Some("sha256:a6")),
            ("linux/ppc64le", None),
            ("darwin/arm64", None),
        ];
        for (p, want) in cases {
            let got = select_platform(INDEX.as_bytes(), &Platform::parse(p).unwrap());
            match want {
                Some(d) => assert_eq!(got.unwrap().digest, d, "{p}"),
                None => assert!(
                    matches!(got, Err(RegistryError::NoMatchingPlatform { .. })),
                    "{p}"
                ),
            }
        }
    }

    #[test]
    fn error_lists_platforms() {
        let err = select_platform(INDEX.as_bytes(), &Platform::parse("linux/ppc64le").unwrap())
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
          "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:v3","size":7,
          "platform":{"architecture":"amd64","os":"linux","variant":"v3"}}]}"#;
        let e = select_platform(list.as_bytes(), &Platform::parse("linux/amd64").unwrap()).unwrap();
        assert_eq!((e.digest.as_str(), e.size), ("sha256:v3", 7));
        assert!(
            select_platform(list.as_bytes(), &Platform::parse("linux/amd64/v2").unwrap()).is_err()
        );
    }

    #[test]
    fn rejects_non_index_and_bad_platforms() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert!(matches!(
            select_platform(m.as_bytes(), &Platform::host()),
            Err(RegistryError::NotAnIndex(_))
        ));
        assert!(select_platform(b"not json", &Platform::host()).is_err());
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_platform() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.to_string(), "linux/arm64");
    }
}
