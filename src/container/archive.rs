//! `docker cp`'s side in the container: a path's stat, a tar of what a path holds, and a
//! tar extracted into a directory.
//!
//! A running container is reached through its PID 1's root (`/proc/PID/root`: its overlay
//! and its volumes, as its processes see them); a stopped one through its overlay (the
//! image's layers under its writable layer) mounted on a thread with a mount namespace of
//! its own, so the mount is never seen elsewhere and goes when the thread ends. Either
//! way a write lands in the container's writable layer (or a volume it mounts), never in
//! an image layer or on the host: every path is resolved by the kernel inside the root
//! (`sys::rootdir`), so `..` stops at the container's `/` and a symlink to `/` leads to the
//! container's `/`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::io_err;
use super::{Container, ContainerError, Result, Status, refresh, resolve};
use crate::store::Store;
use crate::sys::dir::{Dir, FileStat, Kind};
use crate::sys::fileop::Overlay;
use crate::sys::rootdir::Root;

/// What a path in a container is (Docker's `ContainerPathStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last component of the path as asked for.
    pub name: String,
    pub size: u64,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub permissions: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// For a symlink, where it points (its target joined to its directory), else empty.
    pub link_target: String,
}

/// A path of a request, cleaned as Docker does (`filepath.Join("/", path)`): its
/// components, `..` stopping at `/`.
struct Asked {
    parts: Vec<OsString>,
    /// It ends in `/` or `/.`: the path itself is wanted, symlinks followed to the end.
    follow: bool,
    /// The name its archive entries start with.
    base: String,
}

impl Asked {
    fn parse(path: &str) -> Asked {
        let mut parts: Vec<OsString> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name.into()),
            }
        }
        let dot = path.ends_with("/.") || path == ".";
        let follow = parts.is_empty() || dot || path.ends_with('/');
        let base = match parts.last() {
            Some(last) if !dot => last.to_string_lossy().into_owned(),
            _ => ".".to_string(),
        };
        Asked {
            parts,
            follow,
            base,
        }
    }

    fn path(&self) -> PathBuf {
        let mut path = PathBuf::from("/");
        path.extend(&self.parts);
        path
    }

    fn shown(&self) -> String {
        self.path().display().to_string()
    }
}

/// A path the kernel cannot take (a NUL byte in it).
fn invalid_path(asked: &Asked) -> ContainerError {
    ContainerError::ArchiveRequest(format!("invalid path {:?}", asked.shown()))
}

/// What [`Asked`] names in a root: a directory reached to its end, or an entry of a
/// directory (itself, not what it may link to).
enum Target {
    Dir(Dir),
    Entry { parent: Dir, name: OsString },
}

impl Target {
    fn find(root: &Root, asked: &Asked) -> Result<Target> {
        let missing = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                ContainerError::NoSuchPath(asked.shown())
            }
            io::ErrorKind::InvalidInput => invalid_path(asked),
            _ => io_err("open", asked.path())(e),
        };
        match asked.parts.split_last() {
            Some((name, parents)) if !asked.follow => {
                let parent = root
                    .open_dir(&parents.iter().collect::<PathBuf>())
                    .map_err(missing)?;
                parent.stat(name).map_err(missing)?;
                Ok(Target::Entry {
                    parent,
                    name: name.clone(),
                })
            }
            _ => Ok(Target::Dir(root.open_dir(&asked.path()).map_err(missing)?)),
        }
    }

    fn stat(&self) -> io::Result<FileStat> {
        match self {
            Target::Dir(dir) => dir.stat_self(),
            Target::Entry { parent, name } => parent.stat(name),
        }
    }
}

