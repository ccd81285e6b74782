//! System calls for the builder's own file operations ([`crate::fileop`]): a private mount
//! namespace for one thread, and overlay mounts inside it.
//!
//! A file op runs on a dedicated thread that calls [`enter_private_mount_namespace`]; every
//! mount it makes afterwards exists only in that thread's namespace, which the kernel tears
//! down when the thread exits, so nothing can leak to the host even if the op panics.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags,
    UnmountFlags,
};
use rustix::thread::UnshareFlags;

use super::{Result, SysError};

/// The classic `mount(2)` copies at most one page of option data.
const MOUNT_DATA_MAX: usize = 4095;

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
        .map_err(|e| SysError::new("unshare(CLONE_NEWNS|CLONE_FS)", Path::new("/"), e.into()))?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| SysError::new("mount(MS_REC|MS_PRIVATE)", Path::new("/"), e.into()))
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

/// Mounts `overlay` on `target`: with the classic `mount(2)` when its options fit in one
/// page and need no escaping, else with the new mount API (`fsopen`/`fsconfig lowerdir+`).
///
/// `metacopy`, `redirect_dir` and `index` are off, so the upper directory holds whole files
/// and plain directories: it is exactly the layer's diff.
pub fn mount_overlay(overlay: &Overlay, target: &Path) -> Result<()> {
    if overlay.lowers.is_empty() {
        return Err(SysError::new(
            "mount overlay",
            target,
            io::Error::new(io::ErrorKind::InvalidInput, "no lower layer"),
        ));
    }
    match classic_options(overlay) {
        Some(data) if data.len() <= MOUNT_DATA_MAX => {
            let flags = if overlay.upper.is_none() {
                MountFlags::RDONLY
            } else {
                MountFlags::empty()
            };
            let data = CString::new(data).map_err(|e| {
                SysError::new(
                    "mount overlay",
                    target,
                    io::Error::new(io::ErrorKind::InvalidInput, e),
                )
            })?;
            rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())
                .map_err(|e| SysError::new("mount overlay", target, e.into()))
        }
        _ => mount_overlay_new_api(overlay, target),
    }
}

/// `lowerdir=…,upperdir=…,workdir=…` when no path needs escaping.
fn classic_options(overlay: &Overlay) -> Option<String> {
    let plain = |p: &Path| {
        let bytes = p.as_os_str().as_bytes();
        let ok = !bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\' | 0));
        ok.then(|| p.to_str().map(str::to_string)).flatten()
    };
    let lowers: Option<Vec<String>> = overlay.lowers.iter().map(|p| plain(p)).collect();
    let mut data = format!("lowerdir={}", lowers?.join(":"));
    if let Some((upper, work)) = &overlay.upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            plain(upper)?,
            plain(work)?
        ));
    }
    data.push_str(",metacopy=off,redirect_dir=off,index=off");
    Some(data)
}

fn mount_overlay_new_api(overlay: &Overlay, target: &Path) -> Result<()> {
    let err =
        |call: &'static str| move |e: rustix::io::Errno| SysError::new(call, target, e.into());
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(err("fsopen overlay"))?;
    for lower in &overlay.lowers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower.as_path())
            .map_err(err("fsconfig lowerdir+"))?;
    }
    if let Some((upper, work)) = &overlay.upper {
        rustix::mount::fsconfig_set_string(&fs, "upperdir", upper.as_path())
            .map_err(err("fsconfig upperdir"))?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", work.as_path())
            .map_err(err("fsconfig workdir"))?;
    }
    for (key, value) in [
        ("metacopy", "off"),
        ("redirect_dir", "off"),
        ("index", "off"),
    ] {
        rustix::mount::fsconfig_set_string(&fs, key, value).map_err(err("fsconfig"))?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(err("fsconfig create"))?;
    let attrs = if overlay.upper.is_none() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(err("fsmount"))?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(err("move_mount"))
}

/// Unmounts `target`; if it is busy, detaches it lazily instead.
pub fn unmount(target: &Path) -> Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(|e| SysError::new("umount2(MNT_DETACH)", target, e.into())),
        Err(e) => Err(SysError::new("umount", target, e.into())),
    }
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
