//! The scheduler: runs a [`Plan`]'s DAG of ops with the cache, the sandbox, file ops and the
//! build context, and hands the exporter the snapshot of every op (layer L5).
//!
//! - An op starts when all its inputs are done; independent ops run in parallel, at most
//!   `jobs` at a time (sources do not count). The plan already merged identical ops.
//! - Each op has a cache key: `cache::key(definition.cache_definition(), input keys)`; a
//!   `Context` source is keyed by the content digest of the files it selects (hashed with
//!   the persistent stat cache, so `touch` keeps the key and one changed byte does not).
//! - RUN, COPY/ADD and WORKDIR results are snapshot directories
//!   `<root>/snapshots-v1/build-<key>/` (`fs/` = the layer, i.e. the op's overlay upper, and
//!   `meta.json`), recorded in the cache index with the step's explained inputs. A hit is a
//!   record whose snapshot still exists; the step shows `CACHED`. A miss of a step that has
//!   an earlier record (same Dockerfile, context, stage and step index) is explained with
//!   [`cache::explain`] (`cache miss: 1 file changed: a.txt`).
//! - Work happens in `snapshots-v1/tmp-build-*` and is renamed into place only when the op
//!   succeeded, so nothing half-made is ever visible or recorded. The first failure (or
//!   Ctrl-C, via [`Solver::cancel`]) kills running sandboxes, waits for running ops to stop,
//!   removes their temporary directories and returns that first error.

mod copied;
mod exec;
pub mod history;
mod prune;
mod resolver;
mod url;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use exec::SecretSource;
pub use prune::{CacheUsage, PruneOptions, PruneReport, prune, usage};
pub use resolver::{Puller, StoreResolver};

use crate::cache::{self, CacheIndex, Explain, Record, ResultRef, StepIdentity};
use crate::fileop;
use crate::oci::Digest;
use crate::plan::{Definition, FileOp, Op, Plan, Source};
use crate::progress::{Clock, Sink};
use crate::source::{Context, ContextDigest, Selection, StatCache};
use crate::store::Store;
use crate::syntax::Span;

/// Everything that can go wrong while solving.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A step failed; `tail` holds the last lines of its output.
    #[error("{name}: {message}")]
    Step {
        name: String,
        span: Option<Span>,
        message: String,
        tail: Box<[String]>,
    },
    #[error("{what} is not supported yet")]
    Unsupported {
        what: String,
        name: String,
        span: Option<Span>,
    },
    #[error("the build was cancelled")]
    Cancelled,
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resolving base image {reference}: {reason}")]
    Resolve { reference: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl SolveError {
    /// Where in the Dockerfile the failing step is, when known.
    pub fn span(&self) -> Option<Span> {
        match self {
            SolveError::Step { span, .. } | SolveError::Unsupported { span, .. } => *span,
            _ => None,
        }
    }

    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| SolveError::Io { what, path, source }
    }
}

type Result<T, E = SolveError> = std::result::Result<T, E>;

/// How the caller wants the build solved.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// Ops (RUN, COPY, …) running at once.
    pub jobs: usize,
    /// `--no-cache`: run every step, replacing cached results.
    pub no_cache: bool,
    /// Absolute path of the Dockerfile (`-` for stdin), for step identities.
    pub dockerfile: String,
    /// The kiln binary the sandbox re-executes (default: this executable).
    pub sandbox_exe: Option<PathBuf>,
    /// `--secret`: secrets by id, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh`: agent sockets by id, for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
}

/// The result of one op.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub key: String,
    /// The filesystem: layer directories, bottom first (empty: scratch).
    pub chain: Vec<PathBuf>,
    /// The op's own layer (its snapshot's `fs/`), for RUN/COPY/WORKDIR.
    pub layer: Option<PathBuf>,
    /// The layer is empty (a WORKDIR that existed).
    pub empty: bool,
    /// For a context source: what it selected, and the content digest.
    pub context: Option<Arc<(Selection, ContextDigest)>>,
    pub cached: bool,
    /// When the step's result was made (Unix seconds; 0 for sources): the exporter dates
    /// the image by its newest step, so a warm rebuild gives the same image id.
    pub created_at: u64,
}

/// What the solver produced: every op's result.
#[derive(Debug, Default)]
pub struct Solved {
    pub results: HashMap<NodeIndex, NodeResult>,
    /// Ops that ran (not cached).
    pub ran: usize,
    pub cached: usize,
}

