//! The tree copier: fsutil's `copy.Copy` semantics (what BuildKit runs for COPY and ADD) on
//! paths already resolved inside their roots.
//!
//! - A directory is merged into an existing directory; a new one is created with the
//!   source's metadata. Below the top level, an existing directory's metadata is replaced
//!   by the source's (fsutil's `overwriteTargetMetadata`).
//! - A non-directory replaces an existing file or symlink; it never replaces a directory
//!   (`cannot replace to directory … with file`), and a directory never goes where a
//!   non-directory is (`cannot copy to non-directory: …`) — unless `replace_existing`
//!   (archive extraction), where the old entry is removed.
//! - Symlinks are copied as links, hard links within one source are kept, devices and fifos
//!   are recreated, overlay whiteouts are never copied.
//! - Owner: the `--chown` owner, else the source's (a stage or image) or root (the context).
//!   Mode: the source's, with `--chmod` applied to files and directories. Times and xattrs
//!   (except `trusted.overlay.*`) come from the source.
//! - Include (`--parents`) and exclude patterns match the path relative to the copied
//!   source, with parent results (moby `MatchesUsingParentResults`); a directory that is
//!   only on the way to an included entry is created when that entry is.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{Error, Result};
use super::linker::{self, Earlier, Finish, Job, Workers};
use super::sources::ContextDigests;
use super::user::Owner;
use super::{Report, Reuse, display_in_root};
use crate::instruction::Chmod;
use crate::source::{MatchInfo, PatternMatcher};
use crate::sys;
use crate::sys::dir::{Dir, FileStat, Kind};

/// Linking is kernel work on directories: more threads than this gain nothing.
const MAX_WORKERS: usize = 8;
/// Directories this deep below the top of a copy are walked by path, not kept open.
const MAX_OPEN_DEPTH: usize = 32;

/// Who owns what is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerPolicy {
    /// Keep the source's uid/gid (a stage, an image, an extracted archive).
    Keep,
    Fixed(Owner),
}

/// The entries of a build-context selection, by path relative to the context root, and
/// every directory on the way to one of them.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub entries: HashSet<PathBuf>,
    pub ancestors: HashSet<PathBuf>,
}

impl Filter {
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Filter {
        let mut filter = Filter::default();
        filter.ancestors.insert(PathBuf::from("."));
        for path in paths {
            filter.entries.insert(path.to_path_buf());
            let mut parent = path.parent();
            while let Some(p) = parent {
                if p.as_os_str().is_empty() {
                    break;
                }
                if !filter.ancestors.insert(p.to_path_buf()) {
                    break;
                }
                parent = p.parent();
            }
        }
        filter
    }

    pub fn allows(&self, rel: &Path) -> bool {
        self.entries.contains(rel) || self.ancestors.contains(rel)
    }
}

struct ParentDir {
    src: PathBuf,
    meta: FileStat,
    dst: PathBuf,
    copied: bool,
}

/// The open directories an entry is copied between, so that it is reached by its name
/// (one lookup) instead of by its whole path.
pub(super) struct Handles {
    src: Dir,
    pub(super) target: Dir,
    /// The same directory in the reused layer ([`Copier::reuse`]), when there is one.
    pub(super) earlier: Option<Dir>,
    /// `target` was made by this copy, which puts each name in it once: nothing there can
    /// be in the way of an entry.
    fresh: bool,
    /// The worker that links the entries of `target` (see [`linker`]).
    worker: Option<usize>,
}

/// How an entry is selected (see [`Copier::select`]), with the pattern results its
/// children match against.
struct Selected {
    include: bool,
    include_info: MatchInfo,
    exclude_info: MatchInfo,
}

/// What writing a regular file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Its content; its metadata is still to be set.
    Content,
    /// Content and metadata (linked, or handed to a worker that does both).
    WithInfo,
}

/// One entry to copy: where it is, and its name in the open parent directories (none for
/// the top of a copy).
struct Place<'p> {
    src: &'p Path,
    /// Relative to the source root (for the context filter and digests).
    src_rel: &'p Path,
    /// Relative to the copied source (for include and exclude patterns).
    components: &'p str,
    target: &'p Path,
    at: Option<(&'p Arc<Handles>, &'p OsStr)>,
    /// Levels below the top of the copy.
    depth: usize,
}

