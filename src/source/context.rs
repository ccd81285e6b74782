//! The build context: selecting COPY sources inside it and hashing them by content.
//!
//! Paths are resolved like a chroot: `..` and a leading `/` stop at the context root, and a
//! symlink met in the middle of a source path is followed *inside* the root (an absolute
//! target restarts at the root), so nothing outside the context is ever read. The last
//! component of a source is not followed: copying a symlink copies the link.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use super::Error;
use super::glob::{go_match, has_wildcard};
use super::ignore::{MatchInfo, PatternMatcher};
use super::statcache::{CacheStatus, StatCache, StatKey};
use crate::gocompat::go_path_clean;

/// Symlinks followed while resolving one source, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: u32 = 40;
const READ_BUFFER: usize = 1 << 20;
/// A file modified this close to the hashing time could change again without its mtime
/// moving (coarse kernel timestamps), so its digest is not cached (git's "racy clean").
const RACY_WINDOW_NS: i64 = 20_000_000;
/// A directory with this many subdirectories has its subtrees walked in parallel.
const PARALLEL_WALK_DIRS: usize = 4;

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

/// How a digest was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    /// Regular files read and hashed.
    pub files_hashed: usize,
    /// Regular files whose digest came from the stat cache without reading them.
    pub files_from_cache: usize,
    pub bytes_hashed: u64,
    pub cache: CacheStatus,
}

/// The content digest of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextDigest {
    /// `sha256:<hex>` over the canonical encoding of every entry.
    pub digest: String,
    /// The content digest of each entry of the selection it was computed for (same
    /// index); `None` for anything but a regular file.
    pub entry_digests: Vec<Option<[u8; 32]>>,
    pub stats: Stats,
}

impl ContextDigest {
    /// Each regular file's content digest (`sha256:<hex>`), by relative path: what a cache
    /// record keeps to explain a later miss (built on demand; hits never need it).
    /// `selection` is the one the digest was computed for.
    pub fn files(&self, selection: &Selection) -> BTreeMap<String, String> {
        selection
            .entries
            .iter()
            .zip(&self.entry_digests)
            .filter_map(|(entry, digest)| {
                digest.map(|d| (entry.path.clone(), format!("sha256:{}", hex(&d))))
            })
            .collect()
    }
}

