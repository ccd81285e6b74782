//! Layers as they leave the store: compressed and typed as a push or an archive wants,
//! and the manifest naming them.
//!
//! `kiln build` stores the layers it makes as uncompressed tars (compression is work only a
//! transfer needs; Docker's own store keeps layers uncompressed too). When an image leaves
//! the store, each layer that is not in the wanted compression gets a twin in it: made once
//! per (layer, compression, level) and remembered in
//! `<root>/image-v1/compressed/<compression>-<level>/<hex of the diff_id>` (the twin's
//! digest and size), so a second push or export compresses nothing. Layers that came
//! compressed (pulled ones) are sent as they are unless `force` asks otherwise, as BuildKit
//! does. The config, and so the image id, stays the same: the diff_ids are the digests of
//! the uncompressed tars whatever the compression.
//!
//! The twins are ordinary blobs that no tagged manifest references; `image prune` may
//! remove them, and the next push then compresses again.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use serde_json::Value;

use super::{ImageError, Result, io_err};
use crate::oci::{Compression, Digest, media_type};
use crate::store::{Image, Store, StoreError};

const DIR: &str = "image-v1/compressed";
/// gzip's usual level (BuildKit's and `gzip`'s default).
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// zstd's usual level (BuildKit's default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How an image's layers are compressed and typed when it leaves the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// What layers kiln built (stored uncompressed) are compressed with.
    pub compression: Compression,
    /// `None`: the compression's default ([`DEFAULT_GZIP_LEVEL`], [`DEFAULT_ZSTD_LEVEL`]).
    pub level: Option<i32>,
    /// Recompress layers stored in another compression too (pulled ones).
    pub force: bool,
    /// `Some(true)`: OCI media types; `Some(false)`: Docker schema2's (but zstd layers
    /// always make an OCI manifest, as BuildKit does); `None`: the stored manifest's.
    pub oci_media_types: Option<bool>,
}

impl Default for LayerOptions {
    /// What `kiln push` does: gzip, the manifest in its stored flavour.
    fn default() -> LayerOptions {
        LayerOptions {
            compression: Compression::Gzip,
            level: None,
            force: false,
            oci_media_types: None,
        }
    }
}

impl LayerOptions {
    /// The compression level used.
    pub fn level(&self) -> i32 {
        match (self.level, self.compression) {
            (Some(level), _) => level,
            (None, Compression::Zstd) => DEFAULT_ZSTD_LEVEL,
            (None, _) => DEFAULT_GZIP_LEVEL,
        }
    }

    /// The compression a layer stored as `stored_type` leaves in, when it must change.
    fn conversion(&self, stored_type: &str) -> Option<Compression> {
        if stored_type.contains("nondistributable") || stored_type.contains("foreign") {
            return None;
        }
        match media_type::layer_compression(stored_type)? {
            stored if stored == self.compression => None,
            Compression::None => Some(self.compression),
            _ if self.force => Some(self.compression),
            _ => None,
        }
    }
}

/// A blob as it leaves the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushLayer {
    pub digest: Digest,
    pub size: u64,
}

/// An image as it leaves the store: its layers (stored blobs or their twins) and the
/// manifest naming them.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub layers: Vec<PushLayer>,
    pub config: PushLayer,
    pub manifest_bytes: Vec<u8>,
    pub manifest_type: String,
}

/// Whether sending the layer stored as `stored_type` needs its bytes here (to make a twin);
/// a layer sent as stored can be mounted from where it lives instead.
pub(crate) fn needs_bytes(stored_type: &str, options: &LayerOptions) -> bool {
    options.conversion(stored_type).is_some()
}

