//! A COPY or ADD op: where it writes (the new layer directly, or an overlay of it over
//! the parent chain), then each of its items (`sources.rs`) copied or extracted.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::copy::{self, Copier, OwnerPolicy};
use super::error::{Error, Result};
use super::resolve::{join, resolve};
use super::sources::{Item, SourceRoot, exists};
use super::user::{Owner, resolve_owner};
use super::{Mounts, Report, Request, archive, mkdir_all, mount_destination};
use crate::instruction::Chmod;
use crate::plan::{Copy, CopySource};
use crate::source::PatternMatcher;
use crate::sys;

/// One COPY or ADD being run.
pub(super) struct CopyRun<'r, 'a> {
    pub(super) request: &'r Request<'a>,
    pub(super) copy: &'r Copy,
    /// The destination's parent chain (input 0), bottom first.
    pub(super) parent: &'r [PathBuf],
    pub(super) scratch: &'r Path,
    /// Where the op writes: the new layer itself, or an overlay of it over the parent.
    pub(super) dest_root: PathBuf,
    /// `dest_root` is the new layer directory itself (no overlay).
    pub(super) direct: bool,
    /// The parent's merged view, once mounted (see `parent_root`).
    pub(super) parent_view: Option<Option<PathBuf>>,
    pub(super) mounts: &'r mut Mounts,
    pub(super) roots: HashMap<usize, SourceRoot<'a>>,
    pub(super) report: &'r mut Report,
    pub(super) temp_count: usize,
    pub(super) copied: Vec<(PathBuf, [u8; 32])>,
}

