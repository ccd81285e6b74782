//! An image's merged filesystem, written out: into a directory (`type=local`) or as one
//! tarball (`type=tar`).
//!
//! The layers are applied in order with `snapshot::apply_tar`, the same safe extraction
//! snapshots use (nothing is written through a symlink, nothing leaves the destination),
//! whiteouts removing what they hide. Owners are kept when running as root. The tar is
//! made from such a directory (a scratch one among the snapshots), so both hold the same
//! files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ImageError, Result, compress, io_err};
use crate::oci::Digest;
use crate::store::{Store, StoreError};

/// Writes the merged filesystem of the stored image `manifest` into `dest` (created if
/// missing; what it holds already is overwritten where the image has the same path).
pub fn write_rootfs(store: &Store, manifest: &Digest, dest: &Path) -> Result<()> {
    // An image of several platforms: each in a directory of its own, as BuildKit writes.
    if let Some(platforms) = super::list::stored_index(store, manifest)? {
        for (platform, image) in platforms {
            let mut name = format!("{}_{}", platform.os, platform.architecture);
            if let Some(variant) = &platform.variant {
                name.push_str(&format!("_{variant}"));
            }
            write_rootfs(store, &image, &dest.join(name))?;
        }
        return Ok(());
    }
    let image = store.image(manifest)?;
    fs::create_dir_all(dest).map_err(io_err("create directory", dest))?;
    for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
        let blob = Digest::from_oci(layer.digest()).map_err(StoreError::from)?;
        let stats = crate::snapshot::apply_tar(compress::decompressed(store, &blob)?, dest)?;
        if stats.diff_id != *diff_id {
            return Err(ImageError::Invalid {
                what: format!("layer {blob}"),
                reason: format!(
                    "its content is {}, the config says {diff_id}",
                    stats.diff_id
                ),
            });
        }
    }
    Ok(())
}

/// Writes the merged filesystem of the stored image `manifest` as one tar stream to `out`,
/// entries in name order with the files' owners, modes and times.
pub fn write_rootfs_tar(
    store: &Store,
    manifest: &Digest,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    // A `tmp-` directory among the snapshots: `image prune` removes it if a crash leaves
    // it behind, and the lease keeps prune away while it is in use.
    let _lease = store.lease()?;
    let scratch = Scratch(
        store
            .snapshots_dir()
            .join(format!("tmp-rootfs-{}", crate::store::random_name())),
    );
    write_rootfs(store, manifest, &scratch.0)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    append_sorted(&mut tar, &scratch.0, Path::new(""))?;
    tar.into_inner()
        .and_then(|out| out.flush())
        .map_err(io_err("write", "-"))
}

/// Appends everything below `dir` (named `prefix/…` in the tar), sorted by name.
fn append_sorted<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err("read directory", dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io_err("read directory", dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let inner = prefix.join(&name);
        tar.append_path_with_name(&path, &inner)
            .map_err(io_err("add to tar", &path))?;
        let md = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        if md.is_dir() {
            append_sorted(tar, &path, &inner)?;
        }
    }
    Ok(())
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
