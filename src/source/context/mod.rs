//! The build context: selecting COPY sources inside it and hashing them by content.
//!
//! Paths are resolved like a chroot: `..` and a leading `/` stop at the context root, and a
//! symlink met in the middle of a source path is followed *inside* the root (an absolute
//! target restarts at the root), so nothing outside the context is ever read. A source
//! that is itself a symlink selects both the link and what it points to (COPY follows it,
//! as BuildKit's `FollowPaths`); symlinks below a selected directory are only links.

mod digest;
mod walk;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use digest::{ContextDigest, FileChanges, Stats};

use super::Error;
use super::glob::{go_match, has_wildcard};
use super::ignore::PatternMatcher;
use super::statcache::StatKey;
use crate::gocompat::go_path_clean;

/// Symlinks followed while resolving one source, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: u32 = 40;

/// A source component matching any number of directories, none included: BuildKit sends
/// the context through include patterns, where `**` means that (fsutil's pattern matcher),
/// and `COPY --parents` copies by those patterns. A plain COPY then matches `**` as `*`,
/// one component, on what was sent.
const ANY_DEPTH: &str = "**";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device node.
    Other,
}

impl FileKind {
    fn of(meta: &Metadata) -> FileKind {
        let kind = meta.file_type();
        if kind.is_file() {
            FileKind::File
        } else if kind.is_dir() {
            FileKind::Dir
        } else if kind.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        }
    }

    fn tag(self) -> u8 {
        match self {
            FileKind::File => b'f',
            FileKind::Dir => b'd',
            FileKind::Symlink => b'l',
            FileKind::Other => b'o',
        }
    }
}

/// One selected file, directory or link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root, `/`-separated (lossy if the name is not UTF-8).
    pub path: String,
    /// The exact relative path, for I/O.
    pub os_path: PathBuf,
    pub kind: FileKind,
    /// Permission bits with setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub link_target: Option<PathBuf>,
    stat: StatKey,
}

impl Entry {
    /// (device, inode) the walk saw, to check a later open reaches the same file.
    pub fn inode(&self) -> (u64, u64) {
        (self.stat.dev, self.stat.ino)
    }
}

/// What one COPY source matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    pub source: String,
    pub wildcard: bool,
    /// The matched paths (relative to the context root); empty only for a wildcard.
    pub roots: Vec<String>,
}

/// The entries selected by the sources of one COPY, sorted by path, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub sources: Vec<SourceMatch>,
    pub entries: Vec<Entry>,
}

impl Selection {
    /// The index in `entries` of the entry at `rel` (relative to the context root).
    pub fn position(&self, rel: &Path) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.os_path.as_os_str().cmp(rel.as_os_str()))
            .ok()
    }
}

/// A source path component: from the COPY source (may be a glob) or from a symlink target
/// (always literal).
#[derive(Debug, Clone)]
enum Component {
    Pattern(String),
    Literal(OsString),
}

/// A build context directory with its `.dockerignore` matcher.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Option<PatternMatcher>,
}

