//! The recursive walk of a matched source: every entry below it that neither
//! `.dockerignore` nor `--exclude` hides, with large directories walked on a few threads.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Context, Entry, FileKind, display_path, join_all, stat_key};
use crate::source::Error;
use crate::source::ignore::{MatchInfo, PatternMatcher};

/// A directory with this many subdirectories has its subtrees walked in parallel.
const PARALLEL_WALK_DIRS: usize = 4;

impl Context {
    /// Adds the entries of one matched source (recursively for a directory) that are
    /// neither ignored nor excluded. Returns whether anything was added.
    pub(super) fn collect(
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
}

/// A subtree walked on its own thread: (child index, anything visible, its entries).
type Subtree = (usize, bool, Vec<Entry>);

/// The recursive walk of one matched source.
struct Walk<'a> {
    root: &'a Path,
    ignore: Option<&'a PatternMatcher>,
    exclude: Option<&'a PatternMatcher>,
}

/// A directory being walked, as its children need it.
struct Parent<'p> {
    os_path: &'p Path,
    /// Its `.dockerignore` match info (when the context has a `.dockerignore`).
    ignore_info: Option<&'p MatchInfo>,
    /// Its path relative to the source (None for the source directory itself).
    exclude_rel: Option<&'p str>,
    /// Its `--exclude` match info, once matched.
    exclude_info: Option<MatchInfo>,
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
        let (excluded, exclude_info) = self.exclusion(exclude_state.as_ref())?;
        let hidden = ignored || excluded;
        let kind = FileKind::of(&meta);
        if kind != FileKind::Dir {
            if !hidden {
                out.push(make_entry(self.root, os_path, &meta, kind)?);
            }
            return Ok(!hidden);
        }
        if hidden && !self.may_reinclude(ignored, excluded) {
            return Ok(false);
        }
        let full = self.root.join(&os_path);
        let children = read_children(&full)?;
        let parent = Parent {
            os_path: &os_path,
            ignore_info: ignore_state.as_ref().map(|(_, info)| info),
            exclude_rel: exclude_state.as_ref().map(|(rel, _)| rel.as_str()),
            exclude_info,
        };
        let any_visible = match walkers(nested, &children) {
            1 => {
                let mut any_visible = false;
                for child in children {
                    any_visible |= self.visit_child(&parent, child, nested, out)?;
                }
                any_visible
            }
            workers => self.visit_in_parallel(&parent, children, workers, &full, out)?,
        };
        let keep = !hidden || any_visible;
        // The context root itself is not an entry: only what is inside it is copied.
        if keep && os_path.as_os_str() != "." {
            out.push(make_entry(self.root, os_path, &meta, kind)?);
        }
        Ok(keep)
    }

    /// Whether `--exclude` hides this path, and its match info for the children.
    fn exclusion(
        &self,
        exclude_state: Option<&(String, MatchInfo)>,
    ) -> Result<(bool, Option<MatchInfo>), Error> {
        match (self.exclude, exclude_state) {
            (Some(matcher), Some((rel, parent))) => {
                let (excluded, info) = matcher.matches_using_parent_results(rel, parent)?;
                Ok((excluded, Some(info)))
            }
            _ => Ok((false, None)),
        }
    }

    /// A hidden directory matters only if an exception pattern can re-include its content.
    fn may_reinclude(&self, ignored: bool, excluded: bool) -> bool {
        (!ignored || self.ignore.is_some_and(PatternMatcher::exclusions))
            && (!excluded || self.exclude.is_some_and(PatternMatcher::exclusions))
    }

    /// Visits one child of `parent`, matching it against the patterns from the parent's
    /// match info.
    fn visit_child(
        &self,
        parent: &Parent,
        (name, meta): (OsString, Metadata),
        nested: bool,
        out: &mut Vec<Entry>,
    ) -> Result<bool, Error> {
        let child_path = if parent.os_path.as_os_str() == "." {
            PathBuf::from(&name)
        } else {
            parent.os_path.join(&name)
        };
        let child_ignore = match (self.ignore, parent.ignore_info) {
            (Some(matcher), Some(info)) => {
                let display = display_path(&child_path);
                Some(matcher.matches_using_parent_results(&display, info)?)
            }
            _ => None,
        };
        let child_exclude = self.exclude.map(|_| {
            let name = name.to_string_lossy();
            let rel = match parent.exclude_rel {
                Some(parent_rel) => format!("{parent_rel}/{name}"),
                None => name.into_owned(),
            };
            (rel, parent.exclude_info.clone().unwrap_or_default())
        });
        self.visit(child_path, meta, child_ignore, child_exclude, nested, out)
    }

    /// Stat calls dominate a warm walk: spreads `parent`'s subtrees over `workers` threads,
    /// then appends their entries in order (they are sorted later anyway). `full` is the
    /// parent's path on disk. Returns whether anything was added.
    fn visit_in_parallel(
        &self,
        parent: &Parent,
        children: Vec<(OsString, Metadata)>,
        workers: usize,
        full: &Path,
        out: &mut Vec<Entry>,
    ) -> Result<bool, Error> {
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
                            let visible = self.visit_child(parent, child, true, &mut entries)?;
                            done.push((index, visible, entries));
                        }
                    })
                })
                .collect();
            join_all(handles, full, "a walking thread panicked")
        });
        let mut ordered: Vec<Option<(bool, Vec<Entry>)>> = (0..count).map(|_| None).collect();
        for part in parts {
            for (index, visible, entries) in part? {
                ordered[index] = Some((visible, entries));
            }
        }
        let mut any_visible = false;
        for (visible, entries) in ordered.into_iter().flatten() {
            any_visible |= visible;
            out.extend(entries);
        }
        Ok(any_visible)
    }
}

