//! Platforms (`os/architecture[/variant]`): containerd's normalisation
//! (`platforms.Normalize`), parsing, and how a wanted platform picks an index entry.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::PlatformError;

/// An OCI platform, serialised as the `platform` object of an image index.
///
/// Values from [`Platform::new`], [`Platform::parse`] and [`Platform::host`] are normalised;
/// values read from JSON are as written (see [`Platform::normalized`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// Index entries in the wild omit fields; a missing one reads as empty.
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Go's `GOOS` values (containerd's `isKnownOS`): a lone word naming one is an OS.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

impl Platform {
    /// A normalised platform: `x86_64` → `amd64`, `aarch64/v8` → `arm64`, `armhf` →
    /// `arm/v7`, `macos` → `darwin`, …
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, variant) = normalize_arch(architecture, variant);
        Platform {
            os: normalize_os(os),
            architecture,
            variant,
        }
    }

    /// This platform with containerd's normalisation applied.
    pub fn normalized(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    /// The platform of this machine.
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// Parses `linux/amd64`, `linux/arm/v7`, and containerd's shorthands: a lone OS
    /// (`linux`: this machine's architecture) or a lone architecture (`arm64`: this
    /// machine's OS).
    pub fn parse(text: &str) -> Result<Platform, PlatformError> {
        let lower = text.trim().to_ascii_lowercase();
        let mut parts = lower.split('/');
        let first = parts.next().unwrap_or_default();
        let (second, third) = (parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(PlatformError::TooManyComponents(text.to_string()));
        }
        if [Some(first), second, third]
            .into_iter()
            .flatten()
            .any(str::is_empty)
        {
            return Err(PlatformError::EmptyComponent(text.to_string()));
        }
        let Some(architecture) = second else {
            let host = Platform::host();
            let os = normalize_os(first);
            return Ok(if KNOWN_OS.contains(&os.as_str()) {
                Platform { os, ..host }
            } else {
                Platform::new(&host.os, first, None)
            });
        };
        Ok(Platform::new(first, architecture, third))
    }

    /// As [`Platform::parse`], but both the OS and the architecture must be written.
    pub fn parse_full(text: &str) -> Result<Platform, PlatformError> {
        if !text.trim().is_empty() && !text.contains('/') {
            return Err(PlatformError::MissingArchitecture(text.to_string()));
        }
        Platform::parse(text)
    }

    /// Whether binaries for `self` run on `other`: same OS and architecture (the variant
    /// does not matter).
    pub fn runs_on(&self, other: &Platform) -> bool {
        self.os == other.os && self.architecture == other.architecture
    }

    /// The candidate an index should give for `self`. An exact match wins, default
    /// variants filled in (`arm64` is `arm64/v8`, `arm` is `arm/v7`); failing that, when
    /// `self` names no variant and its architecture implies none, the first candidate of
    /// any variant of the same OS and architecture (an index with only `amd64/v3` serves
    /// `amd64`).
    pub fn select<'a, T>(
        &self,
        candidates: impl IntoIterator<Item = (&'a Platform, T)>,
    ) -> Option<T> {
        let wanted = self.normalized();
        let wanted_variant = wanted.variant_or_default();
        let mut loose = None;
        for (platform, candidate) in candidates {
            let have = platform.normalized();
            if have.os != wanted.os || have.architecture != wanted.architecture {
                continue;
            }
            if have.variant_or_default() == wanted_variant {
                return Some(candidate);
            }
            if wanted_variant.is_none() && loose.is_none() {
                loose = Some(candidate);
            }
        }
        loose
    }

    /// The variant, or the one the architecture implies when none is written.
    fn variant_or_default(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or(match self.architecture.as_str() {
                "arm64" => Some("v8"),
                "arm" => Some("v7"),
                _ => None,
            })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// containerd's `normalizeOS`.
fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_string(),
        other => other.to_string(),
    }
}

