//! The builder's own filesystem operations: COPY, ADD (local files, archives, and files a
//! URL or git source already fetched) and WORKDIR's mkdir, run onto a new snapshot layer
//! with BuildKit's semantics (its `file` backend over fsutil's `copy`).
//!
//! Layer L4: uses `sys`, `snapshot`, `source`, `instruction` and `plan` types; never `solve`.
//!
//! # Design: a private mount namespace per op, and ordinary file operations
//!
//! [`run`] starts a dedicated OS thread for each op. When the op needs a mount, that thread
//! unshares its filesystem attributes and mount namespace (`CLONE_FS | CLONE_NEWNS`, legal
//! per thread in a multi-threaded process), makes every mount in it private, and mounts:
//!
//! - the destination as an overlay: the parent chain as lowers, the new layer directory as
//!   upper (options `metacopy=off,redirect_dir=off,index=off`, so the upper is a plain
//!   diff: whole files, whiteouts for removed entries, opaque directories);
//! - each source chain of two or more layers as a read-only overlay (a single layer is read
//!   in place; overlay whiteouts in it are never copied).
//!
//! The copy itself is ordinary `lstat`/`open`/`mkdir`/`symlink` calls on the merged views, so
//! the kernel does what BuildKit relies on it for with mounted snapshots: existing
//! directories of the parent are merged into, a file replacing a directory leaves a
//! whiteout, a directory replacing a removed one becomes opaque, and whatever the op writes
//! lands exactly in the upper directory. The thread unmounts before it returns; if it
//! panics, its namespace (and every mount in it) is torn down by the kernel when the thread
//! exits, so nothing ever shows in the host's mount table. With an empty parent chain
//! (`FROM scratch`) or `--link`, nothing is mounted: the layer directory is written directly.
//!
//! Why not compute the layer without mounting (write the upper by hand and synthesise
//! whiteouts)? Every rule overlayfs applies (opaque directories, whiteouts under renamed
//! parents, copy-up of metadata) would have to be re-implemented, and a mismatch silently
//! gives a different image than BuildKit. The namespace costs one `unshare` and one mount
//! per op. The mount helper ([`crate::sys::fileop::mount_overlay`]: classic `mount(2)` when
//! the options fit a page, else `fsopen`/`fsconfig lowerdir+`) is one small function so it
//! can later be shared with `snapshot::overlay`.
//!
//! Paths are resolved inside each root component by component (`lstat`/`readlink`, symlinks
//! followed relative to that root, `..` clamped), never by the host's resolver: a
//! destination symlink `/evil -> /tmp/x` leads to the *root's* `/tmp/x`, and a source
//! symlink is copied as a link, never read through. Nothing else writes to the trees while
//! the op runs (immutable layers; mounts private to the thread), so a resolved path stays
//! symlink-free. (`openat2(RESOLVE_IN_ROOT)` would give the same with more plumbing.)
//!
//! # Semantics decided where BuildKit is unclear or odd
//!
//! - Directories created for the destination (missing parents, a `dest/`) are mode 0755
//!   (exactly, whatever the umask) and owned by the `--chown` owner, else root — as
//!   fsutil's `MkdirAll` with the chowner. WORKDIR creates every missing directory with
//!   the op's mode, owned by USER (BuildKit's `mkdir` with parents does the same); an
//!   existing directory is left untouched, so the layer is empty.
//! - Owners without `--chown`: root for the build context and heredocs (BuildKit resets
//!   context owners on transfer), the source's for stages and images, the archive's for
//!   extracted tars. `--chown` names are looked up in the destination's merged
//!   `/etc/passwd`/`/etc/group`; with `--link` in the parent chain (BuildKit would look in
//!   the empty filesystem and fail).
//! - `--chmod=755` (octal) sets exactly those bits (setuid/sticky of the source are
//!   dropped unless given); symbolic modes are applied per entry with `X` as `chmod(1)`.
//! - Several sources (after wildcard expansion, heredocs included) need a destination
//!   ending in `/` or an existing directory. A wildcard that matches nothing is fine when
//!   allowed, unless no source matched anything at all.
//! - `--exclude` on a top-level file source matches its name (as `source::Context::select`).
//! - Context sources: only entries of the given [`Selection`] (after `.dockerignore` and
//!   `--exclude`) are copied. A source that is itself a symlink is followed (BuildKit's
//!   `FollowSymlinks`) only when its target was selected too; otherwise the link is copied.
//! - ADD: an archive is recognised by content (a tar, plain or compressed with gzip, bzip2,
//!   xz or zstd; anything else is copied as a file). Entries are extracted with the
//!   snapshot unpacker's checks, then merged: an existing entry of another type is
//!   replaced (as Docker's `Untar`), owners come from the archive unless `--chown`, and
//!   `--chmod` does not apply.

