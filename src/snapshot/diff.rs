//! An overlay upper dir as an OCI layer tar, written deterministically:
//! depth-first, names sorted byte-wise in each directory (a directory before
//! its content), ustar headers with numeric ids and no user/group names, PAX
//! records only when a value does not fit (long names, big ids or sizes,
//! xattrs). Overlay whiteouts (0/0 char devices) become `.wh.<name>`, opaque
//! directories get a `<dir>/.wh..wh..opq` entry right after the directory.
//! `diff_id` runs the same writer into a SHA-256 sink, so it always equals the
//! digest of the tar `diff` writes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::sys;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
/// Largest value of an 8-byte octal ustar field (uid, gid, mode).
const MAX_OCTAL_ID: u64 = 0o7_777_777;
/// Largest value of the 12-byte octal size field.
const MAX_OCTAL_SIZE: u64 = 0o77_777_777_777;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} changed size while it was being archived", .0.display())]
    FileChanged(PathBuf),
    #[error("writing the layer: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Sys(#[from] sys::SysError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiffError + 'a {
    move |source| DiffError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// How to write the layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: every mtime later than this is clamped to it.
    pub source_date_epoch: Option<u64>,
}

/// A finished layer: `sha256:<hex>` of the uncompressed tar and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffId {
    pub digest: String,
    pub size: u64,
}

/// Writes the layer tar of `upper` to `sink` and returns the sink.
pub fn diff<W: Write>(upper: &Path, options: &DiffOptions, sink: W) -> Result<W, DiffError> {
    let mut writer = LayerWriter {
        builder: tar::Builder::new(sink),
        options: *options,
        links: HashMap::new(),
    };
    writer.directory(upper, &mut Vec::new())?;
    writer.builder.into_inner().map_err(DiffError::Write)
}