/// Runs `work` on the root of the container `query`: its PID 1's when it runs (`work`
/// is told `true`), else its overlay, mounted for `work` alone. The stopped case holds
/// the container's lock, which a start takes before it mounts the same layer, so the
/// writable layer is never mounted twice; `work` must then be short (no client pace).
fn in_root<T: Send>(
    store: &Store,
    query: &str,
    asked: &Asked,
    work: impl FnOnce(&Root, bool) -> Result<T> + Send,
) -> Result<T> {
    let found = resolve(store, query)?;
    let _lock = super::networks::lock_config(&found)?;
    let mut container = super::load(&found.dir)?;
    let _ = refresh(&mut container);
    if container.state.status == Status::Running {
        drop(_lock);
        let init = super::exec::init_pid(&container)?;
        let path = PathBuf::from(format!("/proc/{init}/root"));
        let root = Root::open(&path).map_err(io_err("open", &path))?;
        return work(&root, true);
    }
    // Only the container's own layers are mounted: a path in one of its volumes or bind
    // mounts would read or write the layer hidden under it.
    let path = asked.path();
    if let Some(mount) = container
        .config
        .mounts
        .iter()
        .find(|m| path.starts_with(&m.destination))
    {
        return Err(ContainerError::ArchiveRequest(format!(
            "{} is in the volume or bind mount at {}: copy it while the container runs",
            asked.shown(),
            mount.destination
        )));
    }
    let work = |root: &Root| work(root, false);
    let mounted = std::thread::scope(|scope| scope.spawn(|| mounted(&container, work)).join());
    mounted.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// On a thread of its own: mounts the stopped container's overlay in a private mount
/// namespace, runs `work` on it, unmounts.
fn mounted<T>(container: &Container, work: impl FnOnce(&Root) -> Result<T>) -> Result<T> {
    crate::sys::fileop::enter_private_mount_namespace()?;
    let target = container
        .dir
        .join(format!(".cp-{}", crate::store::random_name()));
    std::fs::create_dir(&target).map_err(io_err("create", &target))?;
    let overlay = Overlay {
        lowers: container.config.lowers.clone(),
        upper: Some((container.dir.join("upper"), container.dir.join("work"))),
    };
    let result = crate::sys::fileop::mount_overlay(&overlay, &target)
        .map_err(ContainerError::from)
        .and_then(|()| {
            let result = Root::open(&target)
                .map_err(io_err("open", &target))
                .and_then(|root| work(&root));
            let _ = crate::sys::fileop::unmount(&target);
            result
        });
    let _ = std::fs::remove_dir(&target);
    result
}

fn path_stat(asked: &Asked, target: &Target) -> Result<PathStat> {
    let stat = target.stat().map_err(io_err("stat", asked.path()))?;
    let link_target = match target {
        Target::Entry { parent, name } if stat.is_symlink() => {
            let link = parent
                .read_link(name)
                .map_err(io_err("readlink", asked.path()))?;
            let mut pointed = asked.path();
            pointed.pop();
            Asked::parse(&pointed.join(link).to_string_lossy()).shown()
        }
        _ => String::new(),
    };
    Ok(PathStat {
        name: asked.base.clone(),
        size: stat.size,
        kind: stat.kind,
        permissions: stat.permissions,
        mtime: stat.mtime,
        link_target,
    })
}

/// `HEAD /containers/{id}/archive`: what `path` is in the container.
pub fn stat_path(store: &Store, query: &str, path: &str) -> Result<PathStat> {
    let asked = Asked::parse(path);
    in_root(store, query, &asked, |root, _| {
        path_stat(&asked, &Target::find(root, &asked)?)
    })
}

/// `GET /containers/{id}/archive`: a tar of `path` (a directory with everything in it,
/// symlinks as links), its entries named from the path's last component. The stat is
/// taken first; `out` gets the archive.
pub fn archive_path(
    store: &Store,
    query: &str,
    path: &str,
    mut out: impl Write + Send,
) -> Result<()> {
    let asked = Asked::parse(path);
    let write = |root: &Root, out: &mut dyn Write| -> Result<()> {
        let target = Target::find(root, &asked)?;
        let mut builder = tar::Builder::new(out);
        let mut writer = TarWriter {
            builder: &mut builder,
            links: HashMap::new(),
        };
        let base = PathBuf::from(&asked.base);
        match &target {
            Target::Dir(dir) => writer.dir(dir, &base)?,
            Target::Entry { parent, name } => writer.entry(parent, name, &base)?,
        }
        builder
            .into_inner()
            .map_err(io_err("write the archive of", asked.path()))?
            .flush()
            .map_err(io_err("write the archive of", asked.path()))
    };
    // A stopped container's archive is spooled to a file while its layer is mounted, then
    // sent at the client's pace with the layer free again.
    let spool = resolve(store, query)?
        .dir
        .join(format!(".cp-{}.tar", crate::store::random_name()));
    let spooled = in_root(store, query, &asked, |root, running| {
        if running {
            return write(root, &mut out).map(|()| false);
        }
        let mut file = std::fs::File::create(&spool).map_err(io_err("create", &spool))?;
        write(root, &mut file).map(|()| true)
    });
    let sent = match spooled {
        Ok(true) => std::fs::File::open(&spool)
            .and_then(|mut file| io::copy(&mut file, &mut out))
            .and_then(|_| out.flush())
            .map_err(io_err("send the archive of", asked.path())),
        Ok(false) => Ok(()),
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&spool);
    sent
}

/// Writes entries into a tar, hard links as links to the first path of their file.
struct TarWriter<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarWriter<'_, W> {
    fn header(stat: &FileStat, kind: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(stat.permissions);
        header.set_uid(u64::from(stat.uid));
        header.set_gid(u64::from(stat.gid));
        header.set_mtime(u64::try_from(stat.mtime.0).unwrap_or(0));
        header.set_size(0);
        header
    }

    /// Appends an entry named `name` exactly as given (the tar crate would drop a leading
    /// `./`, which the docker CLI renames for `DIR/.`), with GNU long-name entries before
    /// it for a name or link target over the header's 100 bytes.
    fn append(
        &mut self,
        mut header: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        let old = header.as_old_mut();
        for (kind, value, field) in [
            (tar::EntryType::GNULongName, Some(name), &mut old.name),
            (tar::EntryType::GNULongLink, link, &mut old.linkname),
        ] {
            let Some(value) = value else { continue };
            if value.len() > field.len() {
                let mut long = tar::Header::new_gnu();
                long.set_entry_type(kind);
                long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                long.set_mode(0o644);
                long.set_size(value.len() as u64 + 1);
                long.set_cksum();
                self.builder.append(&long, value.chain(&[0u8][..]))?;
            }
            let kept = value.len().min(field.len());
            field.fill(0);
            field[..kept].copy_from_slice(&value[..kept]);
        }
        header.set_cksum();
        self.builder.append(&header, data)
    }

    /// The directory `dir` as `path`, and everything in it.
    fn dir(&mut self, dir: &Dir, path: &Path) -> Result<()> {
        let fail = |action| io_err(action, path.to_path_buf());
        let stat = dir.stat_self().map_err(fail("stat"))?;
        let header = Self::header(&stat, tar::EntryType::Directory);
        let mut name = path.as_os_str().as_bytes().to_vec();
        name.push(b'/');
        self.append(header, &name, None, io::empty())
            .map_err(fail("archive"))?;
        let mut names = dir.names().map_err(fail("read"))?;
        names.sort();
        for name in names {
            self.entry(dir, &name, &path.join(&name))?;
        }
        Ok(())
    }

    /// Entry `name` of `parent` as `path` (a directory with what it holds).
    fn entry(&mut self, parent: &Dir, name: &OsStr, path: &Path) -> Result<()> {
        let fail = |action| io_err(action, path.to_path_buf());
        let stat = parent.stat(name).map_err(fail("stat"))?;
        if stat.nlink > 1 && !stat.is_dir() {
            if let Some(first) = self.links.get(&(stat.dev, stat.ino)) {
                let header = Self::header(&stat, tar::EntryType::Link);
                let first = first.clone();
                return self
                    .append(header, bytes(path), Some(bytes(&first)), io::empty())
                    .map_err(fail("archive"));
            }
            self.links.insert((stat.dev, stat.ino), path.to_path_buf());
        }
        match stat.kind {
            Kind::Dir => self.dir(&parent.open_dir(name).map_err(fail("open"))?, path),
            Kind::File => {
                let file = parent.open_file(name).map_err(fail("open"))?;
                let mut header = Self::header(&stat, tar::EntryType::Regular);
                header.set_size(stat.size);
                // A file that shrinks meanwhile is padded, one that grows cut.
                let content = file.take(stat.size).chain(io::repeat(0)).take(stat.size);
                self.append(header, bytes(path), None, content)
                    .map_err(fail("archive"))
            }
            Kind::Symlink => {
                let target = parent.read_link(name).map_err(fail("readlink"))?;
                let header = Self::header(&stat, tar::EntryType::Symlink);
                self.append(header, bytes(path), Some(target.as_bytes()), io::empty())
                    .map_err(fail("archive"))
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let kind = match stat.kind {
                    Kind::Fifo => tar::EntryType::Fifo,
                    Kind::CharDevice => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                };
                let mut header = Self::header(&stat, kind);
                let (major, minor) = crate::sys::inspect::device_numbers(stat.rdev);
                header.set_device_major(major).map_err(fail("archive"))?;
                header.set_device_minor(minor).map_err(fail("archive"))?;
                self.append(header, bytes(path), None, io::empty())
                    .map_err(fail("archive"))
            }
            // A tar cannot hold a socket (Docker leaves them out too).
            Kind::Socket => Ok(()),
        }
    }
}

fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// `PUT /containers/{id}/archive`: extracts the tar `archive` into the directory `path`.
/// With `no_overwrite_dir_non_dir`, an entry that would replace a directory with a
/// non-directory (or the reverse) is refused.
pub fn extract_archive(
    store: &Store,
    query: &str,
    path: &str,
    archive: impl Read + Send,
    no_overwrite_dir_non_dir: bool,
) -> Result<()> {
    let asked = Asked::parse(path);
    in_root(store, query, &asked, |root, _| {
        // The destination must be a directory, reached through symlinks.
        root.open_dir(&asked.path()).map_err(|e| match e.kind() {
            io::ErrorKind::NotADirectory => {
                ContainerError::ArchiveRequest("extraction point is not a directory".into())
            }
            io::ErrorKind::NotFound => ContainerError::NoSuchPath(asked.shown()),
            io::ErrorKind::InvalidInput => invalid_path(&asked),
            _ => io_err("open", asked.path())(e),
        })?;
        // Entries resolve with the destination as their root, as Docker extracts: a
        // symlink the archive itself makes (`l -> /`) cannot lead its later entries out.
        let inside = root
            .within(&asked.path())
            .map_err(io_err("open", asked.path()))?;
        Extractor {
            root: &inside,
            dest: asked.path(),
            no_overwrite_dir_non_dir,
            directories: Vec::new(),
        }
        .run(archive)
    })
}

