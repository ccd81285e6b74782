//! File-level wrappers: device nodes, overlay whiteouts, ownership and times of
//! symlinks themselves, and extended attributes.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use rustix::io::Errno;

use super::error::{Result, SysError};

fn errno_error(call: &'static str, path: &Path, errno: nix::errno::Errno) -> SysError {
    SysError::path(call, path, io::Error::from(errno))
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The kind of special file [`mknod`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    CharDevice,
    BlockDevice,
    Fifo,
}

/// Opens (creating) the lock file `path` and waits for an exclusive lock on it, held
/// until the file is dropped. Locks belong to the open file, so a second call in the same
/// process waits too.
pub fn lock_file(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Creates a device node or fifo with permission bits `mode` (the umask applies).
pub fn mknod(path: &Path, kind: NodeKind, mode: u32, major: u64, minor: u64) -> Result<()> {
    let sflag = match kind {
        NodeKind::CharDevice => SFlag::S_IFCHR,
        NodeKind::BlockDevice => SFlag::S_IFBLK,
        NodeKind::Fifo => SFlag::S_IFIFO,
    };
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(path, sflag, Mode::from_bits_truncate(mode), dev)
        .map_err(|e| errno_error("mknod", path, e))
}

/// Creates an overlayfs whiteout: a character device 0/0.
pub fn create_whiteout(path: &Path) -> Result<()> {
    mknod(path, NodeKind::CharDevice, 0, 0, 0)
}

/// Whether `metadata` describes an overlayfs whiteout (character device 0/0).
pub fn is_whiteout(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

/// Changes the owner of `path` without following a final symlink.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| SysError::path("lchown", path, e))
}

/// Sets access and modification times of `path` without following a final symlink.
pub fn set_times_nofollow(path: &Path, atime: SystemTime, mtime: SystemTime) -> Result<()> {
    let atime = timespec(atime);
    let mtime = timespec(mtime);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| errno_error("utimensat", path, e))
}

fn timespec(t: SystemTime) -> TimeSpec {
    // Times before 1970 are clamped to the epoch: tar mtimes are unsigned anyway.
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    TimeSpec::from_duration(since_epoch)
}

fn c_name(call: &'static str, path: &Path, name: &OsStr) -> Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|e| SysError::path(call, path, io::Error::new(io::ErrorKind::InvalidInput, e)))
}

/// Sets extended attribute `name` on `path` itself (a symlink is not followed).
pub fn lsetxattr(path: &Path, name: impl AsRef<OsStr>, value: &[u8]) -> Result<()> {
    let name = c_name("lsetxattr", path, name.as_ref())?;
    rustix::fs::lsetxattr(
        path,
        name.as_c_str(),
        value,
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| SysError::path("lsetxattr", path, e))
}

/// Removes extended attribute `name` from `path` itself (a symlink is not followed); one
/// that is not set is no error.
pub fn lremovexattr(path: &Path, name: impl AsRef<OsStr>) -> Result<()> {
    let name = c_name("lremovexattr", path, name.as_ref())?;
    match rustix::fs::lremovexattr(path, name.as_c_str()) {
        Ok(()) | Err(Errno::NODATA) => Ok(()),
        Err(e) => Err(SysError::path("lremovexattr", path, e)),
    }
}

/// Reads extended attribute `name` of `path` itself; `None` if it is not set or the
/// filesystem has no extended attributes.
pub fn lgetxattr(path: &Path, name: impl AsRef<OsStr>) -> Result<Option<Vec<u8>>> {
    let name = c_name("lgetxattr", path, name.as_ref())?;
    read_xattr(256, |value| {
        rustix::fs::lgetxattr(path, name.as_c_str(), value)
    })
    .map_err(|e| SysError::path("lgetxattr", path, e))
}

/// What an xattr call that fills a buffer gives: the bytes, retried with a bigger buffer
/// while they do not fit; `None` when the attribute is not set or the filesystem has no
/// extended attributes.
pub(super) fn read_xattr(
    start: usize,
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Option<Vec<u8>>> {
    let mut buffer = vec![0u8; start];
    loop {
        match read(&mut buffer[..]) {
            Ok(len) => {
                buffer.truncate(len);
                return Ok(Some(buffer));
            }
            // The value grew between calls, or is bigger than the buffer.
            Err(Errno::RANGE) => buffer.resize(buffer.len() * 4, 0),
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// The names in a NUL-separated xattr list.
pub(super) fn xattr_names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|name| !name.is_empty())
}

/// Lists the extended attribute names of `path` itself (none where the filesystem
/// has no extended attributes).
pub fn llistxattr(path: &Path) -> Result<Vec<OsString>> {
    let names = read_xattr(1024, |names| rustix::fs::llistxattr(path, names))
        .map_err(|e| SysError::path("llistxattr", path, e))?
        .unwrap_or_default();
    Ok(xattr_names(&names)
        .map(|name| OsString::from_vec(name.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-sys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn xattrs_round_trip_on_symlink_itself() {
        let dir = temp_dir("xattr");
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        match lsetxattr(&file, "user.kiln", b"v1") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("skipping: filesystem has no user xattrs");
                return;
            }
            r => r.unwrap(),
        }
        assert_eq!(lgetxattr(&file, "user.kiln").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(lgetxattr(&file, "user.absent").unwrap(), None);
        lremovexattr(&file, "user.kiln").unwrap();
        lremovexattr(&file, "user.kiln").unwrap();
        assert_eq!(lgetxattr(&file, "user.kiln").unwrap(), None);
        lsetxattr(&file, "user.kiln", b"v1").unwrap();
        assert!(
            llistxattr(&file)
                .unwrap()
                .contains(&OsString::from("user.kiln"))
        );
        // A symlink is never followed: reading through it sees the link, not the file.
        let link = dir.join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        assert_eq!(lgetxattr(&link, "user.kiln").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_do_not_follow_symlinks() {
        let dir = temp_dir("times");
        std::fs::write(dir.join("f"), b"x").unwrap();
        let link = dir.join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        set_times_nofollow(&link, t, t).unwrap();
        assert_eq!(std::fs::symlink_metadata(&link).unwrap().mtime(), 1_000_000);
        assert_ne!(std::fs::metadata(dir.join("f")).unwrap().mtime(), 1_000_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn whiteouts_and_devices_need_root() {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run this test as root"
            );
            eprintln!("skipping: mknod of devices needs root");
            return;
        }
        let dir = temp_dir("mknod");
        let wh = dir.join("gone");
        create_whiteout(&wh).unwrap();
        let md = std::fs::symlink_metadata(&wh).unwrap();
        assert!(is_whiteout(&md));
        mknod(&dir.join("null"), NodeKind::CharDevice, 0o666, 1, 3).unwrap();
        let md = std::fs::symlink_metadata(dir.join("null")).unwrap();
        assert!(md.file_type().is_char_device() && !is_whiteout(&md));
        assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
        mknod(&dir.join("fifo"), NodeKind::Fifo, 0o600, 0, 0).unwrap();
        assert!(
            std::fs::symlink_metadata(dir.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        lchown(&dir.join("fifo"), 1234, 5678).unwrap();
        let md = std::fs::symlink_metadata(dir.join("fifo")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
