//! `--cache-to` and `--cache-from` as `docker buildx build` spells them:
//! `type=registry,ref=REF,mode=max`, `type=local,dest=DIR`, `type=inline`, or a bare
//! reference (`--cache-from REF` = `type=registry,ref=REF`).

use std::path::PathBuf;

use crate::oci::Reference;

use super::super::BuildError;

/// How much of the build an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the exported image.
    #[default]
    Min,
    /// Every step of every stage that ran or was cached.
    Max,
}

/// The layer compression of an exported cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheCompression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

/// Where a cache is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTarget {
    /// A manifest pushed to `ref` (its blobs into that repository).
    Registry(Reference),
    /// An OCI layout directory.
    Local(PathBuf),
    /// The records in the image's own config: `--cache-from IMAGE` reads them.
    Inline,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub target: CacheTarget,
    pub mode: CacheMode,
    pub compression: CacheCompression,
    pub compression_level: Option<i32>,
    /// A failed export is a warning, not a failed build.
    pub ignore_error: bool,
    /// The tag inside a local layout (`tag=`, default `latest`).
    pub tag: String,
}

/// Where a cache is read from (one `--cache-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImport {
    /// A cache manifest, or an image with an inline cache.
    Registry(Reference),
    /// An OCI layout directory and the tag in it.
    Local { dir: PathBuf, tag: String },
}

/// `k=v` pairs of one spec, in order.
fn pairs(flag: &str, spec: &str) -> Result<Vec<(String, String)>, BuildError> {
    spec.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| usage(flag, spec, format!("{part:?} is not key=value")))?;
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

fn usage(flag: &str, spec: &str, reason: String) -> BuildError {
    BuildError::Usage {
        message: format!("{flag} {spec}: {reason}"),
    }
}

fn reference(flag: &str, spec: &str, value: &str) -> Result<Reference, BuildError> {
    value
        .parse::<Reference>()
        .map_err(|e| usage(flag, spec, format!("ref={value}: {e}")))
}

fn bool_value(flag: &str, spec: &str, key: &str, value: &str) -> Result<bool, BuildError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(usage(
            flag,
            spec,
            format!("{key}={value}: not true or false"),
        )),
    }
}

impl CacheExport {
    pub fn parse(spec: &str) -> Result<CacheExport, BuildError> {
        const FLAG: &str = "--cache-to";
        let pairs = pairs(FLAG, spec)?;
        let kind = pairs
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| usage(FLAG, spec, "no type= (registry, local or inline)".into()))?;
        let (mut reference, mut dest) = (None, None);
        let mut export = CacheExport {
            target: CacheTarget::Inline,
            mode: CacheMode::Min,
            compression: CacheCompression::Gzip,
            compression_level: None,
            ignore_error: false,
            tag: "latest".to_string(),
        };
        for (key, value) in &pairs {
            match key.as_str() {
                "type" => {}
                "ref" => reference = Some(reference_of(FLAG, spec, value)?),
                "dest" => dest = Some(PathBuf::from(value)),
                "mode" => {
                    export.mode = match value.as_str() {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => {
                            return Err(usage(FLAG, spec, format!("mode={value}: not min or max")));
                        }
                    }
                }
                "compression" => {
                    export.compression = match value.as_str() {
                        "gzip" => CacheCompression::Gzip,
                        "zstd" => CacheCompression::Zstd,
                        "uncompressed" => CacheCompression::Uncompressed,
                        _ => {
                            return Err(usage(
                                FLAG,
                                spec,
                                format!("compression={value}: not gzip, zstd or uncompressed"),
                            ));
                        }
                    }
                }
                "compression-level" => {
                    let level = value.parse::<i32>().map_err(|_| {
                        usage(
                            FLAG,
                            spec,
                            format!("compression-level={value}: not a number"),
                        )
                    })?;
                    export.compression_level = Some(level);
                }
                "ignore-error" => export.ignore_error = bool_value(FLAG, spec, key, value)?,
                "tag" => export.tag = value.clone(),
                // Accepted as buildx does; they change nothing here.
                "oci-mediatypes" | "image-manifest" | "force-compression" => {}
                _ => return Err(usage(FLAG, spec, format!("unknown key {key:?}"))),
            }
        }
        export.target = match kind {
            "registry" => CacheTarget::Registry(
                reference.ok_or_else(|| usage(FLAG, spec, "type=registry needs ref=".into()))?,
            ),
            "local" => CacheTarget::Local(
                dest.ok_or_else(|| usage(FLAG, spec, "type=local needs dest=".into()))?,
            ),
            "inline" => CacheTarget::Inline,
            other => {
                return Err(usage(
                    FLAG,
                    spec,
                    format!("type={other}: kiln exports caches of type registry, local or inline"),
                ));
            }
        };
        if export.target == CacheTarget::Inline && export.mode == CacheMode::Max {
            return Err(usage(
                FLAG,
                spec,
                "an inline cache holds the image's own steps only (mode=min)".into(),
            ));
        }
        Ok(export)
    }
}

