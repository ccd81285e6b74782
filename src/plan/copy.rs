//! COPY and ADD (BuildKit's `dispatchCopy`): sources from the build context, an earlier
//! stage or image (`--from`), heredocs, URLs and git repositories (ADD), and the options
//! that shape the copy (`--chown`, `--chmod`, `--link`, `--parents`, `--exclude`,
//! `--checksum`).

use std::collections::BTreeSet;

use petgraph::graph::NodeIndex;

use super::Error;
use super::builder::Planner;
use super::git::{GitRef, is_git_source};
use super::op::{Copy, CopySource, Definition, FileOp, Source};
use super::paths::{is_http_source, url_filename};
use super::state::StageState;
use crate::gocompat::go_path_clean as clean;
use crate::instruction::{self, Chmod, Command, Transfer};
use crate::shell::Lexer;
use crate::syntax::{self, Span};

/// A COPY or ADD instruction, as the dispatcher needs it.
#[derive(Clone, Copy)]
pub(super) struct CopyInstruction<'c> {
    transfer: &'c Transfer,
    /// `COPY --from`.
    from: Option<&'c str>,
    /// `COPY --parents`.
    parents: bool,
    /// The ADD-only options; `None` for COPY.
    add: Option<&'c instruction::Add>,
}

impl<'c> From<&'c instruction::Copy> for CopyInstruction<'c> {
    fn from(copy: &'c instruction::Copy) -> Self {
        CopyInstruction {
            transfer: &copy.transfer,
            from: copy.from.as_deref(),
            parents: copy.parents,
            add: None,
        }
    }
}

impl<'c> From<&'c instruction::Add> for CopyInstruction<'c> {
    fn from(add: &'c instruction::Add) -> Self {
        CopyInstruction {
            transfer: &add.transfer,
            from: None,
            parents: false,
            add: Some(add),
        }
    }
}

/// What every source of one COPY/ADD step shares.
struct CopyStep<'c> {
    instruction: CopyInstruction<'c>,
    /// The step's display name.
    name: String,
    span: Span,
    onbuild: bool,
    /// ADD `--checksum`, expanded and checked.
    checksum: Option<String>,
    /// The input local paths are copied from (context, stage or image), if any.
    local_input: Option<usize>,
}

