//! An overlay upper dir as an OCI layer tar, written deterministically:
//! depth-first, names sorted byte-wise in each directory (a directory before
//! its content), ustar headers with numeric ids and no user/group names, PAX
//! records only when a value does not fit (long names, big ids or sizes,
//! xattrs). Overlay whiteouts (0/0 char devices) become `.wh.<name>`, opaque
//! directories get a `<dir>/.wh..wh..opq` entry right after the directory.
//! `diff_id` runs the same writer into a SHA-256 sink, so it always equals the
//! digest of the tar `diff` writes.
//!
//! The walk reaches every entry relative to its open directory (one name lookup, not a
//! walk of the whole path) and reads file content in large chunks on a thread of its own,
//! while the calling thread writes the chunks to the sink (which, for a store ingest,
//! hashes and writes them): producing and consuming a big layer overlap.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use sha2::{Digest, Sha256};

pub use super::error::DiffError;
use crate::sys;
use crate::sys::dir::{Dir, FileStat};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// overlayfs's opaque-directory mark, as root (`trusted.`) or in a user namespace (`user.`).
fn is_opaque_xattr(key: &[u8]) -> bool {
    key == b"trusted.overlay.opaque" || key == b"user.overlay.opaque"
}

/// Largest value of an 8-byte octal ustar field (uid, gid, mode).
const MAX_OCTAL_ID: u64 = 0o7_777_777;
/// Largest value of the 12-byte octal size field.
const MAX_OCTAL_SIZE: u64 = 0o77_777_777_777;
/// The tar is handed from the walk to the sink in chunks of this size…
const CHUNK: usize = 256 << 10;
/// …at most this many waiting at a time.
const CHUNKS_IN_FLIGHT: usize = 4;
const BLOCK: usize = 512;
/// Directories this deep or deeper are not kept open while their subdirectories are
/// archived.
const MAX_OPEN_DEPTH: usize = 64;

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
pub fn diff<W: Write>(upper: &Path, options: &DiffOptions, mut sink: W) -> Result<W, DiffError> {
    let root = Dir::open(upper).map_err(io_err("open", upper))?;
    let (full_tx, full_rx) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let (free_tx, free_rx) = channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let walk = std::thread::Builder::new()
            .name("kiln-layer-tar".to_string())
            .spawn_scoped(scope, move || {
                let mut writer = LayerWriter {
                    out: Chunks::new(full_tx, free_rx),
                    options: *options,
                    links: HashMap::new(),
                };
                writer.directory(root, upper, &mut Vec::new(), 0)?;
                writer.out.put(&[0; 2 * BLOCK])?;
                writer.out.send()
            })
            .map_err(io_err("start the layer walk for", upper))?;
        let mut written = Ok(());
        for chunk in &full_rx {
            written = sink.write_all(&chunk.bytes[..chunk.len]);
            if written.is_err() {
                break;
            }
            // The walk may be gone already; then the buffer is simply dropped.
            let _ = free_tx.send(chunk.bytes);
        }
        // Stops a walk still sending (after a write error).
        drop(full_rx);
        let walked = walk
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        written.map_err(DiffError::Write)?;
        walked
    })?;
    Ok(sink)
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

/// A filled buffer: its first `len` bytes are tar.
struct Chunk {
    bytes: Vec<u8>,
    len: usize,
}

/// The walk's side of the hand-over: fills buffers of [`CHUNK`] bytes (reused once the
/// sink has written them) and sends each when full.
struct Chunks {
    full: SyncSender<Chunk>,
    free: Receiver<Vec<u8>>,
    bytes: Vec<u8>,
    len: usize,
}

impl Chunks {
    fn new(full: SyncSender<Chunk>, free: Receiver<Vec<u8>>) -> Chunks {
        Chunks {
            full,
            free,
            bytes: vec![0; CHUNK],
            len: 0,
        }
    }

