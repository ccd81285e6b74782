//! A directory taken as `/` (a container's root): paths are resolved in it by the kernel
//! (`openat2` with `RESOLVE_IN_ROOT`), so `..` stops at it and a symlink, absolute or not,
//! is followed inside it — even one a running container swaps in meanwhile. Files are
//! then made and changed relative to the [`Dir`]s it opens, never through a host path.
//!
//! Errors are plain `io::Error`s: the caller knows the path to name in its message.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::dir::{Dir, Kind};

/// A directory used as the root for every path given to it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// The directory at `path` (a `/proc/PID/root` link is followed, as it should be).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// The directory `path` names inside the root, as a root of its own: what an archive
    /// extracted there resolves in, so that its own symlinks cannot lead out of it.
    pub fn within(&self, path: &Path) -> io::Result<Root> {
        Ok(Root {
            fd: self.resolve_dir(path, OFlags::PATH)?,
        })
    }

    /// The directory `path` names inside the root, every symlink on the way followed
    /// inside it (`ENOTDIR` when it is not a directory, `ENOENT` when it is missing).
    pub fn open_dir(&self, path: &Path) -> io::Result<Dir> {
        Ok(Dir::from_fd(self.resolve_dir(path, OFlags::RDONLY)?))
    }

    fn resolve_dir(&self, path: &Path, access: OFlags) -> io::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        Ok(rustix::fs::openat2(
            &self.fd,
            path,
            access | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }
}

/// Changes relative to a [`Dir`], none of which follows a symlink at `name`.
impl Dir {
    /// Makes directory `name` with `mode` (an existing one is left as it is).
    pub fn make_dir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        match rustix::fs::mkdirat(self.fd(), name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the new file `name` for writing (an existing entry is an error).
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(
            self.fd(),
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    pub fn make_symlink(&self, name: &OsStr, target: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, self.fd(), name)?)
    }

    /// Makes a fifo or a device node `name` (`device`: major and minor).
    pub fn make_node(
        &self,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        (major, minor): (u32, u32),
    ) -> io::Result<()> {
        let file_type = match kind {
            Kind::Fifo => FileType::Fifo,
            Kind::CharDevice => FileType::CharacterDevice,
            Kind::BlockDevice => FileType::BlockDevice,
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        Ok(rustix::fs::mknodat(
            self.fd(),
            name,
            file_type,
            Mode::from_raw_mode(mode),
            rustix::fs::makedev(major, minor),
        )?)
    }

    /// Removes entry `name`, a directory with everything in it.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        if self.stat(name)?.is_dir() {
            let inner = self.open_dir(name)?;
            for child in inner.names()? {
                inner.remove_all(&child)?;
            }
            Ok(rustix::fs::unlinkat(self.fd(), name, AtFlags::REMOVEDIR)?)
        } else {
            Ok(rustix::fs::unlinkat(self.fd(), name, AtFlags::empty())?)
        }
    }

    /// Sets the owner, then (except on a symlink, whose mode Linux ignores) the
    /// permission bits, then the modification time of entry `name`.
    pub fn set_owner_mode_time(
        &self,
        name: &OsStr,
        (uid, gid): (u32, u32),
        permissions: Option<u32>,
        mtime: i64,
    ) -> io::Result<()> {
        rustix::fs::chownat(
            self.fd(),
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if let Some(permissions) = permissions {
            // `fchmodat` cannot leave a symlink alone: the entry is pinned through an
            // `O_PATH` descriptor (refused if it is a symlink by now) and changed through
            // that, so a link a running container swaps in is never followed.
            let pinned = rustix::fs::openat(
                self.fd(),
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let stat = rustix::fs::fstat(&pinned)?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
                let by_fd = format!("/proc/self/fd/{}", pinned.as_raw_fd());
                rustix::fs::chmod(by_fd.as_str(), Mode::from_raw_mode(permissions))?;
            }
        }
        let time = Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        Ok(rustix::fs::utimensat(
            self.fd(),
            name,
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        std::fs::create_dir_all(root_path.join("etc")).unwrap();
        std::fs::write(root_path.join("etc/inside"), b"").unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/outside"), b"").unwrap();
        std::os::unix::fs::symlink("/", root_path.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root_path.join("rel")).unwrap();
        let root = Root::open(&root_path).unwrap();
        for path in ["/up/etc", "../../etc", "rel/etc", "/etc/../../etc"] {
            let names = root.open_dir(Path::new(path)).unwrap().names().unwrap();
            assert_eq!(names, ["inside"], "{path}");
        }
        let etc = root.open_dir(Path::new("etc")).unwrap();
        etc.make_dir(OsStr::new("d"), 0o750).unwrap();
        etc.create_file(OsStr::new("f"), 0o600).unwrap();
        assert!(etc.create_file(OsStr::new("f"), 0o600).is_err());
        etc.make_symlink(OsStr::new("l"), OsStr::new("inside"))
            .unwrap();
        let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
        let owner = (uid.as_raw(), gid.as_raw());
        etc.set_owner_mode_time(OsStr::new("f"), owner, Some(0o640), 1_000_000)
            .unwrap();
        let stat = etc.stat(OsStr::new("f")).unwrap();
        assert_eq!((stat.permissions, stat.mtime.0), (0o640, 1_000_000));
        // A symlink keeps its mode, and what it points to is not touched.
        etc.set_owner_mode_time(OsStr::new("l"), owner, Some(0o600), 1_000_000)
            .unwrap();
        let inside = std::fs::metadata(root_path.join("etc/inside")).unwrap();
        assert_ne!(inside.permissions().mode() & 0o777, 0o600);
        etc.remove_all(OsStr::new("d")).unwrap();
        assert!(etc.stat(OsStr::new("d")).is_err());
        assert!(root.open_dir(Path::new("/etc/inside")).is_err());
    }
}