impl Planner<'_> {
    pub(super) fn dispatch_copy(
        &mut self,
        state: &mut StageState,
        command: &Command,
        instruction: CopyInstruction<'_>,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        let transfer = instruction.transfer;
        let env = state.env_pairs();
        let (paths, inline) = self.copy_sources(&env, transfer, span)?;
        let dest = self.expand_with(&transfer.dest, &env, span)?;
        let chown = self.expand_optional(state, transfer.chown.as_ref(), span)?;
        let chmod = self.expand_optional(state, transfer.chmod.as_ref(), span)?;
        if let Some(mode) = &chmod {
            Chmod::parse(mode).map_err(|m| Error::invalid(m, span))?;
        }
        let exclude = transfer
            .exclude
            .iter()
            .map(|pattern| self.expand_with(pattern, &env, span))
            .collect::<Result<Vec<_>, _>>()?;
        let checksum = self.copy_checksum(state, instruction.add, &paths, inline.len(), span)?;

        let display = self.display(state, &command.original, false);
        let name = state.step_name(&display, onbuild);
        let mut inputs = vec![state.rootfs];
        let local_input =
            self.copy_local_input(state, instruction, &paths, &exclude, span, onbuild)?;
        let local_input = local_input.map(|node| {
            inputs.push(node);
            inputs.len() - 1
        });
        let step = CopyStep {
            instruction,
            name,
            span,
            onbuild,
            checksum,
            local_input,
        };
        let mut sources = Vec::new();
        for path in &paths {
            sources.push(self.path_source(state, &step, path, &mut inputs)?);
        }
        sources.extend(inline.iter().cloned());

        let copy = Copy {
            sources,
            dest: relative_to_workdir(&state.workdir, &dest),
            chown,
            chmod,
            link: transfer.link,
            parents: instruction.parents,
            exclude,
            create_dest_path: true,
        };
        let keyword = if instruction.add.is_some() {
            "ADD"
        } else {
            "COPY"
        };
        let created_by = created_by(keyword, &copy, &paths, &inline, &dest);
        let metadata = state.metadata(step.name, span, onbuild);
        let node = self.add_op(Definition::File(FileOp::Copy(copy)), inputs, metadata);
        state.rootfs = node;
        state.commit(created_by, Some(node));
        Ok(())
    }

    /// The sources as written, expanded: paths (and URLs), then heredocs as inline files.
    fn copy_sources(
        &self,
        env: &[(String, String)],
        transfer: &Transfer,
        span: Span,
    ) -> Result<(Vec<String>, Vec<CopySource>), Error> {
        let mut paths = Vec::new();
        let mut inline = Vec::new();
        for source in &transfer.sources {
            match source {
                instruction::Source::Path(path) => paths.push(self.expand_with(path, &env, span)?),
                instruction::Source::Heredoc(heredoc) => {
                    let data = if heredoc.chomp {
                        syntax::chomp(&heredoc.content)
                    } else {
                        heredoc.content.clone()
                    };
                    // Bodies are expanded with `\` as escape and quotes kept, as
                    // BuildKit's ExpandRaw does, unless the delimiter was quoted.
                    let content = if heredoc.expand {
                        Lexer::new('\\')
                            .skip_process_quotes(true)
                            .process_word(&data, &env)
                            .map(|e| e.value)
                            .map_err(|e| Error::Expansion {
                                word: data.clone(),
                                message: e.message,
                                span,
                            })?
                    } else {
                        data
                    };
                    inline.push(CopySource::Inline {
                        name: heredoc.name.clone(),
                        content,
                        mode: 0o644,
                    });
                }
            }
        }
        Ok((paths, inline))
    }

    /// ADD `--checksum`, expanded; only for a single HTTP(S) or git source.
    fn copy_checksum(
        &self,
        state: &StageState,
        add: Option<&instruction::Add>,
        paths: &[String],
        inline_count: usize,
        span: Span,
    ) -> Result<Option<String>, Error> {
        let checksum = self.expand_optional(state, add.and_then(|a| a.checksum.as_ref()), span)?;
        if let Some(checksum) = &checksum {
            instruction::values::parse_checksum(checksum).map_err(|m| Error::invalid(m, span))?;
            if paths.len() + inline_count != 1 {
                return Err(Error::invalid(
                    "checksum can't be specified for multiple sources",
                    span,
                ));
            }
            if !paths
                .first()
                .is_some_and(|p| is_http_source(p) || is_git_source(p))
            {
                return Err(Error::invalid(
                    "checksum requires HTTP(S) or Git sources",
                    span,
                ));
            }
        }
        Ok(checksum)
    }

    /// The op local paths are copied from: `--from`'s stage or image, else the build
    /// context selecting just those paths. `None` when no source is a local path.
    fn copy_local_input(
        &mut self,
        state: &StageState,
        instruction: CopyInstruction<'_>,
        paths: &[String],
        exclude: &[String],
        span: Span,
        onbuild: bool,
    ) -> Result<Option<NodeIndex>, Error> {
        let add = instruction.add.is_some();
        let local: Vec<&String> = paths
            .iter()
            .filter(|p| !add || !(is_http_source(p) || is_git_source(p)))
            .collect();
        if local.is_empty() {
            return Ok(None);
        }
        if let Some(from) = instruction.from {
            return self.reference_input(state, from, span).map(Some);
        }
        let include: Vec<String> = local
            .iter()
            .map(|p| clean(&format!("/{p}")).trim_start_matches('/').to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // The root selects everything.
        let include = if include.iter().any(String::is_empty) {
            Vec::new()
        } else {
            include
        };
        Ok(Some(self.context_op(
            state,
            include,
            exclude.to_vec(),
            span,
            onbuild,
        )))
    }

    /// One path source of the step: a git repository or a URL (ADD only; each its own
    /// input), else a path in the local input.
    fn path_source(
        &mut self,
        state: &StageState,
        step: &CopyStep<'_>,
        path: &str,
        inputs: &mut Vec<NodeIndex>,
    ) -> Result<CopySource, Error> {
        let span = step.span;
        let add = step.instruction.add;
        if is_git_source(path) {
            let Some(add) = add else {
                return Err(Error::invalid("source can't be a git ref for COPY", span));
            };
            let source = git_source(path, add, step.checksum.as_deref())
                .map_err(|m| Error::invalid(m, span))?;
            let metadata = state.metadata(step.name.clone(), span, step.onbuild);
            let node = self.add_op(Definition::Source(source), Vec::new(), metadata);
            inputs.push(node);
            return Ok(plain_source(inputs.len() - 1, "/".to_string()));
        }
        if is_http_source(path) {
            let Some(add) = add else {
                return Err(Error::invalid("source can't be a URL for COPY", span));
            };
            let filename = url_filename(path);
            // Shown as BuildKit shows an HTTP source: the URL.
            let metadata = state.metadata(path.to_string(), span, step.onbuild);
            let node = self.add_op(
                Definition::Source(Source::Url {
                    url: path.to_string(),
                    checksum: step.checksum.clone(),
                    filename: filename.clone(),
                }),
                Vec::new(),
                metadata,
            );
            inputs.push(node);
            let mut source = plain_source(inputs.len() - 1, format!("/{filename}"));
            if let CopySource::Path { unpack, .. } = &mut source {
                // Remote archives are extracted only when asked to.
                *unpack = add.unpack == Some(true);
            }
            return Ok(source);
        }
        Ok(local_source(
            step.local_input.unwrap_or(1),
            path,
            step.instruction.parents,
            add.is_some_and(|a| a.unpack != Some(false)),
        ))
    }
}

