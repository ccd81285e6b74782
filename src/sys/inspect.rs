//! Reading what `std::fs` does not expose: extended attributes and device numbers.

use std::path::Path;

use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::error::Result;

/// All extended attributes of `path` (not following a final symlink), as
/// (name, value) pairs sorted by name.
pub fn list_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in super::fs::llistxattr(path)? {
        if let Some(value) = super::fs::lgetxattr(path, &name)? {
            out.push((name.into_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// One extended attribute of `path` (not following a final symlink); `None`
/// when it is not set.
pub fn get_xattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    super::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name))
}

/// Splits a `st_rdev` into (major, minor).
pub fn device_numbers(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}
