//! The order ops run in: an op starts once its inputs are done, at most `jobs` steps run
//! at once, the first failure (or a cancel) stops the rest, and the results of steps that
//! succeeded are recorded in the cache index at the end whatever happened.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio::task::JoinSet;

use super::lazy::{self, LazyLayer};
use super::step::Task;
use super::{NodeResult, OnDone, Result, Shared, SolveError, SolveOptions, Solved, blocking};
use crate::cache::{CacheIndex, StepIdentity};
use crate::plan::{Definition, Plan, Source};
use crate::progress::{Clock, Sink};
use crate::source::{Context, StatCache};
use crate::store::Store;

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
                failed: Mutex::new(None),
            }),
            cancel: watch::channel(false).0,
            on_done: None,
        }
    }

    /// The directory where the build's failed RUN step was kept ([`super::failed`]), for
    /// the caller to move into its build record; `None` once taken.
    pub fn take_failed_step(&self) -> Option<std::path::PathBuf> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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
        let _lease = blocking(move || store.lease()).await??;
        let outcome = self.schedule(plan).await;
        let committed = self.commit_puts().await;
        let solved = outcome?;
        committed?;
        Ok(solved)
    }

    /// Writes the cache records queued so far (and pending last-use times) in one commit.
    async fn commit_puts(&self) -> Result<()> {
        let puts = std::mem::take(
            &mut *self
                .shared
                .puts
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let cache = self.shared.cache.clone();
        blocking(move || {
            let mut batch = cache.batch();
            for (key, record, identity) in puts {
                batch.put(key, record, identity);
            }
            batch.commit()
        })
        .await??;
        Ok(())
    }

    /// Makes the files of `layers` that do not exist yet (an output needs them after the
    /// solve) and records what that made in the cache index.
    pub async fn materialize(&self, layers: &[Arc<LazyLayer>]) -> Result<()> {
        let made = lazy::materialize(&self.shared, layers).await;
        self.commit_puts().await?;
        made
    }

    async fn schedule(&self, plan: &Plan) -> Result<Solved> {
        let mut schedule = Schedule::new(plan, &self.shared)?;
        let mut running: JoinSet<(NodeIndex, Result<NodeResult>)> = JoinSet::new();
        let mut cancel_rx = self.cancel.subscribe();
        loop {
            if schedule.first_error.is_none() {
                for node in std::mem::take(&mut schedule.ready) {
                    let task = schedule.task(node, &self.shared, self.cancel.subscribe());
                    running.spawn(async move { (node, task.run().await) });
                }
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                _ = cancelled(&mut cancel_rx), if schedule.first_error.is_none() => {
                    schedule.first_error = Some(SolveError::Cancelled);
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            match joined {
                Ok((node, Ok(result))) => {
                    if let Some(hook) = &self.on_done {
                        hook(node, &result);
                    }
                    schedule.done(node, result);
                }
                Ok((_, Err(error))) => {
                    schedule.failed(error);
                    let _ = self.cancel.send(true);
                }
                Err(error) => {
                    schedule.first_error.get_or_insert(SolveError::Task(error));
                    let _ = self.cancel.send(true);
                }
            }
        }
        match schedule.first_error {
            Some(error) => Err(error),
            None => Ok(schedule.solved),
        }
    }
}

/// Where one solve is: what waits, what may start, what is done.
struct Schedule<'p> {
    plan: &'p Plan,
    identities: HashMap<NodeIndex, StepIdentity>,
    /// Vertex numbers in topological order, as BuildKit numbers them in start order.
    vertex_ids: HashMap<NodeIndex, u64>,
    /// How many distinct inputs of each op are not done yet.
    waiting: HashMap<NodeIndex, usize>,
    /// Ops whose inputs are all done, not started yet.
    ready: Vec<NodeIndex>,
    solved: Solved,
    first_error: Option<SolveError>,
}

impl<'p> Schedule<'p> {
    fn new(plan: &'p Plan, shared: &Shared) -> Result<Schedule<'p>> {
        let graph = &plan.graph;
        let order = petgraph::algo::toposort(graph, None).map_err(|_| SolveError::Cycle)?;
        // (`scratch` is not shown, so it takes no number.)
        let vertex_ids = order
            .iter()
            .filter(|n| !matches!(graph[**n].definition, Definition::Source(Source::Scratch)))
            .enumerate()
            .map(|(i, n)| (*n, i as u64 + 1))
            .collect();
        let waiting: HashMap<NodeIndex, usize> = order
            .iter()
            .map(|n| (*n, unique(plan.inputs(*n)).len()))
            .collect();
        let ready = order.iter().copied().filter(|n| waiting[n] == 0).collect();
        Ok(Schedule {
            plan,
            identities: step_identities(plan, shared),
            vertex_ids,
            waiting,
            ready,
            solved: Solved::default(),
            first_error: None,
        })
    }

    /// The task that runs `node`, over its inputs' results.
    fn task(&self, node: NodeIndex, shared: &Arc<Shared>, cancel: watch::Receiver<bool>) -> Task {
        let inputs = self
            .plan
            .inputs(node)
            .iter()
            .map(|i| self.solved.results[i].clone())
            .collect();
        Task {
            shared: shared.clone(),
            op: self.plan.graph[node].clone(),
            inputs,
            vertex_id: self.vertex_ids.get(&node).copied().unwrap_or(0),
            identity: self.identities.get(&node).cloned(),
            cancel,
        }
    }

    /// Records `node`'s result; its users whose inputs are now all done become ready.
    fn done(&mut self, node: NodeIndex, result: NodeResult) {
        let graph = &self.plan.graph;
        match (&graph[node].definition, result.cached) {
            (Definition::Source(_), _) => {}
            (_, true) => self.solved.cached += 1,
            (_, false) => self.solved.ran += 1,
        }
        self.solved.results.insert(node, result);
        for user in unique(
            graph
                .neighbors_directed(node, Direction::Outgoing)
                .collect(),
        ) {
            if let Some(count) = self.waiting.get_mut(&user) {
                *count -= 1;
                if *count == 0 {
                    self.ready.push(user);
                }
            }
        }
    }

    /// Keeps the first real error; a step killed because of it says Cancelled.
    fn failed(&mut self, error: SolveError) {
        match (&self.first_error, &error) {
            (None, _) | (Some(SolveError::Cancelled), SolveError::Step { .. }) => {
                self.first_error = Some(error)
            }
            _ => {}
        }
    }
}

impl Shared {
    /// One of the `jobs` slots for a step that does work (RUN, COPY, WORKDIR).
    pub(super) async fn job_permit(&self) -> Result<SemaphorePermit<'_>> {
        Ok(self.jobs.acquire().await?)
    }
}

fn unique(mut nodes: Vec<NodeIndex>) -> Vec<NodeIndex> {
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Resolves once the cancel flag is set (never, if the sender is gone).
pub(super) async fn cancelled(rx: &mut watch::Receiver<bool>) {
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
