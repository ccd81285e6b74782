//! The stage walker: BuildKit's `dispatch*` functions, one per instruction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};

use super::image::{Empty, HealthConfig, History, ImageConfig, Platform};
use super::op::{
    Copy, CopySource, Definition, Exec, ExecMount, FileOp, HeredocFile, Metadata, Mkdir, Op, Source,
};
use super::paths::{is_git_source, is_http_source, normalise_workdir, url_filename};
use super::{
    BaseImage, Error, ImageResolver, Layer, Options, Plan, PlannedStage, ResolvedImage, TargetImage,
};
use crate::gocompat::{go_list, go_path_clean as clean, go_quote_list};
use crate::instruction::{
    self, Chmod, Command, CommandLine, Healthcheck, Instruction, MountType, Network, Security,
    Sharing, Stage, Stages, Transfer,
};
use crate::shell::{Env, Lexer};
use crate::syntax::{self, Span};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
const DEFAULT_HOSTNAME: &str = "buildkitsandbox";
const EMPTY_IMAGE: &str = "scratch";

/// Usable without ARG; passed to RUN but kept out of keys and history.
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// One variable of a stage's build environment.
#[derive(Debug, Clone)]
struct EnvEntry {
    key: String,
    value: String,
    /// Set by ENV (or the base image's Env), which an ARG cannot override.
    from_env: bool,
}

/// A stage being planned (BuildKit's `dispatchState`).
#[derive(Debug, Clone)]
struct StageState {
    index: usize,
    /// Shown in step names; empty when the build has a single stage.
    label: String,
    platform: Platform,
    config: ImageConfig,
    author: Option<String>,
    /// ARG and ENV values: what expansion sees and RUN gets.
    env: Vec<EnvEntry>,
    /// Declared ARGs in order (with inherited ones), for `RUN |N k=v …` history.
    build_args: Vec<(String, Option<String>)>,
    workdir: String,
    user: String,
    rootfs: NodeIndex,
    base: Option<BaseImage>,
    layers: Vec<Layer>,
    history: Vec<History>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
    step: usize,
    total: usize,
    ignore_cache: bool,
}

impl StageState {
    fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    fn env_lines(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect()
    }

    /// ARG: sets the value unless ENV already holds the name (ENV beats ARG).
    fn set_arg(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|e| e.key == key) {
            Some(entry) if entry.from_env => {}
            Some(entry) => entry.value = value.to_string(),
            None => self.env.push(EnvEntry {
                key: key.to_string(),
                value: value.to_string(),
                from_env: false,
            }),
        }
    }

    fn set_env(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|e| e.key == key) {
            Some(entry) => {
                entry.value = value.to_string();
                entry.from_env = true;
            }
            None => self.env.push(EnvEntry {
                key: key.to_string(),
                value: value.to_string(),
                from_env: true,
            }),
        }
    }

    /// BuildKit's `prefixCommand`: `[stage 2/5] RUN …`.
    fn step_name(&mut self, text: &str, onbuild: bool) -> String {
        if self.total == 0 {
            return text.to_string();
        }
        self.step += 1;
        let width = self.total.to_string().len();
        let mut out = String::from("[");
        if !self.label.is_empty() {
            out.push_str(&self.label);
            out.push(' ');
        }
        out.push_str(&format!("{:>width$}/{}] ", self.step, self.total));
        if onbuild {
            out.push_str("ONBUILD ");
        }
        out + text
    }

    fn metadata(&self, name: String, span: Span, onbuild: bool) -> Metadata {
        Metadata {
            name,
            stage: Some(self.label.clone()).filter(|l| !l.is_empty()),
            span: Some(span),
            ignore_cache: self.ignore_cache,
            onbuild,
        }
    }

    /// Appends a history entry; `layer` is the op whose diff is the layer.
    fn commit(&mut self, created_by: String, layer: Option<(NodeIndex, bool)>) {
        let history_index = self.history.len();
        self.history
            .push(History::buildkit(created_by, layer.is_some()));
        if let Some((node, skip_if_empty)) = layer {
            self.layers.push(Layer {
                node,
                history_index,
                skip_if_empty,
            });
        }
    }

    fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            self.config.shell.clone()
        }
    }

    /// BuildKit's `withShell`: SHELL + the command joined into one word.
    fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut argv = self.shell();
        argv.push(args.join(" "));
        argv
    }
}