/// The difference between two per-file digest maps, to explain a cache miss.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl FileChanges {
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        let mut changes = FileChanges::default();
        for (path, digest) in new {
            match old.get(path) {
                None => changes.added.push(path.clone()),
                Some(previous) if previous != digest => changes.changed.push(path.clone()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .keys()
            .filter(|path| !new.contains_key(*path))
            .cloned()
            .collect();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
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
    /// source that matches nothing is reported with empty [`SourceMatch::roots`], and is an
    /// error only if no source matched anything.
    pub fn select<S: AsRef<str>>(&self, sources: &[S], excludes: &[S]) -> Result<Selection, Error> {
        let exclude = PatternMatcher::new(excludes.iter().map(AsRef::as_ref))?;
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let mut selection = Selection::default();
        let mut first_unmatched = None;
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
                if self.collect(&os_path, exclude.as_ref(), &mut selection.entries)? {
                    roots.push(display_path(&os_path));
                }
            }
            if roots.is_empty() {
                if !wildcard {
                    return Err(Error::NotFound {
                        source_path: source.to_string(),
                    });
                }
                first_unmatched.get_or_insert_with(|| source.to_string());
            }
            selection.sources.push(SourceMatch {
                source: source.to_string(),
                wildcard,
                roots,
            });
        }
        if let Some(source_path) = first_unmatched
            && selection.sources.iter().all(|s| s.roots.is_empty())
        {
            return Err(Error::NotFound { source_path });
        }
        selection
            .entries
            .sort_unstable_by(|a, b| a.os_path.as_os_str().cmp(b.os_path.as_os_str()));
        selection.entries.dedup_by(|a, b| a.os_path == b.os_path);
        Ok(selection)
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
                    for name in self.matching_names(&current, &pattern, source)? {
                        let mut branch = current.clone();
                        branch.push(name);
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

    /// Adds the entries of one matched source (recursively for a directory) that are
    /// neither ignored nor excluded. Returns whether anything was added.
    fn collect(
        &self,
        os_path: &Path,
        exclude: Option<&PatternMatcher>,
        out: &mut Vec<Entry>,
    ) -> Result<bool, Error> {
        let full = self.root.join(os_path);
        let meta = fs::symlink_metadata(&full).map_err(|source| Error::Io {
            path: full.clone(),
            source,
        })?;
        let path = display_path(os_path);
        let ignore_state = match &self.ignore {
            Some(matcher) if path != "." => {
                let (ignored, info) =
                    matcher.matches_using_parent_results(&path, &MatchInfo::default())?;
                Some((ignored, info))
            }
            Some(_) => Some((false, MatchInfo::default())),
            None => None,
        };
        // Excludes are relative to the source: a directory's contents, or a file's name.
        let exclude_rel = if meta.is_dir() {
            None
        } else {
            Some(
                os_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        };
        let walk = Walk {
            root: &self.root,
            ignore: self.ignore.as_ref(),
            exclude,
        };
        walk.visit(
            os_path.to_path_buf(),
            meta,
            ignore_state,
            exclude_rel.map(|rel| (rel, MatchInfo::default())),
            false,
            out,
        )
    }

    /// Hashes `selection` by content. With a [`StatCache`], files whose stat tuple is
    /// unchanged since they were last hashed are not read; a cache that fails is reported in
    /// [`Stats::cache`] and otherwise ignored.
    pub fn digest(
        &self,
        selection: &Selection,
        cache: Option<&StatCache>,
    ) -> Result<ContextDigest, Error> {
        let root_key = self.root.as_os_str().as_bytes();
        // Indexes of the regular files in `selection.entries` (sorted by path, so the
        // files are too: the stat cache lookup relies on it).
        let file_indexes: Vec<usize> = (0..selection.entries.len())
            .filter(|&i| selection.entries[i].kind == FileKind::File)
            .collect();
        let files: Vec<&Entry> = file_indexes
            .iter()
            .map(|&i| &selection.entries[i])
            .collect();
        let mut cache_status = cache.map_or(CacheStatus::NotConfigured, StatCache::status);

        let mut digests: Vec<Option<[u8; 32]>> = vec![None; files.len()];
        if let (Some(cache), CacheStatus::Used) = (cache, &cache_status) {
            let keys: Vec<(&[u8], StatKey)> = files
                .iter()
                .map(|e| (e.os_path.as_os_str().as_bytes(), e.stat))
                .collect();
            match cache.lookup(root_key, &keys) {
                Ok(found) => digests = found,
                Err(reason) => cache_status = CacheStatus::Disabled { reason },
            }
        }
        let files_from_cache = digests.iter().filter(|d| d.is_some()).count();
        let to_hash: Vec<usize> = (0..files.len()).filter(|&i| digests[i].is_none()).collect();
        let hashed = self.hash_files(&files, &to_hash)?;

        let mut bytes_hashed = 0;
        let mut to_store = Vec::new();
        for (index, outcome) in to_hash.iter().zip(&hashed) {
            digests[*index] = Some(outcome.digest);
            bytes_hashed += outcome.bytes;
            if outcome.cacheable {
                let entry = files[*index];
                to_store.push((
                    entry.os_path.as_os_str().as_bytes(),
                    entry.stat,
                    outcome.digest,
                ));
            }
        }
        if let (Some(cache), CacheStatus::Used) = (cache, &cache_status)
            && let Err(reason) = cache.store(root_key, &to_store)
        {
            cache_status = CacheStatus::Disabled { reason };
        }

        let mut entry_digests = vec![None; selection.entries.len()];
        for (&index, digest) in file_indexes.iter().zip(digests) {
            entry_digests[index] = digest;
        }
        let mut tree = Sha256::new();
        tree.update(b"kiln-context-v1\0");
        for (entry, digest) in selection.entries.iter().zip(&entry_digests) {
            let path = entry.os_path.as_os_str().as_bytes();
            tree.update((path.len() as u64).to_be_bytes());
            tree.update(path);
            tree.update([entry.kind.tag()]);
            tree.update(entry.mode.to_be_bytes());
            if let Some(target) = &entry.link_target {
                let target = target.as_os_str().as_bytes();
                tree.update((target.len() as u64).to_be_bytes());
                tree.update(target);
            }
            if let Some(digest) = digest {
                tree.update(digest);
            }
        }
        Ok(ContextDigest {
            digest: format!("sha256:{}", hex(&tree.finalize().into())),
            entry_digests,
            stats: Stats {
                entries: selection.entries.len(),
                files_hashed: to_hash.len(),
                files_from_cache,
                bytes_hashed,
                cache: cache_status,
            },
        })
    }

    /// Hashes `files[i]` for each `i` in `wanted` on a few threads (cold reads gain from
    /// more threads than cores); results are in the order of `wanted`.
    fn hash_files(&self, files: &[&Entry], wanted: &[usize]) -> Result<Vec<Hashed>, Error> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (cores * 2).clamp(2, 8).min(wanted.len());
        let next = AtomicUsize::new(0);
        let started_ns = now_ns();
        let per_worker: Vec<Result<Vec<(usize, Hashed)>, Error>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut buffer = vec![0u8; READ_BUFFER];
                        let mut done = Vec::new();
                        loop {
                            let slot = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&index) = wanted.get(slot) else {
                                return Ok(done);
                            };
                            let entry = files[index];
                            let hashed = hash_file(&self.root, entry, &mut buffer, started_ns)?;
                            done.push((slot, hashed));
                        }
                    })
                })
                .collect();
            join_all(handles, &self.root, "a hashing thread panicked")
        });
        let mut ordered: Vec<Option<Hashed>> = (0..wanted.len()).map(|_| None).collect();
        for result in per_worker {
            for (slot, hashed) in result? {
                ordered[slot] = Some(hashed);
            }
        }
        ordered
            .into_iter()
            .map(|h| {
                h.ok_or_else(|| Error::Io {
                    path: self.root.clone(),
                    source: std::io::Error::other("a file was not hashed"),
                })
            })
            .collect()
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

