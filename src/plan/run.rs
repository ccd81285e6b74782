//! RUN (BuildKit's `dispatchRun`): the command with its shell and heredocs, the
//! `--mount`s and their inputs, the network and security modes, and what goes into the
//! step's key and history.

use std::collections::BTreeMap;

use petgraph::graph::NodeIndex;

use super::Error;
use super::builder::Planner;
use super::op::{CacheSharing, Definition, Exec, ExecMount, HeredocFile, MountKind, MountOwner};
use super::stage::PROXY_ARGS;
use super::state::StageState;
use crate::gocompat::go_path_clean as clean;
use crate::gocompat::{go_list, go_quote_list};
use crate::instruction::{
    self, Command, InvalidValue, Mount, MountType, Network, Security, Sharing,
};
use crate::syntax::{self, Span};

const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

impl Planner<'_> {
    pub(super) fn dispatch_run(
        &mut self,
        state: &mut StageState,
        command: &Command,
        run: &instruction::Run,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        let mut display = self.display(state, &command.original, true);
        let (argv, files) = run_argv(state, run, span, &mut display)?;
        let mut inputs = vec![state.rootfs];
        let mounts = self.run_mounts(state, run, span, onbuild, &mut inputs)?;
        let network = match run.network {
            None | Some(Network::Default) => self.options.network.as_deref().unwrap_or("default"),
            Some(Network::None) => "none",
            Some(Network::Host) => "host",
        };
        let security = match run.security {
            None | Some(Security::Sandbox) => "sandbox",
            Some(Security::Insecure) => "insecure",
        };
        let exec = Exec {
            argv: argv.clone(),
            env: state.env_lines(),
            user: state.user.clone(),
            workdir: state.workdir.clone(),
            hostname: self
                .options
                .build_args
                .get("BUILDKIT_SANDBOX_HOSTNAME")
                .cloned()
                .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string()),
            platform: state.platform.to_string(),
            network: network.to_string(),
            security: security.to_string(),
            explain: explain(state, &argv, network, &mounts),
            mounts,
            files,
            proxy_env: self
                .options
                .build_args
                .iter()
                .filter(|(name, _)| PROXY_ARGS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        };
        let name = state.step_name(&display, onbuild);
        let metadata = state.metadata(name, span, onbuild);
        let node = self.add_op(Definition::Exec(exec), inputs, metadata);
        state.rootfs = node;
        let created_by = format!(
            "RUN {} # buildkit",
            run_command_string(&argv, &state.build_args, &state.env_pairs())
        );
        state.commit(created_by, Some(node));
        Ok(())
    }

    /// The step's mounts; the inputs they read from are appended to `inputs`.
    fn run_mounts(
        &mut self,
        state: &StageState,
        run: &instruction::Run,
        span: Span,
        onbuild: bool,
        inputs: &mut Vec<NodeIndex>,
    ) -> Result<Vec<ExecMount>, Error> {
        let mut mounts = Vec::new();
        let mut ssh_count = 0;
        let env_pairs = state.env_pairs();
        for spec in &run.mounts {
            let lexer = self.lexer;
            let mount = spec
                .resolve(
                    &mut |value| {
                        lexer
                            .process_word(value, &env_pairs)
                            .map(|e| e.value)
                            .map_err(|e| {
                                InvalidValue(format!("failed to process {value:?}: {}", e.message))
                            })
                    },
                    ssh_count,
                )
                .map_err(|m| Error::invalid(m, span))?;
            if mount.kind == MountType::Ssh {
                ssh_count += 1;
            }
            let target = if mount.target.is_empty() || mount.target.starts_with('/') {
                mount.target.clone()
            } else {
                clean(&format!("/{}/{}", state.workdir, mount.target))
            };
            let kind = self.mount_kind(state, &mount, span, onbuild, inputs)?;
            mounts.push(ExecMount {
                target,
                source: mount.source,
                read_only: mount.read_only,
                kind,
            });
        }
        Ok(mounts)
    }

    /// The kind of `mount` with its options; the input of a bind mount (or of a cache
    /// mount with `from=`) is appended to `inputs`.
    fn mount_kind(
        &mut self,
        state: &StageState,
        mount: &Mount,
        span: Span,
        onbuild: bool,
        inputs: &mut Vec<NodeIndex>,
    ) -> Result<MountKind, Error> {
        let mut push = |node| {
            inputs.push(node);
            inputs.len() - 1
        };
        let owner = MountOwner {
            mode: mount.mode,
            uid: mount.uid,
            gid: mount.gid,
        };
        // The instruction layer always gives cache, secret and ssh mounts an id (`id=`,
        // else the target, the source or `default`); the fallbacks only mirror that.
        Ok(match mount.kind {
            MountType::Bind => {
                let node = match &mount.from {
                    Some(from) => self.reference_input(state, from, span)?,
                    None => {
                        let include = mount
                            .source
                            .as_deref()
                            .map(|s| clean(&format!("/{s}")).trim_start_matches('/').to_string())
                            .filter(|s| !s.is_empty())
                            .into_iter()
                            .collect();
                        self.context_op(state, include, Vec::new(), span, onbuild)
                    }
                };
                MountKind::Bind {
                    input: push(node),
                    id: mount.id.clone(),
                }
            }
            MountType::Cache => {
                let input = match &mount.from {
                    Some(from) => Some(push(self.reference_input(state, from, span)?)),
                    None => None,
                };
                MountKind::Cache {
                    id: mount.id.clone().unwrap_or_else(|| mount.target.clone()),
                    sharing: match mount.sharing {
                        Sharing::Shared => CacheSharing::Shared,
                        Sharing::Private => CacheSharing::Private,
                        Sharing::Locked => CacheSharing::Locked,
                    },
                    input,
                    owner,
                }
            }
            MountType::Tmpfs => MountKind::Tmpfs {
                size: mount.size,
                id: mount.id.clone(),
            },
            MountType::Secret => MountKind::Secret {
                id: mount.id.clone().unwrap_or_default(),
                env: mount.env.clone(),
                required: mount.required,
                owner,
            },
            MountType::Ssh => MountKind::Ssh {
                id: mount.id.clone().unwrap_or_else(|| "default".to_string()),
                required: mount.required,
                owner,
            },
        })
    }
}

