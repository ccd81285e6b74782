//! `snapshots-v1/build-<key>/copied`: which build-context content a COPY wrote where, so a
//! later run of the same step can hard-link what did not change ([`fileop::Reuse`]).
//!
//! The format is a sequence of records, each a 32-byte SHA-256 digest, the destination path
//! (relative to the layer; any bytes but NUL) and a NUL. A missing or malformed file only
//! means nothing is reused.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::fileop;

pub(super) const FILE: &str = "copied";

/// Writes `copied` into the snapshot directory `dir`.
pub(super) fn write(dir: &Path, copied: &[(PathBuf, [u8; 32])]) -> io::Result<()> {
    let mut out = Vec::with_capacity(copied.len() * 64);
    for (path, digest) in copied {
        out.extend_from_slice(digest);
        out.extend_from_slice(path.as_os_str().as_bytes());
        out.push(0);
    }
    let mut file = std::fs::File::create(dir.join(FILE))?;
    file.write_all(&out)
}

/// What the snapshot directory `dir` recorded, with its layer, if it is readable.
pub(super) fn read(dir: &Path) -> Option<fileop::Reuse> {
    let bytes = std::fs::read(dir.join(FILE)).ok()?;
    let mut copied = HashMap::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (digest, tail) = rest.split_at_checked(32)?;
        let end = tail.iter().position(|&b| b == 0)?;
        let path = PathBuf::from(OsStr::from_bytes(&tail[..end]));
        copied.insert(path, <[u8; 32]>::try_from(digest).ok()?);
        rest = &tail[end + 1..];
    }
    Some(fileop::Reuse {
        layer: dir.join("fs"),
        copied,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            (std::path::PathBuf::from("ctx/a b"), [1u8; 32]),
            (std::path::PathBuf::from("ctx/\u{e9}"), [2u8; 32]),
        ];
        super::write(dir.path(), &records).unwrap();
        let reuse = super::read(dir.path()).unwrap();
        assert_eq!(reuse.layer, dir.path().join("fs"));
        assert_eq!(reuse.copied.len(), 2);
        assert_eq!(reuse.copied[&records[1].0], [2u8; 32]);
        std::fs::write(dir.path().join(super::FILE), [7u8; 40]).unwrap();
        assert!(super::read(dir.path()).is_none());
    }
}