/// The children of directory `full`, with their metadata (symlinks not followed).
fn read_children(full: &Path) -> Result<Vec<(OsString, Metadata)>, Error> {
    let io_error = |source| Error::Io {
        path: full.to_path_buf(),
        source,
    };
    let mut children = Vec::new();
    for child in fs::read_dir(full).map_err(io_error)? {
        let child = child.map_err(io_error)?;
        // DirEntry::metadata does not follow symlinks.
        let child_meta = child.metadata().map_err(io_error)?;
        children.push((child.file_name(), child_meta));
    }
    Ok(children)
}

/// How many threads walk a directory's children: one inside a subtree already walked in
/// parallel, or for a directory with few subdirectories.
fn walkers(nested: bool, children: &[(OsString, Metadata)]) -> usize {
    let subdirs = children.iter().filter(|(_, m)| m.is_dir()).count();
    if nested || subdirs < PARALLEL_WALK_DIRS {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks all of `root` on one thread (`nested`) or spreading subtrees over threads.
    fn walk_all(ctx: &Context, exclude: &PatternMatcher, nested: bool) -> Vec<String> {
        let walk = Walk {
            root: &ctx.root,
            ignore: ctx.ignore.as_ref(),
            exclude: Some(exclude),
        };
        let meta = fs::symlink_metadata(&ctx.root).unwrap();
        let ignore_state = Some((false, MatchInfo::default()));
        let mut out = Vec::new();
        walk.visit(
            PathBuf::from("."),
            meta,
            ignore_state,
            None,
            nested,
            &mut out,
        )
        .unwrap();
        let mut paths: Vec<String> = out.into_iter().map(|e| e.path).collect();
        paths.sort();
        paths
    }

    #[test]
    fn threads_see_the_patterns_of_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["s0", "s1", "s2", "s3", "s4"] {
            for file in ["keep.txt", "drop.log", "n/keep.txt", "n/drop.log", "n/tmp"] {
                let path = dir.path().join(sub).join(file);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, sub).unwrap();
            }
        }
        let ignore = PatternMatcher::new(["s1", "!s1/n/keep.txt", "*/drop.log"]).unwrap();
        let ctx = Context::open(dir.path(), Some(ignore)).unwrap();
        let exclude = PatternMatcher::new(["**/tmp", "s2/n"]).unwrap();

        let parallel = walk_all(&ctx, &exclude, false);
        assert_eq!(parallel, walk_all(&ctx, &exclude, true));
        let has = |path: &str| parallel.iter().any(|p| p == path);
        assert!(has("s0/keep.txt") && has("s0/n/drop.log") && has("s3/n/keep.txt"));
        assert!(!has("s0/drop.log") && !has("s4/n/tmp") && !has("s2/n/keep.txt"));
        // An ignored directory with an exception keeps only what the exception names.
        assert!(has("s1") && has("s1/n") && has("s1/n/keep.txt"));
        assert!(!has("s1/keep.txt") && !has("s1/n/drop.log"));
    }
}
