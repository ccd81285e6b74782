//! An overlay upper made into the layer BuildKit's differ writes for it.
//!
//! The upper of a step holds more than the step changed: directories copied up only
//! because something inside them was created and removed again (a mount point, a
//! temporary file), files copied up without a change, opaque directories. BuildKit's
//! overlay differ (util/overlay/overlay_linux.go `Changes`, with containerd's
//! `ChangeWriter` writing the tar) compares the upper with its lower instead of archiving
//! it whole:
//!
//! - an entry that exists below with the same type, mode, owner, device number and
//!   `security.capability` (and, not being a directory, the same size and mtime, and
//!   content or link target: `sameDirent`; see `same_entry` for where kiln compares
//!   more) is left out, and a directory among them comes back only as the parent of an
//!   entry that is in the layer; so a directory whose only change is its mtime is not;
//! - a whiteout of a name nothing below has is left out;
//! - an opaque directory is not written as `.wh..wh..opq`: its content is diffed against
//!   the directory below (continuity's `fs.Changes`), a whiteout per name only below.
//!
//! [`settle`] rewrites the upper so that archiving it as it is (`snapshot::diff`) gives
//! that layer: what is left out is removed (the view through the overlay stays the same,
//! the lower shows an equal entry), an opaque directory loses its mark and gets a
//! whiteout for each name of the lower it hid, and a directory whose entries it changed
//! keeps its times.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub use super::error::OverlayError;
use crate::sys;

type Result<T> = std::result::Result<T, OverlayError>;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const CAPABILITY_XATTR: &str = "security.capability";

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OverlayError + 'a {
    move |source| OverlayError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Settles `upper` against `lowers` (top first), the chain it was an overlay upper of,
/// on a thread of its own; with two or more lowers their merged view is mounted there (in
/// a mount namespace of the thread's own) at `scratch`, which must not exist and is
/// removed afterwards. One lower is its own view (its whiteouts, if any, hide nothing).
pub fn settle(upper: &Path, lowers: &[PathBuf], scratch: &Path) -> Result<()> {
    if lowers.is_empty() {
        return Ok(());
    }
    let mounted = lowers.len() > 1;
    if mounted {
        fs::create_dir(scratch).map_err(io_err("mkdir", scratch))?;
    }
    let result = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("kiln-settle".to_string())
            // One level of recursion per directory level.
            .stack_size(16 << 20)
            .spawn_scoped(scope, || {
                if !mounted {
                    return settle_dir(upper, &lowers[0], false).map(drop);
                }
                // Mounts of this namespace go with the thread, whatever happens.
                sys::fileop::enter_private_mount_namespace()?;
                let overlay = sys::fileop::Overlay {
                    lowers: lowers.to_vec(),
                    upper: None,
                };
                sys::fileop::mount_overlay(&overlay, scratch)?;
                let settled = settle_dir(upper, scratch, false).map(drop);
                sys::fileop::unmount(scratch)?;
                settled
            });
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(io_err("start a thread for", upper)(e)),
        }
    });
    if mounted {
        let _ = fs::remove_dir(scratch);
    }
    result
}

/// Settles the upper directory `upper` against `lower`, the same directory in the lower
/// view; `opaque`: `upper` hid `lower` (it or a parent was opaque), so every name only
/// below needs a whiteout. Returns whether `upper` still holds an entry of the layer.
fn settle_dir(upper: &Path, lower: &Path, opaque: bool) -> Result<bool> {
    let times = fs::symlink_metadata(upper).map_err(io_err("lstat", upper))?;
    let mut changed = false;
    let mut kept = false;
    // Read whole first: entries are removed and added while going through them.
    let names = fs::read_dir(upper)
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<io::Result<BTreeSet<OsString>>>()
        })
        .map_err(io_err("read directory", upper))?;
    for name in &names {
        let upper_path = upper.join(name);
        let lower_path = lower.join(name);
        let upper_meta = fs::symlink_metadata(&upper_path).map_err(io_err("lstat", &upper_path))?;
        let lower_meta = visible(&lower_path)?;
        if sys::is_whiteout(&upper_meta) {
            if lower_meta.is_some() {
                kept = true;
            } else {
                fs::remove_file(&upper_path).map_err(io_err("remove", &upper_path))?;
                changed = true;
            }
            continue;
        }
        let Some(lower_meta) = lower_meta else {
            // New: all of it is in the layer, as plain entries.
            if upper_meta.is_dir() {
                clear_opaque(&upper_path)?;
            }
            kept = true;
            continue;
        };
        let same = same_entry(&lower_meta, &upper_meta, &lower_path, &upper_path)?;
        if upper_meta.is_dir() && lower_meta.is_dir() {
            let hid = clear_opaque(&upper_path)?;
            if settle_dir(&upper_path, &lower_path, opaque || hid)? || !same {
                kept = true;
            } else {
                fs::remove_dir(&upper_path).map_err(io_err("remove", &upper_path))?;
                changed = true;
            }
        } else if upper_meta.is_dir() {
            // Over a file or link below: nothing to merge with.
            clear_opaque(&upper_path)?;
            kept = true;
        } else if same && upper_meta.nlink() == 1 {
            fs::remove_file(&upper_path).map_err(io_err("remove", &upper_path))?;
            changed = true;
        } else {
            kept = true;
        }
    }
    if opaque {
        for name in visible_names(lower)? {
            if !names.contains(&name) {
                sys::create_whiteout(&upper.join(&name))?;
                changed = true;
                kept = true;
            }
        }
    }
    if changed {
        let accessed = times
            .accessed()
            .map_err(io_err("read the times of", upper))?;
        let modified = times
            .modified()
            .map_err(io_err("read the times of", upper))?;
        sys::set_times_nofollow(upper, accessed, modified)?;
    }
    Ok(kept)
}

