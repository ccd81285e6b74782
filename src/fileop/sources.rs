//! The sources of a COPY or ADD as items to copy: the root of each input (a layer chain,
//! or the build context with its selection), wildcard expansion, symlinks followed as
//! BuildKit does, and heredocs written to scratch files.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::copy::{self, Filter};
use super::copy_run::CopyRun;
use super::error::{Error, Result};
use super::resolve::{Resolved, join, resolve};
use super::{Input, mkdir_private};
use crate::plan::{Copy, CopySource};
use crate::source::glob::{go_match, has_wildcard};
use crate::source::{PatternMatcher, Selection};
use crate::sys;

/// Where one input's files are.
pub(super) struct SourceRoot<'a> {
    pub(super) path: PathBuf,
    pub(super) filter: Option<Filter>,
    pub(super) digests: Option<ContextDigests<'a>>,
}

/// The content digests of a context selection, looked up by path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextDigests<'a> {
    pub(super) selection: &'a Selection,
    pub(super) digests: &'a [Option<[u8; 32]>],
}

impl ContextDigests<'_> {
    /// The digest of the regular file at `rel` (relative to the context root).
    pub(crate) fn get(&self, rel: &Path) -> Option<[u8; 32]> {
        let index = self.selection.position(rel)?;
        self.digests.get(index).copied().flatten()
    }
}

/// One thing to copy, after wildcard expansion.
pub(super) struct Item {
    /// The input (None: a heredoc written to scratch).
    pub(super) input: Option<usize>,
    /// The matched path, final component not followed.
    pub(super) matched: Resolved,
    /// What is copied: `matched`, or its target when the source symlink is followed.
    pub(super) followed: Resolved,
    /// The name used when copying into a directory.
    pub(super) name: OsString,
    pub(super) contents_only: bool,
    pub(super) unpack: bool,
    pub(super) include: Option<PatternMatcher>,
    pub(super) context: bool,
}

impl CopyRun<'_, '_> {
    pub(super) fn source_root(&mut self, input: usize) -> Result<&SourceRoot<'_>> {
        if !self.roots.contains_key(&input) {
            let root = match self.request.inputs.get(input) {
                None => {
                    return Err(Error::BadInput(format!("the op has no input {input}")));
                }
                Some(Input::Context {
                    root,
                    selection,
                    digests,
                }) => SourceRoot {
                    path: root.to_path_buf(),
                    filter: Some(Filter::new(
                        selection.entries.iter().map(|e| e.os_path.as_path()),
                    )),
                    digests: digests.map(|digests| ContextDigests { selection, digests }),
                },
                Some(Input::Layers(layers)) => {
                    let path = match layers {
                        [] => {
                            let empty = self.scratch.join(format!("empty-{input}"));
                            mkdir_private(&empty)?;
                            empty
                        }
                        [only] => only.clone(),
                        layers => self
                            .mounts
                            .chain(layers, self.scratch.join(format!("src-{input}")))?,
                    };
                    SourceRoot {
                        path,
                        filter: None,
                        digests: None,
                    }
                }
            };
            self.roots.insert(input, root);
        }
        Ok(&self.roots[&input])
    }

    pub(super) fn expand_sources(
        &mut self,
        keyword: &'static str,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let copy: &Copy = self.copy;
        for (index, source) in copy.sources.iter().enumerate() {
            match source {
                CopySource::Inline {
                    name,
                    content,
                    mode,
                } => {
                    items.push(self.inline_item(index, name, content, *mode)?);
                }
                CopySource::Path {
                    input,
                    path,
                    include_patterns,
                    follow_symlinks,
                    copy_dir_contents_only,
                    allow_wildcard,
                    allow_empty_wildcard,
                    unpack,
                } => {
                    let wildcard = *allow_wildcard && has_wildcard(path);
                    let Some(matches) =
                        self.path_matches(keyword, *input, path, wildcard, *allow_empty_wildcard)?
                    else {
                        continue;
                    };
                    let root = self.source_root(*input)?;
                    let context = root.filter.is_some();
                    let root_path = root.path.clone();
                    let allowed =
                        |r: &Resolved| root.filter.as_ref().is_none_or(|f| f.allows(&r.rel_path()));
                    let include = if include_patterns.is_empty() {
                        None
                    } else {
                        Some(PatternMatcher::new(include_patterns.iter()).map_err(|e| {
                            Error::BadPattern {
                                pattern: include_patterns.join(" "),
                                reason: e.to_string(),
                            }
                        })?)
                    };
                    for matched in matches {
                        let mut followed = matched.clone();
                        if *follow_symlinks
                            && fs::symlink_metadata(&matched.host)
                                .is_ok_and(|m| m.file_type().is_symlink())
                        {
                            let target =
                                resolve(&root_path, matched_os(&matched).as_os_str(), true)?;
                            // Only what the selection holds may be read from the context:
                            // a link to an ignored or missing path is an error, as BuildKit
                            // finds no target in what the context sent.
                            if !exists(&target.host) || !allowed(&target) {
                                return Err(if context {
                                    Error::NotInContext {
                                        keyword,
                                        path: target.display().trim_start_matches('/').into(),
                                    }
                                } else {
                                    Error::NotFound {
                                        keyword,
                                        path: matched.display(),
                                    }
                                });
                            }
                            followed = target;
                        }
                        let meta = fs::symlink_metadata(&followed.host)
                            .map_err(Error::io("lstat", &followed.host))?;
                        let name = matched.rel.last().cloned().unwrap_or_default();
                        if !meta.is_dir()
                            && let Some(exclude) = exclude
                            && exclude.matches(&name.to_string_lossy()).map_err(|e| {
                                Error::BadPattern {
                                    pattern: copy.exclude.join(" "),
                                    reason: e.to_string(),
                                }
                            })?
                        {
                            continue;
                        }
                        items.push(Item {
                            input: Some(*input),
                            matched,
                            followed,
                            name,
                            contents_only: *copy_dir_contents_only,
                            unpack: *unpack,
                            include: include.clone(),
                            context,
                        });
                    }
                }
            }
        }
        // Wildcards allowed to match nothing may all match nothing: BuildKit then copies
        // nothing and still makes the (empty) layer.
        Ok(items)
    }

    /// What the path source `path` of `input` matches in the input's root (and
    /// selection): `None` for a `wildcard` that matched nothing, which `allow_empty`
    /// permits; an error for any other source that matched nothing.
    fn path_matches(
        &mut self,
        keyword: &'static str,
        input: usize,
        path: &str,
        wildcard: bool,
        allow_empty: bool,
    ) -> Result<Option<Vec<Resolved>>> {
        let root = self.source_root(input)?;
        let context = root.filter.is_some();
        let root_path = root.path.clone();
        let allowed = |r: &Resolved| root.filter.as_ref().is_none_or(|f| f.allows(&r.rel_path()));
        let matches: Vec<Resolved> = if wildcard {
            expand(&root_path, path)?
        } else {
            let r = resolve(&root_path, OsStr::new(path), false)?;
            if exists(&r.host) { vec![r] } else { Vec::new() }
        };
        let matches: Vec<Resolved> = matches.into_iter().filter(|r| allowed(r)).collect();
        if !matches.is_empty() {
            return Ok(Some(matches));
        }
        if !wildcard {
            return Err(if context {
                Error::NotInContext {
                    keyword,
                    path: path.trim_start_matches('/').to_string(),
                }
            } else {
                Error::NotFound {
                    keyword,
                    path: path.to_string(),
                }
            });
        }
        if !allow_empty {
            return Err(Error::NoMatch {
                keyword,
                pattern: path.to_string(),
            });
        }
        Ok(None)
    }

    pub(super) fn temp_dir(&mut self, kind: &str) -> Result<PathBuf> {
        let tmp = self.scratch.join("tmp");
        if !tmp.exists() {
            mkdir_private(&tmp)?;
        }
        self.temp_count += 1;
        let dir = tmp.join(format!("{kind}-{}", self.temp_count));
        mkdir_private(&dir)?;
        Ok(dir)
    }

    fn inline_item(&mut self, index: usize, name: &str, content: &str, mode: u32) -> Result<Item> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Error::BadInput(format!(
                "heredoc source {index} has an invalid file name {name:?}"
            )));
        }
        let dir = self.temp_dir("inline")?;
        let path = dir.join(name);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io("create", &path))?;
        std::io::Write::write_all(&mut file, content.as_bytes())
            .map_err(Error::io("write", &path))?;
        drop(file);
        copy::set_mode(&path, mode & 0o7777)?;
        let resolved = Resolved {
            host: path,
            rel: vec![OsString::from(name)],
        };
        Ok(Item {
            input: None,
            matched: resolved.clone(),
            followed: resolved,
            name: OsString::from(name),
            contents_only: false,
            unpack: false,
            include: None,
            context: false,
        })
    }
}

