//! Open directories and the file operations relative to them (`openat`, `fstatat`,
//! `linkat`, …): walking a tree through them costs one name lookup per entry instead of a
//! walk of the entry's whole path, which dominates copying and archiving many small files.
//!
//! Errors are plain `io::Error`s: the caller knows the path to name in its message.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::fs::{read_xattr, xattr_names};

/// An open directory (never reached through a final symlink).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens the directory at `path`; a symlink there is an error (`ENOTDIR`/`ELOOP`).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())?;
        Ok(Dir { fd })
    }

    /// Opens the subdirectory `name`; a symlink there is an error.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty())?;
        Ok(Dir { fd })
    }

    /// The names of the entries (without `.` and `..`), in directory order.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut stream = rustix::fs::Dir::read_from(&self.fd)?;
        let mut names = Vec::new();
        while let Some(entry) = stream.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// The directory's own metadata.
    pub fn stat_self(&self) -> io::Result<FileStat> {
        Ok(FileStat::from_raw(&rustix::fs::fstat(&self.fd)?))
    }

    /// The metadata of entry `name` itself (a symlink is not followed).
    pub fn stat(&self, name: &OsStr) -> io::Result<FileStat> {
        let stat = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(FileStat::from_raw(&stat))
    }

    /// Opens the file `name` for reading without following a symlink and, where the
    /// kernel lets us (our own file, or `CAP_FOWNER`), without updating its access time:
    /// archiving a layer is not an access of its files.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(&self.fd, name, flags | OFlags::NOATIME, Mode::empty()) {
            Err(Errno::PERM) => rustix::fs::openat(&self.fd, name, flags, Mode::empty())?,
            other => other?,
        };
        Ok(File::from(fd))
    }

    /// Makes `to_name` in `to` a hard link of entry `name` of this directory (a symlink
    /// is linked itself, not followed).
    pub fn link(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        rustix::fs::linkat(&self.fd, name, &to.fd, to_name, AtFlags::empty())?;
        Ok(())
    }

    /// The target of symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        let target = rustix::fs::readlinkat(&self.fd, name, Vec::new())?;
        Ok(OsString::from_vec(target.into_bytes()))
    }

    /// The extended attributes of the directory itself, as [`fd_xattrs`] gives them.
    pub fn xattrs(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        fd_xattrs(&self.fd)
    }
}