mod archive;
mod copy;
mod error;
mod resolve;
mod user;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use error::{Error, Result};
pub use user::{Owner, resolve_owner};

use copy::{Copier, Filter, OwnerPolicy};
use resolve::{Resolved, join, resolve};

use crate::instruction::Chmod;
use crate::plan::{Copy, CopySource, FileOp, Mkdir};
use crate::source::glob::{go_match, has_wildcard};
use crate::source::{PatternMatcher, Selection};
use crate::sys;
use crate::sys::fileop::Overlay;

/// One input of a file op, by input number (input 0 is the destination's parent).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The build context: its root on the host and what `Context::select` picked for this
    /// op's sources (after `.dockerignore` and `--exclude`).
    Context {
        root: &'a Path,
        selection: &'a Selection,
        /// Content digests of the selected entries (`ContextDigest::entry_digests`, same
        /// index as `selection.entries`): recorded in [`Outcome::copied`] and used to reuse
        /// files of [`Reuse::layer`].
        digests: Option<&'a [Option<[u8; 32]>]>,
    },
    /// A filesystem state: snapshot layer directories, **bottom to top** (empty: scratch).
    Layers(&'a [PathBuf]),
}

/// What [`run`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub op: &'a FileOp,
    /// Indexed by input number. Input 0 must be [`Input::Layers`] (it may be empty).
    pub inputs: &'a [Input<'a>],
    /// The new layer's directory (the overlay upper dir): existing and empty.
    pub upper: &'a Path,
    /// A directory on the same filesystem as `upper` for the overlay work dir, mount points
    /// and temporary files (a private subdirectory is made and removed). Default: the
    /// parent of `upper`.
    pub scratch: Option<&'a Path>,
    /// The layer an earlier run of the same step made: files it holds with the same content
    /// and metadata are hard-linked instead of copied (see [`Reuse`]).
    pub reuse: Option<&'a Reuse>,
    /// Set (by another thread) to stop the op between two files with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

/// An earlier result of the same COPY, for an incremental rerun.
///
/// When only some files of a big context changed, most of what the COPY writes is already
/// in the layer the previous run made. A file is hard-linked from there (instead of copied)
/// when the op writes straight into its new layer (the destination is new in the parent,
/// see [`run`]), the earlier run recorded the same content digest for the same destination
/// path ([`Outcome::copied`]), and the earlier file has exactly the mode, owner, size and
/// mtime this run would give it. Snapshot layers are never modified in place (later steps
/// see them through overlay, which copies up before writing), so sharing inodes between
/// them is safe; the layer tar of each is the same as with copies.
#[derive(Debug, Clone, Default)]
pub struct Reuse {
    /// The earlier layer directory.
    pub layer: PathBuf,
    /// What it recorded: destination path (relative to the layer) → content digest.
    pub copied: HashMap<PathBuf, [u8; 32]>,
}

/// What an op wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Regular files written (hard links included).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    pub symlinks: u64,
    /// Devices and fifos.
    pub other: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Archives extracted (ADD).
    pub archives: u64,
    /// Regular files hard-linked from [`Request::reuse`] instead of copied (also counted in
    /// `files`).
    pub linked: u64,
}

/// The result of an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The layer directory is empty: nothing changed (a WORKDIR that existed). The solver
    /// drops such a layer when the plan says `skip_if_empty`.
    pub empty: bool,
    pub report: Report,
    /// Destination path (relative to the layer) → content digest of every build-context
    /// file the op wrote, for [`Reuse::copied`] of a later run.
    pub copied: Vec<(PathBuf, [u8; 32])>,
}

/// Runs a COPY/ADD/WORKDIR op onto `request.upper`. Blocking; it runs the op on its own
/// thread (async callers wrap it in `spawn_blocking`).
pub fn run(request: &Request<'_>) -> Result<Outcome> {
    let scratch = Scratch::create(request)?;
    let result = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("kiln-fileop".to_string())
            // The copy recurses once per directory level.
            .stack_size(16 << 20)
            .spawn_scoped(scope, || execute(request, &scratch.path));
        match spawned {
            Err(e) => Err(Error::io("spawn thread for", &scratch.path)(e)),
            Ok(handle) => handle.join().unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Panicked(message))
            }),
        }
    });
    scratch.remove();
    result
}

