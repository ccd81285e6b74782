//! Content-addressed blobs: verified ingest, reads, and stale-ingest cleanup.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{IoContext, Lease, Result, Store, StoreError, fsutil};
use crate::oci::{Algorithm, Digest, DigestWriter};

/// An ingest file younger than this is never treated as stale: its writer may have created
/// it and not yet taken its lock.
const INGEST_GRACE: Duration = Duration::from_secs(60);

/// Writes reach the file in chunks of this size, whatever size the caller writes in.
const INGEST_BUFFER: usize = 256 * 1024;

/// A blob being written. Bytes are hashed as they are written; [`Ingest::commit`] verifies
/// them and moves the file into `blobs/`. Dropping an uncommitted ingest removes its file.
///
/// The ingest file is held with an exclusive lock, so that another process opening the
/// store knows it is alive.
pub struct Ingest {
    /// `None` once committed.
    writer: Option<DigestWriter<BufWriter<File>>>,
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
        let (buffered, actual, written) = writer.finish();
        let result = buffered
            .into_inner()
            .map_err(|e| e.into_error())
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

impl Store {
    /// Starts writing a blob. Holds a [`Lease`] until committed or dropped.
    pub fn ingest(&self) -> Result<Ingest> {
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
        Ok(Ingest {
            writer: Some(DigestWriter::new(BufWriter::with_capacity(
                INGEST_BUFFER,
                file,
            ))),
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
