//! The whole build lifecycle as one call (layer L6): [`Build::run`] takes a
//! [`BuildRequest`] (the parsed Dockerfile, the context directory, the options of
//! `docker build`) and a progress [`Sink`], and returns the image it made.
//!
//! In order: the base images are resolved in the store and pulled when missing (while the
//! plan is made); a store lease is taken; the solver runs the plan, and each image layer is
//! written as soon as its step is done ([`layers`]); the exporter writes the config,
//! manifest and tags; the build record with every step's whole output is saved, whatever
//! the outcome. The caller's cancel signal stops running steps. `cli` and the coming
//! daemon share this; they only turn their input into a request and render the outcome.

mod base;
pub mod cache;
mod check;
pub mod debug;
mod dockerfile;
mod error;
mod layers;
mod output;
mod platforms;
pub mod record;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

pub use cache::spec::{CacheExport, CacheImport, CacheMode, CacheTarget};
pub use check::CheckOptions;
pub use dockerfile::{Diagnostic, ParsedDockerfile, Severity};
pub use error::BuildError;
pub use output::{
    ArchiveOutput, Destination, ImageOutput, OutputSpec, OutputStream, resolve_outputs,
};

use crate::cache::CacheIndex;
use crate::export::{self, ExportOptions, Exported};
use crate::image;
use crate::instruction::Stages;
use crate::oci::{Reference, media_type};
use crate::plan::{Definition, Plan, Platform};
use crate::progress::{Clock, LogStore, Sink};
use crate::registry::ClientConfig;
use crate::solve::{SecretSource, SolveError, SolveOptions, Solver};
use crate::source::{Context as SourceContext, IgnoreFile};
use crate::store::Store;

