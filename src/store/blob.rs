//! Content-addressed blobs: verified ingest, reads, and stale-ingest cleanup.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::{IoContext, Lease, Result, Store, StoreError, fsutil};
use crate::oci::{Algorithm, Digest, DigestWriter};

/// An ingest file younger than this is never treated as stale: its writer may have created
/// it and not yet taken its lock.
const INGEST_GRACE: Duration = Duration::from_secs(60);

/// Writes reach the file in chunks of this size, whatever size the caller writes in.
const INGEST_BUFFER: usize = 256 * 1024;
/// Memory and file offsets of direct (`O_DIRECT`) writes are multiples of this: the
/// largest logical block size of common devices.
const DIRECT_ALIGN: usize = 4096;
/// Direct writes are this big: one at a time, smaller ones leave the disk idle between.
const DIRECT_BLOCK: usize = 1 << 20;

/// A blob being written. Bytes are hashed as they are written; [`Ingest::commit`] verifies
/// them and moves the file into `blobs/`. Dropping an uncommitted ingest removes its file.
///
/// The ingest file is held with an exclusive lock, so that another process opening the
/// store knows it is alive.
pub struct Ingest {
    /// `None` once committed.
    writer: Option<DigestWriter<Sink>>,
    path: PathBuf,
    store: Store,
    _lease: Lease,
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.writer.as_ref().map_or(0, DigestWriter::written)
    }

    /// Verifies the content against `expected` digest and `expected_size` (when given),
    /// fsyncs it and renames it into `blobs/sha256/`. On any mismatch the ingest file is
    /// removed and nothing reaches `blobs/`.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let writer = self.writer.take().ok_or_else(|| StoreError::Io {
            action: "commit",
            path: self.path.clone(),
            source: io::Error::other("ingest already finished"),
        })?;
        let (sink, actual, written) = writer.finish();
        let result = sink
            .into_file()
            .io_context("write", &self.path)
            .and_then(|file| self.finish(file, actual, written, expected, expected_size));
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result
    }

    fn finish(
        &self,
        file: File,
        actual: Digest,
        written: u64,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        if let Some(expected) = expected
            && expected.algorithm() != Algorithm::Sha256
        {
            return Err(StoreError::UnsupportedAlgorithm(expected.clone()));
        }
        if let Some(expected_size) = expected_size
            && expected_size != written
        {
            return Err(StoreError::SizeMismatch {
                digest: expected.unwrap_or(&actual).clone(),
                expected: expected_size,
                actual: written,
            });
        }
        if let Some(expected) = expected
            && *expected != actual
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        file.sync_all().io_context("fsync", &self.path)?;
        drop(file);
        let target = self.store.blob_path(&actual);
        if target.exists() {
            // Someone stored the same content first; theirs is as good as ours.
            let _ = fs::remove_file(&self.path);
        } else {
            fs::rename(&self.path, &target).io_context("rename into blobs", &target)?;
            if let Some(dir) = target.parent() {
                fsutil::fsync_dir(dir)?;
            }
        }
        Ok((actual, written))
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest already finished"))?
            .write(buf)
    }

    /// Pushes buffered bytes to the file (not to disk: [`Ingest::commit`] fsyncs).
    fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("path", &self.path)
            .field("written", &self.written())
            .finish()
    }
}

/// Where an ingest's bytes go.
enum Sink {
    Buffered(BufWriter<File>),
    Direct(Box<DirectSink>),
}

impl Sink {
    /// Writes what is buffered and returns the file.
    fn into_file(self) -> io::Result<File> {
        match self {
            Sink::Buffered(buffered) => buffered.into_inner().map_err(|e| e.into_error()),
            Sink::Direct(direct) => (*direct).into_file(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Buffered(buffered) => buffered.write(buf),
            Sink::Direct(direct) => direct.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Buffered(buffered) => buffered.flush(),
            // Only whole aligned blocks can be written directly; the rest waits for the end.
            Sink::Direct(_) => Ok(()),
        }
    }
}

/// An ingest file written in aligned blocks of [`DIRECT_BLOCK`] bytes through a second
/// descriptor opened with `O_DIRECT`, by a thread of its own, so that the disk writes while
/// the next block is filled and hashed. The shorter tail goes through the ordinary
/// descriptor, and so does everything from a block the filesystem refuses to write
/// directly (`EINVAL`) on.
struct DirectSink {
    current: AlignedBlock,
    /// Blocks the writer is done with.
    free: Receiver<AlignedBlock>,
    /// Blocks allocated so far (at most [`DIRECT_BLOCKS`]).
    allocated: usize,
    /// Where the current block goes in the file.
    offset: u64,
    blocks: Option<SyncSender<(AlignedBlock, u64)>>,
    writer: Option<JoinHandle<io::Result<File>>>,
}

/// Blocks in use by one direct ingest: one filling, the rest queued or being written.
const DIRECT_BLOCKS: usize = 4;

/// [`DIRECT_BLOCK`] bytes aligned to [`DIRECT_ALIGN`] in memory, `len` of them filled.
struct AlignedBlock {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBlock {
    fn new() -> Option<AlignedBlock> {
        let bytes = vec![0; DIRECT_BLOCK + DIRECT_ALIGN];
        let start = bytes.as_ptr().align_offset(DIRECT_ALIGN);
        (start < DIRECT_ALIGN).then_some(AlignedBlock {
            bytes,
            start,
            len: 0,
        })
    }

