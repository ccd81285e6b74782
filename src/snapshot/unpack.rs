//! Layer tar → directory, with OCI whiteouts turned into overlayfs ones.
//!
//! Extraction never writes outside its destination: `..` components are refused, a leading
//! `/` is stripped (as GNU tar does), and no symlink is ever followed while resolving where
//! an entry goes or what a hard link points at — whether the archive planted it or it was
//! there before.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tar::EntryType;

use super::{IoContext, Result, SnapshotError};
use crate::oci::{Compression, Digest, DigestReader, chain_id};
use crate::store::{Store, fsync_dir, random_name};
use crate::sys;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
const META_FILE: &str = "meta.json";
const FS_DIR: &str = "fs";
const TMP_PREFIX: &str = "tmp-";
/// Mode of directories the archive implies but does not contain.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// What unpacking a tar stream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar stream.
    pub tar_size: u64,
    /// Bytes of regular-file content written.
    pub content_size: u64,
}

/// `meta.json` of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMeta {
    pub chain_id: Digest,
    /// Chain id of the layer below, if any.
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Bytes of regular-file content in this layer.
    pub size: u64,
}

/// An unpacked layer on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    /// `snapshots-v1/<chain-id-hex>`.
    pub dir: PathBuf,
    /// True if this call unpacked it; false if it was already there.
    pub created: bool,
}

impl Snapshot {
    /// The layer's files (`<dir>/fs`): an overlay lowerdir.
    pub fn fs_path(&self) -> PathBuf {
        self.dir.join(FS_DIR)
    }
}

/// The snapshot with `chain_id`, if it has been unpacked.
pub fn open_snapshot(store: &Store, chain_id: &Digest) -> Result<Option<Snapshot>> {
    let dir = store.snapshots_dir().join(chain_id.hex());
    let meta_path = dir.join(META_FILE);
    let bytes = match fs::read(&meta_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).io_context("read", &meta_path),
    };
    let meta: SnapshotMeta =
        serde_json::from_slice(&bytes).map_err(|e| SnapshotError::CorruptMeta {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
    if meta.chain_id != *chain_id {
        return Err(SnapshotError::CorruptMeta {
            path: meta_path,
            reason: format!("records chain id {}", meta.chain_id),
        });
    }
    Ok(Some(Snapshot {
        meta,
        dir,
        created: false,
    }))
}

/// Unpacks one layer (`layer` may be uncompressed, gzip or zstd; detected from its bytes)
/// on top of the snapshot `parent` (a chain id), verifying its uncompressed digest against
/// `diff_id` from the image config.
///
/// The snapshot appears atomically under its chain id; if it already exists, `layer` is
/// not read. Two concurrent unpacks of the same layer both succeed, one of them discarding
/// its work. On any error nothing is left behind.
pub fn unpack_layer(
    store: &Store,
    parent: Option<&Digest>,
    diff_id: &Digest,
    layer: impl Read,
) -> Result<Snapshot> {
    let _lease = store.lease()?;
    let chain_id = chain_id(parent.into_iter().chain([diff_id]))
        .unwrap_or_else(|| unreachable!("a stack with at least one layer has a chain id"));
    if let Some(existing) = open_snapshot(store, &chain_id)? {
        return Ok(existing);
    }

    let snapshots_dir = store.snapshots_dir();
    let temp = snapshots_dir.join(format!("{TMP_PREFIX}{}", random_name()));
    fs::create_dir(&temp).io_context("create directory", &temp)?;
    let result = unpack_into_temp(&temp, parent, diff_id, &chain_id, layer);
    let meta = match result {
        Ok(meta) => meta,
        Err(e) => {
            let _ = fs::remove_dir_all(&temp);
            return Err(e);
        }
    };

    let dir = snapshots_dir.join(chain_id.hex());
    if let Err(e) = fs::rename(&temp, &dir) {
        let _ = fs::remove_dir_all(&temp);
        // Someone else unpacked the same layer meanwhile: use theirs.
        if let Some(existing) = open_snapshot(store, &chain_id)? {
            return Ok(existing);
        }
        return Err(e).io_context("rename snapshot into place", &dir);
    }
    fsync_dir(&snapshots_dir)?;
    Ok(Snapshot {
        meta,
        dir,
        created: true,
    })
}

fn unpack_into_temp(
    temp: &Path,
    parent: Option<&Digest>,
    diff_id: &Digest,
    chain_id: &Digest,
    layer: impl Read,
) -> Result<SnapshotMeta> {
    let fs_dir = temp.join(FS_DIR);
    fs::create_dir(&fs_dir).io_context("create directory", &fs_dir)?;
    let stats = unpack_tar(layer, &fs_dir)?;
    if stats.diff_id != *diff_id {
        return Err(SnapshotError::DiffIdMismatch {
            expected: diff_id.clone(),
            actual: stats.diff_id,
        });
    }
    let meta = SnapshotMeta {
        chain_id: chain_id.clone(),
        parent: parent.cloned(),
        diff_id: diff_id.clone(),
        size: stats.content_size,
    };
    let meta_path = temp.join(META_FILE);
    let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| SnapshotError::CorruptMeta {
        path: meta_path.clone(),
        reason: e.to_string(),
    })?;
    let mut file = File::create_new(&meta_path).io_context("create", &meta_path)?;
    io::Write::write_all(&mut file, &bytes).io_context("write", &meta_path)?;
    file.sync_all().io_context("fsync", &meta_path)?;
    Ok(meta)
}