pub(crate) struct Copier<'a> {
    pub owner: OwnerPolicy,
    pub chmod: Option<&'a Chmod>,
    pub include: Option<&'a PatternMatcher>,
    pub exclude: Option<&'a PatternMatcher>,
    pub filter: Option<&'a Filter>,
    pub replace_existing: bool,
    /// The destination root, to name paths in errors as the build sees them.
    pub dest_root: &'a Path,
    pub report: &'a mut Report,
    /// Content digests of build-context files.
    pub digests: Option<ContextDigests<'a>>,
    /// An earlier layer to hard-link unchanged files from (writing into a layer directly).
    pub reuse: Option<&'a Reuse>,
    pub cancel: Option<&'a AtomicBool>,
    /// Destination path (relative to `dest_root`) → content digest of each context file
    /// written.
    pub copied: Vec<(PathBuf, [u8; 32])>,
    inodes: HashMap<(u64, u64), PathBuf>,
    /// Inodes of the reused layer already linked into this one.
    linked: Arc<Mutex<HashSet<(u64, u64)>>>,
    parents: Vec<ParentDir>,
    /// While an incremental copy runs: the threads that link unchanged files.
    workers: Option<Workers>,
}

impl<'a> Copier<'a> {
    pub fn new(dest_root: &'a Path, report: &'a mut Report) -> Copier<'a> {
        Copier {
            owner: OwnerPolicy::Fixed(Owner::ROOT),
            chmod: None,
            include: None,
            exclude: None,
            filter: None,
            replace_existing: false,
            dest_root,
            report,
            digests: None,
            reuse: None,
            cancel: None,
            copied: Vec::new(),
            inodes: HashMap::new(),
            linked: Arc::default(),
            parents: Vec::new(),
            workers: None,
        }
    }

    /// Copies the source `src` (a host path whose final component is not followed) to
    /// `target`. `src_rel` is its path relative to the source root (for the context filter).
    pub fn copy_top(&mut self, src: &Path, src_rel: &Path, target: &Path) -> Result<()> {
        self.inodes.clear();
        self.parents.clear();
        // Only an incremental copy has files to link on other threads.
        let workers = match self.reuse {
            Some(_) => std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(MAX_WORKERS),
            None => 0,
        };
        let linked = Arc::clone(&self.linked);
        let (result, wrote) = linker::run_with_workers(workers, &linked, self.cancel, |workers| {
            self.workers = workers;
            let place = Place {
                src,
                src_rel,
                components: "",
                target,
                at: None,
                depth: 0,
            };
            let result = self.copy(&place, false, MatchInfo::default(), MatchInfo::default());
            (result, self.workers.take())
        });
        self.report.files += wrote.files;
        self.report.linked += wrote.linked;
        self.report.bytes += wrote.bytes;
        result
    }

    fn copy(
        &mut self,
        place: &Place<'_>,
        overwrite_metadata: bool,
        parent_include: MatchInfo,
        parent_exclude: MatchInfo,
    ) -> Result<()> {
        let Place {
            src, target, at, ..
        } = *place;
        let meta = match at {
            Some((dirs, name)) => dirs.src.stat(name),
            None => fs::symlink_metadata(src).map(|meta| FileStat::from(&meta)),
        }
        .map_err(Error::io("lstat", src))?;
        if meta.is_whiteout() {
            return Ok(());
        }
        let Some(selected) = self.select(place, &meta, &parent_include, &parent_exclude)? else {
            return Ok(());
        };
        let include = selected.include;
        let is_dir = meta.is_dir();

        // In a directory this copy made, nothing is in the way of an entry.
        let fresh = at.is_some_and(|(dirs, _)| dirs.fresh);
        let target_existed = !fresh && fs::symlink_metadata(target).is_ok();
        if include {
            if self.replace_existing && !fresh {
                self.remove_unless_both_dirs(target, is_dir)?;
            }
            self.create_parents()?;
        }
        if !is_dir {
            if !include {
                return Ok(());
            }
            if !fresh {
                self.ensure_empty_file_target(target)?;
            }
        }

        let mut copy_info = include;
        let mut restore_times = false;
        let mut dir_worker = None;
        match meta.kind {
            Kind::Dir => {
                let (created, worker) =
                    self.copy_directory(place, &meta, overwrite_metadata, selected)?;
                if !overwrite_metadata {
                    copy_info = created;
                    restore_times = !created;
                }
                dir_worker = worker;
            }
            Kind::File => {
                if self.write_file(place, &meta)? == Written::WithInfo {
                    return Ok(());
                }
            }
            // Sockets cannot be recreated meaningfully; BuildKit's mknod of one is a no-op.
            Kind::Socket => return Ok(()),
            _ => self.write_special(src, target, &meta)?,
        }
        let finish = if copy_info {
            Some(Finish::Info(self.owner_of(&meta), self.mode_of(&meta)))
        } else if restore_times && target_existed {
            Some(Finish::Times)
        } else {
            None
        };
        self.finish(place, &meta, finish, dir_worker)
    }

    /// Whether the entry at `place` is copied (`include`), only walked through (a
    /// directory on the way to included entries), or skipped (`None`), by the include and
    /// exclude patterns and the context filter.
    fn select(
        &self,
        place: &Place<'_>,
        meta: &FileStat,
        parent_include: &MatchInfo,
        parent_exclude: &MatchInfo,
    ) -> Result<Option<Selected>> {
        let is_dir = meta.is_dir();
        let mut selected = Selected {
            include: true,
            include_info: MatchInfo::default(),
            exclude_info: MatchInfo::default(),
        };
        let mut excluded = false;
        if !place.components.is_empty() {
            if let Some(matcher) = self.include {
                let (hit, info) = matcher
                    .matches_using_parent_results(place.components, parent_include)
                    .map_err(bad_pattern)?;
                selected.include = hit;
                selected.include_info = info;
            }
            if let Some(matcher) = self.exclude {
                let (hit, info) = matcher
                    .matches_using_parent_results(place.components, parent_exclude)
                    .map_err(bad_pattern)?;
                if hit {
                    selected.include = false;
                    excluded = true;
                }
                selected.exclude_info = info;
            }
        }
        if let Some(filter) = self.filter
            && !filter.entries.contains(place.src_rel)
        {
            selected.include = false;
            if !(is_dir && filter.ancestors.contains(place.src_rel)) {
                return Ok(None);
            }
        }
        // Nothing below an excluded directory can come back without a `!` pattern.
        if excluded && is_dir && !self.exclude.is_some_and(PatternMatcher::exclusions) {
            return Ok(None);
        }
        Ok(Some(selected))
    }

    /// Writes the regular file at `place`: linked from the reused layer (then with its
    /// metadata already), queued for a worker that links or copies it, or copied.
    fn write_file(&mut self, place: &Place<'_>, meta: &FileStat) -> Result<Written> {
        // A failed worker's error comes before this entry's and replaces it.
        if self.cancel.is_some_and(|flag| flag.load(Ordering::Relaxed))
            || self.workers.as_ref().is_some_and(Workers::failed)
        {
            return Err(Error::Cancelled);
        }
        let digest = self.digests.and_then(|d| d.get(place.src_rel));
        let rel = place
            .target
            .strip_prefix(self.dest_root)
            .ok()
            .map(Path::to_path_buf);
        if let (Some(digest), Some(rel)) = (digest, rel) {
            self.copied.push((rel.clone(), digest));
            if self.may_link(&rel, digest, meta)
                && (self.queue_link(place, meta)
                    || self.link_unchanged(&rel, meta, place.target, place.at))
            {
                // The linked inode already has this metadata; it must not be touched.
                return Ok(Written::WithInfo);
            }
        }
        self.copy_file(place.src, place.target, meta)?;
        Ok(Written::Content)
    }

    /// Recreates a symlink, device or fifo.
    fn write_special(&mut self, src: &Path, target: &Path, meta: &FileStat) -> Result<()> {
        let node = match meta.kind {
            Kind::Symlink => {
                let link = fs::read_link(src).map_err(Error::io("readlink", src))?;
                std::os::unix::fs::symlink(&link, target).map_err(Error::io("symlink", target))?;
                self.report.symlinks += 1;
                return Ok(());
            }
            Kind::Fifo => sys::NodeKind::Fifo,
            Kind::BlockDevice => sys::NodeKind::BlockDevice,
            _ => sys::NodeKind::CharDevice,
        };
        let rdev = meta.rdev;
        sys::mknod(
            target,
            node,
            meta.permissions,
            u64::from(libc::major(rdev)),
            u64::from(libc::minor(rdev)),
        )?;
        self.report.other += 1;
        Ok(())
    }

    /// Gives the entry at `place` its final metadata: now, or, for a directory whose
    /// entries a worker may still be linking, by that worker after them.
    fn finish(
        &mut self,
        place: &Place<'_>,
        meta: &FileStat,
        finish: Option<Finish>,
        dir_worker: Option<usize>,
    ) -> Result<()> {
        let (src, target) = (place.src, place.target);
        match (dir_worker, self.workers.as_mut()) {
            (Some(worker), Some(workers)) => {
                match finish {
                    Some(finish) => {
                        let job = Job::Directory {
                            src: src.to_path_buf(),
                            target: target.to_path_buf(),
                            meta: *meta,
                            finish,
                        };
                        workers.queue(worker, job, true);
                    }
                    None => workers.flush(worker),
                }
                Ok(())
            }
            _ => match finish {
                Some(Finish::Info(owner, mode)) => set_info(meta, src, target, owner, mode),
                Some(Finish::Times) => set_times(meta, target),
                None => Ok(()),
            },
        }
    }

    /// Whether the context file `meta`, to be written at `rel` with `digest`, may be
    /// linked from the reused layer: that layer has the same content there, and the
    /// source has no other links (those are linked within the copy instead).
    fn may_link(&self, rel: &Path, digest: [u8; 32], meta: &FileStat) -> bool {
        self.reuse
            .is_some_and(|reuse| meta.nlink <= 1 && reuse.copied.get(rel) == Some(&digest))
    }

    /// Hands the file at `place` to the worker of its directory, which links or copies
    /// it. Returns whether it did (false without workers or open directories).
    fn queue_link(&mut self, place: &Place<'_>, meta: &FileStat) -> bool {
        let Some((dirs, name)) = place.at else {
            return false;
        };
        let (owner, mode) = (self.owner_of(meta), self.mode_of(meta));
        let (Some(worker), Some(workers)) = (dirs.worker, self.workers.as_mut()) else {
            return false;
        };
        let job = Job::File {
            dirs: Arc::clone(dirs),
            name: name.to_os_string(),
            src: place.src.to_path_buf(),
            target: place.target.to_path_buf(),
            meta: *meta,
            owner,
            mode,
        };
        workers.queue(worker, job, false);
        true
    }

    fn remove_unless_both_dirs(&self, target: &Path, src_is_dir: bool) -> Result<()> {
        let Ok(existing) = fs::symlink_metadata(target) else {
            return Ok(());
        };
        if src_is_dir && existing.is_dir() {
            return Ok(());
        }
        if existing.is_dir() {
            fs::remove_dir_all(target).map_err(Error::io("remove", target))
        } else {
            fs::remove_file(target).map_err(Error::io("remove", target))
        }
    }

    fn ensure_empty_file_target(&self, target: &Path) -> Result<()> {
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("lstat", target)(e)),
            Ok(meta) if meta.is_dir() => Err(Error::ReplaceDirectoryWithFile {
                path: display_in_root(self.dest_root, target),
            }),
            Ok(_) => fs::remove_file(target).map_err(Error::io("remove", target)),
        }
    }

    fn copy_directory(
        &mut self,
        place: &Place<'_>,
        meta: &FileStat,
        overwrite_metadata: bool,
        selected: Selected,
    ) -> Result<(bool, Option<usize>)> {
        let Selected {
            include,
            include_info,
            exclude_info,
        } = selected;
        let Place {
            src,
            src_rel,
            components,
            target,
            at,
            ..
        } = *place;
        let mut created = false;
        let index = self.parents.len();
        self.parents.push(ParentDir {
            src: src.to_path_buf(),
            meta: *meta,
            dst: target.to_path_buf(),
            copied: false,
        });
        if include {
            created = self.copy_directory_only(target, meta, overwrite_metadata)?;
            self.parents[index].copied = true;
        }
        let read_error = || Error::io("read directory", src);
        // Deep down, entries are reached by path, so that however deep the tree, few
        // directories are open.
        let (mut names, src_dir) = if place.depth < MAX_OPEN_DEPTH {
            let dir = match at {
                Some((dirs, name)) => dirs.src.open_dir(name),
                None => Dir::open(src),
            }
            .map_err(read_error())?;
            (dir.names().map_err(read_error())?, Some(dir))
        } else {
            (read_names(src)?, None)
        };
        names.sort();
        // Only a directory that exists now can be written into by name; one skipped on the
        // way to an included entry is made later, and its entries are reached by path.
        let handles = match src_dir {
            Some(src_dir) if include => Some(Arc::new(self.handles(src_dir, place, created)?)),
            _ => None,
        };
        let result = names.iter().try_for_each(|name| {
            let child_components = if self.include.is_none() && self.exclude.is_none() {
                String::new()
            } else if components.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{components}/{}", name.to_string_lossy())
            };
            let child_rel = if src_rel == Path::new(".") {
                PathBuf::from(name)
            } else {
                src_rel.join(name)
            };
            let child = Place {
                src: &src.join(name),
                src_rel: &child_rel,
                components: &child_components,
                target: &target.join(name),
                at: handles.as_ref().map(|dirs| (dirs, name.as_os_str())),
                depth: place.depth + 1,
            };
            self.copy(&child, true, include_info.clone(), exclude_info.clone())
        });
        self.parents.truncate(index);
        result.map(|()| (created, handles.and_then(|dirs| dirs.worker)))
    }

    /// Opens the target directory of `place` (and its counterpart in the reused layer)
    /// next to its already open source directory.
    fn handles(&mut self, src: Dir, place: &Place<'_>, created: bool) -> Result<Handles> {
        let name = place.at.map(|(_, name)| name);
        let target = match place.at {
            Some((dirs, name)) => dirs.target.open_dir(name),
            None => Dir::open(place.target),
        }
        .map_err(Error::io("open directory", place.target))?;
        let earlier = match (place.at, name) {
            (Some((dirs, _)), Some(name)) => {
                dirs.earlier.as_ref().and_then(|e| e.open_dir(name).ok())
            }
            _ => self.reuse.and_then(|reuse| {
                let rel = place.target.strip_prefix(self.dest_root).ok()?;
                Dir::open(&reuse.layer.join(rel)).ok()
            }),
        };
        Ok(Handles {
            src,
            target,
            earlier,
            fresh: created,
            worker: self.workers.as_mut().map(Workers::assign),
        })
    }

    /// Creates `target` as a directory if missing. Returns whether it was created.
    fn copy_directory_only(
        &mut self,
        target: &Path,
        meta: &FileStat,
        overwrite_metadata: bool,
    ) -> Result<bool> {
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(target).map_err(Error::io("mkdir", target))?;
                self.report.dirs += 1;
                Ok(true)
            }
            Err(e) => Err(Error::io("lstat", target)(e)),
            Ok(existing) if !existing.is_dir() => Err(Error::CopyToNonDirectory {
                path: display_in_root(self.dest_root, target),
            }),
            Ok(_) => {
                if overwrite_metadata {
                    set_mode(target, meta.permissions)?;
                }
                Ok(false)
            }
        }
    }

    /// Creates the directories that were skipped on the way to an included entry.
    fn create_parents(&mut self) -> Result<()> {
        for index in 0..self.parents.len() {
            if self.parents[index].copied {
                continue;
            }
            let (src, dst, meta) = {
                let p = &self.parents[index];
                (p.src.clone(), p.dst.clone(), p.meta)
            };
            if self.copy_directory_only(&dst, &meta, true)? {
                self.copy_info(&meta, &src, &dst)?;
            }
            self.parents[index].copied = true;
        }
        Ok(())
    }

    fn copy_file(&mut self, src: &Path, target: &Path, meta: &FileStat) -> Result<()> {
        if meta.nlink > 1 {
            let key = (meta.dev, meta.ino);
            if let Some(first) = self.inodes.get(&key) {
                fs::hard_link(first, target).map_err(Error::io("link", target))?;
                self.report.files += 1;
                return Ok(());
            }
            self.inodes.insert(key, target.to_path_buf());
        }
        let bytes = copy_contents(src, target)?;
        self.report.files += 1;
        self.report.bytes += bytes;
        Ok(())
    }

    /// Hard-links `target` to the file of the same path (`rel`) in the reused layer when
    /// that file has the owner, mode, size and mtime this copy would give it (see
    /// [`Copier::may_link`] for its content). Returns whether it did. `at` names the entry
    /// in open directories.
    fn link_unchanged(
        &mut self,
        rel: &Path,
        meta: &FileStat,
        target: &Path,
        at: Option<(&Arc<Handles>, &OsStr)>,
    ) -> bool {
        let Some(reuse) = self.reuse else {
            return false;
        };
        let earlier = match at {
            Some((dirs, name)) => match &dirs.earlier {
                Some(dir) => Earlier::At {
                    dir,
                    target: &dirs.target,
                    name,
                },
                None => return false,
            },
            None => Earlier::Path(reuse.layer.join(rel)),
        };
        let (owner, mode) = (self.owner_of(meta), self.mode_of(meta));
        if !linker::link_earlier(&earlier, meta, owner, mode, target, &self.linked) {
            return false;
        }
        self.report.files += 1;
        self.report.linked += 1;
        true
    }

    /// The owner a copy of the source `meta` gets.
    fn owner_of(&self, meta: &FileStat) -> Owner {
        match self.owner {
            OwnerPolicy::Keep => Owner {
                uid: meta.uid,
                gid: meta.gid,
            },
            OwnerPolicy::Fixed(owner) => owner,
        }
    }

    /// The mode a copy of the source `meta` gets (`None` for a symlink: it has none).
    fn mode_of(&self, meta: &FileStat) -> Option<u32> {
        if meta.is_symlink() {
            return None;
        }
        let mode = meta.permissions;
        Some(match self.chmod {
            None => mode,
            Some(chmod) => chmod.apply(mode, meta.is_dir()),
        })
    }

    /// Owner, mode, xattrs and times of `target` from the source `meta` (BuildKit's
    /// `copyFileInfo` + `copyXAttrs`).
    fn copy_info(&mut self, meta: &FileStat, src: &Path, target: &Path) -> Result<()> {
        set_info(meta, src, target, self.owner_of(meta), self.mode_of(meta))
    }
}

