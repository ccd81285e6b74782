//! Reading what `std::fs` does not expose: extended attributes and device numbers.

use std::path::Path;

use rustix::io::Errno;

use super::error::{Result, SysError};

/// All extended attributes of `path` (not following a final symlink), as
/// (name, value) pairs sorted by name.
pub fn list_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(len) => break len,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            // No xattr support on this filesystem: no attributes.
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(SysError::path("llistxattr", path, e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name_os = std::ffi::OsStr::new(std::str::from_utf8(name).unwrap_or_default());
        if name_os.is_empty() {
            continue;
        }
        if let Some(value) = get_xattr(path, name)? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// One extended attribute of `path` (not following a final symlink); `None`
/// when it is not set.
pub fn get_xattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>> {
    let name = std::ffi::CString::new(name).map_err(|_| SysError::Invalid {
        call: "lgetxattr",
        reason: "attribute name with a NUL byte".into(),
    })?;
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name.as_c_str(), &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(Errno::RANGE) => value.resize(value.len() * 4, 0),
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(SysError::path("lgetxattr", path, e)),
        }
    }
}

/// Splits a `st_rdev` into (major, minor).
pub fn device_numbers(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}