struct Hashed {
    digest: [u8; 32],
    bytes: u64,
    /// False if the file changed while being read or too recently to trust its mtime.
    cacheable: bool,
}

fn hash_file(
    root: &Path,
    entry: &Entry,
    buffer: &mut [u8],
    started_ns: i64,
) -> Result<Hashed, Error> {
    let full = root.join(&entry.os_path);
    let io_error = |source| Error::Io {
        path: full.clone(),
        source,
    };
    let mut file = File::open(&full).map_err(io_error)?;
    // The file opened must be the one the walk saw (not a symlink swapped in since).
    let before = file.metadata().map_err(io_error)?;
    if !before.is_file() || before.dev() != entry.stat.dev || before.ino() != entry.stat.ino {
        return Err(Error::ChangedDuringRead { path: full });
    }
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_error(err)),
        };
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    let after = file.metadata().map_err(io_error)?;
    let newest_change = stat_key(&after).mtime_ns.max(stat_key(&after).ctime_ns);
    let cacheable = stat_key(&after) == entry.stat
        && bytes == entry.stat.size
        && newest_change < started_ns - RACY_WINDOW_NS;
    Ok(Hashed {
        digest: hasher.finalize().into(),
        bytes,
        cacheable,
    })
}

/// A subtree walked on its own thread: (child index, anything visible, its entries).
type Subtree = (usize, bool, Vec<Entry>);

/// The recursive walk of one matched source.
struct Walk<'a> {
    root: &'a Path,
    ignore: Option<&'a PatternMatcher>,
    exclude: Option<&'a PatternMatcher>,
}