/// Called (on the scheduler's task: it must not block) with each op's result as it
/// completes, e.g. to start writing an image layer while later steps run.
pub type OnDone = Box<dyn Fn(NodeIndex, &NodeResult) + Send + Sync>;

/// Shared state of one build.
struct Shared {
    store: Store,
    cache: Arc<CacheIndex>,
    context: Arc<Context>,
    stat: Arc<StatCache>,
    sink: Sink,
    clock: Clock,
    options: SolveOptions,
    puts: Mutex<Vec<(String, Record, Option<StepIdentity>)>>,
    /// Keys whose snapshot this build made (and its name): a second op with the same key
    /// (two stages doing the same thing at once) keeps that one, which other steps may
    /// already be using.
    made: Mutex<HashMap<String, String>>,
    jobs: Semaphore,
}

/// Runs plans. Create one per build.
pub struct Solver {
    shared: Arc<Shared>,
    cancel: watch::Sender<bool>,
    on_done: Option<OnDone>,
}

impl Solver {
    pub fn new(
        store: Store,
        cache: Arc<CacheIndex>,
        context: Arc<Context>,
        sink: Sink,
        clock: Clock,
        options: SolveOptions,
    ) -> Solver {
        let stat = Arc::new(StatCache::open(
            &store.cache_dir().join("context-stat.redb"),
        ));
        let jobs = Semaphore::new(options.jobs.max(1));
        Solver {
            shared: Arc::new(Shared {
                store,
                cache,
                context,
                stat,
                sink,
                clock,
                options,
                puts: Mutex::new(Vec::new()),
                made: Mutex::new(HashMap::new()),
                jobs,
            }),
            cancel: watch::channel(false).0,
            on_done: None,
        }
    }

    /// Sets the hook called with each op's result as soon as it is done.
    pub fn on_done(&mut self, hook: OnDone) {
        self.on_done = Some(hook);
    }

    /// A handle that stops the build (Ctrl-C): running steps are killed.
    pub fn canceller(&self) -> watch::Sender<bool> {
        self.cancel.clone()
    }

