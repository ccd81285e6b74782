//! ADD of a local archive: detected by content (as BuildKit's `isArchivePath`: the file
//! decompresses and its first tar header reads), extracted with
//! [`crate::snapshot::unpack_tar`]'s safety checks into a scratch directory, then merged into
//! the destination by the copier.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::{Error, Result};

/// What a source file is, for ADD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotArchive,
    /// A tar stream, plain, gzip or zstd.
    Archive,
    /// Compressed with something kiln does not decode.
    Unsupported(&'static str),
}

/// Looks at the content of the regular file `path`.
pub(crate) fn detect(path: &Path) -> Result<Kind> {
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
    if head.starts_with(b"BZh") {
        return Ok(Kind::Unsupported("bzip2"));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Ok(Kind::Unsupported("xz"));
    }
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(open(path)?))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        match zstd::stream::read::Decoder::new(open(path)?) {
            Ok(decoder) => Box::new(decoder),
            Err(_) => return Ok(Kind::NotArchive),
        }
    } else {
        Box::new(open(path)?)
    };
    let mut archive = tar::Archive::new(reader);
    let first = match archive.entries() {
        Ok(mut entries) => entries.next(),
        Err(_) => return Ok(Kind::NotArchive),
    };
    Ok(match first {
        Some(Ok(_)) => Kind::Archive,
        _ => Kind::NotArchive,
    })
}

/// Extracts the archive `path` into the existing empty directory `into`.
pub(crate) fn extract(path: &Path, into: &Path, shown_as: &str) -> Result<()> {
    let file = open(path)?;
    crate::snapshot::unpack_tar(io::BufReader::new(file), into).map_err(|source| {
        Error::Extract {
            path: shown_as.to_string(),
            source,
        }
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