/// The names in directory `dir`.
fn read_names(dir: &Path) -> Result<Vec<OsString>> {
    fs::read_dir(dir)
        .map_err(Error::io("read directory", dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(Error::io("read directory", dir))
}

/// Copies the content of the regular file `src` to the new file `target` (mode 0600 until
/// its info is set). Returns the bytes copied.
pub(super) fn copy_contents(src: &Path, target: &Path) -> Result<u64> {
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(Error::io("open", src))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)
        .map_err(Error::io("create", target))?;
    io::copy(&mut from, &mut to).map_err(Error::io("copy to", target))
}

/// Gives `target` `owner`, `mode` (unless `None`), and the xattrs (not overlayfs' own)
/// and times of the source `src` with metadata `meta`.
pub(crate) fn set_info(
    meta: &FileStat,
    src: &Path,
    target: &Path,
    owner: Owner,
    mode: Option<u32>,
) -> Result<()> {
    super::lchown(target, owner)?;
    if let Some(mode) = mode {
        set_mode(target, mode)?;
    }
    copy_xattrs(src, target);
    set_times(meta, target)
}

pub(super) fn set_times(meta: &FileStat, target: &Path) -> Result<()> {
    sys::set_times_nofollow(target, meta.accessed(), meta.modified()).map_err(Error::from)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", path))
}

/// Copies extended attributes, except overlayfs' own; failures are ignored, as BuildKit
/// only logs them (a filesystem without xattr support, a `security.*` we may not set).
fn copy_xattrs(src: &Path, target: &Path) {
    let Ok(names) = sys::llistxattr(src) else {
        return;
    };
    for name in names {
        if sys::userns::is_overlay_xattr(name.as_encoded_bytes()) {
            continue;
        }
        if let Ok(Some(value)) = sys::lgetxattr(src, &name) {
            let _ = sys::lsetxattr(target, &name, &value);
        }
    }
}

fn bad_pattern(e: crate::source::Error) -> Error {
    Error::BadPattern {
        pattern: String::new(),
        reason: e.to_string(),
    }
}