/// Extracts one archive into `root`, the destination `dest` (paths are shown as the
/// container sees them).
struct Extractor<'a> {
    root: &'a Root,
    dest: PathBuf,
    no_overwrite_dir_non_dir: bool,
    /// Directories written, whose owner, mode and time are set last (writing into a
    /// directory changes its time).
    directories: Vec<(PathBuf, OsString, tar::Header)>,
}

/// The components of an archive entry's path; `..` anywhere is refused.
fn entry_parts(path: &Path) -> Result<Vec<OsString>> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(name) => parts.push(name.to_os_string()),
            std::path::Component::ParentDir => {
                return Err(ContainerError::ArchiveRequest(format!(
                    "invalid archive entry {}: it leaves the destination",
                    path.display()
                )));
            }
            _ => {}
        }
    }
    Ok(parts)
}

impl Extractor<'_> {
    fn run(mut self, archive: impl Read) -> Result<()> {
        let bad = |e: io::Error| ContainerError::ArchiveRequest(format!("invalid archive: {e}"));
        let mut archive = tar::Archive::new(archive);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let parts = entry_parts(&entry.path().map_err(bad)?)?;
            let Some((name, parents)) = parts.split_last() else {
                continue; // `./`: the destination itself.
            };
            let parent_path = parents.iter().fold(self.dest.clone(), |p, c| p.join(c));
            let parent = self.parent(&parent_path)?;
            self.write(&parent, &parent_path, name, &mut entry)?;
        }
        for (parent_path, name, header) in std::mem::take(&mut self.directories) {
            let parent = self.parent(&parent_path)?;
            set_metadata(&parent, &name, &header, true)
                .map_err(io_err("set the metadata of", parent_path.join(&name)))?;
        }
        Ok(())
    }

    /// The directory `path` (under `dest`), made (0755) where it is missing.
    fn parent(&self, path: &Path) -> Result<Dir> {
        match self.open(path) {
            Ok(dir) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound && path != self.dest => {
                let name = path.file_name().unwrap_or_default();
                let above = self.parent(path.parent().unwrap_or(Path::new("/")))?;
                above
                    .make_dir(name, 0o755)
                    .map_err(io_err("create", path))?;
                self.open(path).map_err(io_err("open", path))
            }
            Err(e) => Err(io_err("open", path)(e)),
        }
    }

    /// Opens `path` (under `dest`) in the destination's own root.
    fn open(&self, path: &Path) -> io::Result<Dir> {
        self.root
            .open_dir(path.strip_prefix(&self.dest).unwrap_or(Path::new("")))
    }

    fn write(
        &mut self,
        parent: &Dir,
        parent_path: &Path,
        name: &OsStr,
        entry: &mut tar::Entry<impl Read>,
    ) -> Result<()> {
        let path = parent_path.join(name);
        let fail = |action| io_err(action, path.clone());
        let header = entry.header().clone();
        let kind = header.entry_type();
        let existing = match parent.stat(name) {
            Ok(stat) => Some(stat),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail("stat")(e)),
        };
        if let Some(existing) = existing {
            let keep = existing.is_dir() && kind.is_dir();
            if self.no_overwrite_dir_non_dir && existing.is_dir() != kind.is_dir() {
                let (old, new) = if existing.is_dir() {
                    ("directory", "non-directory")
                } else {
                    ("non-directory", "directory")
                };
                return Err(ContainerError::ArchiveRequest(format!(
                    "cannot overwrite {old} {} with {new}",
                    path.display()
                )));
            }
            if !keep {
                parent.remove_all(name).map_err(fail("remove"))?;
            }
        }
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                parent.make_dir(name, 0o700).map_err(fail("create"))?;
                self.directories
                    .push((parent_path.to_path_buf(), name.to_os_string(), header));
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = parent.create_file(name, 0o600).map_err(fail("create"))?;
                io::copy(entry, &mut file)
                    .map_err(|e| ContainerError::ArchiveRequest(format!("invalid archive: {e}")))?;
            }
            tar::EntryType::Symlink => {
                let target = link_name(&header, &path)?;
                parent
                    .make_symlink(name, target.as_os_str())
                    .map_err(fail("symlink"))?;
            }
            tar::EntryType::Link => {
                let target = link_name(&header, &path)?;
                let parts = entry_parts(&target)?;
                let Some((target_name, target_parents)) = parts.split_last() else {
                    return Err(ContainerError::ArchiveRequest(format!(
                        "invalid hard link {}",
                        path.display()
                    )));
                };
                let target_dir = target_parents
                    .iter()
                    .fold(self.dest.clone(), |p, c| p.join(c));
                let from = self.open(&target_dir).map_err(fail("link"))?;
                return from.link(target_name, parent, name).map_err(fail("link"));
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let node = match kind {
                    tar::EntryType::Fifo => Kind::Fifo,
                    tar::EntryType::Char => Kind::CharDevice,
                    _ => Kind::BlockDevice,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                parent
                    .make_node(name, node, mode, (major, minor))
                    .map_err(fail("create"))?;
            }
            // Extensions the reader has applied already (long names, pax records).
            _ => return Ok(()),
        }
        set_metadata(parent, name, &header, kind != tar::EntryType::Symlink)
            .map_err(fail("set the metadata of"))
    }
}