impl Dir {
    /// The directory an open descriptor names (for [`super::rootdir`]).
    pub(super) fn from_fd(fd: OwnedFd) -> Dir {
        Dir { fd }
    }

    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// All extended attributes of the open file `fd`, as (name, value) pairs sorted by name;
/// none where the filesystem has no extended attributes. An attribute removed between
/// listing and reading is left out.
pub fn fd_xattrs(fd: impl AsFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let fd = fd.as_fd();
    let names = read_xattr(256, |names| rustix::fs::flistxattr(fd, names))?.unwrap_or_default();
    let mut out = Vec::new();
    for name in xattr_names(&names) {
        let c_name = CString::new(name).map_err(io::Error::other)?;
        if let Some(value) = read_xattr(256, |value| {
            rustix::fs::fgetxattr(fd, c_name.as_c_str(), value)
        })? {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// The metadata of a file, as `lstat` gives it: what `std::fs::Metadata` holds, but
/// obtainable relative to a [`Dir`] and constructible from a `Metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub kind: Kind,
    /// Permission bits, with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub permissions: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
}

impl FileStat {
    fn from_raw(stat: &rustix::fs::Stat) -> FileStat {
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            _ => Kind::File,
        };
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        FileStat {
            kind,
            permissions: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            nlink: u64::from(stat.st_nlink),
            dev: u64::from(stat.st_dev),
            ino: u64::from(stat.st_ino),
            rdev: u64::from(stat.st_rdev),
            atime: (stat.st_atime as i64, stat.st_atime_nsec as u32),
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as u32),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == Kind::Symlink
    }

    /// An overlayfs whiteout: a character device 0/0.
    pub fn is_whiteout(&self) -> bool {
        self.kind == Kind::CharDevice && self.rdev == 0
    }

    pub fn accessed(&self) -> SystemTime {
        system_time(self.atime)
    }

    pub fn modified(&self) -> SystemTime {
        system_time(self.mtime)
    }
}

impl From<&std::fs::Metadata> for FileStat {
    fn from(meta: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else if file_type.is_socket() {
            Kind::Socket
        } else if file_type.is_char_device() {
            Kind::CharDevice
        } else if file_type.is_block_device() {
            Kind::BlockDevice
        } else {
            Kind::File
        };
        FileStat {
            kind,
            permissions: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            nlink: meta.nlink(),
            dev: meta.dev(),
            ino: meta.ino(),
            rdev: meta.rdev(),
            atime: (meta.atime(), nanos(meta.atime_nsec())),
            mtime: (meta.mtime(), nanos(meta.mtime_nsec())),
        }
    }
}

fn nanos(nsec: i64) -> u32 {
    u32::try_from(nsec).unwrap_or(0)
}

/// A `(seconds, nanoseconds)` timestamp as a `SystemTime` (before 1970 too).
fn system_time((secs, nsec): (i64, u32)) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nsec));
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs) + nanos,
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        tempfile::Builder::new()
            .prefix(&format!("kiln-sys-dir-{name}-"))
            .tempdir()
            .unwrap()
            .keep()
    }

    #[test]
    fn stat_relative_to_a_dir_matches_lstat() {
        let root = temp_dir("stat");
        std::fs::write(root.join("f"), b"hello").unwrap();
        std::os::unix::fs::symlink("f", root.join("l")).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        let dir = Dir::open(&root).unwrap();
        let mut names = dir.names().unwrap();
        names.sort();
        assert_eq!(names, ["d", "f", "l"]);
        for name in ["d", "f", "l"] {
            let meta = std::fs::symlink_metadata(root.join(name)).unwrap();
            let stat = dir.stat(OsStr::new(name)).unwrap();
            assert_eq!(stat, FileStat::from(&meta), "{name}");
            assert_eq!(stat.modified(), meta.modified().unwrap());
            assert_eq!(stat.accessed(), meta.accessed().unwrap());
            assert_eq!(stat.permissions, meta.mode() & 0o7777);
        }
        assert!(dir.stat(OsStr::new("l")).unwrap().is_symlink());
        assert_eq!(dir.read_link(OsStr::new("l")).unwrap(), "f");
        assert_eq!(
            dir.stat_self().unwrap().ino,
            std::fs::metadata(&root).unwrap().ino()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn symlinks_are_never_followed() {
        let root = temp_dir("nofollow");
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("d", root.join("to-d")).unwrap();
        std::os::unix::fs::symlink("f", root.join("to-f")).unwrap();
        let dir = Dir::open(&root).unwrap();
        assert!(dir.open_dir(OsStr::new("to-d")).is_err());
        assert!(dir.open_file(OsStr::new("to-f")).is_err());
        assert!(Dir::open(&root.join("to-d")).is_err());
        assert!(dir.open_dir(OsStr::new("d")).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn link_and_read_relative_to_dirs() {
        let root = temp_dir("link");
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::create_dir(root.join("b")).unwrap();
        std::fs::write(root.join("a/f"), b"content").unwrap();
        let top = Dir::open(&root).unwrap();
        let a = top.open_dir(OsStr::new("a")).unwrap();
        let b = top.open_dir(OsStr::new("b")).unwrap();
        a.link(OsStr::new("f"), &b, OsStr::new("g")).unwrap();
        assert_eq!(b.stat(OsStr::new("g")).unwrap().nlink, 2);
        let mut content = String::new();
        io::Read::read_to_string(&mut b.open_file(OsStr::new("g")).unwrap(), &mut content).unwrap();
        assert_eq!(content, "content");
        let e = a.link(OsStr::new("f"), &b, OsStr::new("g")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn xattrs_of_an_open_file_are_those_of_its_path() {
        let root = temp_dir("xattrs");
        let path = root.join("f");
        std::fs::write(&path, b"x").unwrap();
        match super::super::fs::lsetxattr(&path, "user.b", b"2") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("skipping: filesystem has no user xattrs");
                return;
            }
            r => r.unwrap(),
        }
        super::super::fs::lsetxattr(&path, "user.a", &[7; 1000]).unwrap();
        let dir = Dir::open(&root).unwrap();
        let file = dir.open_file(OsStr::new("f")).unwrap();
        let by_fd = fd_xattrs(&file).unwrap();
        assert_eq!(by_fd, super::super::inspect::list_xattrs(&path).unwrap());
        assert_eq!(by_fd[0], (b"user.a".to_vec(), vec![7; 1000]));
        assert_eq!(by_fd[1], (b"user.b".to_vec(), b"2".to_vec()));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn times_before_1970_convert() {
        assert_eq!(
            system_time((-2, 500)),
            UNIX_EPOCH - Duration::from_nanos(1_999_999_500)
        );
        assert_eq!(system_time((3, 7)), UNIX_EPOCH + Duration::new(3, 7));
    }
}
