//! Overlay snapshot chains: a fresh writable upper over a chain of read-only
//! lower snapshots, then `commit` (the upper becomes a snapshot) or `remove`.
//! Mounting happens in the sandbox child's mount namespace (so a killed kiln
//! leaves no mount on the host); `mount`/`mount_readonly` are for that child
//! and for tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use super::error::OverlayError;
use crate::sys;

/// The kernel's limit on lower layers of one overlay.
pub const MAX_LOWERS: usize = sys::mount::MAX_OVERLAY_LOWERS;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OverlayError + 'a {
    move |source| OverlayError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A prepared writable snapshot: mount `lowers` + `upper` + `work` on `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Lower directories, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// An empty directory to mount the overlay on.
    pub target: PathBuf,
}

/// Creates `dir/{upper,work,merged}` (fresh, empty) for an overlay over
/// `parents` (lower dirs, top first). `dir` must not exist yet.
pub fn prepare(parents: &[PathBuf], dir: &Path) -> Result<Prepared, OverlayError> {
    if parents.len() > MAX_LOWERS {
        return Err(OverlayError::TooManyLowers(parents.len()));
    }
    if let Some(missing) = parents.iter().find(|p| !p.is_dir()) {
        return Err(OverlayError::LowerMissing(missing.clone()));
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(OverlayError::AlreadyExists(dir.to_path_buf()));
        }
        Err(e) => return Err(io_err("mkdir", dir)(e)),
    }
    let prepared = Prepared {
        lowers: parents.to_vec(),
        upper: dir.join("upper"),
        work: dir.join("work"),
        target: dir.join("merged"),
    };
    for path in [&prepared.upper, &prepared.work, &prepared.target] {
        fs::create_dir(path).map_err(io_err("mkdir", path))?;
    }
    Ok(prepared)
}

impl Prepared {
    /// Mounts the writable overlay on `target` (in the caller's mount namespace).
    /// With no lowers the upper is bind-mounted alone.
    pub fn mount(&self) -> Result<(), OverlayError> {
        mount_chain(&self.lowers, Some((&self.upper, &self.work)), &self.target)
    }
}

/// Mounts `lowers` (top first) with an optional (upper, work) on `target`.
pub fn mount_chain(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), OverlayError> {
    if lowers.len() > MAX_LOWERS {
        return Err(OverlayError::TooManyLowers(lowers.len()));
    }
    match (lowers.is_empty(), upper) {
        // FROM scratch: nothing to overlay, the upper is the whole root.
        (true, Some((upper, _))) => sys::mount::bind(
            sys::mount::Target::Path(upper),
            sys::mount::Target::Path(target),
            false,
            Default::default(),
        )?,
        _ => sys::mount::mount_overlay(lowers, upper, target)?,
    }
    Ok(())
}

/// Mounts a read-only view of `lowers` (top first) on `target`.
pub fn mount_readonly(lowers: &[PathBuf], target: &Path) -> Result<(), OverlayError> {
    mount_chain(lowers, None, target)
}

/// Unmounts a snapshot mounted by [`Prepared::mount`] or [`mount_readonly`].
pub fn unmount(target: &Path) -> Result<(), OverlayError> {
    sys::mount::unmount(target, false)?;
    Ok(())
}

/// Turns the upper dir of a finished step into a snapshot at `dest` (a rename,
/// so `dest` must be on the same filesystem and not exist); the rest of the
/// prepared directory (work, merged) is removed.
pub fn commit(prepared: &Prepared, dest: &Path) -> Result<(), OverlayError> {
    if dest.symlink_metadata().is_ok() {
        return Err(OverlayError::AlreadyExists(dest.to_path_buf()));
    }
    fs::rename(&prepared.upper, dest).map_err(io_err("rename", &prepared.upper))?;
    for path in [&prepared.work, &prepared.target] {
        remove_tree(path)?;
    }
    if let Some(dir) = prepared.upper.parent() {
        // Only succeeds when nothing else was put there; that is fine.
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

/// Removes a prepared (unmounted) snapshot directory or a committed snapshot.
pub fn remove(dir: &Path) -> Result<(), OverlayError> {
    remove_tree(dir)
}

fn remove_tree(path: &Path) -> Result<(), OverlayError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}