/// The argv of a RUN (SHELL prepended for the shell form) and the heredoc files it
/// reads; a heredoc summary is appended to `display`.
fn run_argv(
    state: &StageState,
    run: &instruction::Run,
    span: Span,
    display: &mut String,
) -> Result<(Vec<String>, Vec<HeredocFile>), Error> {
    let mut args = run.command.args.clone();
    let mut files = Vec::new();
    if let Some(first) = run.heredocs.first() {
        if args.len() != 1 || !run.command.prepend_shell {
            return Err(Error::invalid(
                format!(
                    "parsing produced an invalid run command: {}",
                    go_list(&args)
                ),
                span,
            ));
        }
        let whole_command_is_heredoc = matches!(syntax::parse_heredoc_word(&args[0]), Ok(Some(_)));
        if whole_command_is_heredoc {
            let data = if first.chomp {
                syntax::chomp(&first.content)
            } else {
                first.content.clone()
            };
            if first.content.starts_with("#!") {
                // A script with its own interpreter: written to a file and run.
                let path = format!("/dev/pipes/{}", first.name);
                files.push(HeredocFile {
                    path: path.clone(),
                    content: data,
                    mode: 0o755,
                });
                args = vec![path];
            } else {
                args = vec![data];
            }
            display.push_str(&format!(" ({})", summarize_heredoc(&first.content)));
        } else {
            // `RUN cat <<EOF`: the shell reads the heredocs itself.
            let mut full = args[0].clone();
            for heredoc in &run.heredocs {
                full.push('\n');
                full.push_str(&heredoc.content);
                full.push_str(&heredoc.name);
            }
            args = vec![full];
        }
    }
    let argv = if run.command.prepend_shell {
        state.with_shell(&args)
    } else {
        args
    };
    Ok((argv, files))
}

/// What went into the step's key, by origin, so a cache miss can be explained.
fn explain(
    state: &StageState,
    argv: &[String],
    network: &str,
    mounts: &[ExecMount],
) -> BTreeMap<String, String> {
    let mut explain = BTreeMap::new();
    explain.insert("command".to_string(), go_quote_list(argv));
    explain.insert("user".to_string(), state.user.clone());
    explain.insert("workdir".to_string(), state.workdir.clone());
    explain.insert("network".to_string(), network.to_string());
    for entry in &state.env {
        let origin = if entry.from_env { "env" } else { "arg" };
        explain.insert(format!("{origin}:{}", entry.key), entry.value.clone());
    }
    for (number, mount) in mounts.iter().enumerate() {
        explain.insert(
            format!("mount:{number}"),
            serde_json::to_string(mount).unwrap_or_default(),
        );
    }
    explain
}

/// BuildKit's `runCommandString`: `|N k=v … argv` when build args are in scope.
fn run_command_string(
    argv: &[String],
    build_args: &[(String, Option<String>)],
    env: &[(String, String)],
) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in build_args {
        let value = env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| value.clone().unwrap_or_default());
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value,
            None => pairs.push((key.clone(), value)),
        }
    }
    let mut words: Vec<String> = Vec::new();
    if !pairs.is_empty() {
        words.push(format!("|{}", pairs.len()));
        words.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(argv.iter().cloned());
    words.join(" ")
}

fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim().replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        first + "..."
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_history_text() {
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), "make".to_string()];
        let args = vec![
            ("foo".to_string(), Some("bar".to_string())),
            ("bar".to_string(), None),
            ("foo".to_string(), Some("bar2".to_string())),
        ];
        let env = vec![("foo".to_string(), "bar2".to_string())];
        assert_eq!(
            run_command_string(&argv, &args, &env),
            "|2 foo=bar2 bar= /bin/sh -c make"
        );
        assert_eq!(run_command_string(&argv, &[], &env), "/bin/sh -c make");
    }
}