    /// Sends what is filled (if anything) and starts an empty buffer.
    fn send(&mut self) -> Result<(), DiffError> {
        if self.len == 0 {
            return Ok(());
        }
        let next = self.free.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let bytes = std::mem::replace(&mut self.bytes, next);
        let len = std::mem::take(&mut self.len);
        // The sink side hung up: it failed, and reports its own error.
        self.full
            .send(Chunk { bytes, len })
            .map_err(|_| DiffError::Write(io::Error::other("the layer sink stopped")))
    }

    fn put(&mut self, mut data: &[u8]) -> Result<(), DiffError> {
        while !data.is_empty() {
            if self.len == CHUNK {
                self.send()?;
            }
            let n = data.len().min(CHUNK - self.len);
            self.bytes[self.len..self.len + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
        }
        Ok(())
    }

    /// Zeros up to the next 512-byte boundary after `len` bytes of entry content.
    fn pad(&mut self, len: u64) -> Result<(), DiffError> {
        let rest = (BLOCK - (len % BLOCK as u64) as usize) % BLOCK;
        self.put(&[0; BLOCK][..rest])
    }

    /// Exactly `len` bytes of `file` straight into the buffers; fewer is an error.
    fn read_body(&mut self, file: &mut fs::File, len: u64, path: &Path) -> Result<(), DiffError> {
        let mut left = len;
        while left > 0 {
            if self.len == CHUNK {
                self.send()?;
            }
            let room = (CHUNK - self.len).min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.bytes[self.len..self.len + room]) {
                Ok(0) => return Err(DiffError::FileChanged(path.to_path_buf())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DiffError::Write(e)),
            };
            self.len += n;
            left -= n as u64;
        }
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

/// What an entry's content comes from.
enum Body<'a> {
    None,
    File(fs::File, u64, &'a Path),
}

struct LayerWriter {
    out: Chunks,
    options: DiffOptions,
    /// (dev, ino) of multiply-linked files → the tar path of their first entry.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl LayerWriter {
    fn mtime(&self, meta: &FileStat) -> u64 {
        let mtime = u64::try_from(meta.mtime.0).unwrap_or(0);
        match self.options.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }

    /// Archives the content of directory `dir` (at `path`, `depth` levels below the
    /// upper) whose tar path is `prefix`.
    fn directory(
        &mut self,
        dir: Dir,
        path: &Path,
        prefix: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DiffError> {
        let mut children: Vec<(Vec<u8>, OsString, FileStat, Kind)> = Vec::new();
        for name in dir.names().map_err(io_err("read dir", path))? {
            let meta = dir
                .stat(&name)
                .map_err(|e| io_err("lstat", &path.join(&name))(e))?;
            let Some(kind) = classify(&meta) else {
                continue; // sockets: not representable
            };
            let tar_name = match kind {
                Kind::Whiteout => [WHITEOUT_PREFIX, name.as_bytes()].concat(),
                _ => name.as_bytes().to_vec(),
            };
            children.push((tar_name, name, meta, kind));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        let mut open = Some(dir);
        for (tar_name, name, meta, kind) in children {
            let dir = match open.take() {
                Some(dir) => dir,
                None => Dir::open(path).map_err(io_err("open", path))?,
            };
            let child = path.join(&name);
            let base = prefix.len();
            prefix.extend_from_slice(&tar_name);
            if let Kind::Dir = kind {
                let sub = dir.open_dir(&name).map_err(io_err("open dir", &child))?;
                let xattrs = sub.xattrs().map_err(io_err("list xattrs of", &child))?;
                let opaque = xattrs
                    .iter()
                    .any(|(key, value)| is_opaque_xattr(key) && value == b"y");
                self.entry(&dir, &name, &child, prefix, &meta, &kind, Some(xattrs))?;
                prefix.push(b'/');
                if opaque {
                    let marker = [prefix.as_slice(), OPAQUE_MARKER].concat();
                    self.marker(&marker, self.mtime(&meta))?;
                }
                // Deep down, a directory is closed while a subdirectory is archived (and
                // opened again by path after it), so that however deep the tree, few
                // descriptors are open.
                if depth < MAX_OPEN_DEPTH {
                    open = Some(dir);
                }
                self.directory(sub, &child, prefix, depth + 1)?;
            } else {
                self.entry(&dir, &name, &child, prefix, &meta, &kind, None)?;
                open = Some(dir);
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
        self.write(header, pax, Body::None)
    }

    /// The entry `name` of `dir` (at `path`), named `tar_name` in the tar; `xattrs` are
    /// those of a directory, already read.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        tar_name: &[u8],
        meta: &FileStat,
        kind: &Kind,
        xattrs: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    ) -> Result<(), DiffError> {
        let mtime = self.mtime(meta);
        if let Kind::Whiteout = kind {
            return self.marker(tar_name, mtime);
        }
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        header.set_mode(meta.permissions);
        header.set_mtime(mtime);
        for (id, set, key) in [
            (
                u64::from(meta.uid),
                tar::Header::set_uid as fn(&mut tar::Header, u64),
                "uid",
            ),
            (u64::from(meta.gid), tar::Header::set_gid, "gid"),
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
        let mut tar_name = tar_name;
        let mut body = Body::None;
        let first_link = if !matches!(kind, Kind::Dir) && meta.nlink > 1 {
            let key = (meta.dev, meta.ino);
            match self.links.get(&key) {
                Some(first) => Some(first.clone()),
                None => {
                    self.links.insert(key, tar_name.to_vec());
                    None
                }
            }
        } else {
            None
        };
        // A hard link shares its inode's xattrs, which the first entry carries.
        let mut xattrs = xattrs.unwrap_or_default();
        if let Some(first) = first_link {
            header.set_entry_type(tar::EntryType::Link);
            set_link(&mut header, &first, &mut pax);
        } else {
            match kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    dir_name = tar_name.to_vec();
                    dir_name.push(b'/');
                    tar_name = &dir_name;
                }
                Kind::File => {
                    header.set_entry_type(tar::EntryType::Regular);
                    let len = meta.size;
                    if len > MAX_OCTAL_SIZE {
                        pax.push((b"size".to_vec(), len.to_string().into_bytes()));
                    }
                    header.set_size(len);
                    let file = dir.open_file(name).map_err(io_err("open", path))?;
                    xattrs = sys::dir::fd_xattrs(&file).map_err(io_err("list xattrs of", path))?;
                    body = Body::File(file, len, path);
                }
                Kind::Symlink => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    let target = dir.read_link(name).map_err(io_err("readlink", path))?;
                    set_link(&mut header, target.as_bytes(), &mut pax);
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
            // Neither opened nor read above (a symlink, device or fifo): by path.
            if matches!(
                kind,
                Kind::Symlink | Kind::Char(..) | Kind::Block(..) | Kind::Fifo
            ) {
                xattrs = sys::inspect::list_xattrs(path)?;
            }
        }
        set_name(&mut header, tar_name, &mut pax);
        for (key, value) in xattrs {
            if sys::userns::is_overlay_xattr(&key) {
                continue;
            }
            pax.push(([b"SCHILY.xattr.".as_slice(), &key].concat(), value));
        }
        self.write(header, pax, body)
    }

    fn write(
        &mut self,
        mut header: tar::Header,
        mut pax: Vec<(Vec<u8>, Vec<u8>)>,
        body: Body<'_>,
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
            self.out.put(pax_header.as_bytes())?;
            self.out.put(&records)?;
            self.out.pad(records.len() as u64)?;
        }
        header.set_cksum();
        self.out.put(header.as_bytes())?;
        if let Body::File(mut file, len, path) = body {
            self.out.read_body(&mut file, len, path)?;
            self.out.pad(len)?;
        }
        Ok(())
    }
}

fn classify(meta: &FileStat) -> Option<Kind> {
    use sys::dir::Kind as FileKind;
    Some(match meta.kind {
        FileKind::Dir => Kind::Dir,
        FileKind::File => Kind::File,
        FileKind::Symlink => Kind::Symlink,
        FileKind::CharDevice => match sys::inspect::device_numbers(meta.rdev) {
            (0, 0) => Kind::Whiteout,
            (major, minor) => Kind::Char(major, minor),
        },
        FileKind::BlockDevice => {
            let (major, minor) = sys::inspect::device_numbers(meta.rdev);
            Kind::Block(major, minor)
        }
        FileKind::Fifo => Kind::Fifo,
        FileKind::Socket => return None,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `limit` bytes, then fails.
    struct FailingSink {
        limit: usize,
        taken: usize,
    }

    impl Write for FailingSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken + buf.len() > self.limit {
                return Err(io::Error::other("disk on fire"));
            }
            self.taken += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn tree(files: usize, big: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        for i in 0..files {
            let content: Vec<u8> = (0..i * 37).map(|b| b as u8).collect();
            fs::write(dir.path().join(format!("d/f{i:03}")), content).unwrap();
        }
        let content: Vec<u8> = (0..big).map(|b| (b % 251) as u8).collect();
        fs::write(dir.path().join("big"), content).unwrap();
        dir
    }

    #[test]
    fn layers_of_many_chunks_come_through_whole_and_in_order() {
        let dir = tree(300, 3 * CHUNK + 5);
        let tar = diff(dir.path(), &DiffOptions::default(), Vec::new()).unwrap();
        assert_eq!(tar.len() % BLOCK, 0);
        let entries = list_tar(&tar).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(names[0], Path::new("big"));
        assert_eq!(names[1], Path::new("d/"));
        assert_eq!(names.len(), 302);
        assert_eq!(entries[0].body.len(), 3 * CHUNK + 5);
        assert!(
            entries[0]
                .body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i % 251) as u8)
        );
        assert_eq!(entries[301].body.len(), 299 * 37);
        let id = diff_id(dir.path(), &DiffOptions::default()).unwrap();
        assert_eq!(id.digest, format!("sha256:{}", hex(&Sha256::digest(&tar))));
        assert_eq!(id.size, tar.len() as u64);
    }

    #[test]
    fn a_failing_sink_stops_the_walk_with_its_error() {
        let dir = tree(50, 6 * CHUNK);
        for limit in [0, CHUNK, 3 * CHUNK] {
            let sink = FailingSink { limit, taken: 0 };
            match diff(dir.path(), &DiffOptions::default(), sink) {
                Err(DiffError::Write(e)) => assert_eq!(e.to_string(), "disk on fire"),
                other => panic!("expected the sink's error, got {:?}", other.err()),
            }
        }
    }

    #[test]
    fn trees_deeper_than_the_open_directories_come_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut path = dir.path().to_path_buf();
        for level in 0..2 * MAX_OPEN_DEPTH + 3 {
            fs::write(path.join("a"), level.to_string()).unwrap();
            path.push("d");
            fs::create_dir(&path).unwrap();
            fs::write(path.join("z"), level.to_string()).unwrap();
        }
        let tar = diff(dir.path(), &DiffOptions::default(), Vec::new()).unwrap();
        let entries = list_tar(&tar).unwrap();
        assert_eq!(entries.len(), 3 * (2 * MAX_OPEN_DEPTH + 3));
        // Each directory: its `a` file, the subdirectory and everything in it, then `z`:
        // the deepest `z` comes in the middle, the top one's last.
        let levels = 2 * MAX_OPEN_DEPTH + 3;
        let deepest = format!("{}z", "d/".repeat(levels));
        let at = entries.iter().position(|e| e.path == Path::new(&deepest));
        assert_eq!(at, Some(2 * levels));
        assert_eq!(
            entries[2 * levels].body,
            (levels - 1).to_string().as_bytes()
        );
        let last = &entries[entries.len() - 1];
        assert_eq!(
            (last.path.as_path(), last.body.as_slice()),
            (Path::new("d/z"), &b"0"[..])
        );
        assert_eq!(entries[2].path, Path::new("d/a"));
    }

    #[test]
    fn a_missing_upper_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            diff(&missing, &DiffOptions::default(), Vec::new()),
            Err(DiffError::Io { .. })
        ));
    }
}