fn link_name(header: &tar::Header, path: &Path) -> Result<PathBuf> {
    header
        .link_name()
        .ok()
        .flatten()
        .map(|name| name.into_owned())
        .ok_or_else(|| {
            ContainerError::ArchiveRequest(format!("invalid link entry {}", path.display()))
        })
}

/// The archive's owner, mode (not for a symlink) and time on entry `name`.
fn set_metadata(parent: &Dir, name: &OsStr, header: &tar::Header, mode: bool) -> io::Result<()> {
    let owner = (
        header.uid().unwrap_or(0) as u32,
        header.gid().unwrap_or(0) as u32,
    );
    let permissions = mode.then(|| header.mode().unwrap_or(0o644) & 0o7777);
    let mtime = i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0);
    parent.set_owner_mode_time(name, owner, permissions, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_paths_are_clamped_at_the_root() {
        let asked = Asked::parse("../../etc/./hostname");
        assert_eq!(asked.shown(), "/etc/hostname");
        assert_eq!(asked.base, "hostname");
        assert!(!asked.follow);
        let dir = Asked::parse("/etc/");
        assert!(dir.follow);
        assert_eq!(dir.base, "etc");
        let contents = Asked::parse("/etc/.");
        assert!(contents.follow);
        assert_eq!(contents.base, ".");
        let root = Asked::parse("/..");
        assert_eq!(root.shown(), "/");
        assert!(root.follow);
    }

    #[test]
    fn archive_entries_may_not_leave_the_destination() {
        assert_eq!(entry_parts(Path::new("./a/b")).unwrap(), ["a", "b"]);
        assert_eq!(entry_parts(Path::new("/a")).unwrap(), ["a"]);
        assert!(entry_parts(Path::new("a/../../b")).is_err());
    }
}