/// Extracts a layer tar (uncompressed, gzip or zstd) into the existing directory `dest`,
/// converting OCI whiteouts to overlayfs whiteouts, and returns its diff_id.
pub fn unpack_tar(layer: impl Read, dest: &Path) -> Result<UnpackStats> {
    extract_all(layer, dest, None)
}

/// Applies a layer tar on top of the files already in `dest` (the layers below it,
/// applied the same way): whiteouts remove what they hide instead of being kept, so
/// applying an image's layers in order leaves its merged filesystem.
pub fn apply_tar(layer: impl Read, dest: &Path) -> Result<UnpackStats> {
    extract_all(layer, dest, Some(HashSet::new()))
}

fn extract_all(
    layer: impl Read,
    dest: &Path,
    merge: Option<HashSet<PathBuf>>,
) -> Result<UnpackStats> {
    let tar_stream = DigestReader::new(decompress(layer)?);
    let mut archive = tar::Archive::new(tar_stream);
    let mut extractor = Extractor {
        root: dest,
        is_root: sys::is_root(),
        in_user_namespace: sys::userns::in_user_namespace(),
        deferred_dirs: Vec::new(),
        content_size: 0,
        merge,
    };
    let entries = archive.entries().map_err(|source| SnapshotError::Tar {
        entry: None,
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| SnapshotError::Tar {
            entry: None,
            source,
        })?;
        extractor.extract(entry)?;
    }
    extractor.finish_dirs()?;

    // The diff_id covers the whole stream, including the end-of-archive blocks and any
    // padding after them.
    let mut tar_stream = archive.into_inner();
    io::copy(&mut tar_stream, &mut io::sink()).map_err(|source| SnapshotError::Tar {
        entry: None,
        source,
    })?;
    let (_, diff_id, tar_size) = tar_stream.finish();
    Ok(UnpackStats {
        diff_id,
        tar_size,
        content_size: extractor.content_size,
    })
}

/// Wraps `layer` in the decompressor its first bytes call for.
fn decompress<'a>(mut layer: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match layer.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(SnapshotError::Tar {
                    entry: None,
                    source,
                });
            }
        }
    }
    let head = head[..filled].to_vec();
    let compression = Compression::detect(&head);
    let stream = io::Cursor::new(head).chain(layer);
    Ok(match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(stream).map_err(|source| {
                SnapshotError::Tar {
                    entry: None,
                    source,
                }
            })?)
        }
    })
}

/// Per-entry metadata from the header and PAX records.
struct EntryMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Extractor<'a> {
    root: &'a Path,
    is_root: bool,
    /// Without root (uid 0 of a user namespace): no device nodes, no `trusted.*` xattrs.
    in_user_namespace: bool,
    /// Directory mode and mtime are applied last: creating children would change the
    /// mtime, and a read-only mode could stop them from being created.
    deferred_dirs: Vec<(PathBuf, u32, u64)>,
    content_size: u64,
    /// Applying onto the layers below (see [`apply_tar`]): the paths this layer wrote,
    /// which an opaque whiteout of their directory must keep.
    merge: Option<HashSet<PathBuf>>,
}