/// A private directory beside the layer for the work dir, mount points and temp files.
/// Mount points are only ever mounted on in the op thread's namespace, so in ours this is
/// an ordinary tree that can be removed recursively.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(request: &Request<'_>) -> Result<Scratch> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = match request.scratch {
            Some(base) => base.to_path_buf(),
            None => request
                .upper
                .parent()
                .ok_or_else(|| Error::BadInput("the layer directory has no parent".into()))?
                .to_path_buf(),
        };
        let path = base.join(format!(
            ".kiln-fileop-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(Error::io("create scratch directory", &path))?;
        Ok(Scratch { path })
    }

    fn remove(self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Mounts made on the op thread; unmounted in reverse order (also when unwinding).
#[derive(Default)]
struct Mounts {
    entered: bool,
    targets: Vec<PathBuf>,
}

impl Mounts {
    fn overlay(&mut self, overlay: &Overlay, target: &Path) -> Result<()> {
        if !self.entered {
            sys::fileop::enter_private_mount_namespace()?;
            self.entered = true;
        }
        mkdir_private(target)?;
        sys::fileop::mount_overlay(overlay, target)?;
        self.targets.push(target.to_path_buf());
        Ok(())
    }

    fn unmount_all(&mut self) -> Result<()> {
        while let Some(target) = self.targets.pop() {
            sys::fileop::unmount(&target)?;
        }
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(target) = self.targets.pop() {
            let _ = sys::fileop::unmount(&target);
        }
    }
}

fn mkdir_private(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(Error::io("mkdir", path))
}

/// The op, on its own thread.
fn execute(request: &Request<'_>, scratch: &Path) -> Result<Outcome> {
    let parent: &[PathBuf] = match request.inputs.first() {
        Some(Input::Layers(layers)) => layers,
        Some(Input::Context { .. }) => {
            return Err(Error::BadInput(
                "input 0 (the destination) must be a layer chain".into(),
            ));
        }
        None => &[],
    };
    let mut mounts = Mounts::default();
    let mut report = Report::default();
    let mut copied = Vec::new();
    match request.op {
        FileOp::Mkdir(mkdir) => {
            let dest_root = if parent.is_empty() {
                request.upper.to_path_buf()
            } else {
                mount_destination(&mut mounts, parent, request.upper, scratch)?
            };
            run_mkdir(&dest_root, mkdir, &mut report)?
        }
        FileOp::Copy(copy) => {
            let mut op = CopyRun {
                request,
                copy,
                parent,
                scratch,
                dest_root: PathBuf::new(),
                direct: false,
                parent_view: None,
                mounts: &mut mounts,
                roots: HashMap::new(),
                report: &mut report,
                temp_count: 0,
                copied: Vec::new(),
            };
            op.run()?;
            copied = op.copied;
        }
    }
    mounts.unmount_all()?;
    let empty = fs::read_dir(request.upper)
        .map_err(Error::io("read directory", request.upper))?
        .next()
        .is_none();
    Ok(Outcome {
        empty,
        report,
        copied,
    })
}

/// Mounts the parent chain with `upper` as the overlay's upper directory; returns the
/// merged view, where the op works.
fn mount_destination(
    mounts: &mut Mounts,
    parent: &[PathBuf],
    upper: &Path,
    scratch: &Path,
) -> Result<PathBuf> {
    let work = scratch.join("work");
    mkdir_private(&work)?;
    let merged = scratch.join("dest");
    let overlay = Overlay {
        lowers: parent.iter().rev().cloned().collect(),
        upper: Some((upper.to_path_buf(), work)),
    };
    mounts.overlay(&overlay, &merged)?;
    Ok(merged)
}

fn run_mkdir(dest_root: &Path, mkdir: &Mkdir, report: &mut Report) -> Result<()> {
    let owner = resolve_owner(&mkdir.owner, Some(dest_root))?;
    let resolved = resolve(dest_root, OsStr::new(&mkdir.path), true)?;
    let mode = mkdir.mode & 0o7777;
    if mkdir.make_parents {
        return mkdir_all(dest_root, &resolved.rel, mode, Some(owner), report, true);
    }
    match fs::symlink_metadata(&resolved.host) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::MkdirNotDirectory {
            path: resolved.display(),
        }),
        Err(_) => {
            fs::create_dir(&resolved.host).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::MkdirNoParent {
                    path: resolved.display(),
                },
                _ => Error::io("mkdir", &resolved.host)(e),
            })?;
            copy::set_mode(&resolved.host, mode)?;
            lchown(&resolved.host, owner)?;
            report.dirs += 1;
            Ok(())
        }
    }
}

