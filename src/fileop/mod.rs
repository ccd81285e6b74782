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
//! exits, so nothing ever shows in the host's mount table. After unmounting, the upper is
//! settled against the parent (`snapshot::settle`: what it holds unchanged goes, opaque
//! directories become whiteouts), as BuildKit's differ writes every layer. With an empty
//! parent chain (`FROM scratch`) or `--link`, nothing is mounted: the layer directory is
//! written directly.
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
//! destination symlink `/evil -> /tmp/x` leads to the *root's* `/tmp/x`, a source that
//! is itself a symlink is followed the same way, and a symlink inside a copied directory
//! is copied as a link, never read through. Nothing else writes to the trees while
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
//!   the empty filesystem and fail). A name missing there is no error, as in BuildKit's
//!   `readUser`: an unknown user is 0:0, an unknown group leaves the gid.
//! - `--chmod=755` (octal) sets exactly those bits (setuid/sticky of the source are
//!   dropped unless given); symbolic modes are applied per entry with `X` as `chmod(1)`.
//! - Several sources (after wildcard expansion, heredocs included) need a destination
//!   ending in `/` or an existing directory. A wildcard that matches nothing is fine when
//!   allowed, unless no source matched anything at all.
//! - `--exclude` on a top-level file source matches its name (as `source::Context::select`).
//! - Context sources: only entries of the given [`Selection`] (after `.dockerignore` and
//!   `--exclude`) are copied. A source that is itself a symlink is followed (BuildKit's
//!   `FollowSymlinks`; the selection holds its target, see [`crate::source::Context`]); a
//!   link whose target is missing or ignored is an error, as in BuildKit.
//! - ADD: an archive is recognised by content (a tar, plain or compressed with gzip, bzip2,
//!   xz or zstd; anything else is copied as a file). Entries are extracted with the
//!   snapshot unpacker's checks, then merged: an existing entry of another type is
//!   replaced (as Docker's `Untar`), owners come from the archive unless `--chown` (which
//!   owns every entry and the destination directories the op creates), and `--chmod` does
//!   not apply.

mod archive;
mod copy;
mod copy_run;
mod error;
mod linker;
mod resolve;
mod sources;
mod user;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use error::{Error, Result};
pub use user::{Owner, resolve_owner};

use copy_run::CopyRun;
use resolve::{join, resolve};

use crate::plan::{FileOp, Mkdir};
use crate::source::Selection;
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
    /// The layer directory is empty: nothing changed (a WORKDIR that existed). The image
    /// keeps such a layer; a cache export leaves it out.
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
    /// The new layer was an overlay upper ([`mount_destination`]).
    destination: bool,
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

    /// Mounts `layers` (bottom first) read-only at `target`, the first layer on top.
    fn chain(&mut self, layers: &[PathBuf], target: PathBuf) -> Result<PathBuf> {
        self.overlay(
            &Overlay {
                lowers: layers.iter().rev().cloned().collect(),
                upper: None,
            },
            &target,
        )?;
        Ok(target)
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
    if mounts.destination {
        // The layer BuildKit's differ writes of the upper (`snapshot::settle`).
        let lowers: Vec<PathBuf> = parent.iter().rev().cloned().collect();
        crate::snapshot::settle::settle(request.upper, &lowers, &scratch.join("lower-view"))
            .map_err(Error::Settle)?;
    }
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
    mounts.destination = true;
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