    fn filled(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

impl DirectSink {
    /// Opens `path` (the ingest `file`) for direct writes; gives the file back when the
    /// filesystem has no direct I/O.
    fn open(file: File, path: &Path) -> std::result::Result<DirectSink, File> {
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(path);
        let (Ok(direct), Some(current)) = (direct, AlignedBlock::new()) else {
            return Err(file);
        };
        // Should the thread not start, the ingest goes on through a duplicate of `file`
        // (which shares its lock).
        let Ok(spare) = file.try_clone() else {
            return Err(file);
        };
        let (blocks, queued) = sync_channel(DIRECT_BLOCKS);
        let (done, free) = channel();
        let spawned = std::thread::Builder::new()
            .name("kiln-ingest".to_string())
            .spawn(move || write_blocks(file, direct, &queued, &done));
        match spawned {
            Ok(writer) => Ok(DirectSink {
                current,
                free,
                allocated: 1,
                offset: 0,
                blocks: Some(blocks),
                writer: Some(writer),
            }),
            Err(_) => Err(spare),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(DIRECT_BLOCK - self.current.len);
        let at = self.current.start + self.current.len;
        self.current.bytes[at..at + take].copy_from_slice(&buf[..take]);
        self.current.len += take;
        if self.current.len == DIRECT_BLOCK {
            let next = match self.free.try_recv() {
                Ok(block) => Some(block),
                Err(_) if self.allocated < DIRECT_BLOCKS => {
                    self.allocated += 1;
                    AlignedBlock::new()
                }
                // All in use: wait for the writer (or learn that it failed).
                Err(_) => self.free.recv().ok(),
            };
            let Some(mut next) = next else {
                return Err(self.finish_writer().err().unwrap_or_else(writer_gone));
            };
            next.len = 0;
            let full = std::mem::replace(&mut self.current, next);
            self.send(full)?;
        }
        Ok(take)
    }

    fn send(&mut self, block: AlignedBlock) -> io::Result<()> {
        let len = block.len as u64;
        let sent = match &self.blocks {
            Some(blocks) => blocks.send((block, self.offset)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.finish_writer().err().unwrap_or_else(writer_gone));
        }
        self.offset += len;
        Ok(())
    }

    /// Waits for the writer and takes the file back (or the writer's first error).
    fn finish_writer(&mut self) -> io::Result<File> {
        self.blocks = None;
        match self.writer.take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Err(writer_gone()),
        }
    }

    fn into_file(mut self) -> io::Result<File> {
        if self.current.len > 0 {
            let tail = std::mem::replace(
                &mut self.current,
                AlignedBlock {
                    bytes: Vec::new(),
                    start: 0,
                    len: 0,
                },
            );
            self.send(tail)?;
        }
        self.finish_writer()
    }
}

/// The writer thread of a [`DirectSink`]: writes each block at its offset, directly when
/// it is whole and aligned and the filesystem takes it, and hands the block back.
fn write_blocks(
    file: File,
    direct: File,
    queued: &Receiver<(AlignedBlock, u64)>,
    done: &Sender<AlignedBlock>,
) -> io::Result<File> {
    let mut direct = Some(direct);
    for (block, offset) in queued {
        let bytes = block.filled();
        let aligned = bytes.len() % DIRECT_ALIGN == 0;
        let written = match &direct {
            Some(direct) if aligned => direct.write_all_at(bytes, offset),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match written {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if aligned {
                    direct = None;
                }
                file.write_all_at(bytes, offset)?;
            }
            Err(e) => return Err(e),
        }
        // The sink may be finishing and no longer take blocks back.
        let _ = done.send(block);
    }
    Ok(file)
}

fn writer_gone() -> io::Error {
    io::Error::other("the ingest writer stopped")
}

impl Store {
    /// Starts writing a blob. Holds a [`Lease`] until committed or dropped.
    pub fn ingest(&self) -> Result<Ingest> {
        self.start_ingest(false)
    }

    /// Starts writing a big blob that is not read back soon (a layer the build made):
    /// where the filesystem allows, its bytes go to the disk directly (`O_DIRECT`) instead
    /// of being copied into the page cache and written back from there on commit, which
    /// costs about as much CPU time as hashing them.
    pub fn ingest_direct(&self) -> Result<Ingest> {
        self.start_ingest(true)
    }

    fn start_ingest(&self, direct: bool) -> Result<Ingest> {
        let lease = self.lease()?;
        let dir = self.ingest_dir();
        let (file, path) = loop {
            let path = dir.join(fsutil::random_name());
            match File::create_new(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).io_context("create ingest file", &path),
            }
        };
        // Freshly created, so nobody else can hold it; the lock marks it as alive.
        if let Err(e) = file.try_lock() {
            let _ = fs::remove_file(&path);
            return Err(io::Error::other(e.to_string())).io_context("lock ingest file", &path);
        }
        let opened = if direct {
            DirectSink::open(file, &path)
        } else {
            Err(file)
        };
        let sink = match opened {
            Ok(direct) => Sink::Direct(Box::new(direct)),
            Err(file) => Sink::Buffered(BufWriter::with_capacity(INGEST_BUFFER, file)),
        };
        Ok(Ingest {
            writer: Some(DigestWriter::new(sink)),
            path,
            store: self.clone(),
            _lease: lease,
        })
    }

    /// Stores `bytes` and returns their digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.ingest()?;
        ingest
            .write_all(bytes)
            .io_context("write", &ingest.path.clone())?;
        ingest.commit(Some(&digest), Some(bytes.len() as u64))?;
        Ok(digest)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a whole blob and verifies its digest. Meant for manifests and configs; stream
    /// layers with [`Store::open_blob`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound(digest.clone()));
            }
            Err(e) => return Err(e).io_context("read", &path),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::CorruptBlob {
                digest: digest.clone(),
                reason: format!("content hashes to {actual}"),
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming (not verified; it was verified when written).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::Io {
                action: "open",
                path,
                source: e,
            },
        })
    }