fn lchown(path: &Path, owner: Owner) -> Result<()> {
    match sys::lchown(path, owner.uid, owner.gid) {
        Err(e) if !sys::is_root() && e.is_not_permitted() => Ok(()),
        other => other.map_err(Error::from),
    }
}

/// Creates the missing directories of `rel` (symlink-free, as [`resolve`] returns) under
/// `root` with exactly `mode`, owned by `owner` (else left to the creator, root).
fn mkdir_all(
    root: &Path,
    rel: &[OsString],
    mode: u32,
    owner: Option<Owner>,
    report: &mut Report,
    for_mkdir: bool,
) -> Result<()> {
    for end in 1..=rel.len() {
        let path = join(root, &rel[..end]);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                let shown = display_in_root(root, &path);
                return Err(if for_mkdir {
                    Error::MkdirNotDirectory { path: shown }
                } else {
                    Error::CopyToNonDirectory { path: shown }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(Error::io("mkdir", &path))?;
                copy::set_mode(&path, mode)?;
                if let Some(owner) = owner {
                    lchown(&path, owner)?;
                }
                report.dirs += 1;
            }
            Err(e) => return Err(Error::io("lstat", &path)(e)),
        }
    }
    Ok(())
}

/// `path` (under `root`) as the build sees it: `/a/b`.
pub(crate) fn display_in_root(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => "/".to_string(),
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// Where one input's files are.
struct SourceRoot<'a> {
    path: PathBuf,
    filter: Option<Filter>,
    digests: Option<ContextDigests<'a>>,
}

/// The content digests of a context selection, looked up by path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextDigests<'a> {
    selection: &'a Selection,
    digests: &'a [Option<[u8; 32]>],
}

impl ContextDigests<'_> {
    /// The digest of the regular file at `rel` (relative to the context root).
    pub(crate) fn get(&self, rel: &Path) -> Option<[u8; 32]> {
        let index = self.selection.position(rel)?;
        self.digests.get(index).copied().flatten()
    }
}

/// One thing to copy, after wildcard expansion.
struct Item {
    /// The input (None: a heredoc written to scratch).
    input: Option<usize>,
    /// The matched path, final component not followed.
    matched: Resolved,
    /// What is copied: `matched`, or its target when the source symlink is followed.
    followed: Resolved,
    /// The name used when copying into a directory.
    name: OsString,
    contents_only: bool,
    unpack: bool,
    include: Option<PatternMatcher>,
    context: bool,
}

struct CopyRun<'r, 'a> {
    request: &'r Request<'a>,
    copy: &'r Copy,
    /// The destination's parent chain (input 0), bottom first.
    parent: &'r [PathBuf],
    scratch: &'r Path,
    /// Where the op writes: the new layer itself, or an overlay of it over the parent.
    dest_root: PathBuf,
    /// `dest_root` is the new layer directory itself (no overlay).
    direct: bool,
    /// The parent's merged view, once mounted (see `parent_root`).
    parent_view: Option<Option<PathBuf>>,
    mounts: &'r mut Mounts,
    roots: HashMap<usize, SourceRoot<'a>>,
    report: &'r mut Report,
    temp_count: usize,
    copied: Vec<(PathBuf, [u8; 32])>,
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