/// The diff id of `upper`'s layer, computed without storing the tar.
pub fn diff_id(upper: &Path, options: &DiffOptions) -> Result<DiffId, DiffError> {
    let sink = diff(upper, options, HashSink::default())?;
    Ok(DiffId {
        digest: format!("sha256:{}", hex(&sink.hasher.finalize())),
        size: sink.size,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct HashSink {
    hasher: Sha256,
    size: u64,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one directory entry becomes in the tar.
enum Kind {
    Dir,
    File,
    Symlink,
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Whiteout,
}

struct LayerWriter<W: Write> {
    builder: tar::Builder<W>,
    options: DiffOptions,
    /// (dev, ino) of multiply-linked files → the tar path of their first entry.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> LayerWriter<W> {
    fn mtime(&self, meta: &fs::Metadata) -> u64 {
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        match self.options.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }

    /// Archives the content of directory `dir` whose tar path is `prefix`.
    fn directory(&mut self, dir: &Path, prefix: &mut Vec<u8>) -> Result<(), DiffError> {
        let mut children: Vec<(Vec<u8>, OsString, fs::Metadata, Kind)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
            let entry = entry.map_err(io_err("read dir", dir))?;
            let name = entry.file_name();
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(io_err("lstat", &path))?;
            let kind = classify(&meta);
            let Some(kind) = kind else { continue }; // sockets: not representable
            let tar_name = match kind {
                Kind::Whiteout => [WHITEOUT_PREFIX, name.as_bytes()].concat(),
                _ => name.as_bytes().to_vec(),
            };
            children.push((tar_name, name, meta, kind));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (tar_name, name, meta, kind) in children {
            let path = dir.join(&name);
            let base = prefix.len();
            prefix.extend_from_slice(&tar_name);
            self.entry(&path, prefix, &meta, &kind)?;
            if let Kind::Dir = kind {
                prefix.push(b'/');
                let opaque = sys::inspect::get_xattr(&path, OPAQUE_XATTR)?;
                if opaque.as_deref() == Some(b"y") {
                    let marker = [prefix.as_slice(), OPAQUE_MARKER].concat();
                    self.marker(&marker, self.mtime(&meta))?;
                }
                self.directory(&path, prefix)?;
            }
            prefix.truncate(base);
        }
        Ok(())
    }

    /// An empty regular file, mode 0, owned by 0:0 (whiteouts, opaque markers).
    fn marker(&mut self, name: &[u8], mtime: u64) -> Result<(), DiffError> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header.set_mtime(mtime);
        let mut pax = Vec::new();
        set_name(&mut header, name, &mut pax);
        self.write(header, pax, io::empty(), 0, Path::new(""))
    }

    fn entry(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &fs::Metadata,
        kind: &Kind,
    ) -> Result<(), DiffError> {
        let mtime = self.mtime(meta);
        if let Kind::Whiteout = kind {
            return self.marker(name, mtime);
        }
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(mtime);
        for (id, set, key) in [
            (
                u64::from(meta.uid()),
                tar::Header::set_uid as fn(&mut tar::Header, u64),
                "uid",
            ),
            (u64::from(meta.gid()), tar::Header::set_gid, "gid"),
        ] {
            if id > MAX_OCTAL_ID {
                set(&mut header, 0);
                pax.push((key.as_bytes().to_vec(), id.to_string().into_bytes()));
            } else {
                set(&mut header, id);
            }
        }
        header.set_size(0);
        let mut dir_name;
        let mut name = name;
        let mut body_len = 0;
        let first_link = if !matches!(kind, Kind::Dir) && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            match self.links.get(&key) {
                Some(first) => Some(first.clone()),
                None => {
                    self.links.insert(key, name.to_vec());
                    None
                }
            }
        } else {
            None
        };
        let is_link = first_link.is_some();
        if let Some(first) = first_link {
            header.set_entry_type(tar::EntryType::Link);
            set_link(&mut header, &first, &mut pax);
        } else {
            match kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    dir_name = name.to_vec();
                    dir_name.push(b'/');
                    name = &dir_name;
                }
                Kind::File => {
                    header.set_entry_type(tar::EntryType::Regular);
                    body_len = meta.len();
                    if body_len > MAX_OCTAL_SIZE {
                        pax.push((b"size".to_vec(), body_len.to_string().into_bytes()));
                    }
                    header.set_size(body_len);
                }
                Kind::Symlink => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    let target = fs::read_link(path).map_err(io_err("readlink", path))?;
                    set_link(&mut header, target.as_os_str().as_bytes(), &mut pax);
                }
                Kind::Char(major, minor) | Kind::Block(major, minor) => {
                    header.set_entry_type(if matches!(kind, Kind::Char(..)) {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    });
                    header.set_device_major(*major).map_err(DiffError::Write)?;
                    header.set_device_minor(*minor).map_err(DiffError::Write)?;
                }
                Kind::Fifo => header.set_entry_type(tar::EntryType::Fifo),
                Kind::Whiteout => unreachable!("handled above"),
            }
        }
        set_name(&mut header, name, &mut pax);
        // A hard link shares its inode's xattrs, which the first entry carries.
        let xattrs = if is_link {
            Vec::new()
        } else {
            sys::inspect::list_xattrs(path)?
        };
        for (key, value) in xattrs {
            if key.starts_with(OVERLAY_XATTR_PREFIX) {
                continue;
            }
            pax.push(([b"SCHILY.xattr.".as_slice(), &key].concat(), value));
        }
        if body_len > 0 {
            let file = fs::File::open(path).map_err(io_err("open", path))?;
            self.write(header, pax, file, body_len, path)
        } else {
            self.write(header, pax, io::empty(), 0, path)
        }
    }

    fn write(
        &mut self,
        mut header: tar::Header,
        mut pax: Vec<(Vec<u8>, Vec<u8>)>,
        body: impl Read,
        len: u64,
        path: &Path,
    ) -> Result<(), DiffError> {
        if !pax.is_empty() {
            pax.sort();
            let mut records = Vec::new();
            for (key, value) in &pax {
                records.extend_from_slice(&pax_record(key, value));
            }
            let mut pax_header = tar::Header::new_ustar();
            pax_header.set_entry_type(tar::EntryType::XHeader);
            pax_header.set_mode(0o644);
            pax_header.set_uid(0);
            pax_header.set_gid(0);
            pax_header.set_mtime(0);
            pax_header.set_size(records.len() as u64);
            let mut ignored = Vec::new();
            set_name(&mut pax_header, b"PaxHeader", &mut ignored);
            pax_header.set_cksum();
            self.builder
                .append(&pax_header, records.as_slice())
                .map_err(DiffError::Write)?;
        }
        header.set_cksum();
        let mut counted = Counted {
            inner: body.take(len),
            count: 0,
        };
        self.builder
            .append(&header, &mut counted)
            .map_err(DiffError::Write)?;
        if counted.count != len {
            return Err(DiffError::FileChanged(path.to_path_buf()));
        }
        Ok(())
    }
}

struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn classify(meta: &fs::Metadata) -> Option<Kind> {
    let file_type = meta.file_type();
    Some(if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else if file_type.is_char_device() {
        match sys::inspect::device_numbers(meta.rdev()) {
            (0, 0) => Kind::Whiteout,
            (major, minor) => Kind::Char(major, minor),
        }
    } else if file_type.is_block_device() {
        let (major, minor) = sys::inspect::device_numbers(meta.rdev());
        Kind::Block(major, minor)
    } else if file_type.is_fifo() {
        Kind::Fifo
    } else {
        return None;
    })
}

/// One PAX record: "<len> <key>=<value>\n", where len counts the whole record.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = Vec::with_capacity(len);
    record.extend_from_slice(len.to_string().as_bytes());
    record.push(b' ');
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Puts `name` in the ustar name (100 bytes) or prefix (155) + name fields,
/// or in a PAX `path` record (with a truncated header name) when it cannot fit.
fn set_name(header: &mut tar::Header, name: &[u8], pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let Some(ustar) = header.as_ustar_mut() else {
        return;
    };
    ustar.name = [0; 100];
    ustar.prefix = [0; 155];
    if name.len() <= 100 {
        ustar.name[..name.len()].copy_from_slice(name);
        return;
    }
    // Split at a '/' so that prefix ≤ 155 and the rest ≤ 100 (and non-empty).
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let split = (0..trimmed.len())
        .rev()
        .filter(|&i| trimmed[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100 && i > 0);
    if let Some(i) = split {
        ustar.prefix[..i].copy_from_slice(&name[..i]);
        let rest = &name[i + 1..];
        ustar.name[..rest.len()].copy_from_slice(rest);
        return;
    }
    ustar.name.copy_from_slice(&name[..100]);
    pax.push((b"path".to_vec(), name.to_vec()));
}

fn set_link(header: &mut tar::Header, target: &[u8], pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let Some(ustar) = header.as_ustar_mut() else {
        return;
    };
    ustar.linkname = [0; 100];
    if target.len() <= 100 {
        ustar.linkname[..target.len()].copy_from_slice(target);
    } else {
        ustar.linkname.copy_from_slice(&target[..100]);
        pax.push((b"linkpath".to_vec(), target.to_vec()));
    }
}

/// Reads a layer tar back as (path, kind byte, size, mode, uid, gid, link
/// target) tuples; a helper for tests and debugging.
pub fn list_tar(tar_bytes: &[u8]) -> io::Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let link = entry
            .link_name_bytes()
            .map(|l| OsString::from_vec(l.into_owned()).into());
        let mut xattrs = Vec::new();
        let mut uid = header.uid()?;
        let mut gid = header.gid()?;
        let number = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
        if let Some(extensions) = entry.pax_extensions()? {
            for ext in extensions {
                let ext = ext?;
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
                match ext.key_bytes() {
                    b"uid" => uid = number(ext.value_bytes()).unwrap_or(uid),
                    b"gid" => gid = number(ext.value_bytes()).unwrap_or(gid),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        entry.read_to_end(&mut body)?;
        out.push(TarEntry {
            path: OsString::from_vec(entry.path_bytes().into_owned()).into(),
            kind: header.entry_type().as_byte(),
            mode: header.mode()?,
            uid,
            gid,
            mtime: header.mtime()?,
            link,
            body,
            xattrs,
        });
    }
    Ok(out)
}

/// One entry of [`list_tar`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub path: PathBuf,
    /// The ustar type flag: b'0' file, b'1' hard link, b'2' symlink, b'5' dir, …
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<PathBuf>,
    pub body: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}