    /// Size of a stored blob in bytes.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(md) => Ok(md.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(e).io_context("stat", &path),
        }
    }

    /// Removes ingest files left by killed processes: those past the grace period that no
    /// live writer holds locked. Returns how many were removed.
    pub(crate) fn clean_stale_ingests(&self) -> Result<usize> {
        let dir = self.ingest_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).io_context("read directory", &dir)? {
            let path = entry.io_context("read directory", &dir)?.path();
            let Ok(file) = File::open(&path) else {
                continue; // Committed or removed meanwhile.
            };
            let young = file
                .metadata()
                .and_then(|md| md.modified())
                .ok()
                .and_then(|mtime| SystemTime::now().duration_since(mtime).ok())
                .is_none_or(|age| age < INGEST_GRACE);
            if young || file.try_lock().is_err() {
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Direct ingests (here or, where the filesystem has no direct I/O, their buffered
    /// fallback) store exactly what was written, whatever the sizes of blob and writes.
    #[test]
    fn direct_ingests_store_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for len in [
            0,
            1,
            DIRECT_ALIGN,
            DIRECT_BLOCK - 1,
            DIRECT_BLOCK,
            DIRECT_BLOCK + DIRECT_ALIGN,
            5 * DIRECT_BLOCK + 123,
        ] {
            let bytes = content(len);
            for write_size in [1000, DIRECT_BLOCK, 3 * DIRECT_BLOCK] {
                let mut ingest = store.ingest_direct().unwrap();
                for piece in bytes.chunks(write_size) {
                    ingest.write_all(piece).unwrap();
                }
                assert_eq!(ingest.written(), len as u64);
                let (digest, size) = ingest.commit(None, Some(len as u64)).unwrap();
                assert_eq!(
                    digest,
                    Digest::of(&bytes),
                    "{len} bytes in writes of {write_size}"
                );
                assert_eq!(size, len as u64);
                assert_eq!(store.read_blob(&digest).unwrap(), bytes);
            }
        }
        assert_eq!(fs::read_dir(store.ingest_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_dropped_direct_ingest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut ingest = store.ingest_direct().unwrap();
        ingest.write_all(&content(3 * DIRECT_BLOCK)).unwrap();
        drop(ingest);
        assert_eq!(fs::read_dir(store.ingest_dir()).unwrap().count(), 0);
        let mut ingest = store.ingest_direct().unwrap();
        ingest.write_all(b"x").unwrap();
        let wrong = Digest::of(b"y");
        assert!(ingest.commit(Some(&wrong), None).is_err());
        assert_eq!(fs::read_dir(store.ingest_dir()).unwrap().count(), 0);
    }
}