    fn run(&mut self) -> Result<()> {
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
    /// run ([`Reuse`]). Else an overlay of the layer over the parent, so that the kernel
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
    fn parent_root(&mut self) -> Result<Option<PathBuf>> {
        if let Some(view) = &self.parent_view {
            return Ok(view.clone());
        }
        let view = match self.parent {
            [] => None,
            [only] => Some(only.clone()),
            layers => {
                let target = self.scratch.join("parent");
                self.mounts.overlay(
                    &Overlay {
                        lowers: layers.iter().rev().cloned().collect(),
                        upper: None,
                    },
                    &target,
                )?;
                Some(target)
            }
        };
        self.parent_view = Some(view.clone());
        Ok(view)
    }

    fn source_root(&mut self, input: usize) -> Result<&SourceRoot<'_>> {
        if !self.roots.contains_key(&input) {
            let root = match self.request.inputs.get(input) {
                None => {
                    return Err(Error::BadInput(format!("the op has no input {input}")));
                }
                Some(Input::Context {
                    root,
                    selection,
                    digests,
                }) => SourceRoot {
                    path: root.to_path_buf(),
                    filter: Some(Filter::new(
                        selection.entries.iter().map(|e| e.os_path.as_path()),
                    )),
                    digests: digests.map(|digests| ContextDigests { selection, digests }),
                },
                Some(Input::Layers(layers)) => {
                    let path = match layers {
                        [] => {
                            let empty = self.scratch.join(format!("empty-{input}"));
                            mkdir_private(&empty)?;
                            empty
                        }
                        [only] => only.clone(),
                        layers => {
                            let target = self.scratch.join(format!("src-{input}"));
                            self.mounts.overlay(
                                &Overlay {
                                    lowers: layers.iter().rev().cloned().collect(),
                                    upper: None,
                                },
                                &target,
                            )?;
                            target
                        }
                    };
                    SourceRoot {
                        path,
                        filter: None,
                        digests: None,
                    }
                }
            };
            self.roots.insert(input, root);
        }
        Ok(&self.roots[&input])
    }

    fn expand_sources(
        &mut self,
        keyword: &'static str,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut unmatched_wildcard = None;
        let mut any_matched = false;
        let copy: &Copy = self.copy;
        for (index, source) in copy.sources.iter().enumerate() {
            match source {
                CopySource::Inline {
                    name,
                    content,
                    mode,
                } => {
                    items.push(self.inline_item(index, name, content, *mode)?);
                    any_matched = true;
                }
                CopySource::Path {
                    input,
                    path,
                    include_patterns,
                    follow_symlinks,
                    copy_dir_contents_only,
                    allow_wildcard,
                    allow_empty_wildcard,
                    unpack,
                } => {
                    let wildcard = *allow_wildcard && has_wildcard(path);
                    let root = self.source_root(*input)?;
                    let context = root.filter.is_some();
                    let root_path = root.path.clone();
                    let allowed =
                        |r: &Resolved| root.filter.as_ref().is_none_or(|f| f.allows(&r.rel_path()));
                    let matches: Vec<Resolved> = if wildcard {
                        expand(&root_path, path)?
                    } else {
                        let r = resolve(&root_path, OsStr::new(path), false)?;
                        if exists(&r.host) { vec![r] } else { Vec::new() }
                    };
                    let matches: Vec<Resolved> =
                        matches.into_iter().filter(|r| allowed(r)).collect();
                    if matches.is_empty() {
                        if !wildcard {
                            return Err(if context {
                                Error::NotInContext {
                                    keyword,
                                    path: path.trim_start_matches('/').to_string(),
                                }
                            } else {
                                Error::NotFound {
                                    keyword,
                                    path: path.clone(),
                                }
                            });
                        }
                        if !allow_empty_wildcard {
                            return Err(Error::NoMatch {
                                keyword,
                                pattern: path.clone(),
                            });
                        }
                        unmatched_wildcard.get_or_insert_with(|| path.clone());
                        continue;
                    }
                    any_matched = true;
                    let include = if include_patterns.is_empty() {
                        None
                    } else {
                        Some(PatternMatcher::new(include_patterns.iter()).map_err(|e| {
                            Error::BadPattern {
                                pattern: include_patterns.join(" "),
                                reason: e.to_string(),
                            }
                        })?)
                    };
                    for matched in matches {
                        let mut followed = matched.clone();
                        if *follow_symlinks
                            && fs::symlink_metadata(&matched.host)
                                .is_ok_and(|m| m.file_type().is_symlink())
                        {
                            let target =
                                resolve(&root_path, matched_os(&matched).as_os_str(), true)?;
                            let found = exists(&target.host);
                            if context {
                                // Only what the selection holds may be read: otherwise the
                                // link itself is copied (see the module docs).
                                if found && allowed(&target) {
                                    followed = target;
                                }
                            } else if found {
                                followed = target;
                            } else {
                                return Err(Error::NotFound {
                                    keyword,
                                    path: matched.display(),
                                });
                            }
                        }
                        let meta = fs::symlink_metadata(&followed.host)
                            .map_err(Error::io("lstat", &followed.host))?;
                        let name = matched.rel.last().cloned().unwrap_or_default();
                        if !meta.is_dir()
                            && let Some(exclude) = exclude
                            && exclude.matches(&name.to_string_lossy()).map_err(|e| {
                                Error::BadPattern {
                                    pattern: copy.exclude.join(" "),
                                    reason: e.to_string(),
                                }
                            })?
                        {
                            continue;
                        }
                        items.push(Item {
                            input: Some(*input),
                            matched,
                            followed,
                            name,
                            contents_only: *copy_dir_contents_only,
                            unpack: *unpack,
                            include: include.clone(),
                            context,
                        });
                    }
                }
            }
        }
        if !any_matched && let Some(pattern) = unmatched_wildcard {
            return Err(Error::NoMatch { keyword, pattern });
        }
        Ok(items)
    }

