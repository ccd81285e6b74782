//! The planner core: the walk over the stages the target needs, word expansion, the op
//! graph (identical ops are one node) and the dispatch of each instruction to its
//! concern, as BuildKit's `dockerfile2llb` splits `convert_*.go`: stage start and ARG
//! scoping ([`super::stage`]), RUN ([`super::run`]), COPY and ADD ([`super::copy`]) and
//! the image-config instructions ([`super::metadata`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};

use super::image::Platform;
use super::op::{Definition, Metadata, Op, Source};
use super::stage::{count_stage_states, find_target, pinned_reference};
use super::state::StageState;
use super::{Error, ImageResolver, Options, Plan, PlannedStage, ResolvedImage, TargetImage};
use crate::instruction::{Command, Instruction, Stages};
use crate::shell::{Env, Lexer};
use crate::syntax::Span;

pub(crate) struct Planner<'a> {
    pub(super) stages: &'a Stages,
    pub(super) options: &'a Options,
    resolver: &'a mut dyn ImageResolver,
    pub(super) lexer: Lexer,
    target: usize,
    /// Predefined ARGs and global ARGs: what FROM lines and `ARG NAME` see.
    pub(super) global_args: Vec<(String, String)>,
    graph: DiGraph<Op, usize>,
    /// (definition, inputs) → node, so identical ops are one node.
    dedupe: HashMap<(Vec<u8>, Vec<NodeIndex>), NodeIndex>,
    pub(super) planned: BTreeMap<usize, StageState>,
    pub(super) declared_args: BTreeSet<String>,
    pub(super) show_stage_names: bool,
    /// `SOURCE_DATE_EPOCH`, resolved once the global ARGs are known.
    pub(super) source_date_epoch: Option<u64>,
    /// Base images whose config names another platform than the one asked for
    /// (BuildKit's InvalidBaseImagePlatform), as warnings.
    platform_warnings: Vec<String>,
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
            platform_warnings: Vec::new(),
            source_date_epoch: None,
        };
        planner.global_args = planner.predefined_args(&target_name);
        planner.global_meta_args()?;
        planner.resolve_source_date_epoch()?;
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
        let mut warnings = std::mem::take(&mut self.platform_warnings);
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
            source_date_epoch: self.source_date_epoch,
        })
    }

    pub(super) fn expand_with(
        &self,
        word: &str,
        env: &dyn Env,
        span: Span,
    ) -> Result<String, Error> {
        self.lexer
            .process_word(word, env)
            .map(|expansion| expansion.value)
            .map_err(|error| Error::Expansion {
                word: word.to_string(),
                message: error.message,
                span,
            })
    }

    pub(super) fn expand(
        &self,
        state: &StageState,
        word: &str,
        span: Span,
    ) -> Result<String, Error> {
        self.expand_with(word, &state.env_pairs(), span)
    }

    pub(super) fn expand_optional(
        &self,
        state: &StageState,
        word: Option<&String>,
        span: Span,
    ) -> Result<Option<String>, Error> {
        word.map(|w| self.expand(state, w, span)).transpose()
    }

    /// The display text of an instruction: variables expanded (BuildKit's
    /// `processCmdEnv`), keyword upper-cased. RUN keeps quotes and unset names.
    pub(super) fn display(&self, state: &StageState, original: &str, keep_raw: bool) -> String {
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

    /// Adds an op over `inputs`, or finds the identical one already planned.
    pub(super) fn add_op(
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

    pub(super) fn image_op(
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

    pub(super) fn context_op(
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

    pub(super) fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
        span: Span,
    ) -> Result<ResolvedImage, Error> {
        let image = self
            .resolver
            .resolve(reference, platform)
            .map_err(|source| Error::Resolve {
                reference: reference.to_string(),
                source,
                span,
            })?;
        if let Some(actual) = &image.platform
            && platform.select(std::iter::once((actual, ()))).is_none()
        {
            let warning = format!(
                "InvalidBaseImagePlatform: Base image {reference} was pulled with platform \
                 \"{actual}\", expected \"{platform}\" for current build"
            );
            if !self.platform_warnings.contains(&warning) {
                self.platform_warnings.push(warning);
            }
        }
        Ok(image)
    }

    /// `COPY --from` / `--mount from=`: an earlier stage (name or index) or an image.
    pub(super) fn reference_input(
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

    /// One instruction of a stage (or an ONBUILD trigger of its base).
    pub(super) fn dispatch(
        &mut self,
        state: &mut StageState,
        command: &Command,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        match &command.instruction {
            Instruction::From(_) => {}
            Instruction::Arg(decls) => self.dispatch_arg(state, decls, span)?,
            Instruction::Env(pairs) => self.dispatch_env(state, pairs, span)?,
            Instruction::Label(pairs) => self.dispatch_label(state, pairs, span)?,
            Instruction::Run(run) => self.dispatch_run(state, command, run, onbuild)?,
            Instruction::Cmd(line) => super::metadata::dispatch_cmd(state, line),
            Instruction::Entrypoint(line) => super::metadata::dispatch_entrypoint(state, line),
            Instruction::Shell(shell) => super::metadata::dispatch_shell(state, shell),
            Instruction::Maintainer(name) => super::metadata::dispatch_maintainer(state, name),
            Instruction::Expose(words) => self.dispatch_expose(state, words, span)?,
            Instruction::Volume(volumes) => self.dispatch_volume(state, volumes, span)?,
            Instruction::User(user) => self.dispatch_user(state, user, span)?,
            Instruction::Workdir(path) => self.dispatch_workdir(state, command, path, onbuild)?,
            Instruction::StopSignal(signal) => self.dispatch_stop_signal(state, signal, span)?,
            Instruction::Healthcheck(check) => super::metadata::dispatch_healthcheck(state, check),
            Instruction::Copy(copy) => self.dispatch_copy(state, command, copy.into(), onbuild)?,
            Instruction::Add(add) => self.dispatch_copy(state, command, add.into(), onbuild)?,
            // Stored verbatim for images built on this one; BuildKit writes no
            // history entry for it.
            Instruction::Onbuild(onbuild) => state.config.on_build.push(onbuild.expression.clone()),
        }
        Ok(())
    }
}