impl Walk<'_> {
    /// `ignore_state` is (ignored, match info) for this path against `.dockerignore`;
    /// `exclude_state` is (path relative to the source, parent match info) for `--exclude`,
    /// or None for the source directory itself. Returns whether anything was added.
    fn visit(
        &self,
        os_path: PathBuf,
        meta: Metadata,
        ignore_state: Option<(bool, MatchInfo)>,
        exclude_state: Option<(String, MatchInfo)>,
        nested: bool,
        out: &mut Vec<Entry>,
    ) -> Result<bool, Error> {
        let ignored = ignore_state.as_ref().is_some_and(|(ignored, _)| *ignored);
        let (excluded, exclude_info) = match (self.exclude, &exclude_state) {
            (Some(matcher), Some((rel, parent))) => {
                let (excluded, info) = matcher.matches_using_parent_results(rel, parent)?;
                (excluded, Some(info))
            }
            _ => (false, None),
        };
        let hidden = ignored || excluded;
        let kind = FileKind::of(&meta);
        if kind != FileKind::Dir {
            if !hidden {
                out.push(make_entry(self.root, os_path, &meta, kind)?);
            }
            return Ok(!hidden);
        }
        // A hidden directory matters only if an exception pattern can re-include its content.
        let may_reinclude = (!ignored || self.ignore.is_some_and(PatternMatcher::exclusions))
            && (!excluded || self.exclude.is_some_and(PatternMatcher::exclusions));
        if hidden && !may_reinclude {
            return Ok(false);
        }
        let full = self.root.join(&os_path);
        let io_error = |source| Error::Io {
            path: full.clone(),
            source,
        };
        let mut children: Vec<(OsString, Metadata)> = Vec::new();
        for child in fs::read_dir(&full).map_err(io_error)? {
            let child = child.map_err(io_error)?;
            // DirEntry::metadata does not follow symlinks.
            let child_meta = child.metadata().map_err(io_error)?;
            children.push((child.file_name(), child_meta));
        }
        let visit_child = |(name, child_meta): (OsString, Metadata),
                           nested: bool,
                           out: &mut Vec<Entry>|
         -> Result<bool, Error> {
            let child_path = if os_path.as_os_str() == "." {
                PathBuf::from(&name)
            } else {
                os_path.join(&name)
            };
            let child_ignore = match (self.ignore, &ignore_state) {
                (Some(matcher), Some((_, info))) => {
                    let display = display_path(&child_path);
                    Some(matcher.matches_using_parent_results(&display, info)?)
                }
                _ => None,
            };
            let child_exclude = self.exclude.map(|_| {
                let name = name.to_string_lossy();
                let rel = match &exclude_state {
                    Some((parent_rel, _)) => format!("{parent_rel}/{name}"),
                    None => name.into_owned(),
                };
                (rel, exclude_info.clone().unwrap_or_default())
            });
            self.visit(
                child_path,
                child_meta,
                child_ignore,
                child_exclude,
                nested,
                out,
            )
        };
        let subdirs = children.iter().filter(|(_, m)| m.is_dir()).count();
        let workers = if nested || subdirs < PARALLEL_WALK_DIRS {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4)
        };
        let mut any_visible = false;
        if workers == 1 {
            for child in children {
                any_visible |= visit_child(child, nested, out)?;
            }
        } else {
            // Stat calls dominate a warm walk: spread this directory's subtrees over a few
            // threads, then append their entries in order (they are sorted later anyway).
            let count = children.len();
            let queue = std::sync::Mutex::new(children.into_iter().enumerate());
            let parts: Vec<Result<Vec<Subtree>, Error>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut done = Vec::new();
                            loop {
                                let next = queue
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .next();
                                let Some((index, child)) = next else {
                                    return Ok(done);
                                };
                                let mut entries = Vec::new();
                                let visible = visit_child(child, true, &mut entries)?;
                                done.push((index, visible, entries));
                            }
                        })
                    })
                    .collect();
                join_all(handles, &full, "a walking thread panicked")
            });
            let mut ordered: Vec<Option<(bool, Vec<Entry>)>> = (0..count).map(|_| None).collect();
            for part in parts {
                for (index, visible, entries) in part? {
                    ordered[index] = Some((visible, entries));
                }
            }
            for (visible, entries) in ordered.into_iter().flatten() {
                any_visible |= visible;
                out.extend(entries);
            }
        }
        let keep = !hidden || any_visible;
        // The context root itself is not an entry: only what is inside it is copied.
        if keep && os_path.as_os_str() != "." {
            out.push(make_entry(self.root, os_path, &meta, kind)?);
        }
        Ok(keep)
    }
}

fn make_entry(
    root: &Path,
    os_path: PathBuf,
    meta: &Metadata,
    kind: FileKind,
) -> Result<Entry, Error> {
    let link_target = if kind == FileKind::Symlink {
        let full = root.join(&os_path);
        Some(fs::read_link(&full).map_err(|source| Error::Io { path: full, source })?)
    } else {
        None
    };
    Ok(Entry {
        path: display_path(&os_path),
        os_path,
        kind,
        mode: meta.mode() & 0o7777,
        size: meta.size(),
        uid: meta.uid(),
        gid: meta.gid(),
        link_target,
        stat: stat_key(meta),
    })
}

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

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
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

fn hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
