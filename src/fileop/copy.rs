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
use std::fs::{self, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{Error, Result};
use super::user::Owner;
use super::{ContextDigests, Report, Reuse, display_in_root};
use crate::instruction::Chmod;
use crate::source::{MatchInfo, PatternMatcher};
use crate::sys;

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
    meta: Metadata,
    dst: PathBuf,
    copied: bool,
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
    linked: HashSet<(u64, u64)>,
    parents: Vec<ParentDir>,
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
            linked: HashSet::new(),
            parents: Vec::new(),
        }
    }

    /// Copies the source `src` (a host path whose final component is not followed) to
    /// `target`. `src_rel` is its path relative to the source root (for the context filter).
    pub fn copy_top(&mut self, src: &Path, src_rel: &Path, target: &Path) -> Result<()> {
        self.inodes.clear();
        self.parents.clear();
        self.copy(
            src,
            src_rel,
            "",
            target,
            false,
            MatchInfo::default(),
            MatchInfo::default(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        src: &Path,
        src_rel: &Path,
        components: &str,
        target: &Path,
        overwrite_metadata: bool,
        parent_include: MatchInfo,
        parent_exclude: MatchInfo,
    ) -> Result<()> {
        let meta = fs::symlink_metadata(src).map_err(Error::io("lstat", src))?;
        if sys::is_whiteout(&meta) {
            return Ok(());
        }
        let is_dir = meta.is_dir();
        let mut include = true;
        let mut excluded = false;
        let mut include_info = MatchInfo::default();
        let mut exclude_info = MatchInfo::default();
        if !components.is_empty() {
            if let Some(matcher) = self.include {
                let (hit, info) = matcher
                    .matches_using_parent_results(components, &parent_include)
                    .map_err(bad_pattern)?;
                include = hit;
                include_info = info;
            }
            if let Some(matcher) = self.exclude {
                let (hit, info) = matcher
                    .matches_using_parent_results(components, &parent_exclude)
                    .map_err(bad_pattern)?;
                if hit {
                    include = false;
                    excluded = true;
                }
                exclude_info = info;
            }
        }
        if let Some(filter) = self.filter
            && !filter.entries.contains(src_rel)
        {
            include = false;
            if !(is_dir && filter.ancestors.contains(src_rel)) {
                return Ok(());
            }
        }
        // Nothing below an excluded directory can come back without a `!` pattern.
        if excluded && is_dir && !self.exclude.is_some_and(PatternMatcher::exclusions) {
            return Ok(());
        }

        let target_existed = fs::symlink_metadata(target).is_ok();
        if include {
            if self.replace_existing {
                self.remove_unless_both_dirs(target, is_dir)?;
            }
            self.create_parents()?;
        }
        if !is_dir {
            if !include {
                return Ok(());
            }
            self.ensure_empty_file_target(target)?;
        }

        let mut copy_info = include;
        let mut restore_times = false;
        let file_type = meta.file_type();
        if is_dir {
            let created = self.copy_directory(
                src,
                src_rel,
                components,
                target,
                &meta,
                overwrite_metadata,
                include,
                include_info,
                exclude_info,
            )?;
            if !overwrite_metadata {
                copy_info = created;
                restore_times = !created;
            }
        } else if file_type.is_file() {
            if let Some(flag) = self.cancel
                && flag.load(Ordering::Relaxed)
            {
                return Err(Error::Cancelled);
            }
            let digest = self.digests.and_then(|d| d.get(src_rel));
            let rel = target
                .strip_prefix(self.dest_root)
                .ok()
                .map(Path::to_path_buf);
            if let (Some(digest), Some(rel)) = (digest, rel) {
                self.copied.push((rel.clone(), digest));
                if self.link_unchanged(&rel, digest, &meta, target)? {
                    // The linked inode already has this metadata; it must not be touched.
                    return Ok(());
                }
            }
            self.copy_file(src, target, &meta)?;
        } else if file_type.is_symlink() {
            let link = fs::read_link(src).map_err(Error::io("readlink", src))?;
            std::os::unix::fs::symlink(&link, target).map_err(Error::io("symlink", target))?;
            self.report.symlinks += 1;
        } else if file_type.is_socket() {
            // Sockets cannot be recreated meaningfully; BuildKit's mknod of one is a no-op.
            return Ok(());
        } else {
            let kind = if file_type.is_fifo() {
                sys::NodeKind::Fifo
            } else if file_type.is_block_device() {
                sys::NodeKind::BlockDevice
            } else {
                sys::NodeKind::CharDevice
            };
            let rdev = meta.rdev();
            sys::mknod(
                target,
                kind,
                meta.mode() & 0o7777,
                u64::from(libc::major(rdev)),
                u64::from(libc::minor(rdev)),
            )?;
            self.report.other += 1;
        }

        if copy_info {
            self.copy_info(&meta, src, target)?;
        } else if restore_times && target_existed {
            set_times(&meta, target)?;
        }
        Ok(())
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

    #[allow(clippy::too_many_arguments)]
    fn copy_directory(
        &mut self,
        src: &Path,
        src_rel: &Path,
        components: &str,
        target: &Path,
        meta: &Metadata,
        overwrite_metadata: bool,
        include: bool,
        include_info: MatchInfo,
        exclude_info: MatchInfo,
    ) -> Result<bool> {
        let mut created = false;
        let index = self.parents.len();
        self.parents.push(ParentDir {
            src: src.to_path_buf(),
            meta: meta.clone(),
            dst: target.to_path_buf(),
            copied: false,
        });
        if include {
            created = self.copy_directory_only(target, meta, overwrite_metadata)?;
            self.parents[index].copied = true;
        }
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(Error::io("read directory", src))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(Error::io("read directory", src))?;
        names.sort();
        let result = names.iter().try_for_each(|name| {
            let child_components = if components.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{components}/{}", name.to_string_lossy())
            };
            let child_rel = if src_rel == Path::new(".") {
                PathBuf::from(name)
            } else {
                src_rel.join(name)
            };
            self.copy(
                &src.join(name),
                &child_rel,
                &child_components,
                &target.join(name),
                true,
                include_info.clone(),
                exclude_info.clone(),
            )
        });
        self.parents.truncate(index);
        result.map(|()| created)
    }

    /// Creates `target` as a directory if missing. Returns whether it was created.
    fn copy_directory_only(
        &mut self,
        target: &Path,
        meta: &Metadata,
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
                    set_mode(target, meta.mode() & 0o7777)?;
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
                (p.src.clone(), p.dst.clone(), p.meta.clone())
            };
            if self.copy_directory_only(&dst, &meta, true)? {
                self.copy_info(&meta, &src, &dst)?;
            }
            self.parents[index].copied = true;
        }
        Ok(())
    }

    fn copy_file(&mut self, src: &Path, target: &Path, meta: &Metadata) -> Result<()> {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.inodes.get(&key) {
                fs::hard_link(first, target).map_err(Error::io("link", target))?;
                self.report.files += 1;
                return Ok(());
            }
            self.inodes.insert(key, target.to_path_buf());
        }
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
        let bytes = io::copy(&mut from, &mut to).map_err(Error::io("copy to", target))?;
        self.report.files += 1;
        self.report.bytes += bytes;
        Ok(())
    }

    /// Hard-links `target` to the file of the same path in the reused layer when that file
    /// was written from the same content and has the owner, mode, size and mtime this copy
    /// would give it. Returns whether it did.
    fn link_unchanged(
        &mut self,
        rel: &Path,
        digest: [u8; 32],
        meta: &Metadata,
        target: &Path,
    ) -> Result<bool> {
        let Some(reuse) = self.reuse else {
            return Ok(false);
        };
        // A source with several links is linked within the copy instead.
        if meta.nlink() > 1 || reuse.copied.get(rel) != Some(&digest) {
            return Ok(false);
        }
        let earlier = reuse.layer.join(rel);
        let Ok(old) = fs::symlink_metadata(&earlier) else {
            return Ok(false);
        };
        // What `copy_info` would give the copy.
        let owner = self.owner_of(meta);
        let same = old.is_file()
            && old.len() == meta.len()
            && Some(old.mode() & 0o7777) == self.mode_of(meta)
            && (old.uid(), old.gid()) == (owner.uid, owner.gid)
            && (old.mtime(), old.mtime_nsec()) == (meta.mtime(), meta.mtime_nsec());
        // Each earlier inode is linked once: two paths that were hard links of each other
        // then need not be now.
        if !same || !self.linked.insert((old.dev(), old.ino())) {
            return Ok(false);
        }
        if fs::hard_link(&earlier, target).is_err() {
            return Ok(false);
        }
        self.report.files += 1;
        self.report.linked += 1;
        Ok(true)
    }

    /// The owner a copy of the source `meta` gets.
    fn owner_of(&self, meta: &Metadata) -> Owner {
        match self.owner {
            OwnerPolicy::Keep => Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            },
            OwnerPolicy::Fixed(owner) => owner,
        }
    }

    /// The mode a copy of the source `meta` gets (`None` for a symlink: it has none).
    fn mode_of(&self, meta: &Metadata) -> Option<u32> {
        if meta.file_type().is_symlink() {
            return None;
        }
        let mode = meta.mode() & 0o7777;
        Some(match self.chmod {
            None => mode,
            Some(chmod) => chmod.apply(mode, meta.is_dir()),
        })
    }

    /// Owner, mode, xattrs and times of `target` from the source `meta` (BuildKit's
    /// `copyFileInfo` + `copyXAttrs`).
    fn copy_info(&mut self, meta: &Metadata, src: &Path, target: &Path) -> Result<()> {
        set_info(meta, src, target, self.owner_of(meta), self.mode_of(meta))
    }
}

/// Gives `target` `owner`, `mode` (unless `None`), and the xattrs (not overlayfs' own)
/// and times of the source `src` with metadata `meta`.
pub(crate) fn set_info(
    meta: &Metadata,
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

fn set_times(meta: &Metadata, target: &Path) -> Result<()> {
    let atime = meta.accessed().map_err(Error::io("stat", target))?;
    let mtime = meta.modified().map_err(Error::io("stat", target))?;
    sys::set_times_nofollow(target, atime, mtime).map_err(Error::from)
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
        if name.to_string_lossy().starts_with("trusted.overlay.") {
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