    fn temp_dir(&mut self, kind: &str) -> Result<PathBuf> {
        let tmp = self.scratch.join("tmp");
        if !tmp.exists() {
            mkdir_private(&tmp)?;
        }
        self.temp_count += 1;
        let dir = tmp.join(format!("{kind}-{}", self.temp_count));
        mkdir_private(&dir)?;
        Ok(dir)
    }

    fn inline_item(&mut self, index: usize, name: &str, content: &str, mode: u32) -> Result<Item> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Error::BadInput(format!(
                "heredoc source {index} has an invalid file name {name:?}"
            )));
        }
        let dir = self.temp_dir("inline")?;
        let path = dir.join(name);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        std::io::Write::write_all(&mut file, content.as_bytes())
            .map_err(Error::io("write", &path))?;
        drop(file);
        copy::set_mode(&path, mode & 0o7777)?;
        let resolved = Resolved {
            host: path,
            rel: vec![OsString::from(name)],
        };
        Ok(Item {
            input: None,
            matched: resolved.clone(),
            followed: resolved,
            name: OsString::from(name),
            contents_only: false,
            unpack: false,
            include: None,
            context: false,
        })
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
        mkdir_all(&self.dest_root, &dest.rel, 0o755, None, self.report, false)?;
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
    copy::set_info(&meta, &from, &to, owner, Some(meta.mode() & 0o7777))
}

fn matched_os(r: &Resolved) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in &r.rel {
        p.push(c);
    }
    p
}

/// Exists and is not an overlay whiteout.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| !sys::is_whiteout(&m))
}

/// The matches of the wildcard `pattern` (absolute) inside `root`, sorted, each with its
/// final component not followed. The literal prefix follows symlinks; below it, only real
/// directories are descended (as fsutil's `ResolveWildcards`).
fn expand(root: &Path, pattern: &str) -> Result<Vec<Resolved>> {
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let first = parts
        .iter()
        .position(|p| has_wildcard(p))
        .unwrap_or(parts.len());
    let prefix = format!("/{}", parts[..first].join("/"));
    let prefix = resolve(root, OsStr::new(&prefix), true)?;
    let mut current = vec![prefix.rel];
    for (offset, part) in parts[first..].iter().enumerate() {
        let last = first + offset + 1 == parts.len();
        let mut next = Vec::new();
        for rel in current {
            let dir = join(root, &rel);
            let names: Vec<OsString> = if has_wildcard(part) {
                let Ok(read) = fs::read_dir(&dir) else {
                    continue;
                };
                let mut names = Vec::new();
                for entry in read {
                    let entry = entry.map_err(Error::io("read directory", &dir))?;
                    let name = entry.file_name();
                    let hit =
                        go_match(part, &name.to_string_lossy()).map_err(|_| Error::BadPattern {
                            pattern: pattern.to_string(),
                            reason: "syntax error in pattern".into(),
                        })?;
                    if hit {
                        names.push(name);
                    }
                }
                names.sort();
                names
            } else if *part == ".." {
                let mut up = rel.clone();
                up.pop();
                next.push(up);
                continue;
            } else {
                vec![OsString::from(OsStr::from_bytes(part.as_bytes()))]
            };
            for name in names {
                let path = dir.join(&name);
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if sys::is_whiteout(&meta) || (!last && !meta.is_dir()) {
                    continue;
                }
                let mut rel = rel.clone();
                rel.push(name);
                next.push(rel);
            }
        }
        current = next;
    }
    Ok(current
        .into_iter()
        .map(|rel| Resolved {
            host: join(root, &rel),
            rel,
        })
        .collect())
}
