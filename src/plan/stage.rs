//! Stage start and ARG scoping (BuildKit's `dispatchState` set-up and `dispatchArg`): the
//! base of each stage (an earlier stage, `scratch` or an image), its ONBUILD triggers and
//! initial environment, the predefined and global ARGs, and `--build-arg`.

use std::collections::BTreeSet;

use petgraph::graph::NodeIndex;

use super::builder::Planner;
use super::image::{ImageConfig, Platform};
use super::op::{Definition, Source};
use super::paths::normalise_workdir;
use super::state::StageState;
use super::{BaseImage, Error, ResolvedImage};
use crate::instruction::{self, Command, Instruction, Stage, Stages};
use crate::syntax::{self, Span};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const EMPTY_IMAGE: &str = "scratch";
/// The build arg (or global ARG) that fixes the build's times.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Usable without ARG; passed to RUN but kept out of keys and history.
pub(super) const PROXY_ARGS: [&str; 10] = [
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

/// What a stage's first state takes from its FROM line and the options, whatever the
/// base is.
struct StageStart {
    index: usize,
    label: String,
    ignore_cache: bool,
    /// Numbered steps of the stage's own instructions.
    steps: usize,
}

impl Planner<'_> {
    /// Whether a build arg was used (declared, or one that needs no declaration).
    pub(super) fn consumed(&self, name: &str) -> bool {
        self.declared_args.contains(name)
            || PROXY_ARGS.contains(&name)
            || PREDEFINED_ARGS.contains(&name)
            || name.starts_with("BUILDKIT_")
            || name == SOURCE_DATE_EPOCH
    }

    pub(super) fn predefined_args(&self, target_name: &str) -> Vec<(String, String)> {
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
    pub(super) fn global_meta_args(&mut self) -> Result<(), Error> {
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

    /// `SOURCE_DATE_EPOCH` as BuildKit's `dockerfile2llb` reads it once the global ARGs
    /// are known: the build arg when given (an empty one means none, overriding the
    /// Dockerfile), else the global ARG's value when not empty. The value must be whole
    /// seconds; the global ARG then holds it in that form.
    pub(super) fn resolve_source_date_epoch(&mut self) -> Result<(), Error> {
        let (value, span) = match self.options.build_args.get(SOURCE_DATE_EPOCH) {
            Some(given) => (given.clone(), Span::default()),
            None => match self
                .global_args
                .iter()
                .find(|(k, _)| k == SOURCE_DATE_EPOCH)
            {
                Some((_, value)) if !value.is_empty() => (value.clone(), self.epoch_arg_span()),
                _ => return Ok(()),
            },
        };
        let epoch = parse_epoch(&value, span)?;
        self.source_date_epoch = epoch;
        let slot = self
            .global_args
            .iter()
            .position(|(k, _)| k == SOURCE_DATE_EPOCH);
        match (slot, epoch) {
            (Some(i), Some(epoch)) => self.global_args[i].1 = epoch.to_string(),
            (Some(i), None) => {
                self.global_args.remove(i);
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// The global `ARG` that declares `SOURCE_DATE_EPOCH` last.
    fn epoch_arg_span(&self) -> Span {
        self.stages
            .global_args
            .iter()
            .rev()
            .find(|command| match &command.instruction {
                Instruction::Arg(decls) => decls.iter().any(|d| d.name == SOURCE_DATE_EPOCH),
                _ => false,
            })
            .map_or_else(Span::default, |command| command.span)
    }

    /// A build arg's value as the stages see it: `SOURCE_DATE_EPOCH` in its resolved
    /// form (an empty one is dropped), as BuildKit rewrites it.
    fn given_arg(&self, name: &str) -> Option<String> {
        let given = self.options.build_args.get(name)?;
        if name == SOURCE_DATE_EPOCH {
            return self.source_date_epoch.map(|e| e.to_string());
        }
        Some(given.clone())
    }

    /// ARG inside a stage: the build arg, else the default, else the global ARG of
    /// that name.
    pub(super) fn dispatch_arg(
        &mut self,
        state: &mut StageState,
        decls: &[instruction::ArgDecl],
        span: Span,
    ) -> Result<(), Error> {
        let mut text = Vec::new();
        for decl in decls {
            self.declared_args.insert(decl.name.clone());
            let mut value = None;
            if let Some(given) = self.given_arg(&decl.name) {
                value = Some(given);
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

    /// The final state of stage `index`, planning it (and what it needs) once.
    pub(super) fn stage(&mut self, index: usize) -> Result<StageState, Error> {
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
        let platform = self.stage_platform(stage, span)?;
        let start = StageStart {
            index: stage.index,
            label: {
                let mut parts = Vec::new();
                if self.options.prefix_platform {
                    parts.push(platform.to_string());
                }
                if self.show_stage_names {
                    parts.push(stage.display_name());
                }
                parts.join(" ")
            },
            ignore_cache: stage.name.as_ref().is_some_and(|name| {
                self.options
                    .no_cache_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(name))
            }),
            steps: stage
                .commands
                .iter()
                .filter(|c| makes_step(&c.instruction))
                .count(),
        };
        let lower = base.to_lowercase();
        let parent = self.stages.stages[..stage.index]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index);
        match parent {
            Some(parent) => self.start_from_stage(parent, start, span),
            None => self.start_from_image(&base, platform, start, span),
        }
    }

    /// `FROM --platform`, else the target platform.
    fn stage_platform(&self, stage: &Stage, span: Span) -> Result<Platform, Error> {
        let Some(written) = &stage.platform else {
            return Ok(self.options.target_platform.clone());
        };
        let value = self.expand_with(written, &self.global_args, span)?;
        if value.is_empty() {
            return Err(Error::invalid(
                format!("empty platform value from expression {written}"),
                span,
            ));
        }
        Platform::parse(&value)
            .map_err(|m| Error::invalid(format!("failed to parse platform {written}: {m}"), span))
    }

    /// `FROM <earlier stage>`: that stage's final state, and the ONBUILD triggers it set.
    fn start_from_stage(
        &mut self,
        parent: usize,
        start: StageStart,
        span: Span,
    ) -> Result<(StageState, Vec<Command>), Error> {
        let mut state = self.stage(parent)?;
        let triggers = std::mem::take(&mut state.config.on_build);
        let triggers = parse_triggers(&triggers, span)?;
        state.index = start.index;
        state.label = start.label;
        state.cmd_set = false;
        state.step = 0;
        state.total = start.steps + triggers.len();
        state.ignore_cache = start.ignore_cache;
        Ok((state, triggers))
    }

    /// `FROM scratch` or `FROM <image>`: a fresh state over the image's config.
    fn start_from_image(
        &mut self,
        base: &str,
        platform: Platform,
        start: StageStart,
        span: Span,
    ) -> Result<(StageState, Vec<Command>), Error> {
        let resolved = if base == EMPTY_IMAGE {
            None
        } else {
            Some(self.resolve(base, &platform, span)?)
        };
        // BuildKit's empty image (`emptyImage`) starts with working directory `/`.
        let mut config = resolved.as_ref().map_or_else(
            || ImageConfig {
                working_dir: "/".to_string(),
                ..ImageConfig::default()
            },
            |image| image.config.clone(),
        );
        let triggers = parse_triggers(&std::mem::take(&mut config.on_build), span)?;
        let mut state = StageState {
            index: start.index,
            label: start.label,
            platform: platform.clone(),
            config,
            author: resolved.as_ref().and_then(|image| image.author.clone()),
            env: Vec::new(),
            build_args: Vec::new(),
            workdir: "/".to_string(),
            user: String::new(),
            rootfs: NodeIndex::end(),
            base: None,
            layers: Vec::new(),
            history: resolved
                .as_ref()
                .map(|image| image.history.clone())
                .unwrap_or_default(),
            cmd_set: false,
            step: 0,
            total: usize::from(resolved.is_some()) + start.steps + triggers.len(),
            ignore_cache: start.ignore_cache,
        };
        state.rootfs = self.base_rootfs(&mut state, resolved.as_ref(), &platform, span);
        start_environment(&mut state, span)?;
        Ok((state, triggers))
    }

    /// The op of a stage's base filesystem: the image, or scratch.
    fn base_rootfs(
        &mut self,
        state: &mut StageState,
        image: Option<&ResolvedImage>,
        platform: &Platform,
        span: Span,
    ) -> NodeIndex {
        match image {
            // An image without layers is an empty filesystem with a config.
            Some(image)
                if !(image.diff_ids.is_empty() && image.history.iter().all(|h| h.empty_layer)) =>
            {
                let pinned = pinned_reference(image);
                let name = state.step_name(&format!("FROM {pinned}"), false);
                let metadata = state.metadata(name, span, false);
                let node = self.image_op(image, platform, metadata);
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
        }
    }
}

/// The environment, working directory and user a stage starts with, from its base config.
fn start_environment(state: &mut StageState, span: Span) -> Result<(), Error> {
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
    Ok(())
}

pub(super) fn find_target(stages: &Stages, target: Option<&str>) -> Result<usize, Error> {
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
pub(super) fn count_stage_states(stages: &Stages) -> usize {
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
/// A `SOURCE_DATE_EPOCH` value: whole seconds since 1970, or empty for none. (BuildKit
/// also takes `context` or a stage name there, to read the time from a source.)
fn parse_epoch(value: &str, span: Span) -> Result<Option<u64>, Error> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| Error::invalid(format!("invalid SOURCE_DATE_EPOCH: {value}"), span))
}

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

/// `name@digest`, as BuildKit shows a resolved image.
pub(super) fn pinned_reference(image: &ResolvedImage) -> String {
    if image.manifest_digest.is_empty() || image.reference_normalised.contains('@') {
        image.reference_normalised.clone()
    } else {
        format!("{}@{}", image.reference_normalised, image.manifest_digest)
    }
}