/// Everything one build needs to know, as `docker build`'s options say it.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The parsed Dockerfile.
    pub stages: Stages,
    /// Its escape character (the `# escape=` directive), for the planner's word expansion.
    pub escape: char,
    /// The Dockerfile's name as shown in messages, relative to the context (`Dockerfile`).
    pub dockerfile_name: String,
    /// Its absolute path, or `-` when it came from standard input: steps are identified
    /// by it, so cache misses are explained against the same Dockerfile's last build.
    pub dockerfile_path: String,
    /// The build context directory.
    pub context: PathBuf,
    pub target: Option<String>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages whose steps run again.
    pub no_cache_filter: Vec<String>,
    /// `--pull`: ask the registry for every base image again.
    pub pull: bool,
    /// `--network`: what `default` means for RUN steps.
    pub network: Option<String>,
    /// `--allow security.insecure` (BuildKit's entitlement): `RUN --security=insecure`
    /// may run, without seccomp and with every capability.
    pub allow_insecure: bool,
    pub secrets: BTreeMap<String, SecretSource>,
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--platform`: the platforms to build for (empty: this machine's), of this machine's
    /// OS; another architecture's RUN steps run through binfmt_misc emulation. With several,
    /// the result is an image index with one image per platform.
    pub platforms: Vec<Platform>,
    /// Steps running at once; `None`: twice the number of CPUs.
    pub jobs: Option<usize>,
    /// `--cache-from`: caches to import, tried in order.
    pub cache_from: Vec<CacheImport>,
    /// `--cache-to`: where to export the build's cache once the image is stored.
    pub cache_to: Vec<CacheExport>,
    /// What to do with the image (`--output`, `--push`, `--load`; see
    /// [`resolve_outputs`]); empty: name it in the local store with `tags`. Outputs
    /// without `name=` take `tags`.
    pub outputs: Vec<OutputSpec>,
    /// Where `dest=-` outputs are written; `None` refuses them.
    pub stdout: Option<OutputStream>,
}

/// What a successful build made.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub exported: Exported,
    /// The names the image has in the local store.
    pub tags: Vec<Reference>,
    /// What the outputs pushed, in order.
    pub pushed: Vec<image::Pushed>,
    /// The build record's directory (`<root>/builds-v1/…`), when it could be saved.
    pub record: Option<PathBuf>,
}

impl BuildOutcome {
    /// What `--metadata-file` holds, with the keys `docker buildx build` writes.
    pub fn metadata(&self) -> serde_json::Value {
        let exported = &self.exported;
        // As buildx: the digest of what was pushed, when something was.
        let (digest, media_type, size) = match self.pushed.first() {
            Some(pushed) => (&pushed.digest, pushed.media_type.as_str(), pushed.size),
            None => (
                &exported.manifest_digest,
                media_type::OCI_MANIFEST,
                exported.manifest_size,
            ),
        };
        let mut metadata = serde_json::json!({
            "containerimage.config.digest": exported.image_id.to_string(),
            "containerimage.digest": digest.to_string(),
            "containerimage.descriptor": {
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": size,
            },
        });
        let mut names: Vec<String> = self.tags.iter().map(ToString::to_string).collect();
        for pushed in &self.pushed {
            let name = pushed.reference.to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if !names.is_empty() {
            metadata["image.name"] = names.join(",").into();
        }
        metadata
    }
}

/// The builder of one store: runs builds on it, pulling base images with `registry`.
pub struct Build {
    store: Store,
    registry: ClientConfig,
}

impl Build {
    pub fn new(store: Store, registry: ClientConfig) -> Build {
        Build { store, registry }
    }

    /// Runs the whole build of `request`, sending progress to `sink`. Setting `cancel` to
    /// true stops it (running steps are killed; the result is a cancelled
    /// [`BuildError::Solve`]). The build record is saved whatever the outcome; a failure
    /// names the failing step's log in it.
    pub async fn run(
        &self,
        request: BuildRequest,
        sink: &Sink,
        cancel: watch::Receiver<bool>,
    ) -> Result<BuildOutcome, BuildError> {
        check_platforms(&request.platforms)?;
        // Held until the record is saved: base images pulled untagged for another platform,
        // layers written early and the kept failed step are unnamed until then, and no
        // prune may take them meanwhile.
        let _lease = {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.lease()).await??
        };
        let outputs = output::effective(&request.outputs, &request.tags, request.stdout.as_ref())?;
        let stored_names = output::stored_names(&outputs);
        let started_at = crate::cache::unix_now();
        // Every event also goes into the log store the build record is written from. The
        // vertices are numbered as they show, so the output and the record have no gaps.
        let logs = LogStore::new();
        let sink = {
            let (outer, logs) = (sink.numbered_in_order(), logs.clone());
            Sink::from_fn(move |event| {
                logs.record(&event);
                outer.send(event);
            })
        };
        let mut outcome = if request.platforms.len() > 1 {
            platforms::solve_and_export(self, &request, &outputs, &stored_names, &sink, cancel)
                .await
        } else {
            self.solve_and_export(&request, &outputs, &stored_names, &sink, cancel)
                .await
        };
        let kept = match &mut outcome {
            Err(BuildError::Solve { failed_step, .. }) => failed_step.take(),
            _ => None,
        };
        let record = record::BuildRecord {
            started_at,
            finished_at: crate::cache::unix_now(),
            dockerfile: request.dockerfile_name.clone(),
            context: request.context.display().to_string(),
            target: request.target.clone(),
            tags: stored_names.iter().map(ToString::to_string).collect(),
            status: match &outcome {
                Ok(_) => "succeeded",
                Err(error) if error.is_cancelled() => "cancelled",
                Err(_) => "failed",
            }
            .to_string(),
            image_id: outcome.as_ref().ok().map(|(e, _)| e.image_id.to_string()),
            error: outcome.as_ref().err().map(ToString::to_string),
            failed_step: None,
            steps: logs.names(),
        };
        let record = record::BuildRecord {
            failed_step: outcome
                .as_ref()
                .err()
                .and_then(|error| failed_step_number(error, &record)),
            ..record
        };
        let saved = {
            let store = self.store.clone();
            let steps = logs.all();
            let record = record.clone();
            tokio::task::spawn_blocking(move || {
                let saved = record::save(&store, &record, &steps, kept.as_deref());
                if let (Err(_), Some(kept)) = (&saved, &kept) {
                    let _ = std::fs::remove_dir_all(kept);
                }
                saved
            })
            .await?
        };
        if let Err(error) = &saved {
            sink.send(crate::progress::Event::BuildWarning {
                message: format!("the build record was not saved: {error}"),
            });
        }
        let record_dir = saved.ok();
        match outcome {
            Ok((exported, pushed)) => Ok(BuildOutcome {
                exported,
                tags: stored_names,
                pushed,
                record: record_dir,
            }),
            Err(BuildError::Solve { source, .. }) => {
                let existing = |path: PathBuf| path.exists().then_some(path);
                let (step_log, failed_step) = match (&record_dir, record.failed_step) {
                    (Some(dir), Some(step)) => (
                        existing(record::log_path(dir, step)),
                        existing(dir.join(record::FAILED_STEP)),
                    ),
                    _ => (None, None),
                };
                Err(BuildError::Solve {
                    source,
                    step_log,
                    failed_step,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Plans (pulling missing base images), solves, exports (naming the image
    /// `stored_names`) and carries out `outputs`; returns what was pushed too.
    async fn solve_and_export(
        &self,
        request: &BuildRequest,
        outputs: &[OutputSpec],
        stored_names: &[Reference],
        sink: &Sink,
        cancel: watch::Receiver<bool>,
    ) -> Result<(Exported, Vec<image::Pushed>), BuildError> {
        let clock = Clock::start();
        let pulls = base::Pulls::new(sink.clone(), clock.clone(), cancel.clone());
        // The imported caches are read while the plan is made.
        let (plan, remote) = tokio::join!(
            base::plan(
                &self.store,
                &self.registry,
                request,
                &pulls,
                request.platforms.first(),
            ),
            cache::Remote::open(&self.store, &self.registry, request, sink),
        );
        let plan = plan?;
        if !request.allow_insecure {
            refuse_insecure(&plan)?;
        }
        let (plan, remote) = (Arc::new(plan), remote?);
        // The solver numbers its steps from 1; they follow the pulls.
        let sink = &pulls.offset_sink();
        for warning in &plan.warnings {
            sink.send(crate::progress::Event::BuildWarning {
                message: warning.clone(),
            });
        }
        let (mut solver, cache) = self
            .open_solver(request, remote.as_ref(), sink, &clock)
            .await?;
        let early = layers::write_early(
            &mut solver,
            &plan,
            &self.store,
            plan.source_date_epoch,
            early_work(request, outputs),
        );
        let forward = forward_cancel(cancel, solver.canceller());
        let solved = solver.solve(&plan).await;
        forward.abort();
        let solved = match solved {
            Ok(solved) => solved,
            Err(source) => {
                // Let layers being written finish (their blobs are collectable garbage).
                early.collect().await;
                return Err(BuildError::Solve {
                    source: Box::new(source),
                    step_log: None,
                    failed_step: solver.take_failed_step(),
                });
            }
        };
        let vertex_id = plan.graph.node_count() as u64 + 1;
        let vertex = sink.vertex(&clock, vertex_id, "exporting to image");
        // Layers started while the build ran are part of exporting.
        let written = early.collect_image().await;
        let written_early = written.clone();
        let exported = async {
            let layers = self
                .ready_layers(&solver, &plan, &solved, outputs, remote.as_ref())
                .await?;
            let inline_cache = match &remote {
                Some(remote)
                    if request
                        .cache_to
                        .iter()
                        .any(|c| c.target == CacheTarget::Inline) =>
                {
                    Some(cache::export::inline_records(&self.cache_source(
                        remote,
                        &cache,
                        (&plan, &solved, &written_early),
                        request,
                    ))?)
                }
                _ => None,
            };
            let options = ExportOptions {
                inline_cache,
                source_date_epoch: plan.source_date_epoch,
                created: image_created(&solved),
                tags: stored_names.to_vec(),
                keep_unnamed: true,
                written,
            };
            self.export_plan(&cache, plan.clone(), layers, options)
                .await
        }
        .await;
        let exported = ended(vertex, exported)?;
        let first_vertex = vertex_id + 1;
        let (clock, remote, cache, plan, solved) = (&clock, &remote, &cache, &plan, &solved);
        let caches = |outputs_done| async move {
            let Some(remote) = remote else {
                return Ok(());
            };
            // The layers only a `mode=max` cache sends may still be compressing.
            let mut written = early.collect().await;
            written.extend(written_early.clone());
            let source = self.cache_source(remote, cache, (plan, solved, &written), request);
            let first_vertex = first_vertex + outputs.len() as u64;
            self.export_caches(&source, request, (sink, clock, first_vertex), outputs_done)
                .await
        };
        let pushed = self
            .outputs_beside_caches(
                request,
                outputs,
                &exported,
                (sink, clock, first_vertex),
                caches,
            )
            .await?;
        Ok((exported, pushed))
    }

    /// Carries out `outputs` for `exported` while `caches` exports the build's caches
    /// (told when the outputs are done: a `mode=max` cache's blobs that are not the image's
    /// upload beside the image's own, the rest after them); what was pushed.
    async fn outputs_beside_caches<Caches, Exporting>(
        &self,
        request: &BuildRequest,
        outputs: &[OutputSpec],
        exported: &Exported,
        (sink, clock, first_vertex): (&Sink, &Clock, u64),
        caches: Caches,
    ) -> Result<Vec<image::Pushed>, BuildError>
    where
        Caches: FnOnce(watch::Receiver<bool>) -> Exporting,
        Exporting: std::future::Future<Output = Result<(), BuildError>>,
    {
        let (outputs_done, outputs_done_rx) = watch::channel(false);
        let progress = output::Progress {
            sink,
            clock,
            first_vertex,
        };
        let outputs_written = async {
            let written = output::write(
                &self.store,
                &self.registry,
                &exported.manifest_digest,
                outputs,
                request.stdout.as_ref(),
                progress,
            )
            .await;
            let _ = outputs_done.send(true);
            written
        };
        let (pushed, cached) = tokio::join!(outputs_written, caches(outputs_done_rx));
        let pushed = pushed?;
        cached?;
        Ok(pushed)
    }

    /// The layer inputs of `plan`'s image, each there to be read: layers of the solve that
    /// were not made yet, and (when an output needs their bytes; a push alone mounts them
    /// where they are) those of imported steps and lazily resolved bases, fetched before
    /// the export names the image.
    async fn ready_layers(
        &self,
        solver: &Solver,
        plan: &Plan,
        solved: &crate::solve::Solved,
        outputs: &[OutputSpec],
        remote: Option<&cache::Remote>,
    ) -> Result<Vec<export::LayerInput>, BuildError> {
        let epoch = plan.source_date_epoch;
        let inputs = layers::inputs(plan, solved, epoch, pushed_compression(outputs))?;
        layers::materialize_unexported(solver, plan, solved, &inputs).await?;
        if let Some(remote) = remote {
            let all = outputs.iter().any(OutputSpec::needs_layer_bytes);
            remote
                .fetch_missing_layers(&self.store, plan, &inputs, all)
                .await
                .map_err(|source| BuildError::CacheImport { source })?;
        }
        Ok(inputs)
    }

    /// Writes `plan`'s image into the store (off the reactor).
    async fn export_plan(
        &self,
        cache: &Arc<CacheIndex>,
        plan: Arc<Plan>,
        layers: Vec<export::LayerInput>,
        options: ExportOptions,
    ) -> Result<Exported, BuildError> {
        let (store, cache) = (self.store.clone(), cache.clone());
        Ok(tokio::task::spawn_blocking(move || {
            export::export(&store, &cache, &plan, &layers, &options)
        })
        .await??)
    }

    /// The build context, the cache index and a solver over them. (The lease [`Build::run`]
    /// holds keeps `image prune` from layers written early, unnamed until the export.)
    async fn open_solver(
        &self,
        request: &BuildRequest,
        remote: Option<&cache::Remote>,
        sink: &Sink,
        clock: &Clock,
    ) -> Result<(Solver, Arc<CacheIndex>), BuildError> {
        let store = self.store.clone();
        let (context, cache) = {
            let dir = request.context.clone();
            let name = request.dockerfile_name.clone();
            tokio::task::spawn_blocking(move || -> Result<_, BuildError> {
                let ignore = IgnoreFile::load(&dir, &name)?;
                let context = SourceContext::open(&dir, ignore)?;
                Ok((Arc::new(context), Arc::new(CacheIndex::for_store(&store)?)))
            })
            .await??
        };
        let solver = Solver::new(
            self.store.clone(),
            cache.clone(),
            context,
            sink.clone(),
            clock.clone(),
            SolveOptions {
                // Each platform's steps are as many again (and emulated ones mostly wait).
                jobs: request
                    .jobs
                    .unwrap_or_else(|| default_jobs() * request.platforms.len().max(1)),
                no_cache: request.no_cache,
                dockerfile: request.dockerfile_path.clone(),
                sandbox_exe: None,
                secrets: request.secrets.clone(),
                ssh: request.ssh.clone(),
                dockerfile_name: request.dockerfile_name.clone(),
                imported: remote.map(|r| r.imported.clone()),
                fetcher: remote.map(|r| r.fetcher.clone() as Arc<dyn crate::solve::BlobFetcher>),
            },
        );
        Ok((solver, cache))
    }

    /// What a cache export reads.
    fn cache_source<'a>(
        &'a self,
        remote: &'a cache::Remote,
        cache: &'a CacheIndex,
        (plan, solved, written): (
            &'a crate::plan::Plan,
            &'a crate::solve::Solved,
            &'a HashMap<String, export::Blob>,
        ),
        request: &'a BuildRequest,
    ) -> cache::export::Source<'a> {
        cache::export::Source {
            store: &self.store,
            cache,
            client: &remote.client,
            fetcher: &remote.fetcher,
            plan,
            solved,
            written,
            epoch: plan.source_date_epoch,
            dockerfile: &request.dockerfile_name,
        }
    }

    /// Writes every `--cache-to` but the inline one (the image carries that), each under a
    /// vertex of its own. A failure fails the build (the image is stored already), unless
    /// the export says `ignore-error=true`: then it is a warning.
    async fn export_caches(
        &self,
        source: &cache::export::Source<'_>,
        request: &BuildRequest,
        (sink, clock, first_vertex): (&Sink, &Clock, u64),
        outputs_done: watch::Receiver<bool>,
    ) -> Result<(), BuildError> {
        let targets = request
            .cache_to
            .iter()
            .filter(|spec| spec.target != CacheTarget::Inline);
        for (n, spec) in targets.enumerate() {
            let target = match &spec.target {
                CacheTarget::Registry(reference) => reference.to_string(),
                CacheTarget::Local(dir) => dir.display().to_string(),
                CacheTarget::Inline => continue,
            };
            let vertex = sink.vertex(
                clock,
                first_vertex + n as u64,
                format!("exporting cache to {target}"),
            );
            match cache::export::export(source, spec, outputs_done.clone()).await {
                Ok(()) => vertex.done(),
                Err(error) => {
                    vertex.error(error.to_string());
                    let error = BuildError::CacheExport {
                        target,
                        source: error,
                    };
                    if !spec.ignore_error {
                        return Err(error);
                    }
                    sink.send(crate::progress::Event::BuildWarning {
                        message: format!("{error} (ignored: ignore-error=true)"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The compression the image's layers leave in: the first pushing output's, else a
/// push's default (gzip).
fn pushed_compression(outputs: &[OutputSpec]) -> crate::oci::Compression {
    outputs
        .iter()
        .find_map(|output| match output {
            OutputSpec::Image(image) if image.push => Some(image.layers.compression),
            _ => None,
        })
        .unwrap_or_else(|| crate::image::LayerOptions::default().compression)
}

/// What the early layer writer makes besides the image's layer tars: every step's layer
/// for a `mode=max` cache export, and the compressed copies pushes and cache exports send.
fn early_work(request: &BuildRequest, outputs: &[OutputSpec]) -> layers::Early {
    let mut compressions = Vec::new();
    for output in outputs {
        if let OutputSpec::Image(image) = output
            && image.push
        {
            compressions.push((image.layers.compression, image.layers.level));
        }
    }
    for spec in &request.cache_to {
        if spec.target != CacheTarget::Inline {
            compressions.push((spec.compression, spec.compression_level));
        }
    }
    compressions.retain(|(compression, _)| *compression != crate::oci::Compression::None);
    compressions.dedup();
    layers::Early {
        all_steps: request
            .cache_to
            .iter()
            .any(|spec| spec.mode == CacheMode::Max && spec.target != CacheTarget::Inline),
        compressions,
    }
}

/// Without BuildKit's `security.insecure` entitlement, a `RUN --security=insecure` is an
/// error at its line, whether or not its result is cached.
fn refuse_insecure(plan: &Plan) -> Result<(), BuildError> {
    let insecure = plan
        .graph
        .node_weights()
        .find(|op| matches!(&op.definition, Definition::Exec(exec) if exec.security == "insecure"));
    match insecure {
        Some(op) => Err(crate::plan::Error::invalid(
            "security.insecure is not allowed: RUN --security=insecure needs \
             kiln build --allow security.insecure",
            op.metadata.span.unwrap_or_default(),
        )
        .into()),
        None => Ok(()),
    }
}

/// Steps often wait (on the network, on disk, on `sleep`): two per CPU keep the CPUs busy
/// where one per CPU would leave them idle.
fn default_jobs() -> usize {
    2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Only the host's OS can be built for; another architecture's RUN steps go through
/// emulation. Several platforms are built into one index.
fn check_platforms(wanted: &[Platform]) -> Result<(), BuildError> {
    let host = Platform::host();
    let Some(wanted) = wanted.iter().find(|wanted| wanted.os != host.os) else {
        return Ok(());
    };
    Err(BuildError::UnsupportedPlatform {
        wanted: wanted.to_string(),
        host: host.to_string(),
    })
}

/// Passes the caller's cancel signal on to the solver.
fn forward_cancel(
    mut cancel: watch::Receiver<bool>,
    solver: watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if cancel.wait_for(|cancelled| *cancelled).await.is_ok() {
            let _ = solver.send(true);
        }
    })
}

/// An image's `created` time without `SOURCE_DATE_EPOCH`: its newest step's, so that a
/// rebuild from the cache gives the same image id; now when nothing was dated.
fn image_created(solved: &crate::solve::Solved) -> u64 {
    match solved.results.values().map(|r| r.created_at).max() {
        Some(t) if t > 0 => t,
        _ => crate::cache::unix_now(),
    }
}

/// Ends `vertex` as `outcome` says, and passes the outcome on.
fn ended<T>(
    vertex: crate::progress::Vertex,
    outcome: Result<T, BuildError>,
) -> Result<T, BuildError> {
    match &outcome {
        Ok(_) => vertex.done(),
        Err(error) => vertex.error(error.to_string()),
    }
    outcome
}

/// The number of the step a solve error names.
fn failed_step_number(error: &BuildError, record: &record::BuildRecord) -> Option<u64> {
    let BuildError::Solve { source, .. } = error else {
        return None;
    };
    let SolveError::Step { name, .. } = &**source else {
        return None;
    };
    let (step, _) = record.steps.iter().find(|(_, n)| *n == name)?;
    Some(*step)
}