pub(crate) struct Planner<'a> {
    stages: &'a Stages,
    options: &'a Options,
    resolver: &'a mut dyn ImageResolver,
    lexer: Lexer,
    target: usize,
    /// Predefined ARGs and global ARGs: what FROM lines and `ARG NAME` see.
    global_args: Vec<(String, String)>,
    graph: DiGraph<Op, usize>,
    /// (definition, inputs) → node, so identical ops are one node.
    dedupe: HashMap<(Vec<u8>, Vec<NodeIndex>), NodeIndex>,
    planned: BTreeMap<usize, StageState>,
    declared_args: BTreeSet<String>,
    show_stage_names: bool,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(
        stages: &'a Stages,
        options: &'a Options,
        resolver: &'a mut dyn ImageResolver,
    ) -> Result<Self, Error> {
        let target = find_target(stages, options.target.as_deref())?;
        let target_name = stages.stages[target]
            .name
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let mut planner = Planner {
            stages,
            options,
            resolver,
            lexer: Lexer::new(options.escape),
            target,
            global_args: Vec::new(),
            graph: DiGraph::new(),
            dedupe: HashMap::new(),
            planned: BTreeMap::new(),
            declared_args: BTreeSet::new(),
            show_stage_names: count_stage_states(stages) > 1,
        };
        planner.global_args = planner.predefined_args(&target_name);
        planner.global_meta_args()?;
        Ok(planner)
    }

    pub(crate) fn plan(mut self) -> Result<Plan, Error> {
        // Plan the stages the target names literally first, in source order, so
        // ops are numbered (and images resolved) the way the file reads. Others
        // (through variables or ONBUILD) are planned when first referenced.
        for index in self.stages.dependencies(self.target) {
            self.stage(index)?;
        }
        let state = self.stage(self.target)?;
        let mut config = state.config.clone();
        config.labels.extend(
            self.options
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let unused_build_args: Vec<String> = self
            .options
            .build_args
            .keys()
            .filter(|name| !self.consumed(name))
            .cloned()
            .collect();
        let mut warnings = Vec::new();
        if !unused_build_args.is_empty() {
            warnings.push(format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused_build_args.join(" ")
            ));
        }
        let stages = self
            .planned
            .values()
            .map(|s| PlannedStage {
                index: s.index,
                name: self.stages.stages[s.index].name.clone(),
                result: s.rootfs,
            })
            .collect();
        Ok(Plan {
            graph: self.graph,
            target: state.rootfs,
            target_stage: self.target,
            image: TargetImage {
                config,
                author: state.author,
                history: state.history,
                base: state.base,
                layers: state.layers,
                // The result is for the target platform, whatever FROM --platform said.
                platform: self.options.target_platform.clone(),
            },
            stages,
            unused_build_args,
            warnings,
        })
    }

    fn consumed(&self, name: &str) -> bool {
        self.declared_args.contains(name)
            || PROXY_ARGS.contains(&name)
            || PREDEFINED_ARGS.contains(&name)
            || name.starts_with("BUILDKIT_")
            || name == "SOURCE_DATE_EPOCH"
    }

    fn predefined_args(&self, target_name: &str) -> Vec<(String, String)> {
        let build = &self.options.build_platform;
        let target = &self.options.target_platform;
        let values = [
            build.to_string(),
            build.os.clone(),
            build.architecture.clone(),
            build.variant.clone().unwrap_or_default(),
            target.to_string(),
            target.os.clone(),
            target.architecture.clone(),
            target.variant.clone().unwrap_or_default(),
            target_name.to_string(),
        ];
        PREDEFINED_ARGS
            .iter()
            .zip(values)
            .map(|(name, value)| {
                // A build arg may override a predefined value, as in BuildKit.
                let value = self.options.build_args.get(*name).cloned().unwrap_or(value);
                (name.to_string(), value)
            })
            .collect()
    }

    /// ARGs before the first FROM: build arg, else the default expanded with
    /// the ARGs before it.
    fn global_meta_args(&mut self) -> Result<(), Error> {
        let stages = self.stages;
        for command in &stages.global_args {
            let Instruction::Arg(decls) = &command.instruction else {
                continue;
            };
            for decl in decls {
                self.declared_args.insert(decl.name.clone());
                let value = match self.options.build_args.get(&decl.name) {
                    Some(given) => Some(given.clone()),
                    None => match &decl.default {
                        Some(default) => {
                            Some(self.expand_with(default, &self.global_args, command.span)?)
                        }
                        None => None,
                    },
                };
                if let Some(value) = value {
                    match self.global_args.iter_mut().find(|(k, _)| *k == decl.name) {
                        Some(entry) => entry.1 = value,
                        None => self.global_args.push((decl.name.clone(), value)),
                    }
                }
            }
        }
        Ok(())
    }

    fn expand_with(&self, word: &str, env: &dyn Env, span: Span) -> Result<String, Error> {
        self.lexer
            .process_word(word, env)
            .map(|expansion| expansion.value)
            .map_err(|error| Error::Expansion {
                word: word.to_string(),
                message: error.message,
                span,
            })
    }

    fn expand(&self, state: &StageState, word: &str, span: Span) -> Result<String, Error> {
        self.expand_with(word, &state.env_pairs(), span)
    }

    fn expand_optional(
        &self,
        state: &StageState,
        word: Option<&String>,
        span: Span,
    ) -> Result<Option<String>, Error> {
        word.map(|w| self.expand(state, w, span)).transpose()
    }

    /// The display text of an instruction: variables expanded (BuildKit's
    /// `processCmdEnv`), keyword upper-cased. RUN keeps quotes and unset names.
    fn display(&self, state: &StageState, original: &str, keep_raw: bool) -> String {
        let lexer = if keep_raw {
            self.lexer.raw_quotes(true).skip_unset_env(true)
        } else {
            self.lexer
        };
        let text = lexer
            .process_word(original, &state.env_pairs())
            .map(|e| e.value)
            .unwrap_or_else(|_| original.to_string());
        match text.split_once(' ') {
            Some((keyword, rest)) => format!("{} {rest}", keyword.to_uppercase()),
            None => text.to_uppercase(),
        }
    }

    fn add_op(
        &mut self,
        definition: Definition,
        inputs: Vec<NodeIndex>,
        metadata: Metadata,
    ) -> NodeIndex {
        let key = (definition.cache_definition(), inputs.clone());
        if let Some(&node) = self.dedupe.get(&key) {
            return node;
        }
        let node = self.graph.add_node(Op {
            definition,
            metadata,
        });
        for (number, input) in inputs.into_iter().enumerate() {
            self.graph.add_edge(input, node, number);
        }
        self.dedupe.insert(key, node);
        node
    }

    fn image_op(
        &mut self,
        image: &ResolvedImage,
        platform: &Platform,
        metadata: Metadata,
    ) -> NodeIndex {
        self.add_op(
            Definition::Source(Source::Image {
                reference: image.reference_normalised.clone(),
                manifest_digest: image.manifest_digest.clone(),
                platform: platform.to_string(),
            }),
            Vec::new(),
            metadata,
        )
    }

    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
        span: Span,
    ) -> Result<ResolvedImage, Error> {
        self.resolver
            .resolve(reference, platform)
            .map_err(|message| Error::Resolve {
                reference: reference.to_string(),
                message,
                span,
            })
    }

    /// The final state of stage `index`, planning it (and what it needs) once.
    fn stage(&mut self, index: usize) -> Result<StageState, Error> {
        if let Some(done) = self.planned.get(&index) {
            return Ok(done.clone());
        }
        let stages = self.stages;
        let stage = &stages.stages[index];
        let (mut state, triggers) = self.start_stage(stage)?;
        for trigger in &triggers {
            self.dispatch(&mut state, trigger, true)?;
        }
        for command in &stage.commands {
            self.dispatch(&mut state, command, false)?;
        }
        self.planned.insert(index, state.clone());
        Ok(state)
    }

    /// FROM: the base (stage, scratch or image), its ONBUILD triggers, and the
    /// initial environment.
    fn start_stage(&mut self, stage: &Stage) -> Result<(StageState, Vec<Command>), Error> {
        let span = stage.from.span;
        let base = self.expand_with(&stage.base, &self.global_args, span)?;
        if base.is_empty() {
            return Err(Error::invalid(
                format!("base name ({}) should not be blank", stage.base),
                span,
            ));
        }
        let platform = match &stage.platform {
            Some(written) => {
                let value = self.expand_with(written, &self.global_args, span)?;
                if value.is_empty() {
                    return Err(Error::invalid(
                        format!("empty platform value from expression {written}"),
                        span,
                    ));
                }
                Platform::parse(&value).map_err(|m| {
                    Error::invalid(format!("failed to parse platform {written}: {m}"), span)
                })?
            }
            None => self.options.target_platform.clone(),
        };
        let label = if self.show_stage_names {
            stage.display_name()
        } else {
            String::new()
        };
        let ignore_cache = stage.name.as_ref().is_some_and(|name| {
            self.options
                .no_cache_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name))
        });
        let lower = base.to_lowercase();
        let parent = self.stages.stages[..stage.index]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index);

        let steps = stage
            .commands
            .iter()
            .filter(|c| makes_step(&c.instruction))
            .count();

        if let Some(parent) = parent {
            let mut state = self.stage(parent)?;
            let triggers = std::mem::take(&mut state.config.on_build);
            let triggers = parse_triggers(&triggers, span)?;
            state.index = stage.index;
            state.label = label;
            state.cmd_set = false;
            state.step = 0;
            state.total = steps + triggers.len();
            state.ignore_cache = ignore_cache;
            return Ok((state, triggers));
        }

        let (config, history, author, base_image, rootfs_total) = if base == EMPTY_IMAGE {
            (ImageConfig::default(), Vec::new(), None, None, 0)
        } else {
            let resolved = self.resolve(&base, &platform, span)?;
            (
                resolved.config.clone(),
                resolved.history.clone(),
                resolved.author.clone(),
                Some(resolved),
                1,
            )
        };
        let mut config = config;
        let triggers = parse_triggers(&std::mem::take(&mut config.on_build), span)?;
        let mut state = StageState {
            index: stage.index,
            label,
            platform: platform.clone(),
            config,
            author,
            env: Vec::new(),
            build_args: Vec::new(),
            workdir: "/".to_string(),
            user: String::new(),
            rootfs: NodeIndex::end(),
            base: None,
            layers: Vec::new(),
            history,
            cmd_set: false,
            step: 0,
            total: rootfs_total + steps + triggers.len(),
            ignore_cache,
        };
        state.rootfs = match &base_image {
            // An image without layers is an empty filesystem with a config.
            Some(image)
                if !(image.diff_ids.is_empty() && image.history.iter().all(|h| h.empty_layer)) =>
            {
                let pinned = pinned_reference(image);
                let name = state.step_name(&format!("FROM {pinned}"), false);
                let metadata = state.metadata(name, span, false);
                let node = self.image_op(image, &platform, metadata);
                state.base = Some(BaseImage {
                    reference: image.reference_normalised.clone(),
                    manifest_digest: image.manifest_digest.clone(),
                    diff_ids: image.diff_ids.clone(),
                    node,
                });
                node
            }
            _ => {
                let metadata = state.metadata(EMPTY_IMAGE.to_string(), span, false);
                self.add_op(Definition::Source(Source::Scratch), Vec::new(), metadata)
            }
        };

        // BuildKit makes sure PATH is always set, then starts from the config.
        if state.config.env_value("PATH").is_none() {
            state.config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for entry in state.config.env.clone() {
            let (key, value) = entry.split_once('=').unwrap_or((&entry, ""));
            state.set_env(key, value);
        }
        if !state.config.working_dir.is_empty() {
            let workdir = normalise_workdir("/", &state.config.working_dir)
                .map_err(|m| Error::invalid(m, span))?;
            state.config.working_dir = workdir.clone();
            state.workdir = workdir;
        }
        state.user = state.config.user.clone();
        Ok((state, triggers))
    }

    fn dispatch(
        &mut self,
        state: &mut StageState,
        command: &Command,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        match &command.instruction {
            Instruction::From(_) => {}
            Instruction::Arg(decls) => self.dispatch_arg(state, decls, span)?,
            Instruction::Env(pairs) => {
                let env = state.env_pairs();
                let mut expanded = Vec::new();
                for pair in pairs {
                    expanded.push((
                        self.expand_with(&pair.key, &env, span)?,
                        self.expand_with(&pair.value, &env, span)?,
                    ));
                }
                let mut text = String::from("ENV");
                for (key, value) in expanded {
                    state.set_env(&key, &value);
                    state.config.set_env(&key, &value);
                    text.push_str(&format!(" {key}={value}"));
                }
                state.commit(text, None);
            }
            Instruction::Label(pairs) => {
                let env = state.env_pairs();
                let mut text = String::from("LABEL");
                let mut expanded = Vec::new();
                for pair in pairs {
                    expanded.push((
                        self.expand_with(&pair.key, &env, span)?,
                        self.expand_with(&pair.value, &env, span)?,
                    ));
                }
                for (key, value) in expanded {
                    text.push_str(&format!(" {key}={value}"));
                    state.config.labels.insert(key, value);
                }
                state.commit(text, None);
            }
            Instruction::Run(run) => self.dispatch_run(state, command, run, onbuild)?,
            Instruction::Cmd(line) => {
                let args = command_args(state, line);
                state.commit(format!("CMD {}", go_quote_list(&args)), None);
                state.config.cmd = Some(args);
                state.config.args_escaped = true;
                state.cmd_set = true;
            }
            Instruction::Entrypoint(line) => {
                let args = command_args(state, line);
                state.commit(format!("ENTRYPOINT {}", go_quote_list(&args)), None);
                state.config.entrypoint = Some(args);
                if !state.cmd_set {
                    state.config.cmd = None;
                }
            }
            Instruction::Shell(shell) => {
                state.config.shell = shell.clone();
                state.commit(format!("SHELL {}", go_list(shell)), None);
            }
            Instruction::Maintainer(name) => {
                state.author = Some(name.clone());
                state.commit(format!("MAINTAINER {name}"), None);
            }
            Instruction::Expose(words) => {
                let env = state.env_pairs();
                let mut ports = BTreeSet::new();
                for word in words {
                    let split =
                        self.lexer
                            .process_words(word, &env)
                            .map_err(|e| Error::Expansion {
                                word: word.clone(),
                                message: e.message,
                                span,
                            })?;
                    for spec in split {
                        ports.extend(parse_port_spec(&spec).map_err(|m| Error::invalid(m, span))?);
                    }
                }
                let text: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
                for port in ports {
                    state.config.exposed_ports.insert(port, Empty {});
                }
                state.commit(format!("EXPOSE map[{}]", text.join(" ")), None);
            }
            Instruction::Volume(volumes) => {
                let mut expanded = Vec::new();
                for volume in volumes {
                    let value = self.expand(state, volume, span)?;
                    if value.is_empty() {
                        return Err(Error::invalid(
                            "VOLUME specified can not be an empty string",
                            span,
                        ));
                    }
                    expanded.push(value);
                }
                for volume in &expanded {
                    state.config.volumes.insert(volume.clone(), Empty {});
                }
                state.commit(format!("VOLUME {}", go_list(&expanded)), None);
            }
            Instruction::User(user) => {
                let user = self.expand(state, user, span)?;
                state.user = user.clone();
                state.config.user = user.clone();
                state.commit(format!("USER {user}"), None);
            }
            Instruction::Workdir(path) => self.dispatch_workdir(state, command, path, onbuild)?,
            Instruction::StopSignal(signal) => {
                let signal = self.expand(state, signal, span)?;
                check_signal(&signal).map_err(|m| Error::invalid(m, span))?;
                state.config.stop_signal = signal.clone();
                state.commit(format!("STOPSIGNAL {signal}"), None);
            }
            Instruction::Healthcheck(check) => {
                let health = health_config(check);
                state.commit(format!("HEALTHCHECK {}", health.go_text()), None);
                state.config.healthcheck = Some(health);
            }
            Instruction::Copy(copy) => self.dispatch_copy(
                state,
                command,
                &copy.transfer,
                CopyKind::Copy {
                    from: copy.from.as_deref(),
                    parents: copy.parents,
                },
                onbuild,
            )?,
            Instruction::Add(add) => {
                self.dispatch_copy(state, command, &add.transfer, CopyKind::Add(add), onbuild)?
            }
            // Stored verbatim for images built on this one; BuildKit writes no
            // history entry for it.
            Instruction::Onbuild(onbuild) => state.config.on_build.push(onbuild.expression.clone()),
        }
        Ok(())
    }

    fn dispatch_arg(
        &mut self,
        state: &mut StageState,
        decls: &[instruction::ArgDecl],
        span: Span,
    ) -> Result<(), Error> {
        let mut text = Vec::new();
        for decl in decls {
            self.declared_args.insert(decl.name.clone());
            let given = self.options.build_args.get(&decl.name);
            let mut value = None;
            if let Some(given) = given {
                value = Some(given.clone());
            } else if let Some(default) = &decl.default {
                value = Some(self.expand(state, default, span)?);
            } else if let Some((_, global)) = self.global_args.iter().find(|(k, _)| *k == decl.name)
            {
                // A global ARG (or a predefined one) redeclared in the stage.
                value = Some(global.clone());
            }
            if let Some(value) = &value {
                state.set_arg(&decl.name, value);
                text.push(format!("{}={value}", decl.name));
            } else {
                text.push(decl.name.clone());
            }
            state.build_args.push((decl.name.clone(), value));
        }
        state.commit(format!("ARG {}", text.join(" ")), None);
        Ok(())
    }

    fn dispatch_workdir(
        &mut self,
        state: &mut StageState,
        command: &Command,
        path: &str,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        let path = self.expand(state, path, span)?;
        let workdir = normalise_workdir(&state.config.working_dir, &path)
            .map_err(|m| Error::invalid(format!("normalizing workdir: {m}"), span))?;
        state.config.working_dir = workdir.clone();
        state.workdir = workdir.clone();
        if workdir == "/" {
            state.commit(format!("WORKDIR {workdir}"), None);
            return Ok(());
        }
        let display = self.display(state, &command.original, false);
        let name = state.step_name(&display, onbuild);
        let metadata = state.metadata(name, span, onbuild);
        let node = self.add_op(
            Definition::File(FileOp::Mkdir(Mkdir {
                path: workdir.clone(),
                owner: state.config.user.clone(),
                mode: 0o755,
                make_parents: true,
            })),
            vec![state.rootfs],
            metadata,
        );
        state.rootfs = node;
        state.commit(format!("WORKDIR {workdir}"), Some((node, true)));
        Ok(())
    }

    fn dispatch_run(
        &mut self,
        state: &mut StageState,
        command: &Command,
        run: &instruction::Run,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        let mut display = self.display(state, &command.original, true);
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
            let whole_command_is_heredoc =
                matches!(syntax::parse_heredoc_word(&args[0]), Ok(Some(_)));
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

        let mut inputs = vec![state.rootfs];
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
                            .map_err(|e| format!("failed to process {value:?}: {}", e.message))
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
            let input = match (mount.kind, &mount.from) {
                (MountType::Bind | MountType::Cache, Some(from)) => {
                    Some(self.reference_input(state, from, span)?)
                }
                (MountType::Bind, None) => {
                    let include = mount
                        .source
                        .as_deref()
                        .map(|s| clean(&format!("/{s}")).trim_start_matches('/').to_string())
                        .filter(|s| !s.is_empty())
                        .into_iter()
                        .collect();
                    Some(self.context_op(state, include, Vec::new(), span, onbuild))
                }
                _ => None,
            };
            let input = input.map(|node| {
                inputs.push(node);
                inputs.len() - 1
            });
            mounts.push(ExecMount {
                kind: mount.kind.as_str().to_string(),
                target,
                input,
                source: mount.source.clone(),
                read_only: mount.read_only,
                id: mount.id.clone(),
                sharing: (mount.kind == MountType::Cache).then(|| sharing_name(mount.sharing)),
                size: mount.size,
                mode: mount.mode,
                uid: mount.uid,
                gid: mount.gid,
                required: mount.required,
                env: mount.env.clone(),
            });
        }

        let network = match run.network {
            None | Some(Network::Default) => self.options.network.as_deref().unwrap_or("default"),
            Some(Network::None) => "none",
            Some(Network::Host) => "host",
        };
        let security = match run.security {
            None | Some(Security::Sandbox) => "sandbox",
            Some(Security::Insecure) => "insecure",
        };
        let mut explain = BTreeMap::new();
        explain.insert("command".to_string(), go_quote_list(&argv));
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
        let proxy_env = self
            .options
            .build_args
            .iter()
            .filter(|(name, _)| PROXY_ARGS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let hostname = self
            .options
            .build_args
            .get("BUILDKIT_SANDBOX_HOSTNAME")
            .cloned()
            .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string());

        let exec = Exec {
            argv: argv.clone(),
            env: state.env_lines(),
            user: state.user.clone(),
            workdir: state.workdir.clone(),
            hostname,
            platform: state.platform.to_string(),
            network: network.to_string(),
            security: security.to_string(),
            mounts,
            files,
            explain,
            proxy_env,
        };
        let name = state.step_name(&display, onbuild);
        let metadata = state.metadata(name, span, onbuild);
        let node = self.add_op(Definition::Exec(exec), inputs, metadata);
        state.rootfs = node;
        let created_by = format!(
            "RUN {} # buildkit",
            run_command_string(&argv, &state.build_args, &env_pairs)
        );
        state.commit(created_by, Some((node, false)));
        Ok(())
    }

    fn context_op(
        &mut self,
        state: &StageState,
        include: Vec<String>,
        exclude: Vec<String>,
        span: Span,
        onbuild: bool,
    ) -> NodeIndex {
        let metadata = Metadata {
            name: "[internal] load build context".to_string(),
            ..state.metadata(String::new(), span, onbuild)
        };
        self.add_op(
            Definition::Source(Source::Context {
                name: "context".to_string(),
                include,
                exclude,
            }),
            Vec::new(),
            metadata,
        )
    }

    /// `COPY --from` / `--mount from=`: an earlier stage (name or index) or an image.
    fn reference_input(
        &mut self,
        state: &StageState,
        from: &str,
        span: Span,
    ) -> Result<NodeIndex, Error> {
        let stages = self.stages;
        let current = stages.stages[state.index].display_name();
        let too_late = || Error::Reference {
            message: format!(
                "cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"
            ),
            span,
        };
        if let Ok(index) = from.parse::<usize>() {
            if index >= stages.stages.len() {
                return Err(Error::Reference {
                    message: format!("invalid stage index {index}"),
                    span,
                });
            }
            if index >= state.index {
                return Err(too_late());
            }
            return Ok(self.stage(index)?.rootfs);
        }
        let lower = from.to_lowercase();
        if let Some(found) = stages
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            if found.index >= state.index {
                return Err(too_late());
            }
            return Ok(self.stage(found.index)?.rootfs);
        }
        let platform = self.options.target_platform.clone();
        let image = self.resolve(from, &platform, span)?;
        let metadata = Metadata {
            name: format!("FROM {}", pinned_reference(&image)),
            stage: None,
            span: Some(span),
            ignore_cache: false,
            onbuild: false,
        };
        Ok(self.image_op(&image, &platform, metadata))
    }

    fn dispatch_copy(
        &mut self,
        state: &mut StageState,
        command: &Command,
        transfer: &Transfer,
        kind: CopyKind<'_>,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        let add = match kind {
            CopyKind::Add(add) => Some(add),
            CopyKind::Copy { .. } => None,
        };
        let (from, parents) = match kind {
            CopyKind::Copy { from, parents } => (from, parents),
            CopyKind::Add(_) => (None, false),
        };
        let env = state.env_pairs();
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
        let checksum = self.expand_optional(state, add.and_then(|a| a.checksum.as_ref()), span)?;
        if let Some(checksum) = &checksum {
            instruction::values::parse_checksum(checksum).map_err(|m| Error::invalid(m, span))?;
            if paths.len() + inline.len() != 1 {
                return Err(Error::invalid(
                    "checksum can't be specified for multiple sources",
                    span,
                ));
            }
            if !paths.first().is_some_and(|p| is_http_source(p)) {
                return Err(Error::invalid(
                    "checksum can't be specified for non-HTTP(S) sources",
                    span,
                ));
            }
        }

        let display = self.display(state, &command.original, false);
        let name = state.step_name(&display, onbuild);
        let dest_path = relative_to_workdir(&state.workdir, &dest);
        let keyword = if add.is_some() { "ADD" } else { "COPY" };

        let mut inputs = vec![state.rootfs];
        let local: Vec<&String> = paths
            .iter()
            .filter(|p| add.is_none() || !(is_http_source(p) || is_git_source(p)))
            .collect();
        let local_input = if local.is_empty() {
            None
        } else {
            let node = match from {
                Some(from) => self.reference_input(state, from, span)?,
                None => {
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
                    self.context_op(state, include, exclude.clone(), span, onbuild)
                }
            };
            inputs.push(node);
            Some(inputs.len() - 1)
        };

        let mut sources = Vec::new();
        for path in &paths {
            if add.is_none() && is_git_source(path) {
                return Err(Error::invalid("source can't be a git ref for COPY", span));
            }
            if let Some(add) = add.filter(|_| is_git_source(path)) {
                let metadata = state.metadata(name.clone(), span, onbuild);
                let node = self.add_op(
                    Definition::Source(Source::Git {
                        url: path.clone(),
                        keep_git_dir: add.keep_git_dir,
                    }),
                    Vec::new(),
                    metadata,
                );
                inputs.push(node);
                sources.push(plain_source(inputs.len() - 1, "/".to_string()));
            } else if is_http_source(path) {
                let Some(add) = add else {
                    return Err(Error::invalid("source can't be a URL for COPY", span));
                };
                let filename = url_filename(path);
                // Shown as BuildKit shows an HTTP source: the URL.
                let metadata = state.metadata(path.clone(), span, onbuild);
                let node = self.add_op(
                    Definition::Source(Source::Url {
                        url: path.clone(),
                        checksum: checksum.clone(),
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
                sources.push(source);
            } else {
                let input = local_input.unwrap_or(1);
                let (path, include_patterns) = if parents {
                    match path.split_once("/./") {
                        Some((parent, pattern)) => (
                            parent.to_string(),
                            vec![
                                clean(&format!("/{pattern}"))
                                    .trim_start_matches('/')
                                    .to_string(),
                            ],
                        ),
                        None => (
                            "/".to_string(),
                            vec![
                                clean(&format!("/{path}"))
                                    .trim_start_matches('/')
                                    .to_string(),
                            ],
                        ),
                    }
                } else {
                    (path.clone(), Vec::new())
                };
                sources.push(CopySource::Path {
                    input,
                    path: clean(&format!("/{path}")),
                    include_patterns,
                    follow_symlinks: true,
                    copy_dir_contents_only: true,
                    allow_wildcard: true,
                    allow_empty_wildcard: true,
                    unpack: add.is_some_and(|a| a.unpack != Some(false)),
                });
            }
        }
        sources.extend(inline.iter().cloned());

        let copy = Copy {
            sources,
            dest: dest_path,
            chown: chown.clone(),
            chmod: chmod.clone(),
            link: transfer.link,
            parents,
            exclude,
            create_dest_path: true,
        };
        let metadata = state.metadata(name, span, onbuild);
        let node = self.add_op(Definition::File(FileOp::Copy(copy)), inputs, metadata);
        state.rootfs = node;

        let mut created_by = keyword.to_string();
        if parents {
            created_by.push_str(" --parents");
        }
        if let Some(chown) = &chown {
            created_by.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &chmod {
            created_by.push_str(&format!(" --chmod={chmod}"));
        }
        for path in &paths {
            created_by.push(' ');
            created_by.push_str(path);
        }
        for source in &inline {
            if let CopySource::Inline { name, .. } = source {
                created_by.push_str(&format!(" <<{name}"));
            }
        }
        created_by.push_str(&format!(" {dest} # buildkit"));
        state.commit(created_by, Some((node, false)));
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum CopyKind<'c> {
    Copy {
        from: Option<&'c str>,
        parents: bool,
    },
    Add(&'c instruction::Add),
}

/// Predefined ARGs, in BuildKit's order (values in `predefined_args`).
const PREDEFINED_ARGS: [&str; 9] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

fn find_target(stages: &Stages, target: Option<&str>) -> Result<usize, Error> {
    let Some(target) = target else {
        return Ok(stages.stages.len().saturating_sub(1));
    };
    let lower = target.to_lowercase();
    stages
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
        .ok_or_else(|| Error::UnknownTarget {
            target: target.to_string(),
            suggestion: instruction::closest(
                target,
                stages.stages.iter().filter_map(|s| s.name.as_deref()),
            )
            .map(str::to_string),
            span: Span::default(),
        })
}

/// How many states BuildKit's step names count: stages, plus one per
/// `COPY --from`/`--mount from=` that is no stage name (images and mounts
/// without `from` included). With one state, step names carry no stage name.
fn count_stage_states(stages: &Stages) -> usize {
    let names: BTreeSet<&str> = stages
        .stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    let is_stage = |name: &str| names.contains(name.to_lowercase().as_str());
    let mut count = stages.stages.len();
    for command in stages.stages.iter().flat_map(|s| &s.commands) {
        match &command.instruction {
            Instruction::Copy(copy) => {
                if let Some(from) = &copy.from
                    && from.parse::<usize>().is_err()
                    && !is_stage(from)
                {
                    count += 1;
                }
            }
            Instruction::Run(run) => {
                for spec in &run.mounts {
                    let from = spec
                        .resolve(&mut |v| Ok(v.to_string()), 0)
                        .ok()
                        .and_then(|m| m.from)
                        .unwrap_or_else(|| EMPTY_IMAGE.to_string());
                    if !is_stage(&from) {
                        count += 1;
                    }
                }
            }
            _ => {}
        }
    }
    count
}

/// Instructions that make a numbered step (BuildKit's `cmdTotal`).
fn makes_step(instruction: &Instruction) -> bool {
    matches!(
        instruction,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

/// Base image triggers, parsed as BuildKit does, located at the FROM line.
fn parse_triggers(triggers: &[String], span: Span) -> Result<Vec<Command>, Error> {
    triggers
        .iter()
        .map(|trigger| {
            let fail = |message: String| Error::Onbuild {
                trigger: trigger.clone(),
                message,
                span,
            };
            let file =
                syntax::parse(trigger.as_bytes()).map_err(|e| fail(e.message().to_string()))?;
            let [node] = file.instructions.as_slice() else {
                return Err(fail(
                    "onbuild trigger should be a single expression".to_string(),
                ));
            };
            let keyword = node.keyword.to_uppercase();
            if matches!(keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(fail(format!(
                    "{keyword} isn't allowed as an ONBUILD trigger"
                )));
            }
            let mut command = instruction::parse_command(node).map_err(|e| fail(e.to_string()))?;
            command.span = span;
            Ok(command)
        })
        .collect()
}

fn pinned_reference(image: &ResolvedImage) -> String {
    if image.manifest_digest.is_empty() || image.reference_normalised.contains('@') {
        image.reference_normalised.clone()
    } else {
        format!("{}@{}", image.reference_normalised, image.manifest_digest)
    }
}

fn command_args(state: &StageState, line: &CommandLine) -> Vec<String> {
    if line.prepend_shell {
        state.with_shell(&line.args)
    } else {
        line.args.clone()
    }
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

fn sharing_name(sharing: Sharing) -> String {
    match sharing {
        Sharing::Shared => "shared",
        Sharing::Private => "private",
        Sharing::Locked => "locked",
    }
    .to_string()
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

fn health_config(check: &Healthcheck) -> HealthConfig {
    let nanos = |d: &Option<std::time::Duration>| {
        d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    };
    match check {
        Healthcheck::None => HealthConfig {
            test: vec!["NONE".to_string()],
            ..HealthConfig::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => HealthConfig {
            test: test.clone(),
            interval: nanos(interval),
            timeout: nanos(timeout),
            start_period: nanos(start_period),
            start_interval: nanos(start_interval),
            retries: retries.unwrap_or(0),
        },
    }
}

/// `nat.ParsePortSpec` for EXPOSE: `[ip:[hostPort]:]port[-port][/proto]`,
/// ranges expanded, protocol lower-cased.
fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (raw, protocol) = match spec.split_once('/') {
        Some((raw, protocol)) if !protocol.is_empty() => (raw, protocol.to_ascii_lowercase()),
        Some((raw, _)) => (raw, "tcp".to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {protocol}"));
    }
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let bad = || format!("invalid containerPort: {container}");
    let (low, high) = container.split_once('-').unwrap_or((container, container));
    let low: u16 = low.parse().map_err(|_| bad())?;
    let high: u16 = high.parse().map_err(|_| bad())?;
    if high < low {
        return Err(format!(
            "invalid range specified for container port: {container}"
        ));
    }
    Ok((low..=high)
        .map(|port| format!("{port}/{protocol}"))
        .collect())
}

/// `signal.ParseSignal`: a non-zero number or a Linux signal name.
fn check_signal(signal: &str) -> Result<(), String> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ", "RTMIN", "RTMAX",
    ];
    if let Ok(number) = signal.parse::<u32>() {
        return if number == 0 {
            Err(format!("invalid signal: {signal}"))
        } else {
            Ok(())
        };
    }
    let upper = signal.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = ["RTMIN+", "RTMAX-"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
    });
    if NAMES.contains(&name) || realtime {
        Ok(())
    } else {
        Err(format!("invalid signal: {signal}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(parse_port_spec("127.0.0.1:80:8080").unwrap(), ["8080/tcp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("http").is_err());
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "KILL"] {
            assert!(check_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "SIGFOO", "", "RTMIN+99"] {
            assert!(check_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dest_paths() {
        assert_eq!(relative_to_workdir("/app", "."), "/app/");
        assert_eq!(relative_to_workdir("/app", "bin/"), "/app/bin/");
        assert_eq!(relative_to_workdir("/app", "bin"), "/app/bin");
        assert_eq!(relative_to_workdir("/app", "/etc/x/"), "/etc/x/");
        assert_eq!(relative_to_workdir("/", "/"), "/");
        assert_eq!(relative_to_workdir("/", "a/../b"), "/b");
    }

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