/// What leaves the store for `image` (whose manifest is `stored_manifest`, of type
/// `stored_type`) under `options`. The stored bytes are kept when nothing changes, so a
/// pulled image keeps its digest.
pub(crate) fn outgoing(
    store: &Store,
    image: &Image,
    stored_manifest: &[u8],
    stored_type: &str,
    options: &LayerOptions,
) -> Result<Outgoing> {
    let what = || format!("manifest {}", image.manifest_digest);
    let mut manifest: Value =
        serde_json::from_slice(stored_manifest).map_err(|source| ImageError::Json {
            what: what(),
            source,
        })?;
    let raw_types: Vec<String> = manifest
        .get("layers")
        .and_then(Value::as_array)
        .map(|layers| {
            layers
                .iter()
                .map(|l| l["mediaType"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    if raw_types.len() != image.layers.len() {
        return Err(ImageError::Invalid {
            what: what(),
            reason: "its layers do not match the stored image".into(),
        });
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    let mut compressions = Vec::with_capacity(image.layers.len());
    let mut changed = false;
    for ((layer, diff_id), raw_type) in image.layers.iter().zip(&image.diff_ids).zip(&raw_types) {
        let digest = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        match options.conversion(raw_type) {
            Some(compression) => {
                changed = true;
                layers.push(twin(store, &digest, diff_id, compression, options.level())?);
                compressions.push(Some(compression));
            }
            None => {
                layers.push(PushLayer {
                    digest,
                    size: layer.size(),
                });
                compressions.push(media_type::layer_compression(raw_type));
            }
        }
    }
    let stored_oci = stored_type != media_type::DOCKER_MANIFEST;
    let oci = options.oci_media_types.unwrap_or(stored_oci)
        || compressions.contains(&Some(Compression::Zstd));
    let config = PushLayer {
        digest: image.config_digest.clone(),
        size: image.config_size,
    };
    if !changed && oci == stored_oci {
        return Ok(Outgoing {
            layers,
            config,
            manifest_bytes: stored_manifest.to_vec(),
            manifest_type: stored_type.to_string(),
        });
    }
    let (manifest_type, config_type) = if oci {
        (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
    } else {
        (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
    };
    manifest["mediaType"] = manifest_type.into();
    manifest["config"]["mediaType"] = config_type.into();
    if let Some(descriptors) = manifest.get_mut("layers").and_then(Value::as_array_mut) {
        for ((descriptor, layer), compression) in
            descriptors.iter_mut().zip(&layers).zip(compressions)
        {
            if let Some(compression) = compression {
                descriptor["mediaType"] = media_type::layer_type(compression, oci).into();
            }
            descriptor["digest"] = layer.digest.to_string().into();
            descriptor["size"] = layer.size.into();
        }
    }
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
        what: what(),
        source,
    })?;
    Ok(Outgoing {
        layers,
        config,
        manifest_bytes,
        manifest_type: manifest_type.to_string(),
    })
}

/// The copy of the layer blob `blob` (whose tar is `diff_id`) in `compression` at `level`
/// (`None`: the compression's default), made once and remembered: its digest and size.
pub fn layer_twin(
    store: &Store,
    blob: &Digest,
    diff_id: &Digest,
    compression: Compression,
    level: Option<i32>,
) -> Result<(Digest, u64)> {
    let options = LayerOptions {
        compression,
        level,
        ..LayerOptions::default()
    };
    twin(store, blob, diff_id, compression, options.level()).map(|t| (t.digest, t.size))
}

fn record_path(store: &Store, compression: Compression, level: i32, diff_id: &Digest) -> PathBuf {
    store
        .root()
        .join(DIR)
        .join(format!("{compression}-{level}"))
        .join(diff_id.hex())
}

/// The twin of the layer blob `source` (whose tar is `diff_id`) in `compression` at
/// `level`: the remembered one while its blob is still stored, else a new one.
fn twin(
    store: &Store,
    source: &Digest,
    diff_id: &Digest,
    compression: Compression,
    level: i32,
) -> Result<PushLayer> {
    let compress_err = || io_err("compress", store.blob_path(source));
    if compression == Compression::None {
        // The uncompressed twin is the tar itself: its digest is the diff_id.
        if let Ok(size) = store.blob_size(diff_id) {
            return Ok(PushLayer {
                digest: diff_id.clone(),
                size,
            });
        }
        let mut ingest = store.ingest()?;
        io::copy(&mut decompressed(store, source)?, &mut ingest).map_err(compress_err())?;
        let (digest, size) = ingest.commit(Some(diff_id), None)?;
        return Ok(PushLayer { digest, size });
    }
    let record = record_path(store, compression, level, diff_id);
    if let Ok(text) = fs::read_to_string(&record)
        && let Some((digest, size)) = text.trim().split_once(' ')
        && let (Ok(digest), Ok(size)) = (digest.parse::<Digest>(), size.parse::<u64>())
        && store.blob_size(&digest).ok() == Some(size)
    {
        return Ok(PushLayer { digest, size });
    }
    let mut tar = decompressed(store, source)?;
    let ingest = store.ingest()?;
    let ingest = if compression == Compression::Gzip {
        let level = flate2::Compression::new(level.clamp(0, 9) as u32);
        let mut gzip = flate2::write::GzEncoder::new(ingest, level);
        io::copy(&mut tar, &mut gzip).map_err(compress_err())?;
        gzip.finish().map_err(compress_err())?
    } else {
        let mut zstd = zstd::stream::write::Encoder::new(ingest, level).map_err(compress_err())?;
        // Every core: a big layer is the longest wait of a push. zstd's output is the same
        // for any number of workers (from one), so machines agree on the twin's digest.
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        zstd.multithread(workers as u32).map_err(compress_err())?;
        io::copy(&mut tar, &mut zstd).map_err(compress_err())?;
        let mut ingest = zstd.finish().map_err(compress_err())?;
        ingest.flush().map_err(compress_err())?;
        ingest
    };
    let (digest, size) = ingest.commit(None, None)?;
    let dir = record.parent().unwrap_or(store.root()).to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    // A reader sees the old record, the new one, or none.
    crate::store::write_atomic(&record, format!("{digest} {size}\n").as_bytes())?;
    Ok(PushLayer { digest, size })
}

/// The tar inside the stored layer blob `digest`, whatever its compression.
pub(crate) fn decompressed(store: &Store, digest: &Digest) -> Result<Box<dyn Read + Send>> {
    let mut file = BufReader::with_capacity(1 << 20, store.open_blob(digest)?);
    let head = file
        .fill_buf()
        .map_err(io_err("read", store.blob_path(digest)))?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(io_err("read", store.blob_path(digest)))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(compression: Compression, force: bool) -> LayerOptions {
        LayerOptions {
            compression,
            force,
            ..LayerOptions::default()
        }
    }

    #[test]
    fn built_layers_take_the_wanted_compression_pulled_ones_only_when_forced() {
        let zstd = options(Compression::Zstd, false);
        assert_eq!(
            zstd.conversion(media_type::OCI_LAYER),
            Some(Compression::Zstd)
        );
        assert_eq!(zstd.conversion(media_type::OCI_LAYER_GZIP), None);
        assert_eq!(zstd.conversion(media_type::OCI_LAYER_ZSTD), None);
        let forced = options(Compression::Zstd, true);
        assert_eq!(
            forced.conversion(media_type::DOCKER_LAYER_GZIP),
            Some(Compression::Zstd)
        );
        assert_eq!(
            forced.conversion(media_type::OCI_LAYER_NONDISTRIBUTABLE_GZIP),
            None
        );
        let plain = options(Compression::None, false);
        assert_eq!(plain.conversion(media_type::OCI_LAYER), None);
        assert_eq!(plain.conversion(media_type::OCI_LAYER_GZIP), None);
        assert_eq!(
            options(Compression::None, true).conversion(media_type::OCI_LAYER_GZIP),
            Some(Compression::None)
        );
        assert_eq!(
            options(Compression::Gzip, false).conversion("text/plain"),
            None
        );
    }

    /// Twins made on machines with different numbers of cores must have one digest.
    #[test]
    fn zstd_output_does_not_depend_on_the_number_of_workers() {
        // Enough data for several zstd jobs, compressible like a layer.
        let mut data = Vec::with_capacity(24 << 20);
        let mut state = 1u64;
        while data.len() < 24 << 20 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            data.extend_from_slice(format!("line {} of a layer\n", state >> 52).as_bytes());
        }
        let compress = |workers: u32| {
            let mut zstd =
                zstd::stream::write::Encoder::new(Vec::new(), DEFAULT_ZSTD_LEVEL).unwrap();
            zstd.multithread(workers).unwrap();
            zstd.write_all(&data).unwrap();
            zstd.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(compress(2), one);
        assert_eq!(compress(4), one);
    }

    #[test]
    fn default_levels() {
        assert_eq!(options(Compression::Gzip, false).level(), 6);
        assert_eq!(options(Compression::Zstd, false).level(), 3);
        let custom = LayerOptions {
            level: Some(19),
            ..options(Compression::Zstd, false)
        };
        assert_eq!(custom.level(), 19);
    }
}