/// The metadata of `path` in the lower view; `None` when nothing is there (a whiteout
/// of a single lower layer read in place included).
fn visible(path: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if sys::is_whiteout(&meta) => Ok(None),
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(io_err("lstat", path)(e)),
    }
}

/// The names of the lower directory `dir` that are not whiteouts.
fn visible_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let is_char = entry
            .file_type()
            .map_err(io_err("lstat", &entry.path()))?
            .is_char_device();
        if !is_char || visible(&entry.path())?.is_some() {
            names.push(entry.file_name());
        }
    }
    Ok(names)
}

/// Removes the opaque mark of directory `path`; whether it had one.
fn clear_opaque(path: &Path) -> Result<bool> {
    let opaque = sys::lgetxattr(path, OPAQUE_XATTR)?.is_some_and(|value| value == b"y");
    if opaque {
        sys::lremovexattr(path, OPAQUE_XATTR)?;
    }
    Ok(opaque)
}

/// BuildKit's `sameDirent` (continuity's `sameFile`): whether the upper entry is the
/// lower one unchanged, as far as the layer is concerned.
fn same_entry(
    lower: &Metadata,
    upper: &Metadata,
    lower_path: &Path,
    upper_path: &Path,
) -> Result<bool> {
    if (lower.mode(), lower.uid(), lower.gid(), lower.rdev())
        != (upper.mode(), upper.uid(), upper.gid(), upper.rdev())
        || sys::lgetxattr(lower_path, CAPABILITY_XATTR)?
            != sys::lgetxattr(upper_path, CAPABILITY_XATTR)?
    {
        return Ok(false);
    }
    if lower.is_dir() {
        return Ok(true);
    }
    if lower.size() != upper.size()
        || (lower.mtime(), lower.mtime_nsec()) != (upper.mtime(), upper.mtime_nsec())
    {
        return Ok(false);
    }
    // BuildKit compares content only when both mtimes lack nanoseconds (a tar may have
    // truncated them) and takes equal nanoseconds for equal files. Two files written within
    // one tick of the kernel's coarse clock share their mtime, so kiln compares content
    // then too: a changed file is never left out of the layer.
    if lower.file_type().is_symlink() {
        let target = |path: &Path| fs::read_link(path).map_err(io_err("readlink", path));
        Ok(target(lower_path)? == target(upper_path)?)
    } else if lower.size() == 0 || !lower.is_file() {
        Ok(true)
    } else {
        same_content(lower_path, upper_path)
    }
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let open = |path: &Path| fs::File::open(path).map_err(io_err("open", path));
    let (mut file_a, mut file_b) = (open(a)?, open(b)?);
    let mut buf_a = vec![0u8; 64 << 10];
    let mut buf_b = vec![0u8; 64 << 10];
    loop {
        let n = read_full(&mut file_a, &mut buf_a).map_err(io_err("read", a))?;
        let m = read_full(&mut file_b, &mut buf_b).map_err(io_err("read", b))?;
        if buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n < buf_a.len() {
            return Ok(true);
        }
    }
}

/// Fills `buf` unless the file ends first; the bytes read.
fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
