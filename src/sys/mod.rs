//! Thin, safe wrappers over the system calls kiln needs and std does not offer.
//!
//! L0: the only module that uses `nix`/`libc` directly or contains `unsafe`.
#![allow(unsafe_code)]

pub mod fileop;

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// A failed system call, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{call} {path}: {source}")]
pub struct SysError {
    pub call: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl SysError {
    fn new(call: &'static str, path: &Path, source: io::Error) -> SysError {
        SysError {
            call,
            path: path.display().to_string(),
            source,
        }
    }

    fn errno(call: &'static str, path: &Path, errno: Errno) -> SysError {
        SysError::new(call, path, io::Error::from(errno))
    }

    /// The raw OS error code, if any (e.g. to tell `ENOTSUP` apart).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The call failed for lack of privilege or support (`EPERM`, `EACCES`, `ENOTSUP`):
    /// what an unprivileged caller may choose to tolerate.
    pub fn is_not_permitted(&self) -> bool {
        matches!(
            self.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::ENOTSUP)
        )
    }
}

pub type Result<T> = std::result::Result<T, SysError>;

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

/// Creates a device node or fifo with permission bits `mode` (the umask applies).
pub fn mknod(path: &Path, kind: NodeKind, mode: u32, major: u64, minor: u64) -> Result<()> {
    let sflag = match kind {
        NodeKind::CharDevice => SFlag::S_IFCHR,
        NodeKind::BlockDevice => SFlag::S_IFBLK,
        NodeKind::Fifo => SFlag::S_IFIFO,
    };
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(path, sflag, Mode::from_bits_truncate(mode), dev)
        .map_err(|e| SysError::errno("mknod", path, e))
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
        .map_err(|e| SysError::new("lchown", path, e))
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
    .map_err(|e| SysError::errno("utimensat", path, e))
}

fn timespec(t: SystemTime) -> TimeSpec {
    // Times before 1970 are clamped to the epoch: tar mtimes are unsigned anyway.
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    TimeSpec::from_duration(since_epoch)
}

fn c_path(call: &'static str, path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| SysError::new(call, path, io::Error::new(io::ErrorKind::InvalidInput, e)))
}

fn c_name(call: &'static str, path: &Path, name: &OsStr) -> Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|e| SysError::new(call, path, io::Error::new(io::ErrorKind::InvalidInput, e)))
}

/// Sets extended attribute `name` on `path` itself (a symlink is not followed).
pub fn lsetxattr(path: &Path, name: impl AsRef<OsStr>, value: &[u8]) -> Result<()> {
    let c_path = c_path("lsetxattr", path)?;
    let c_name = c_name("lsetxattr", path, name.as_ref())?;
    // SAFETY: both pointers are valid NUL-terminated strings owned for the call, and
    // `value` is a valid buffer of `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == -1 {
        return Err(SysError::new("lsetxattr", path, io::Error::last_os_error()));
    }
    Ok(())
}

/// Reads extended attribute `name` of `path` itself; `None` if it is not set.
pub fn lgetxattr(path: &Path, name: impl AsRef<OsStr>) -> Result<Option<Vec<u8>>> {
    let c_path = c_path("lgetxattr", path)?;
    let c_name = c_name("lgetxattr", path, name.as_ref())?;
    read_sized("lgetxattr", path, |buf: &mut [u8]| {
        // SAFETY: the strings are valid and NUL-terminated; `buf` is writable for
        // `buf.len()` bytes (a zero length with a dangling pointer only queries the size).
        unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
    .map(Some)
    .or_else(|e| match e.raw_os_error() {
        Some(libc::ENODATA) => Ok(None),
        _ => Err(e),
    })
}

/// Lists the extended attribute names of `path` itself.
pub fn llistxattr(path: &Path) -> Result<Vec<OsString>> {
    let c_path = c_path("llistxattr", path)?;
    let names = read_sized("llistxattr", path, |buf: &mut [u8]| {
        // SAFETY: the path is a valid NUL-terminated string and `buf` is writable for
        // `buf.len()` bytes.
        unsafe { libc::llistxattr(c_path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(names
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| OsString::from_vec(name.to_vec()))
        .collect())
}

/// Calls a size-query-then-fill syscall, retrying if the value grew in between.
fn read_sized(
    call: &'static str,
    path: &Path,
    mut syscall: impl FnMut(&mut [u8]) -> libc::ssize_t,
) -> Result<Vec<u8>> {
    loop {
        let size = syscall(&mut []);
        if size < 0 {
            return Err(SysError::new(call, path, io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; size as usize];
        let filled = syscall(&mut buf);
        if filled >= 0 {
            buf.truncate(filled as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(SysError::new(call, path, err));
        }
    }
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