fn matched_os(r: &Resolved) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in &r.rel {
        p.push(c);
    }
    p
}

/// Exists and is not an overlay whiteout.
pub(super) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| !sys::is_whiteout(&m))
}

/// The matches of the wildcard `pattern` (absolute) inside `root`, sorted, each with its
/// final component not followed. The literal prefix follows symlinks; below it, only real
/// directories are descended (as fsutil's `ResolveWildcards`).
fn expand(root: &Path, pattern: &str) -> Result<Vec<Resolved>> {
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let first = parts
        .iter()
        .position(|p| has_wildcard(p))
        .unwrap_or(parts.len());
    let prefix = format!("/{}", parts[..first].join("/"));
    let prefix = resolve(root, OsStr::new(&prefix), true)?;
    let mut current = vec![prefix.rel];
    for (offset, part) in parts[first..].iter().enumerate() {
        let last = first + offset + 1 == parts.len();
        let mut next = Vec::new();
        for rel in current {
            let dir = join(root, &rel);
            let names: Vec<OsString> = if has_wildcard(part) {
                let Ok(read) = fs::read_dir(&dir) else {
                    continue;
                };
                let mut names = Vec::new();
                for entry in read {
                    let entry = entry.map_err(Error::io("read directory", &dir))?;
                    let name = entry.file_name();
                    let hit =
                        go_match(part, &name.to_string_lossy()).map_err(|_| Error::BadPattern {
                            pattern: pattern.to_string(),
                            reason: "syntax error in pattern".into(),
                        })?;
                    if hit {
                        names.push(name);
                    }
                }
                names.sort();
                names
            } else if *part == ".." {
                let mut up = rel.clone();
                up.pop();
                next.push(up);
                continue;
            } else {
                vec![OsString::from(OsStr::from_bytes(part.as_bytes()))]
            };
            for name in names {
                let path = dir.join(&name);
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if sys::is_whiteout(&meta) || (!last && !meta.is_dir()) {
                    continue;
                }
                let mut rel = rel.clone();
                rel.push(name);
                next.push(rel);
            }
        }
        current = next;
    }
    Ok(current
        .into_iter()
        .map(|rel| Resolved {
            host: join(root, &rel),
            rel,
        })
        .collect())
}