/// containerd's `normalizeArch`, plus the names Rust and uname give the same
/// architectures (`x86`, `i486`…`i686`, `powerpc64le`). An empty variant is none.
fn normalize_arch(architecture: &str, variant: Option<&str>) -> (String, Option<String>) {
    let architecture = architecture.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    let (architecture, variant) = match architecture.as_str() {
        "i386" | "i486" | "i586" | "i686" | "x86" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => ("amd64", variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => match variant.as_deref() {
            Some("8" | "v8" | "v8.0") => ("arm64", None),
            Some("9" | "9.0" | "v9.0") => ("arm64", Some("v9".to_string())),
            _ => ("arm64", variant),
        },
        "armhf" => ("arm", Some("v7".to_string())),
        "armel" => ("arm", Some("v6".to_string())),
        "arm" => match variant.as_deref() {
            None | Some("7") => ("arm", Some("v7".to_string())),
            Some(bare @ ("5" | "6" | "8")) => ("arm", Some(format!("v{bare}"))),
            _ => ("arm", variant),
        },
        "powerpc64le" => ("ppc64le", variant),
        _ => return (architecture, variant),
    };
    (architecture.to_string(), variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_containerd() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("x86_64", None, "amd64"),
            ("X86-64", None, "amd64"),
            ("amd64", Some("v1"), "amd64"),
            ("amd64", Some("v3"), "amd64/v3"),
            ("aarch64", None, "arm64"),
            ("arm64", Some("v8"), "arm64"),
            ("arm64", Some("8"), "arm64"),
            ("arm64", Some("v8.0"), "arm64"),
            ("arm64", Some("9.0"), "arm64/v9"),
            ("arm64", Some("v8.2"), "arm64/v8.2"),
            // The registry's old normaliser gave plain `arm` for both.
            ("armhf", None, "arm/v7"),
            ("armel", None, "arm/v6"),
            ("armhf", Some("v6"), "arm/v7"),
            ("arm", None, "arm/v7"),
            ("arm", Some(""), "arm/v7"),
            ("arm", Some("7"), "arm/v7"),
            ("arm", Some("5"), "arm/v5"),
            ("arm", Some("V6"), "arm/v6"),
            ("i386", None, "386"),
            // The registry's old normaliser left `i486` alone.
            ("i486", None, "386"),
            ("i586", None, "386"),
            ("i686", Some("v1"), "386"),
            ("x86", None, "386"),
            ("386", Some("sse2"), "386/sse2"),
            ("powerpc64le", None, "ppc64le"),
            ("s390x", None, "s390x"),
            ("riscv64", Some(""), "riscv64"),
        ];
        for (architecture, variant, want) in cases {
            let got = Platform::new("linux", architecture, *variant);
            assert_eq!(
                got.to_string(),
                format!("linux/{want}"),
                "{architecture} {variant:?}"
            );
        }
        assert_eq!(Platform::new("MacOS", "arm64", None).os, "darwin");
        assert_eq!(Platform::new("Windows", "amd64", None).os, "windows");
    }

    #[test]
    fn parses() {
        let host = Platform::host();
        let cases = [
            ("linux/arm", "linux/arm/v7".to_string()),
            ("linux/arm64/v8", "linux/arm64".to_string()),
            ("Linux/ARMHF", "linux/arm/v7".to_string()),
            ("linux/armel", "linux/arm/v6".to_string()),
            (" linux/amd64 ", "linux/amd64".to_string()),
            ("macos/arm64", "darwin/arm64".to_string()),
            ("amd64", "linux/amd64".to_string()),
            ("windows", format!("windows/{}", host.architecture)),
        ];
        for (text, want) in cases {
            assert_eq!(Platform::parse(text).unwrap().to_string(), want, "{text}");
        }
        assert_eq!(
            Platform::parse("linux//x"),
            Err(PlatformError::EmptyComponent("linux//x".into()))
        );
        assert_eq!(
            Platform::parse("a/b/c/d"),
            Err(PlatformError::TooManyComponents("a/b/c/d".into()))
        );
        for bad in ["linux/", "/amd64", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_full_needs_os_and_architecture() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse_full(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Platform::parse_full("linux"),
            Err(PlatformError::MissingArchitecture("linux".into()))
        );
        assert_eq!(
            Platform::parse_full("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
    }

    #[test]
    fn host_platform() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.to_string(), "linux/arm64");
        assert!(h.runs_on(&Platform::new("linux", std::env::consts::ARCH, Some("v9"))));
        assert!(!h.runs_on(&Platform::new("windows", std::env::consts::ARCH, None)));
    }

    #[test]
    fn selects_exact_then_any_variant() {
        let entry = |text: &str| {
            let mut parts = text.split('/');
            Platform {
                os: parts.next().unwrap_or_default().to_string(),
                architecture: parts.next().unwrap_or_default().to_string(),
                variant: parts.next().map(str::to_string),
            }
        };
        let index = [
            entry("linux/amd64/v3"),
            entry("linux/amd64"),
            entry("linux/arm/v6"),
            entry("linux/arm"),
            entry("linux/aarch64/v8"),
            entry("linux/x86_64/v2"),
        ];
        let select = |wanted: &str| {
            Platform::parse(wanted)
                .unwrap()
                .select(index.iter().zip(0..))
        };
        assert_eq!(select("linux/amd64"), Some(1));
        assert_eq!(select("linux/amd64/v2"), Some(5));
        assert_eq!(select("linux/amd64/v4"), None);
        assert_eq!(select("linux/arm"), Some(3));
        assert_eq!(select("linux/armel"), Some(2));
        assert_eq!(select("linux/arm/v5"), None);
        assert_eq!(select("linux/arm64"), Some(4));
        assert_eq!(select("windows/amd64"), None);
        let only_v3 = [entry("linux/amd64/v3")];
        assert_eq!(
            Platform::parse("linux/amd64")
                .unwrap()
                .select(only_v3.iter().zip(0..)),
            Some(0)
        );
        // An architecture with a default variant takes no other variant loosely.
        let only_v9 = [entry("linux/arm64/v9")];
        assert_eq!(
            Platform::parse("linux/arm64")
                .unwrap()
                .select(only_v9.iter().zip(0..)),
            None
        );
    }

    #[test]
    fn serializes_as_the_oci_platform_object() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"os":"linux","architecture":"arm","variant":"v7"}"#
        );
        let amd: Platform =
            serde_json::from_str(r#"{"architecture":"amd64","os":"windows","os.version":"10.0"}"#)
                .unwrap();
        assert_eq!(amd.to_string(), "windows/amd64");
        assert_eq!(
            serde_json::to_string(&amd).unwrap(),
            r#"{"os":"windows","architecture":"amd64"}"#
        );
    }
}
