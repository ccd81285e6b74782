//! Stages + build arguments + target to a DAG of ops (layer L3: pure and
//! synchronous; base images are looked up through [`ImageResolver`]).
//!
//! This follows BuildKit's `dockerfile2llb`: ARG scoping and predefined ARGs,
//! word expansion per instruction, stage references (FROM, `COPY --from`,
//! `RUN --mount from=`), ONBUILD triggers of base images, pruning to the
//! target, and the image config and history the build writes.
//!
//! # What the solver does with each op
//!
//! Inputs are incoming edges numbered by weight ([`Plan::inputs`]); a cache key
//! is `sha256(kind, Definition::cache_definition(), input keys…)`, except that
//! a `Context` source is keyed by the content digest of the files it selects.
//!
//! - `Source::Image`: pull/unpack `reference@manifest_digest` for `platform`.
//!   `Source::Scratch`: the empty filesystem. `Source::Context`: the local
//!   context filtered by `include` (all when empty), `exclude` and
//!   `.dockerignore`. `Source::Url`: download to `/<filename>`, verifying
//!   `checksum` when given. `Source::Git`: `reference` of `remote` (the default
//!   branch when empty) resolved to a commit, checked against `checksum`, and its
//!   files (`subdir` only, when given; with `.git` when `keep_git_dir`;
//!   submodules too when `submodules`), keyed by that commit.
//! - `Exec`: run `argv` on a snapshot of input 0 with exactly `env` (plus each
//!   `proxy_env` entry whose name `env` lacks), `user` (empty = root; names
//!   via the rootfs `/etc/passwd`), `workdir` (created if missing), `hostname`,
//!   `network`, `security`, the `mounts` (bind/cache read `source` in their
//!   `input`; cache ids persist across builds; secret/ssh come from the
//!   session), and `files` written read-only at their `path` (`/dev/pipes/…`)
//!   outside the layer. The layer is the diff of the upper dir.
//! - `FileOp::Copy`: onto a snapshot of input 0, copy each source in order to
//!   `dest` (a trailing `/` or several sources mean "into the directory";
//!   `create_dest_path` makes parents): `Path` sources by wildcard in their
//!   input, `Inline` sources as files named `name` with `mode`. Apply `chown`
//!   (names resolved against the destination's `/etc/passwd` and
//!   `/etc/group`; default 0:0), `chmod` (octal or symbolic, see
//!   [`crate::instruction::Chmod`]), `exclude`, `unpack` (a tar archive source
//!   is extracted). With `link`, the layer is the copy onto an empty
//!   filesystem, so it does not depend on input 0.
//! - `FileOp::Mkdir` (WORKDIR): create `path` with parents, mode `mode`,
//!   owned by `owner` (resolved like chown). Its layer is kept even when
//!   nothing changed (the directory existed), as BuildKit keeps it.
//!
//! Op types and fields are documented in [`op`].

mod builder;
mod copy;
mod dump;
mod error;
mod git;
mod image;
pub mod lint;
pub mod merge;
mod metadata;
pub mod op;
mod paths;
mod run;
mod stage;
mod state;

use std::collections::BTreeMap;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

pub use dump::dump;
pub use error::{Error, ResolveError};
pub use image::{Empty, HISTORY_COMMENT, HealthConfig, History, ImageConfig, Platform};
pub use op::{
    CacheSharing, Copy, CopySource, Definition, Exec, ExecMount, FileOp, HeredocFile, Metadata,
    Mkdir, MountKind, MountOwner, Op, Source,
};

use crate::instruction::Stages;

