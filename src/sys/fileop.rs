//! System calls for the builder's own file operations ([`crate::fileop`]): a private mount
//! namespace for one thread, and overlay mounts inside it.
//!
//! A file op runs on a dedicated thread that calls [`enter_private_mount_namespace`]; every
//! mount it makes afterwards exists only in that thread's namespace, which the kernel tears
//! down when the thread exits, so nothing can leak to the host even if the op panics.

use std::path::{Path, PathBuf};

use rustix::thread::UnshareFlags;

use super::{Result, SysError};

/// Gives the calling thread its own filesystem attributes (`CLONE_FS`) and mount namespace
/// (`CLONE_NEWNS`), and makes every mount in it private, so mounts made on this thread are
/// seen by no other thread or process and vanish when the thread exits.
///
/// Only for a thread that is dedicated to this and ends afterwards: the namespace stays with
/// the thread.
pub fn enter_private_mount_namespace() -> Result<()> {
    // SAFETY: neither CLONE_FILES nor CLONE_VM is unshared, so the file descriptor table and
    // memory stay shared with the rest of the process: no descriptor or pointer another
    // thread holds becomes invalid. CLONE_FS only gives this thread its own cwd/root/umask,
    // and CLONE_NEWNS its own copy of the mount table; both are per-thread after the call
    // and legal in a multi-threaded process.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::FS) }
        .map_err(|e| SysError::call("unshare(CLONE_NEWNS|CLONE_FS)", e))?;
    super::mount::make_rprivate()
}

/// What an overlay mount is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Lower layers, **topmost first** (the order of `lowerdir=`). At least one.
    pub lowers: Vec<PathBuf>,
    /// `(upperdir, workdir)` on the same filesystem; `None` mounts read-only (which needs at
    /// least two lowers on older kernels).
    pub upper: Option<(PathBuf, PathBuf)>,
}

/// Mounts `overlay` on `target` with [`super::mount::mount_overlay`] (the new mount API,
/// falling back to `mount(2)`; `metacopy`, `redirect_dir` and `index` off, so the upper
/// directory is exactly the layer's diff).
pub fn mount_overlay(overlay: &Overlay, target: &Path) -> Result<()> {
    let upper = overlay
        .upper
        .as_ref()
        .map(|(upper, work)| (upper.as_path(), work.as_path()));
    super::mount::mount_overlay(&overlay.lowers, upper, target)
}

/// Unmounts `target`; if it is busy, detaches it lazily instead.
pub fn unmount(target: &Path) -> Result<()> {
    super::mount::unmount(target, false).or_else(|_| super::mount::unmount(target, true))
}

/// Whether overlayfs is known to this kernel (`/proc/filesystems`).
pub fn overlay_supported() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false)
}