/// The git source of `path`, with ADD's `--keep-git-dir` and `--checksum` reconciled with
/// the URL's own options as BuildKit does (a conflict is an error).
fn git_source(
    path: &str,
    add: &instruction::Add,
    checksum: Option<&str>,
) -> Result<Source, String> {
    let git = GitRef::parse(path)?;
    if add.keep_git_dir && git.keep_git_dir == Some(false) {
        return Err("inconsistent keep-git-dir configuration".to_string());
    }
    if let (Some(flag), Some(query)) = (checksum, &git.checksum)
        && flag != query
    {
        return Err(format!("checksum mismatch {flag:?} != {query:?}"));
    }
    let checksum = git.checksum.or(checksum.map(str::to_string));
    if let Some(checksum) = &checksum
        && (checksum.is_empty() || !checksum.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!(
            "invalid checksum {checksum} for Git URL, expected hex commit hash"
        ));
    }
    Ok(Source::Git {
        remote: git.remote,
        reference: git.reference,
        subdir: git.subdir,
        checksum,
        keep_git_dir: git.keep_git_dir.unwrap_or(add.keep_git_dir),
        submodules: git.submodules.unwrap_or(true),
    })
}

/// A path (or wildcard) in the local input; with `--parents`, the part after `/./`
/// (or the whole path) is the pattern whose parent directories are kept.
fn local_source(input: usize, path: &str, parents: bool, unpack: bool) -> CopySource {
    let rooted = |p: &str| clean(&format!("/{p}")).trim_start_matches('/').to_string();
    let (path, include_patterns) = if parents {
        match path.split_once("/./") {
            Some((parent, pattern)) => (parent.to_string(), vec![rooted(pattern)]),
            None => ("/".to_string(), vec![rooted(path)]),
        }
    } else {
        (path.to_string(), Vec::new())
    };
    CopySource::Path {
        input,
        path: clean(&format!("/{path}")),
        include_patterns,
        follow_symlinks: true,
        copy_dir_contents_only: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        unpack,
    }
}

fn plain_source(input: usize, path: String) -> CopySource {
    CopySource::Path {
        input,
        path,
        include_patterns: Vec::new(),
        follow_symlinks: false,
        copy_dir_contents_only: false,
        allow_wildcard: false,
        allow_empty_wildcard: false,
        unpack: false,
    }
}

/// The history text: `COPY [--parents] [--chown=…] [--chmod=…] src… <<heredoc… dest # buildkit`.
fn created_by(
    keyword: &str,
    copy: &Copy,
    paths: &[String],
    inline: &[CopySource],
    dest: &str,
) -> String {
    let mut created_by = keyword.to_string();
    if copy.parents {
        created_by.push_str(" --parents");
    }
    if let Some(chown) = &copy.chown {
        created_by.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = &copy.chmod {
        created_by.push_str(&format!(" --chmod={chmod}"));
    }
    for path in paths {
        created_by.push(' ');
        created_by.push_str(path);
    }
    for source in inline {
        if let CopySource::Inline { name, .. } = source {
            created_by.push_str(&format!(" <<{name}"));
        }
    }
    created_by.push_str(&format!(" {dest} # buildkit"));
    created_by
}

/// BuildKit's `pathRelativeToWorkingDir`: cleaned, absolute, and a trailing
/// `/` (or `/.`, `.`) kept as "into this directory".
fn relative_to_workdir(workdir: &str, path: &str) -> String {
    let path = if path.is_empty() || path == "." {
        "./"
    } else {
        path
    };
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{workdir}/{path}")
    };
    let mut cleaned = clean(&joined);
    if (path.ends_with('/') || path.ends_with("/.")) && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_paths() {
        assert_eq!(relative_to_workdir("/app", "."), "/app/");
        assert_eq!(relative_to_workdir("/app", "bin/"), "/app/bin/");
        assert_eq!(relative_to_workdir("/app", "bin"), "/app/bin");
        assert_eq!(relative_to_workdir("/app", "/etc/x/"), "/etc/x/");
        assert_eq!(relative_to_workdir("/", "/"), "/");
        assert_eq!(relative_to_workdir("/", "a/../b"), "/b");
    }
}