impl Context {
    /// Opens the context at `root` (canonicalised). Ignored files are invisible to
    /// [`Context::select`]; [`Context::read_builder_file`] still reads them.
    pub fn open(root: &Path, ignore: Option<PatternMatcher>) -> Result<Context, Error> {
        let context_root = |source| Error::ContextRoot {
            path: root.to_path_buf(),
            source,
        };
        let canonical = fs::canonicalize(root).map_err(context_root)?;
        if !canonical.is_dir() {
            return Err(context_root(std::io::Error::other("not a directory")));
        }
        Ok(Context {
            root: canonical,
            ignore: ignore.filter(|m| !m.is_empty()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `.dockerignore` hides anything (else every file is visible).
    pub fn filters(&self) -> bool {
        self.ignore.is_some()
    }

    /// Whether `.dockerignore` hides `path` (relative to the context root).
    pub fn is_ignored(&self, path: &str) -> Result<bool, Error> {
        match &self.ignore {
            Some(matcher) => matcher.matches(path),
            None => Ok(false),
        }
    }

    /// Reads a file the builder itself needs (the Dockerfile, `.dockerignore`) even if it is
    /// ignored; the path is still resolved inside the context (symlinks followed in it).
    pub fn read_builder_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        let mut found = Vec::new();
        let mut hops = 0;
        self.expand(
            Vec::new(),
            literal_components(path),
            true,
            &mut hops,
            path,
            &mut found,
        )?;
        let Some(real) = found.into_iter().next() else {
            return Err(Error::NotFound {
                source_path: path.to_string(),
            });
        };
        let full = self.root.join(join_components(&real));
        fs::read(&full).map_err(|source| Error::Io { path: full, source })
    }

    /// Selects the entries for COPY `sources` with `--exclude` patterns `excludes`
    /// (matched against paths relative to each matched source, moby syntax).
    ///
    /// A source without wildcards that matches nothing is [`Error::NotFound`]; a wildcard
    /// source that matches nothing is reported with empty [`SourceMatch::roots`], even when
    /// no source matched anything (BuildKit copies nothing then).
    pub fn select<S: AsRef<str>>(&self, sources: &[S], excludes: &[S]) -> Result<Selection, Error> {
        let exclude = PatternMatcher::new(excludes.iter().map(AsRef::as_ref))?;
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let mut selection = Selection::default();
        for source in sources {
            let source = source.as_ref();
            let wildcard = has_wildcard(source);
            let mut matched = Vec::new();
            let mut hops = 0;
            self.expand(
                Vec::new(),
                pattern_components(source),
                false,
                &mut hops,
                source,
                &mut matched,
            )?;
            matched.sort();
            matched.dedup();
            let mut roots = Vec::new();
            for real in matched {
                let os_path = join_components(&real);
                if !self.collect(&os_path, exclude.as_ref(), &mut selection.entries)? {
                    continue;
                }
                roots.push(display_path(&os_path));
                // COPY follows a source that is itself a symlink (BuildKit's
                // `FollowPaths`): what it points to is selected too.
                if let Some(target) = self.link_target(&real, source)? {
                    self.collect(&target, exclude.as_ref(), &mut selection.entries)?;
                }
            }
            if roots.is_empty() && !wildcard {
                return Err(Error::NotFound {
                    source_path: source.to_string(),
                });
            }
            selection.sources.push(SourceMatch {
                source: source.to_string(),
                wildcard,
                roots,
            });
        }
        selection
            .entries
            .sort_unstable_by(|a, b| a.os_path.as_os_str().cmp(b.os_path.as_os_str()));
        selection.entries.dedup_by(|a, b| a.os_path == b.os_path);
        Ok(selection)
    }

    /// The real path (relative to the root) of what the symlink at `real` points to, when
    /// `real` is a symlink whose target exists inside the context.
    fn link_target(&self, real: &[OsString], source: &str) -> Result<Option<PathBuf>, Error> {
        let full = self.root.join(join_components(real));
        if !fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
            return Ok(None);
        }
        let mut found = Vec::new();
        let mut hops = 0;
        let rest = real.iter().cloned().map(Component::Literal).collect();
        self.expand(Vec::new(), rest, true, &mut hops, source, &mut found)?;
        Ok(found.first().map(|target| join_components(target)))
    }

    /// Resolves `rest` from `current` (a symlink-free path below the root) into the real
    /// paths it names, chroot-style. `follow_last` also follows a final symlink.
    fn expand(
        &self,
        mut current: Vec<OsString>,
        mut rest: VecDeque<Component>,
        follow_last: bool,
        hops: &mut u32,
        source: &str,
        found: &mut Vec<Vec<OsString>>,
    ) -> Result<(), Error> {
        while let Some(component) = rest.pop_front() {
            let name = match component {
                Component::Literal(name) => name,
                Component::Pattern(pattern) if has_wildcard(&pattern) => {
                    let any_depth = pattern == ANY_DEPTH;
                    if any_depth {
                        // `**` also matches no directory at all.
                        let mut branch_hops = *hops;
                        self.expand(
                            current.clone(),
                            rest.clone(),
                            follow_last,
                            &mut branch_hops,
                            source,
                            found,
                        )?;
                    }
                    for name in self.matching_names(&current, &pattern, source)? {
                        let mut branch = current.clone();
                        branch.push(name);
                        if any_depth && self.is_real_dir(&branch) {
                            // ... and any number of them: walk on into real directories.
                            let mut deeper = rest.clone();
                            deeper.push_front(Component::Pattern(pattern.clone()));
                            let mut branch_hops = *hops;
                            self.expand(
                                branch.clone(),
                                deeper,
                                follow_last,
                                &mut branch_hops,
                                source,
                                found,
                            )?;
                            continue;
                        }
                        let mut branch_rest = rest.clone();
                        // Each branch counts only the links on its own path.
                        let mut branch_hops = *hops;
                        if self.follow_symlink(
                            &mut branch,
                            &mut branch_rest,
                            follow_last,
                            &mut branch_hops,
                            source,
                        )? {
                            self.expand(
                                branch,
                                branch_rest,
                                follow_last,
                                &mut branch_hops,
                                source,
                                found,
                            )?;
                        }
                    }
                    return Ok(());
                }
                Component::Pattern(pattern) => OsString::from(pattern),
            };
            if name == ".." {
                current.pop();
                continue;
            }
            if name.is_empty() || name == "." {
                continue;
            }
            current.push(name);
            if !self.follow_symlink(&mut current, &mut rest, follow_last, hops, source)? {
                return Ok(());
            }
        }
        found.push(current);
        Ok(())
    }

    /// After `current` gained a component: if it is a symlink to follow, replaces it by its
    /// target. Returns false when the path does not exist (nothing matches).
    fn follow_symlink(
        &self,
        current: &mut Vec<OsString>,
        rest: &mut VecDeque<Component>,
        follow_last: bool,
        hops: &mut u32,
        source: &str,
    ) -> Result<bool, Error> {
        let full = self.root.join(join_components(current));
        let Ok(meta) = fs::symlink_metadata(&full) else {
            return Ok(false);
        };
        if !meta.file_type().is_symlink() || (rest.is_empty() && !follow_last) {
            return Ok(true);
        }
        *hops += 1;
        if *hops > MAX_SYMLINK_HOPS {
            return Err(Error::SymlinkLoop {
                source_path: source.to_string(),
            });
        }
        let target = fs::read_link(&full).map_err(|source| Error::Io { path: full, source })?;
        current.pop();
        if target.is_absolute() {
            current.clear();
        }
        for part in target.as_os_str().as_bytes().split(|&b| b == b'/').rev() {
            rest.push_front(Component::Literal(OsString::from_vec(part.to_vec())));
        }
        Ok(true)
    }

    /// Whether `path` is a directory (not a symlink to one).
    fn is_real_dir(&self, path: &[OsString]) -> bool {
        fs::symlink_metadata(self.root.join(join_components(path))).is_ok_and(|m| m.is_dir())
    }

    /// The names in directory `current` that match one glob component, sorted.
    fn matching_names(
        &self,
        current: &[OsString],
        pattern: &str,
        source: &str,
    ) -> Result<Vec<OsString>, Error> {
        let dir = self.root.join(join_components(current));
        let Ok(read) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let matched =
                go_match(pattern, &name.to_string_lossy()).map_err(|_| Error::BadPattern {
                    pattern: source.to_string(),
                })?;
            if matched {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The results of scoped worker threads; a thread that panicked counts as an error about
/// `path`.
fn join_all<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T, Error>>>,
    path: &Path,
    panicked: &str,
) -> Vec<Result<T, Error>> {
    handles
        .into_iter()
        .map(|handle| {
            handle.join().unwrap_or_else(|_| {
                Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(panicked.to_string()),
                })
            })
        })
        .collect()
}

/// The stat tuple the walk records and the stat cache is keyed by.
fn stat_key(meta: &Metadata) -> StatKey {
    StatKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ctime_ns: meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec()),
        mode: meta.mode(),
    }
}

/// A COPY source, cleaned as if rooted at `/` so `..` cannot climb out, as glob components.
fn pattern_components(source: &str) -> VecDeque<Component> {
    go_path_clean(&format!("/{source}"))
        .split('/')
        .filter(|part| !part.is_empty())
        .map(|part| Component::Pattern(part.to_string()))
        .collect()
}

fn literal_components(path: &str) -> VecDeque<Component> {
    go_path_clean(&format!("/{path}"))
        .split('/')
        .filter(|part| !part.is_empty())
        .map(|part| Component::Literal(OsString::from(part)))
        .collect()
}

fn join_components(components: &[OsString]) -> PathBuf {
    if components.is_empty() {
        return PathBuf::from(".");
    }
    components.iter().collect()
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
