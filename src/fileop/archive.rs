//! ADD of a local archive: detected by content (as BuildKit's `isArchivePath`: the file
//! decompresses — gzip, bzip2, xz, zstd or none — and its first tar header reads),
//! extracted with [`crate::snapshot::unpack_tar`]'s safety checks into a scratch directory,
//! then merged into the destination by the copier.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::{Error, Result};

/// One tar header block.
const BLOCK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn sniff(path: &Path) -> Result<Compression> {
    let mut head = [0u8; 6];
    let mut file = open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path)(e)),
        }
    }
    let head = &head[..filled];
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// A streaming decoder for everything but xz (whose decoder only writes).
fn reader(path: &Path, compression: Compression) -> Result<Box<dyn Read>> {
    let file = BufReader::new(open(path)?);
    Ok(match compression {
        Compression::None | Compression::Xz => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file).map_err(Error::io("read", path))?,
        ),
    })
}

/// Whether the regular file `path` is a tar archive, possibly compressed.
pub(crate) fn is_archive(path: &Path) -> Result<bool> {
    let compression = sniff(path)?;
    let mut head = Vec::with_capacity(BLOCK);
    if compression == Compression::Xz {
        let mut input = BufReader::new(open(path)?);
        let mut sink = Prefix(&mut head);
        // Stops with an error once a block is collected (or on corrupt input).
        let _ = lzma_rs::xz_decompress(&mut input, &mut sink);
    } else {
        let _ = reader(path, compression)?
            .take(BLOCK as u64)
            .read_to_end(&mut head);
    }
    if head.len() < BLOCK {
        return Ok(false);
    }
    let mut archive = tar::Archive::new(io::Cursor::new(head));
    let first = match archive.entries() {
        Ok(mut entries) => entries.next(),
        Err(_) => return Ok(false),
    };
    Ok(matches!(first, Some(Ok(_))))
}

/// Collects the first [`BLOCK`] bytes written, then refuses more.
struct Prefix<'a>(&'a mut Vec<u8>);

impl Write for Prefix<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.0.len();
        if room == 0 {
            return Err(io::Error::other("enough"));
        }
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Extracts the archive `path` into the existing empty directory `into`; `tmp` is a
/// private scratch directory (an xz archive is decompressed there first).
pub(crate) fn extract(path: &Path, into: &Path, tmp: &Path, shown_as: &str) -> Result<()> {
    let compression = sniff(path)?;
    let tar: Box<dyn Read> = if compression == Compression::Xz {
        let plain = tmp.join("archive.tar");
        let mut out = io::BufWriter::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&plain)
                .map_err(Error::io("create", &plain))?,
        );
        let mut input = BufReader::new(open(path)?);
        lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| Error::Extract {
            path: shown_as.to_string(),
            source: crate::snapshot::SnapshotError::Tar {
                entry: None,
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            },
        })?;
        out.flush().map_err(Error::io("write", &plain))?;
        Box::new(BufReader::new(open(&plain)?))
    } else {
        reader(path, compression)?
    };
    crate::snapshot::unpack_tar(tar, into).map_err(|source| Error::Extract {
        path: shown_as.to_string(),
        source,
    })?;
    Ok(())
}

fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(Error::io("open", path))
}