/// What the caller decides about a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--target`: a stage name; the last stage when `None`.
    pub target: Option<String>,
    /// `--build-arg K=V` (the CLI resolves `--build-arg K` from its environment).
    pub build_args: BTreeMap<String, String>,
    /// `--label k=v`: added to the target image's labels last.
    pub labels: BTreeMap<String, String>,
    /// The platform of the result (TARGETPLATFORM).
    pub target_platform: Platform,
    /// The platform of this machine (BUILDPLATFORM).
    pub build_platform: Platform,
    /// `--no-cache-filter`: stages whose ops must run even when cached.
    pub no_cache_filter: Vec<String>,
    /// `--network`: what a RUN without `--network` (or with `default`) gets:
    /// `default`, `none` or `host`. Part of the step's key, as in BuildKit.
    pub network: Option<String>,
    /// The Dockerfile's escape character.
    pub escape: char,
    /// The Dockerfile's name, for messages.
    pub dockerfile_name: String,
    /// Step names start with the stage's platform (`[linux/arm64 build 2/4] RUN …`), as
    /// BuildKit names them in a build for several platforms.
    pub prefix_platform: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            target_platform: Platform::host(),
            build_platform: Platform::host(),
            no_cache_filter: Vec::new(),
            network: None,
            escape: '\\',
            dockerfile_name: "Dockerfile".to_string(),
            prefix_platform: false,
        }
    }
}

/// Looks base images up (the solver pulls or finds them in the store).
pub trait ImageResolver {
    /// Resolves `reference` (as written after expansion) for `platform`.
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, ResolveError>;
}

/// What the resolver knows about an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Fully qualified, with tag: `docker.io/library/alpine:latest`.
    pub reference_normalised: String,
    /// `sha256:…` of the platform's manifest.
    pub manifest_digest: String,
    pub config: ImageConfig,
    /// The image's own history.
    pub history: Vec<History>,
    /// The uncompressed layer digests (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
    /// `author` of the image config.
    pub author: Option<String>,
    /// The platform the image config says it is for, when it says.
    pub platform: Option<Platform>,
}

/// The image at the bottom of the target's layer chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub reference: String,
    pub manifest_digest: String,
    pub diff_ids: Vec<String>,
    /// Its op in the graph.
    pub node: NodeIndex,
}

/// A layer this build produces: the diff of `node`'s output against its input 0
/// (for `COPY --link`, against an empty filesystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub node: NodeIndex,
    /// Its entry in [`TargetImage::history`].
    pub history_index: usize,
}

/// The image the target stage produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetImage {
    pub config: ImageConfig,
    /// MAINTAINER, else the base image's author.
    pub author: Option<String>,
    /// Base image history first, then one entry per instruction.
    pub history: Vec<History>,
    /// `None` for `FROM scratch` chains.
    pub base: Option<BaseImage>,
    /// Layers on top of the base image, in order (parent stages' included).
    pub layers: Vec<Layer>,
    pub platform: Platform,
}

/// A stage included in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    /// Its final root filesystem.
    pub result: NodeIndex,
}

/// The planned build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Ops; an edge goes from an input to its user, weighted by input number.
    pub graph: DiGraph<Op, usize>,
    /// The target stage's final root filesystem.
    pub target: NodeIndex,
    /// The target stage's index.
    pub target_stage: usize,
    pub image: TargetImage,
    /// Stages the target needs, in source order (unused stages are absent).
    pub stages: Vec<PlannedStage>,
    /// Build args nobody declared.
    pub unused_build_args: Vec<String>,
    /// Messages for the user (`[Warning] One or more build-args …`).
    pub warnings: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: the build arg when given (empty: none), else the non-empty
    /// default of a global `ARG SOURCE_DATE_EPOCH=…`. It dates the history and the image,
    /// and file times in the build's layers are clamped to it.
    pub source_date_epoch: Option<u64>,
}

impl Plan {
    pub fn op(&self, node: NodeIndex) -> &Op {
        &self.graph[node]
    }

    /// The inputs of `node`, in input order.
    pub fn inputs(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut edges: Vec<(usize, NodeIndex)> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|edge| (*edge.weight(), edge.source()))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, source)| source).collect()
    }
}

/// Plans the build of `options.target` (or the last stage).
pub fn build(
    stages: &Stages,
    options: &Options,
    resolver: &mut dyn ImageResolver,
) -> Result<Plan, Error> {
    builder::Planner::new(stages, options, resolver)?.plan()
}