    /// Solves every op of `plan`. Results of steps that succeeded are recorded in the cache
    /// index even when another step fails.
    pub async fn solve(&self, plan: &Plan) -> Result<Solved> {
        // Held for the whole build: `builder prune` and `image prune` wait for it, so no
        // snapshot this build uses (or is making) is collected under it.
        let store = self.shared.store.clone();
        let _lease = blocking(move || store.lease())
            .await?
            .map_err(|e| SolveError::Internal(e.to_string()))?;
        let outcome = self.schedule(plan).await;
        let puts = std::mem::take(
            &mut *self
                .shared
                .puts
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let cache = self.shared.cache.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let mut batch = cache.batch();
            for (key, record, identity) in puts {
                batch.put(key, record, identity);
            }
            batch.commit()
        })
        .await
        .map_err(|e| SolveError::Internal(e.to_string()))?;
        let solved = outcome?;
        committed?;
        Ok(solved)
    }

    async fn schedule(&self, plan: &Plan) -> Result<Solved> {
        let graph = &plan.graph;
        let order = petgraph::algo::toposort(graph, None)
            .map_err(|_| SolveError::Internal("the plan has a cycle".into()))?;
        let identities = step_identities(plan, &self.shared);
        // Vertex numbers in topological order, as BuildKit numbers them in start order.
        // (`scratch` is not shown, so it takes no number.)
        let vertex_ids: HashMap<NodeIndex, u64> = order
            .iter()
            .filter(|n| !matches!(graph[**n].definition, Definition::Source(Source::Scratch)))
            .enumerate()
            .map(|(i, n)| (*n, i as u64 + 1))
            .collect();
        let mut waiting: HashMap<NodeIndex, usize> = order
            .iter()
            .map(|n| (*n, unique(plan.inputs(*n)).len()))
            .collect();
        let mut solved = Solved::default();
        let mut running: JoinSet<(NodeIndex, Result<NodeResult>)> = JoinSet::new();
        let mut first_error: Option<SolveError> = None;
        let mut ready: Vec<NodeIndex> = order.iter().copied().filter(|n| waiting[n] == 0).collect();
        let mut cancel_rx = self.cancel.subscribe();

        loop {
            if first_error.is_none() {
                for node in ready.drain(..) {
                    let inputs: Vec<NodeResult> = plan
                        .inputs(node)
                        .iter()
                        .map(|i| solved.results[i].clone())
                        .collect();
                    let task = Task {
                        shared: self.shared.clone(),
                        op: graph[node].clone(),
                        inputs,
                        vertex: vertex_ids.get(&node).copied().unwrap_or(0),
                        identity: identities.get(&node).cloned(),
                        cancel: self.cancel.subscribe(),
                    };
                    running.spawn(async move { (node, task.run().await) });
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                _ = cancelled(&mut cancel_rx), if first_error.is_none() => {
                    first_error = Some(SolveError::Cancelled);
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (node, result) = match joined {
                Ok(done) => done,
                Err(e) => {
                    first_error.get_or_insert(SolveError::Internal(e.to_string()));
                    let _ = self.cancel.send(true);
                    continue;
                }
            };
            match result {
                Ok(result) => {
                    match (&graph[node].definition, result.cached) {
                        (Definition::Source(_), _) => {}
                        (_, true) => solved.cached += 1,
                        (_, false) => solved.ran += 1,
                    }
                    if let Some(hook) = &self.on_done {
                        hook(node, &result);
                    }
                    solved.results.insert(node, result);
                    for user in unique(
                        graph
                            .neighbors_directed(node, Direction::Outgoing)
                            .collect(),
                    ) {
                        let count = waiting.get_mut(&user).expect("every node is waiting");
                        *count -= 1;
                        if *count == 0 {
                            ready.push(user);
                        }
                    }
                }
                Err(error) => {
                    // Keep the first real error; a step killed because of it says Cancelled.
                    match (&first_error, &error) {
                        (None, _) | (Some(SolveError::Cancelled), SolveError::Step { .. }) => {
                            first_error = Some(error)
                        }
                        _ => {}
                    }
                    let _ = self.cancel.send(true);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(solved),
        }
    }
}

fn unique(mut nodes: Vec<NodeIndex>) -> Vec<NodeIndex> {
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Resolves once the cancel flag is set (never, if the sender is gone).
pub(crate) async fn cancelled(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// "The same step" across builds: Dockerfile, context, stage and the step's position.
fn step_identities(plan: &Plan, shared: &Shared) -> HashMap<NodeIndex, StepIdentity> {
    let mut counters: BTreeMap<String, u32> = BTreeMap::new();
    let mut out = HashMap::new();
    for node in plan.graph.node_indices() {
        let op = &plan.graph[node];
        if matches!(op.definition, Definition::Source(_)) {
            continue;
        }
        let stage = op.metadata.stage.clone().unwrap_or_default();
        let counter = counters.entry(stage.clone()).or_default();
        *counter += 1;
        out.insert(
            node,
            StepIdentity {
                dockerfile: shared.options.dockerfile.clone(),
                context: shared.context.root().display().to_string(),
                stage,
                step: *counter,
            },
        );
    }
    out
}

/// One op to run.
struct Task {
    shared: Arc<Shared>,
    op: Op,
    inputs: Vec<NodeResult>,
    vertex: u64,
    identity: Option<StepIdentity>,
    cancel: watch::Receiver<bool>,
}

impl Task {
    async fn run(self) -> Result<NodeResult> {
        match &self.op.definition {
            Definition::Source(Source::Scratch) => Ok(NodeResult {
                key: cache::key(&self.op.definition.cache_definition(), &[]),
                chain: Vec::new(),
                layer: None,
                empty: false,
                context: None,
                cached: true,
                created_at: 0,
            }),
            Definition::Source(Source::Image {
                manifest_digest, ..
            }) => self.image(manifest_digest.clone()).await,
            Definition::Source(Source::Context {
                include, exclude, ..
            }) => self.context(include.clone(), exclude.clone()).await,
            Definition::Source(Source::Url {
                url,
                checksum,
                filename,
            }) => url::fetch(&self, url.clone(), checksum.clone(), filename.clone()).await,
            Definition::Source(Source::Git { .. }) => {
                Err(self.unsupported("ADD from a git repository"))
            }
            Definition::Exec(_) | Definition::File(_) => self.step().await,
        }
    }

    fn unsupported(&self, what: &str) -> SolveError {
        SolveError::Unsupported {
            what: what.to_string(),
            name: self.op.metadata.name.clone(),
            span: self.op.metadata.span,
        }
    }

    fn step_error(&self, message: impl Into<String>, tail: Vec<String>) -> SolveError {
        SolveError::Step {
            name: self.op.metadata.name.clone(),
            span: self.op.metadata.span,
            message: message.into(),
            tail: tail.into_boxed_slice(),
        }
    }

    async fn image(&self, manifest_digest: String) -> Result<NodeResult> {
        let vertex =
            self.shared
                .sink
                .vertex(&self.shared.clock, self.vertex, &self.op.metadata.name);
        let store = self.shared.store.clone();
        let outcome = blocking(move || {
            let digest: Digest = manifest_digest
                .parse()
                .map_err(|e| format!("manifest digest {manifest_digest}: {e}"))?;
            let image = store.image(&digest).map_err(|e| e.to_string())?;
            crate::image::unpack_image(&store, &image).map_err(|e| e.to_string())?;
            let snapshots = store.snapshots_dir();
            Ok::<_, String>(
                image
                    .chain_ids()
                    .iter()
                    .map(|c| snapshots.join(c.hex()).join("fs"))
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
        match outcome {
            Ok(chain) => {
                vertex.done();
                Ok(NodeResult {
                    key: cache::key(&self.op.definition.cache_definition(), &[]),
                    chain,
                    layer: None,
                    empty: false,
                    context: None,
                    cached: false,
                    created_at: 0,
                })
            }
            Err(message) => {
                vertex.error(&message);
                Err(self.step_error(message, Vec::new()))
            }
        }
    }

    async fn context(&self, include: Vec<String>, exclude: Vec<String>) -> Result<NodeResult> {
        let vertex =
            self.shared
                .sink
                .vertex(&self.shared.clock, self.vertex, &self.op.metadata.name);
        let context = self.shared.context.clone();
        let stat = self.shared.stat.clone();
        let outcome = blocking(move || {
            let include = if include.is_empty() {
                vec![".".to_string()]
            } else {
                include
            };
            let selection = context.select(&include, &exclude)?;
            let digest = context.digest(&selection, Some(&stat))?;
            Ok::<_, crate::source::Error>((selection, digest))
        })
        .await?;
        match outcome {
            Ok((selection, digest)) => {
                vertex.done();
                Ok(NodeResult {
                    key: cache::key(format!("context\0{}", digest.digest).as_bytes(), &[]),
                    chain: Vec::new(),
                    layer: None,
                    empty: false,
                    context: Some(Arc::new((selection, digest))),
                    cached: false,
                    created_at: 0,
                })
            }
            Err(error) => {
                vertex.error(error.to_string());
                Err(self.step_error(error.to_string(), Vec::new()))
            }
        }
    }

    /// What went into the key, by name, so a later miss can be explained.
    fn explain(&self) -> Explain {
        let mut explain = Explain::new();
        if let Definition::Exec(exec) = &self.op.definition {
            for (name, value) in &exec.explain {
                explain = explain.with(name.clone(), value.clone());
            }
        } else {
            let command = self
                .op
                .metadata
                .name
                .split_once("] ")
                .map_or(self.op.metadata.name.as_str(), |(_, c)| c);
            explain = explain.with("command", command);
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let name = if i == 0 {
                "parent".to_string()
            } else {
                format!("parent:{i}")
            };
            match &input.context {
                Some(context) => {
                    let digest = &context.1;
                    explain = explain
                        .with("files", digest.digest.clone())
                        .with_files(digest.files(&context.0));
                }
                None => explain = explain.with(name, input.key.clone()),
            }
        }
        explain
    }

    async fn step(self) -> Result<NodeResult> {
        let input_keys: Vec<&str> = self.inputs.iter().map(|r| r.key.as_str()).collect();
        let key = cache::key(&self.op.definition.cache_definition(), &input_keys);
        let snapshots = self.shared.store.snapshots_dir();
        let base_chain = self
            .inputs
            .first()
            .map(|i| i.chain.clone())
            .unwrap_or_default();
        let vertex =
            self.shared
                .sink
                .vertex(&self.shared.clock, self.vertex, &self.op.metadata.name);
        let use_cache = !self.shared.options.no_cache && !self.op.metadata.ignore_cache;
        let result_for = |name: &str, empty: bool, cached: bool, created_at: u64| {
            let layer = snapshots.join(name).join("fs");
            let mut chain = base_chain.clone();
            chain.push(layer.clone());
            NodeResult {
                key: key.clone(),
                chain,
                layer: Some(layer),
                empty,
                context: None,
                cached,
                created_at,
            }
        };

        let cache = self.shared.cache.clone();
        let lookup_key = key.clone();
        let identity = self.identity.clone();
        let (record, previous) = blocking(move || {
            let record = cache.get(&lookup_key)?;
            let previous = match (&record, &identity) {
                (None, Some(identity)) => cache.previous(identity)?,
                _ => None,
            };
            Ok::<_, cache::CacheError>((record, previous))
        })
        .await??;
        let recorded = record.as_ref().map(|r| {
            r.result
                .snapshot
                .clone()
                .unwrap_or_else(|| snapshot_name(&key))
        });
        if use_cache
            && let (Some(record), Some(name)) = (&record, &recorded)
            && snapshots.join(name).join("fs").is_dir()
        {
            vertex.cached();
            return Ok(result_for(
                name,
                record.result.empty_layer,
                true,
                record.created_at,
            ));
        }

        // One builder per key at a time, across processes: a second one waits, then finds
        // the first one's snapshot.
        let _building = if use_cache {
            let lock = self.shared.store.snapshots_dir().join(KEY_LOCKS).join(&key);
            let cancel = self.cancel.clone();
            Some(blocking(move || lock_key(&lock, &cancel)).await??)
        } else {
            None
        };
        if use_cache && let Some(meta) = read_meta(&snapshots.join(snapshot_name(&key))) {
            vertex.cached();
            let name = snapshot_name(&key);
            self.record(&key, &name, meta.empty, 0, self.explain());
            return Ok(result_for(&name, meta.empty, true, cache::unix_now()));
        }

        let explain = self.explain();
        if use_cache
            && let Some((previous_key, previous)) = &previous
            && *previous_key != key
            && let Some(reason) = cache::explain(&previous.inputs, &explain)
        {
            vertex.miss(reason);
        }
        // The snapshot an earlier run of this step made, for an incremental COPY.
        let earlier = previous
            .and_then(|(_, record)| record.result.snapshot)
            .map(|name| snapshots.join(name));

        let staging = snapshots.join(format!(
            "tmp-build-{}-{}",
            &key[..16],
            exec::unique_suffix()
        ));
        std::fs::create_dir_all(&staging).map_err(SolveError::io("create", &staging))?;
        let mut vertex = vertex;
        let outcome = match &self.op.definition {
            Definition::Exec(exec) => {
                exec::run(&self, exec, &base_chain, &staging, &mut vertex).await
            }
            Definition::File(file) => self.file(file.clone(), &staging, earlier).await,
            Definition::Source(_) => unreachable!("sources are not steps"),
        };
        let kind = self.op.definition.kind();
        let (meta_key, from, dir) = (key.clone(), staging.clone(), snapshots.clone());
        let shared = self.shared.clone();
        let finished = match outcome {
            Err(error) => Err(error),
            Ok((empty, size)) => blocking(move || {
                let meta = serde_json::json!({ "key": meta_key, "kind": kind, "empty": empty });
                let meta_path = from.join(META_FILE);
                std::fs::write(&meta_path, meta.to_string())
                    .map_err(SolveError::io("write", &meta_path))?;
                let mut made = shared.made.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(name) = made.get(&meta_key) {
                    // This build made it already (and may be using it): keep that one.
                    let name = name.clone();
                    drop(made);
                    let _ = crate::snapshot::overlay::remove(&from);
                    return Ok((name, empty, size));
                }
                // A snapshot is never replaced in place (another build may have it mounted):
                // a rerun that must not reuse it (--no-cache) gets a name of its own, and
                // the old one goes when `builder prune` finds nothing refers to it.
                let mut name = snapshot_name(&meta_key);
                if dir.join(&name).exists() {
                    if use_cache && read_meta(&dir.join(&name)).is_some() {
                        // Another process made it meanwhile: use theirs.
                        let _ = crate::snapshot::overlay::remove(&from);
                        made.insert(meta_key, name.clone());
                        return Ok((name, empty, size));
                    }
                    // --no-cache, or a broken leftover: ours gets a name of its own.
                    name = format!("{name}-{}", exec::unique_suffix());
                }
                let to = dir.join(&name);
                std::fs::rename(&from, &to).map_err(SolveError::io("rename", &from))?;
                made.insert(meta_key, name.clone());
                Ok((name, empty, size))
            })
            .await
            .and_then(|r| r),
        };
        let (name, empty, size) = match finished {
            Ok(done) => done,
            Err(error) => {
                let staging = staging.clone();
                let _ = blocking(move || crate::snapshot::overlay::remove(&staging)).await;
                match &error {
                    SolveError::Step { message, .. } => vertex.error(message.clone()),
                    other => vertex.error(other.to_string()),
                }
                return Err(error);
            }
        };
        vertex.done();
        let created_at = self.record(&key, &name, empty, size, explain);
        Ok(result_for(&name, empty, false, created_at))
    }

    /// Queues the cache record of a step's result (written at the end of the build);
    /// returns its creation time.
    fn record(&self, key: &str, snapshot: &str, empty: bool, size: u64, explain: Explain) -> u64 {
        let result = ResultRef {
            snapshot: Some(snapshot.to_string()),
            empty_layer: empty,
            ..ResultRef::default()
        };
        let record = Record::new(result, explain, size);
        let created_at = record.created_at;
        self.shared
            .puts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key.to_string(), record, self.identity.clone()));
        created_at
    }

    /// COPY/ADD/WORKDIR into `staging/fs`. Returns (empty, bytes written). `earlier` is the
    /// snapshot of an earlier run of the same step, whose unchanged files may be reused.
    async fn file(
        &self,
        op: FileOp,
        staging: &Path,
        earlier: Option<PathBuf>,
    ) -> Result<(bool, u64)> {
        let _permit = self
            .shared
            .jobs
            .acquire()
            .await
            .map_err(|e| SolveError::Internal(e.to_string()))?;
        let upper = staging.join("fs");
        std::fs::create_dir(&upper).map_err(SolveError::io("create", &upper))?;
        let inputs = self.inputs.clone();
        let root = self.shared.context.root().to_path_buf();
        let scratch = staging.to_path_buf();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let work = tokio::task::spawn_blocking(move || {
            let owned: Vec<fileop::Input<'_>> = inputs
                .iter()
                .map(|input| match &input.context {
                    Some(context) => fileop::Input::Context {
                        root: &root,
                        selection: &context.0,
                        digests: Some(&context.1.entry_digests),
                    },
                    None => fileop::Input::Layers(&input.chain),
                })
                .collect();
            let reuse = earlier.as_deref().and_then(copied::read);
            let outcome = fileop::run(&fileop::Request {
                op: &op,
                inputs: &owned,
                upper: &upper,
                scratch: Some(&scratch),
                reuse: reuse.as_ref(),
                cancel: Some(&flag),
            })?;
            if !outcome.copied.is_empty() {
                copied::write(&scratch, &outcome.copied)
                    .map_err(fileop::Error::io("write", scratch.join(copied::FILE)))?;
            }
            Ok::<_, fileop::Error>(outcome)
        });
        tokio::pin!(work);
        let mut cancel_rx = self.cancel.clone();
        let joined = tokio::select! {
            joined = &mut work => joined,
            _ = cancelled(&mut cancel_rx) => {
                cancel.store(true, Ordering::Relaxed);
                work.await
            }
        };
        match joined.map_err(|e| SolveError::Internal(e.to_string()))? {
            Ok(outcome) => Ok((outcome.empty, outcome.report.bytes)),
            Err(fileop::Error::Cancelled) => Err(SolveError::Cancelled),
            Err(error) => Err(self.step_error(error.to_string(), Vec::new())),
        }
    }
}

/// Where per-key build locks live, below `snapshots-v1/`.
pub(crate) const KEY_LOCKS: &str = "locks";
/// A finished snapshot's description; written before the directory is renamed into place.
pub(crate) const META_FILE: &str = "meta.json";

/// Step snapshot directories are named `build-<key>[-<unique>]`.
pub(crate) const SNAPSHOT_PREFIX: &str = "build-";

/// The snapshot directory name of a step result with cache key `key`.
pub(crate) fn snapshot_name(key: &str) -> String {
    format!("{SNAPSHOT_PREFIX}{key}")
}

/// What a finished step snapshot says about itself.
#[derive(Debug, serde::Deserialize)]
struct SnapshotMeta {
    #[serde(default)]
    empty: bool,
}

/// The meta of a complete step snapshot at `dir`, if there is one.
fn read_meta(dir: &Path) -> Option<SnapshotMeta> {
    let bytes = std::fs::read(dir.join(META_FILE)).ok()?;
    let meta: SnapshotMeta = serde_json::from_slice(&bytes).ok()?;
    dir.join("fs").is_dir().then_some(meta)
}

/// Takes the exclusive lock of one cache key (a file per key; blocking until it is free
/// or the build is cancelled).
fn lock_key(path: &Path, cancel: &watch::Receiver<bool>) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(SolveError::io("create", dir))?;
    }
    let file = exec::open_lock(path)?;
    exec::lock_waiting(&file, path, true, cancel)?;
    Ok(file)
}

/// Runs blocking work off the reactor.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SolveError::Internal(e.to_string()))
}
