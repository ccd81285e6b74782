//! The scheduler: runs a [`Plan`](crate::plan::Plan)'s DAG of ops with the cache, the sandbox, file ops and the
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
//!   Ctrl-C, via [`Solver::canceller`]) kills running sandboxes, waits for running ops to
//!   stop, removes their temporary directories and returns that first error.
//!
//! The parts: `scheduler` (order, job permits, cancellation), `step` (one op: cache lookup,
//! per-key lock, commit of the snapshot and its record), `op/` (what each kind of op does:
//! `image`, `context`, `url`, `exec`, `file`), `resolver` (base images for the planner),
//! `failed` (a failed RUN kept for debugging), `prune` (the build cache on disk) and
//! `copied` (what an incremental COPY may reuse).

mod copied;
mod error;
pub mod failed;
mod lazy;
mod op;
mod prune;
mod resolver;
mod scheduler;
mod step;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use petgraph::graph::NodeIndex;
use tokio::sync::Semaphore;

pub use error::{PullError, SolveError, StepCause};
pub use lazy::{BlobFetcher, LazyLayer};
pub use op::exec::SecretSource;
pub use prune::{CacheUsage, PruneOptions, PruneReport, prune, usage};
pub use resolver::{Puller, StoreResolver};
pub use scheduler::Solver;

use crate::cache::remote::{ImportedCache, ImportedRecord};
use crate::cache::{CacheIndex, Record, StepIdentity};
use crate::progress::{Clock, Sink};
use crate::source::{Context, ContextDigest, Selection, StatCache};
use crate::store::Store;

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
    /// The Dockerfile's name in its context, for the step identities of exported caches.
    pub dockerfile_name: String,
    /// Caches imported with `--cache-from`: a step missing locally that one of them has
    /// is a hit, its layer fetched only if something needs its files.
    pub imported: Option<Arc<ImportedCache>>,
    /// Fetches the blobs of lazy layers (imported steps, base images not downloaded).
    pub fetcher: Option<Arc<dyn BlobFetcher>>,
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
    /// Layers of `chain` that may not exist yet ([`lazy`]): a step that runs on this result
    /// makes them first.
    pub lazy: Vec<Arc<LazyLayer>>,
    /// The imported cache record this step's result came from (its layer may still be
    /// only remote: see `layer_exists`).
    pub imported: Option<Arc<ImportedRecord>>,
    /// "The same step" across builds, for steps.
    pub identity: Option<StepIdentity>,
}

impl NodeResult {
    /// The result of a source op: a filesystem of its own, made now (not a step).
    fn source(key: String, chain: Vec<PathBuf>) -> NodeResult {
        NodeResult {
            key,
            chain,
            layer: None,
            empty: false,
            context: None,
            cached: false,
            created_at: 0,
            lazy: Vec::new(),
            imported: None,
            identity: None,
        }
    }

    /// Whether the op's own layer directory exists (not so for a step an imported cache
    /// had, until something needed its files).
    pub fn layer_exists(&self) -> bool {
        self.layer.as_ref().is_some_and(|dir| dir.is_dir())
    }
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
    /// The first failed RUN's kept state ([`failed`]); later failures are not kept.
    failed: Mutex<Option<PathBuf>>,
}

impl Shared {
    /// Queues a cache record; the solver commits the queue in one transaction.
    fn queue_put(&self, key: String, record: Record, identity: Option<StepIdentity>) {
        self.puts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key, record, identity));
    }
}

/// A name part no other process or call uses.
fn unique_suffix() -> String {
    crate::store::random_name()
}

/// Runs blocking work off the reactor.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    Ok(tokio::task::spawn_blocking(work).await?)
}