impl Extractor<'_> {
    fn extract<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let tar_error = |source: io::Error| SnapshotError::Tar {
            entry: Some(name.clone()),
            source,
        };
        let entry_type = entry.header().entry_type();
        if matches!(
            entry_type,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let relative = clean_relative(&raw_name, &name)?;
        let meta = entry_meta(&mut entry).map_err(tar_error)?;

        let Some(file_name) = relative.file_name().map(OsStr::as_bytes) else {
            // The archive root itself ("./"): only its metadata can be applied.
            if entry_type == EntryType::Directory {
                let root = self.root.to_path_buf();
                self.apply_owner_and_xattrs(&root, &meta, &name)?;
                self.deferred_dirs.push((root, meta.mode, meta.mtime));
                return Ok(());
            }
            return Err(unsafe_entry(&name, "empty path"));
        };
        let parent = self.prepare_parent(&relative, &name)?;

        if file_name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&parent, file_name, &name);
        }

        let path = parent.join(OsStr::from_bytes(file_name));
        let existing_dir = self.clear_target(&path, entry_type == EntryType::Directory)?;
        if let Some(written) = &mut self.merge {
            written.insert(path.clone());
        }
        match entry_type {
            EntryType::Directory => {
                if !existing_dir {
                    fs::create_dir(&path).io_context("create directory", &path)?;
                }
                self.apply_owner_and_xattrs(&path, &meta, &name)?;
                self.deferred_dirs.push((path, meta.mode, meta.mtime));
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = File::create_new(&path).io_context("create", &path)?;
                self.content_size += io::copy(&mut entry, &mut file).map_err(tar_error)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "symlink without a target"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .io_context("create symlink", &path)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "hard link without a target"))?;
                let target = self.resolve_link_target(&target, &name)?;
                fs::hard_link(&target, &path).io_context("create hard link", &path)?;
                // A hard link shares its target's inode and so its metadata.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let kind = match entry_type {
                    EntryType::Char => sys::NodeKind::CharDevice,
                    EntryType::Block => sys::NodeKind::BlockDevice,
                    _ => sys::NodeKind::Fifo,
                };
                let header = entry.header();
                let major = header.device_major().map_err(tar_error)?.unwrap_or(0);
                let minor = header.device_minor().map_err(tar_error)?.unwrap_or(0);
                // A user namespace may not make device nodes; the image keeps them (its
                // layers are the tars), the unpacked tree goes without, as rootless
                // BuildKit's does.
                if self.in_user_namespace && kind != sys::NodeKind::Fifo {
                    return Ok(());
                }
                sys::mknod(&path, kind, meta.mode, major.into(), minor.into())?;
            }
            other => {
                return Err(SnapshotError::UnsupportedEntry {
                    entry: name,
                    kind: format!("{other:?}"),
                });
            }
        }
        self.apply_owner_and_xattrs(&path, &meta, &name)?;
        if entry_type != EntryType::Symlink {
            set_mode(&path, meta.mode)?;
        }
        set_mtime(&path, meta.mtime)?;
        Ok(())
    }

    /// `.wh..wh..opq` marks `parent` opaque; `.wh.NAME` hides `NAME` of lower layers.
    fn whiteout(&mut self, parent: &Path, file_name: &[u8], name: &str) -> Result<()> {
        if file_name == WHITEOUT_OPAQUE.as_bytes() {
            if let Some(written) = &self.merge {
                return clear_lower(parent, written);
            }
            let opaque = format!("{}opaque", sys::userns::overlay_xattr_prefix());
            sys::lsetxattr(parent, &opaque, b"y")?;
            return Ok(());
        }
        if file_name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            return Ok(()); // Other aufs bookkeeping (e.g. .wh..wh.plnk): not content.
        }
        let hidden = &file_name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(unsafe_entry(name, "whiteout of an invalid name"));
        }
        let path = parent.join(OsStr::from_bytes(hidden));
        self.clear_target(&path, false)?;
        if self.merge.is_none() {
            sys::create_whiteout(&path)?;
        }
        Ok(())
    }

    /// Walks (creating as needed) the parent directories of `relative` below the root,
    /// refusing to pass through a symlink or a non-directory.
    fn prepare_parent(&self, relative: &Path, name: &str) -> Result<PathBuf> {
        let mut current = self.root.to_path_buf();
        let Some(parent) = relative.parent() else {
            return Ok(current);
        };
        for component in parent.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(md) if md.is_dir() => {}
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(unsafe_entry(
                        name,
                        &format!(
                            "parent {} is a symlink",
                            display_relative(self.root, &current)
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(unsafe_entry(
                        name,
                        &format!(
                            "parent {} is not a directory",
                            display_relative(self.root, &current)
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&current).io_context("create directory", &current)?;
                    set_mode(&current, IMPLIED_DIR_MODE)?;
                }
                Err(e) => return Err(e).io_context("stat", &current),
            }
        }
        Ok(current)
    }

    /// The path of an earlier entry a hard link points at, resolved without following any
    /// symlink on the way.
    fn resolve_link_target(&self, raw_target: &[u8], name: &str) -> Result<PathBuf> {
        let target_name = String::from_utf8_lossy(raw_target);
        let relative = clean_relative(raw_target, &target_name).map_err(|_| {
            unsafe_entry(
                name,
                &format!("hard link target {target_name:?} leaves the root"),
            )
        })?;
        if relative.as_os_str().is_empty() {
            return Err(unsafe_entry(name, "hard link to the root directory"));
        }
        let mut current = self.root.to_path_buf();
        let components: Vec<_> = relative.components().collect();
        for (i, component) in components.iter().enumerate() {
            current.push(component);
            let md = match fs::symlink_metadata(&current) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(unsafe_entry(
                        name,
                        &format!("hard link target {target_name:?} is not an earlier entry"),
                    ));
                }
                Err(e) => return Err(e).io_context("stat", &current),
            };
            let is_last = i + 1 == components.len();
            if !is_last && !md.is_dir() {
                return Err(unsafe_entry(
                    name,
                    &format!("hard link target {target_name:?} passes through a symlink or file"),
                ));
            }
            if is_last && md.is_dir() {
                return Err(unsafe_entry(name, "hard link to a directory"));
            }
        }
        Ok(current)
    }

    /// Makes room for a new entry at `path`, never following a symlink there. Returns true
    /// if a directory is there and the new entry is one too (it is kept, like tar does).
    fn clear_target(&self, path: &Path, entry_is_dir: bool) -> Result<bool> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).io_context("stat", path),
            Ok(md) if md.is_dir() && entry_is_dir => Ok(true),
            Ok(md) if md.is_dir() => {
                fs::remove_dir_all(path).io_context("remove", path)?;
                Ok(false)
            }
            Ok(_) => {
                fs::remove_file(path).io_context("remove", path)?;
                Ok(false)
            }
        }
    }

    fn apply_owner_and_xattrs(&self, path: &Path, meta: &EntryMeta, name: &str) -> Result<()> {
        if self.is_root {
            let uid =
                u32::try_from(meta.uid).map_err(|_| unsafe_entry(name, "uid out of range"))?;
            let gid =
                u32::try_from(meta.gid).map_err(|_| unsafe_entry(name, "gid out of range"))?;
            sys::lchown(path, uid, gid)?;
        }
        for (key, value) in &meta.xattrs {
            match sys::lsetxattr(path, OsStr::from_bytes(key), value) {
                Ok(()) => {}
                // Without root, trusted.* and security.* attributes cannot be set; a
                // rootless unpack keeps going, as rootless BuildKit does.
                Err(e) if (!self.is_root || self.in_user_namespace) && e.is_not_permitted() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        for (path, mode, mtime) in std::mem::take(&mut self.deferred_dirs) {
            set_mode(&path, mode)?;
            set_mtime(&path, mtime)?;
        }
        Ok(())
    }
}

/// An opaque directory applied onto lower layers: everything in `dir` that this layer did
/// not write goes (never following a symlink: entries are removed, not entered).
fn clear_lower(dir: &Path, written: &HashSet<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).io_context("read directory", dir)? {
        let path = entry.io_context("read directory", dir)?.path();
        if written.contains(&path) {
            continue;
        }
        let md = fs::symlink_metadata(&path).io_context("stat", &path)?;
        if md.is_dir() {
            fs::remove_dir_all(&path).io_context("remove", &path)?;
        } else {
            fs::remove_file(&path).io_context("remove", &path)?;
        }
    }
    Ok(())
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
    let header = entry.header();
    let raw = header.as_old();
    let mut meta = EntryMeta {
        mode: numeric(header.mode().map(u64::from), &raw.mode)? as u32 & 0o7777,
        uid: numeric(header.uid(), &raw.uid)?,
        gid: numeric(header.gid(), &raw.gid)?,
        mtime: numeric(header.mtime(), &raw.mtime)?,
        xattrs: Vec::new(),
    };
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            let key = extension.key_bytes();
            let value = extension.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
                    .ok_or_else(|| io::Error::other(format!("bad PAX number {value:?}")))
            };
            if let Some(xattr) = key.strip_prefix(PAX_XATTR_PREFIX.as_bytes()) {
                meta.xattrs.push((xattr.to_vec(), value.to_vec()));
            } else if key == b"uid" {
                meta.uid = number()?;
            } else if key == b"gid" {
                meta.gid = number()?;
            } else if key == b"mtime" {
                meta.mtime = number()?;
            }
        }
    }
    Ok(meta)
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's
/// archive/tar (and so Docker) reads it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

/// `raw` as a path relative to the root: a leading `/` and `.` components are dropped,
/// `..` is refused.
fn clean_relative(raw: &[u8], name: &str) -> Result<PathBuf> {
    let mut relative = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(name, "path contains '..'")),
            Component::Prefix(_) => return Err(unsafe_entry(name, "path has a prefix")),
        }
    }
    Ok(relative)
}

fn unsafe_entry(name: &str, reason: &str) -> SnapshotError {
    SnapshotError::UnsafeEntry {
        entry: name.to_string(),
        reason: reason.to_string(),
    }
}

fn display_relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    // `path` is never a symlink here, so following it is not a concern.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).io_context("chmod", path)
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let time = UNIX_EPOCH + Duration::from_secs(mtime);
    sys::set_times_nofollow(path, time, time)?;
    Ok(())
}