fn reference_of(flag: &str, spec: &str, value: &str) -> Result<Reference, BuildError> {
    reference(flag, spec, value)
}

impl CacheImport {
    pub fn parse(spec: &str) -> Result<CacheImport, BuildError> {
        const FLAG: &str = "--cache-from";
        if !spec.contains('=') {
            return Ok(CacheImport::Registry(reference(FLAG, spec, spec.trim())?));
        }
        let pairs = pairs(FLAG, spec)?;
        let kind = pairs
            .iter()
            .find(|(k, _)| k == "type")
            .map_or("registry", |(_, v)| v.as_str());
        let (mut reference_value, mut src, mut tag) = (None, None, "latest".to_string());
        for (key, value) in &pairs {
            match key.as_str() {
                "type" => {}
                "ref" => reference_value = Some(reference(FLAG, spec, value)?),
                "src" => src = Some(PathBuf::from(value)),
                "tag" => tag = value.clone(),
                "digest" => {}
                _ => return Err(usage(FLAG, spec, format!("unknown key {key:?}"))),
            }
        }
        match kind {
            "registry" => {
                Ok(CacheImport::Registry(reference_value.ok_or_else(|| {
                    usage(FLAG, spec, "type=registry needs ref=".into())
                })?))
            }
            "local" => Ok(CacheImport::Local {
                dir: src.ok_or_else(|| usage(FLAG, spec, "type=local needs src=".into()))?,
                tag,
            }),
            other => Err(usage(
                FLAG,
                spec,
                format!("type={other}: kiln imports caches of type registry or local"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports() {
        let export =
            CacheExport::parse("type=registry,ref=127.0.0.1:5000/app:cache,mode=max").unwrap();
        assert_eq!(export.mode, CacheMode::Max);
        assert!(
            matches!(export.target, CacheTarget::Registry(ref r) if r.to_string() == "127.0.0.1:5000/app:cache")
        );
        let export =
            CacheExport::parse("type=local,dest=/tmp/c,compression=zstd,ignore-error=true")
                .unwrap();
        assert_eq!(export.target, CacheTarget::Local("/tmp/c".into()));
        assert_eq!(export.compression, CacheCompression::Zstd);
        assert!(export.ignore_error);
        assert_eq!(
            CacheExport::parse("type=inline").unwrap().target,
            CacheTarget::Inline
        );
        for bad in [
            "ref=x",
            "type=gha",
            "type=registry",
            "type=local",
            "type=inline,mode=max",
            "type=local,dest=d,mode=all",
            "type=local,dest=d,color=red",
            "type=local,dest=d,ignore-error=maybe",
            "type=local,dest=d,compression=lz4",
            "type=registry,ref=UPPER/case",
        ] {
            let error = CacheExport::parse(bad).unwrap_err();
            assert!(error.is_usage(), "{bad}: {error}");
            assert!(error.to_string().starts_with("--cache-to "), "{error}");
        }
    }

    #[test]
    fn imports() {
        assert!(matches!(
            CacheImport::parse("127.0.0.1:5000/app:cache").unwrap(),
            CacheImport::Registry(_)
        ));
        assert!(matches!(
            CacheImport::parse("type=registry,ref=app").unwrap(),
            CacheImport::Registry(_)
        ));
        assert_eq!(
            CacheImport::parse("type=local,src=/c,tag=v1").unwrap(),
            CacheImport::Local {
                dir: "/c".into(),
                tag: "v1".into()
            }
        );
        for bad in [
            "type=local",
            "type=s3,ref=x",
            "type=registry",
            "type=local,src=/c,x=1",
        ] {
            assert!(CacheImport::parse(bad).unwrap_err().is_usage(), "{bad}");
        }
    }
}
