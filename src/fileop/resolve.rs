//! Paths resolved inside a root, chroot-style, with ordinary `lstat`/`readlink`.
//!
//! `..` stops at the root, and a symlink met on the way is followed *inside* the root (an
//! absolute target restarts at the root), so the result never names anything outside it.
//! Every component of the returned path that exists is a real directory (or the final
//! entry); nothing else changes the trees we resolve in while we work on them (they are
//! immutable layers, or views mounted in this thread's private namespace), so later
//! operations on the returned path cannot be redirected by a symlink.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// Symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: u32 = 40;

/// A path resolved inside a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The host path: `root` joined with `rel`.
    pub host: PathBuf,
    /// The symlink-free components below the root (empty for the root itself).
    pub rel: Vec<OsString>,
}

impl Resolved {
    /// `/a/b` as seen inside the root.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for c in &self.rel {
            out.push('/');
            out.push_str(&c.to_string_lossy());
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    pub fn rel_path(&self) -> PathBuf {
        if self.rel.is_empty() {
            PathBuf::from(".")
        } else {
            self.rel.iter().collect()
        }
    }
}

pub(crate) fn components(path: &OsStr) -> VecDeque<OsString> {
    path.as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

/// Resolves `path` (taken as absolute) inside `root`. Symlinks in the middle are always
/// followed; a final one only with `follow_last`. Missing components are kept as written.
pub(crate) fn resolve(root: &Path, path: &OsStr, follow_last: bool) -> Result<Resolved> {
    let mut rest = components(path);
    let mut current: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = rest.pop_front() {
        if name == "." {
            continue;
        }
        if name == ".." {
            current.pop();
            continue;
        }
        current.push(name);
        let host = join(root, &current);
        let meta = match fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                continue;
            }
            Err(e) => return Err(Error::io("lstat", host)(e)),
        };
        if !meta.file_type().is_symlink() || (rest.is_empty() && !follow_last) {
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(Error::SymlinkLoop {
                path: String::from_utf8_lossy(path.as_bytes()).into_owned(),
            });
        }
        let target = fs::read_link(&host).map_err(Error::io("readlink", &host))?;
        current.pop();
        if target.is_absolute() {
            current.clear();
        }
        for part in components(target.as_os_str()).into_iter().rev() {
            rest.push_front(part);
        }
    }
    Ok(Resolved {
        host: join(root, &current),
        rel: current,
    })
}

pub(crate) fn join(root: &Path, rel: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    for c in rel {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../real", root.join("up")).unwrap();
        symlink("/etc/passwd", root.join("pw")).unwrap();
        let r = resolve(root, OsStr::new("/abs/sub"), true).unwrap();
        assert_eq!(r.host, root.join("real/sub"));
        let r = resolve(root, OsStr::new("/up/sub/x"), true).unwrap();
        assert_eq!(r.host, root.join("real/sub/x"));
        let r = resolve(root, OsStr::new("/../../pw"), true).unwrap();
        assert_eq!(r.host, root.join("etc/passwd"));
        let r = resolve(root, OsStr::new("/pw"), false).unwrap();
        assert_eq!(r.host, root.join("pw"));
        symlink("loop", root.join("loop")).unwrap();
        assert!(matches!(
            resolve(root, OsStr::new("/loop"), true),
            Err(Error::SymlinkLoop { .. })
        ));
    }
}