impl CopyRun<'_, '_> {
    fn keyword(&self) -> &'static str {
        let add = self
            .copy
            .sources
            .iter()
            .any(|s| matches!(s, CopySource::Path { unpack: true, .. }));
        if add { "ADD" } else { "COPY" }
    }

    pub(super) fn run(&mut self) -> Result<()> {
        let keyword = self.keyword();
        let chmod = match &self.copy.chmod {
            Some(text) => Some(Chmod::parse(text).map_err(|reason| Error::BadChmod {
                value: text.clone(),
                reason: reason.into(),
            })?),
            None => None,
        };
        let exclude = if self.copy.exclude.is_empty() {
            None
        } else {
            Some(
                PatternMatcher::new(self.copy.exclude.iter()).map_err(|e| Error::BadPattern {
                    pattern: self.copy.exclude.join(" "),
                    reason: e.to_string(),
                })?,
            )
        };
        let items = self.expand_sources(keyword, exclude.as_ref())?;
        let dest = self.copy.dest.as_str();
        let dest_is_dir_syntax =
            dest.ends_with('/') || dest.ends_with("/.") || dest.is_empty() || dest == "/";
        // `--chown` names come from the parent's /etc/passwd and /etc/group (what the
        // destination holds before the op; with `--link` too, unlike BuildKit).
        let chown = match &self.copy.chown {
            Some(spec) => {
                let names_root = self.parent_root()?;
                Some(resolve_owner(spec, names_root.as_deref())?)
            }
            None => None,
        };
        self.choose_destination(&items, dest)?;

        if items.len() > 1 && !dest_is_dir_syntax {
            let resolved = resolve(&self.dest_root, OsStr::new(dest), true)?;
            let is_dir = fs::symlink_metadata(&resolved.host).is_ok_and(|m| m.is_dir());
            if !is_dir {
                return Err(Error::DestNotDirectory { keyword });
            }
        }
        if !self.copy.create_dest_path {
            let resolved = resolve(&self.dest_root, OsStr::new(dest), true)?;
            let parent = resolved.host.parent().unwrap_or(&self.dest_root);
            if !dest_is_dir_syntax && fs::symlink_metadata(parent).is_err() {
                return Err(Error::NotFound {
                    keyword,
                    path: dest.to_string(),
                });
            }
        }

        for item in &items {
            self.check_cancel()?;
            if item.unpack && self.try_unpack(item, chown)? {
                continue;
            }
            let owner = match (chown, item.input) {
                (Some(owner), _) => OwnerPolicy::Fixed(owner),
                (None, None) => OwnerPolicy::Fixed(Owner::ROOT),
                (None, Some(_)) if item.context => OwnerPolicy::Fixed(Owner::ROOT),
                (None, Some(_)) => OwnerPolicy::Keep,
            };
            self.copy_item(
                item,
                dest,
                dest_is_dir_syntax,
                owner,
                chown,
                chmod.as_ref(),
                exclude.as_ref(),
            )?;
        }
        Ok(())
    }

    fn check_cancel(&self) -> Result<()> {
        match self.request.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Decides where the op writes. With `--link` or no parent: the new layer directly.
    /// Otherwise, when every entry the op creates at the top is new in the parent (as for
    /// `COPY . /src/` into a fresh directory), also the new layer directly, after copying
    /// up (mode, owner, xattrs, times) the parent directories it writes into, as overlayfs
    /// would: the layer is the same, and files can then be hard-linked from an earlier
    /// run ([`super::Reuse`]). Else an overlay of the layer over the parent, so that the kernel
    /// produces whiteouts, opaque directories and merges exactly.
    fn choose_destination(&mut self, items: &[Item], dest: &str) -> Result<()> {
        let upper = self.request.upper.to_path_buf();
        if self.copy.link || self.parent.is_empty() {
            self.dest_root = upper;
            self.direct = true;
            return Ok(());
        }
        let view = self.parent_root()?.unwrap_or_else(|| upper.clone());
        match self.new_targets(&view, items, dest)? {
            Some(ancestors) => {
                for rel in ancestors {
                    copy_up_directory(&view, &upper, &rel)?;
                }
                self.dest_root = upper;
                self.direct = true;
            }
            None => {
                self.dest_root = mount_destination(self.mounts, self.parent, &upper, self.scratch)?;
            }
        }
        Ok(())
    }

    /// When nothing the items create at the top exists in `view` (the parent), the
    /// directories of `view` they write into (each relative to the root, parents first);
    /// `None` when something would be replaced or merged, an archive extracted, or the
    /// destination reached through a symlink of the parent.
    fn new_targets(
        &self,
        view: &Path,
        items: &[Item],
        dest: &str,
    ) -> Result<Option<Vec<Vec<OsString>>>> {
        let literal = resolve(self.request.upper, OsStr::new(dest), true)?;
        if resolve(view, OsStr::new(dest), true)?.rel != literal.rel {
            return Ok(None);
        }
        let mut ancestors: Vec<Vec<OsString>> = Vec::new();
        let mut keep = |rel: &[OsString]| {
            for end in 1..=rel.len() {
                if !ancestors.iter().any(|a| a[..] == rel[..end]) {
                    ancestors.push(rel[..end].to_vec());
                }
            }
        };
        for item in items {
            if item.unpack {
                return Ok(None);
            }
            let (target, src_is_dir) = target_of(view, item, dest)?;
            let existing = fs::symlink_metadata(join(view, &target))
                .ok()
                .filter(|m| !sys::is_whiteout(m));
            match existing {
                None => {
                    // New: only its existing parents are written into.
                    let parent = &target[..target.len().saturating_sub(1)];
                    let Some(existing) = existing_prefix(view, parent) else {
                        return Ok(None);
                    };
                    keep(&existing);
                }
                Some(meta) if meta.is_dir() && src_is_dir => {
                    // Merged into an existing directory: new only if none of the source's
                    // entries is there already.
                    let read_error = Error::io("read directory", &item.followed.host);
                    let names = fs::read_dir(&item.followed.host).map_err(read_error)?;
                    for entry in names {
                        let entry =
                            entry.map_err(Error::io("read directory", &item.followed.host))?;
                        let mut child = target.clone();
                        child.push(entry.file_name());
                        if exists(&join(view, &child)) {
                            return Ok(None);
                        }
                    }
                    keep(&target);
                }
                Some(_) => return Ok(None),
            }
        }
        Ok(Some(ancestors))
    }

    /// The parent chain's merged root (read-only; `None` for scratch), mounted once.
    pub(super) fn parent_root(&mut self) -> Result<Option<PathBuf>> {
        if let Some(view) = &self.parent_view {
            return Ok(view.clone());
        }
        let view = match self.parent {
            [] => None,
            [only] => Some(only.clone()),
            layers => Some(self.mounts.chain(layers, self.scratch.join("parent"))?),
        };
        self.parent_view = Some(view.clone());
        Ok(view)
    }

    /// ADD: extracts `item` if it is an archive. Returns whether it was.
    fn try_unpack(&mut self, item: &Item, chown: Option<Owner>) -> Result<bool> {
        let is_file = fs::symlink_metadata(&item.followed.host).is_ok_and(|m| m.is_file());
        if !is_file {
            return Ok(false);
        }
        if !archive::is_archive(&item.followed.host)? {
            return Ok(false);
        }
        let extracted = self.temp_dir("archive")?;
        let tmp = self.temp_dir("decompressed")?;
        archive::extract(
            &item.followed.host,
            &extracted,
            &tmp,
            &item.matched.display(),
        )?;
        let dest = resolve(&self.dest_root, OsStr::new(&self.copy.dest), true)?;
        // BuildKit's `unpack` (solver/llbsolver/file/unpack.go): the missing destination
        // directories by `copy.MkdirAll` with the chowner, every entry by `Untar` with
        // `ChownOpts`.
        mkdir_all(&self.dest_root, &dest.rel, 0o755, chown, self.report, false)?;
        let mut copier = Copier::new(&self.dest_root, self.report);
        copier.owner = match chown {
            Some(owner) => OwnerPolicy::Fixed(owner),
            None => OwnerPolicy::Keep,
        };
        copier.replace_existing = true;
        copier.copy_top(&extracted, Path::new("."), &dest.host)?;
        self.report.archives += 1;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_item(
        &mut self,
        item: &Item,
        dest: &str,
        dest_is_dir_syntax: bool,
        owner: OwnerPolicy,
        chown: Option<Owner>,
        chmod: Option<&Chmod>,
        exclude: Option<&PatternMatcher>,
    ) -> Result<()> {
        // fsutil's `Copy`: make the destination's directory (all of it for `dest/`).
        let ensure = if dest_is_dir_syntax {
            dest.to_string()
        } else {
            match dest.rsplit_once('/') {
                Some((parent, _)) => format!("/{parent}"),
                None => "/".to_string(),
            }
        };
        let ensure = resolve(&self.dest_root, OsStr::new(&ensure), true)?;
        mkdir_all(
            &self.dest_root,
            &ensure.rel,
            0o755,
            chown,
            self.report,
            false,
        )?;
        let (target, src_is_dir) = target_of(&self.dest_root, item, dest)?;
        let dest_exists = fs::symlink_metadata(join(&self.dest_root, &target)).is_ok();
        let make = if item.contents_only && src_is_dir && !dest_exists {
            &target[..]
        } else {
            &target[..target.len().saturating_sub(1)]
        };
        mkdir_all(&self.dest_root, make, 0o755, chown, self.report, false)?;

        let root = item.input.and_then(|input| self.roots.get(&input));
        let mut copier = Copier::new(&self.dest_root, self.report);
        copier.owner = owner;
        copier.chmod = chmod;
        copier.include = item.include.as_ref();
        copier.exclude = exclude;
        copier.filter = root.and_then(|r| r.filter.as_ref());
        copier.digests = root.and_then(|r| r.digests);
        // Hard links cannot cross into an overlay mount: reuse needs the direct layer.
        copier.reuse = self.request.reuse.filter(|_| self.direct);
        copier.cancel = self.request.cancel;
        copier.copy_top(
            &item.followed.host,
            &item.followed.rel_path(),
            &join(&self.dest_root, &target),
        )?;
        self.copied.append(&mut copier.copied);
        Ok(())
    }
}

/// Where `item` goes (relative to `root`), as fsutil's `prepareTargetDir` decides: into
/// `dest` when it is an existing directory (or a directory is copied onto an existing
/// entry), else `dest` itself. Also whether the source is a directory.
fn target_of(root: &Path, item: &Item, dest: &str) -> Result<(Vec<OsString>, bool)> {
    let dst = resolve(root, OsStr::new(dest), true)?;
    let src_is_dir = fs::symlink_metadata(&item.followed.host)
        .map_err(Error::io("lstat", &item.followed.host))?
        .is_dir();
    let dest_meta = fs::symlink_metadata(&dst.host).ok();
    let mut target = dst.rel;
    let into = (!item.contents_only && src_is_dir && dest_meta.is_some())
        || (!src_is_dir && dest_meta.as_ref().is_some_and(|m| m.is_dir()));
    if into && !item.name.is_empty() {
        target.push(item.name.clone());
    }
    Ok((target, src_is_dir))
}

/// The longest prefix of `rel` that exists in `root`, when each existing component is a
/// directory; `None` when one is something else (writing below it must fail as it does
/// on the merged view).
fn existing_prefix(root: &Path, rel: &[OsString]) -> Option<Vec<OsString>> {
    for end in 0..rel.len() {
        match fs::symlink_metadata(join(root, &rel[..=end])) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if !sys::is_whiteout(&meta) => return None,
            _ => return Some(rel[..end].to_vec()),
        }
    }
    Some(rel.to_vec())
}

/// Makes `upper/rel` the copy-up of the directory `view/rel`, as overlayfs would before
/// writing into it: mode, owner, xattrs (not overlayfs' own) and times.
fn copy_up_directory(view: &Path, upper: &Path, rel: &[OsString]) -> Result<()> {
    let from = join(view, rel);
    let to = join(upper, rel);
    if fs::symlink_metadata(&to).is_ok() {
        return Ok(());
    }
    let meta = fs::symlink_metadata(&from).map_err(Error::io("lstat", &from))?;
    fs::create_dir(&to).map_err(Error::io("mkdir", &to))?;
    let owner = Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    };
    let meta = sys::dir::FileStat::from(&meta);
    copy::set_info(&meta, &from, &to, owner, Some(meta.permissions))
}
