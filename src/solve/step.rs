//! One op of the plan. Sources resolve directly; a step (RUN, COPY/ADD, WORKDIR) is looked
//! up in the cache, built under the lock of its key when missing, and its snapshot
//! committed and recorded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use tokio::sync::watch;

use super::error::StepCause;
use super::lazy::{self, LazyLayer};
use super::op;
use super::{NodeResult, Result, Shared, SolveError, blocking, unique_suffix};
use crate::cache::remote::ImportedRecord;
use crate::cache::{self, CacheError, Explain, Record, ResultRef, StepIdentity};
use crate::plan::{Definition, Exec, FileOp, Op, Source};
use crate::progress::Vertex;

/// Where per-key build locks live, below `snapshots-v1/`.
pub(super) const KEY_LOCKS: &str = "locks";
/// A finished snapshot's description; written before the directory is renamed into place.
const META_FILE: &str = "meta.json";
/// Step snapshot directories are named `build-<key>[-<unique>]`.
pub(super) const SNAPSHOT_PREFIX: &str = "build-";
/// How often a lock that is held elsewhere is tried again (and the cancel flag checked).
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// One op to run.
pub(super) struct Task {
    pub(super) shared: Arc<Shared>,
    pub(super) op: Op,
    pub(super) inputs: Vec<NodeResult>,
    /// Its number in progress output.
    pub(super) vertex_id: u64,
    pub(super) identity: Option<StepIdentity>,
    pub(super) cancel: watch::Receiver<bool>,
}

/// What a step does when it is not cached.
enum Work {
    Exec(Exec),
    File(FileOp),
}

/// What a step's cache lookup found.
struct Lookup {
    record: Option<Record>,
    /// The last record of the same step (by identity), when there is no record of this key.
    previous: Option<(String, Record)>,
}

impl Task {
    pub(super) async fn run(self) -> Result<NodeResult> {
        match &self.op.definition {
            Definition::Source(Source::Scratch) => Ok(NodeResult {
                cached: true,
                ..NodeResult::source(
                    cache::key(&self.op.definition.cache_definition(), &[]),
                    Vec::new(),
                )
            }),
            Definition::Source(Source::Image {
                manifest_digest, ..
            }) => op::image::run(&self, manifest_digest.clone()).await,
            Definition::Source(Source::Context {
                include, exclude, ..
            }) => op::context::run(&self, include.clone(), exclude.clone()).await,
            Definition::Source(Source::Url {
                url,
                checksum,
                filename,
            }) => op::url::run(&self, url.clone(), checksum.clone(), filename.clone()).await,
            Definition::Source(Source::Git {
                remote,
                reference,
                subdir,
                checksum,
                keep_git_dir,
                submodules,
            }) => {
                let request = crate::source::git::Request {
                    remote,
                    reference,
                    subdir,
                    checksum: checksum.as_deref(),
                    keep_git_dir: *keep_git_dir,
                    submodules: *submodules,
                };
                op::git::run(&self, request).await
            }
            Definition::Exec(exec) => {
                let work = Work::Exec(exec.clone());
                self.step(work).await
            }
            Definition::File(file) => {
                let work = Work::File(file.clone());
                self.step(work).await
            }
        }
    }

    /// The op's line in the progress output.
    pub(super) fn vertex(&self) -> Vertex {
        self.shared
            .sink
            .vertex(&self.shared.clock, self.vertex_id, &self.op.metadata.name)
    }

    pub(super) fn unsupported(&self, what: &str) -> SolveError {
        SolveError::Unsupported {
            what: what.to_string(),
            name: self.op.metadata.name.clone(),
            span: self.op.metadata.span,
        }
    }

    /// The step failed for a reason of its own (an exit code, a missing secret…).
    pub(super) fn step_error(&self, message: impl Into<String>, tail: Vec<String>) -> SolveError {
        self.failure(message.into(), tail, None)
    }

    /// The step failed with `cause`.
    pub(super) fn step_failed(
        &self,
        message: impl Into<String>,
        cause: impl Into<StepCause>,
    ) -> SolveError {
        self.failure(message.into(), Vec::new(), Some(Box::new(cause.into())))
    }

    fn failure(
        &self,
        message: String,
        tail: Vec<String>,
        source: Option<Box<StepCause>>,
    ) -> SolveError {
        SolveError::Step {
            name: self.op.metadata.name.clone(),
            span: self.op.metadata.span,
            message: message.into_boxed_str(),
            tail: tail.into_boxed_slice(),
            source,
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

    /// The step's result in snapshot `name`: its layer on top of input 0's chain.
    fn result(
        &self,
        key: &str,
        name: &str,
        empty: bool,
        cached: bool,
        created_at: u64,
    ) -> NodeResult {
        let layer = self.shared.store.snapshots_dir().join(name).join("fs");
        let mut chain = self
            .inputs
            .first()
            .map(|i| i.chain.clone())
            .unwrap_or_default();
        chain.push(layer.clone());
        NodeResult {
            key: key.to_string(),
            chain,
            layer: Some(layer),
            empty,
            context: None,
            cached,
            created_at,
            lazy: self
                .inputs
                .first()
                .map(|i| i.lazy.clone())
                .unwrap_or_default(),
            imported: None,
            identity: self.identity.clone(),
        }
    }

    /// The result an imported cache had for `key`: a hit whose layer is made only when
    /// something needs its files.
    fn imported_result(&self, key: &str, record: Arc<ImportedRecord>) -> NodeResult {
        let name = snapshot_name(key);
        let mut result = self.result(key, &name, record.empty, true, record.created_at);
        if !result.layer_exists()
            && let Some(dir) = result.layer.clone()
        {
            result
                .lazy
                .push(Arc::new(LazyLayer::step(dir, record.clone())));
        }
        result.imported = Some(record);
        result
    }

    /// The imported record of `key`, if the build imported a cache that has it.
    fn imported(&self, key: &str) -> Option<Arc<ImportedRecord>> {
        self.shared.options.imported.as_ref()?.get(key)
    }

    /// Makes the files of every input that has layers not made yet (a step that runs
    /// needs them).
    async fn materialize_inputs(&self) -> Result<()> {
        let lazy: Vec<Arc<LazyLayer>> = self
            .inputs
            .iter()
            .flat_map(|input| input.lazy.iter().cloned())
            .collect();
        if lazy.is_empty() {
            return Ok(());
        }
        lazy::materialize(&self.shared, &lazy).await
    }

    /// RUN, COPY/ADD or WORKDIR: a cached snapshot, or a new one made and recorded.
    async fn step(self, work: Work) -> Result<NodeResult> {
        let input_keys: Vec<&str> = self.inputs.iter().map(|r| r.key.as_str()).collect();
        let key = cache::key(&self.op.definition.cache_definition(), &input_keys);
        let snapshots = self.shared.store.snapshots_dir();
        let mut vertex = self.vertex();
        let use_cache = !self.shared.options.no_cache && !self.op.metadata.ignore_cache;

        let Lookup { record, previous } = self.lookup(&key).await?;
        if use_cache && let Some(record) = &record {
            let name = record
                .result
                .snapshot
                .clone()
                .unwrap_or_else(|| snapshot_name(&key));
            if snapshots.join(&name).join("fs").is_dir() {
                vertex.cached();
                let empty = record.result.empty_layer;
                return Ok(self.result(&key, &name, empty, true, record.created_at));
            }
        }
        if use_cache && let Some(imported) = self.imported(&key) {
            vertex.cached();
            return Ok(self.imported_result(&key, imported));
        }

        // One builder per key at a time, across processes: a second one waits, then finds
        // the first one's snapshot.
        let _building = if use_cache {
            let lock = snapshots.join(KEY_LOCKS).join(&key);
            let cancel = self.cancel.clone();
            Some(blocking(move || lock_key(&lock, &cancel)).await??)
        } else {
            None
        };
        let name = snapshot_name(&key);
        if use_cache && let Some(meta) = read_meta(&snapshots.join(&name)) {
            // Another build made it while this one waited: dated as that build dated it,
            // so both give the same image.
            vertex.cached();
            let created_at = meta.created_at.unwrap_or_else(cache::unix_now);
            self.record(&key, &name, (meta.empty, 0, created_at), self.explain());
            return Ok(self.result(&key, &name, meta.empty, true, created_at));
        }

        let explain = self.explain();
        // On a fresh machine the explanation comes from the imported cache's same step.
        let explained_by = previous.clone().or_else(|| self.imported_previous());
        if use_cache
            && let Some((previous_key, previous)) = &explained_by
            && *previous_key != key
            && let Some(reason) = cache::explain(&previous.inputs, &explain)
        {
            vertex.miss(reason);
        }
        // The snapshot an earlier run of this step made, for an incremental COPY.
        let earlier = previous
            .and_then(|(_, record)| record.result.snapshot)
            .map(|name| snapshots.join(name));
        match self
            .build(work, &key, use_cache, earlier, &mut vertex)
            .await
        {
            Ok((name, empty, size)) => {
                vertex.done();
                let created_at = read_meta(&snapshots.join(&name))
                    .and_then(|meta| meta.created_at)
                    .unwrap_or_else(cache::unix_now);
                self.record(&key, &name, (empty, size, created_at), explain);
                Ok(self.result(&key, &name, empty, false, created_at))
            }
            Err(error) => {
                end_failed(vertex, &error);
                Err(error)
            }
        }
    }

    /// The same step in an imported cache, as a record that explains a miss.
    fn imported_previous(&self) -> Option<(String, Record)> {
        let imported = self.shared.options.imported.as_ref()?;
        let identity = self.identity.as_ref()?;
        let record = imported.previous(identity, &self.shared.options.dockerfile_name)?;
        let explained = Record::new(ResultRef::default(), record.inputs.clone(), 0);
        Some((record.key.clone(), explained))
    }

    /// The record of `key`, and without one the last record of the same step.
    async fn lookup(&self, key: &str) -> Result<Lookup> {
        let cache = self.shared.cache.clone();
        let key = key.to_string();
        let identity = self.identity.clone();
        let lookup = blocking(move || {
            let record = cache.get(&key)?;
            let previous = match (&record, &identity) {
                (None, Some(identity)) => cache.previous(identity)?,
                _ => None,
            };
            Ok::<_, CacheError>(Lookup { record, previous })
        })
        .await??;
        Ok(lookup)
    }

    /// Runs the op in a staging directory and moves the result into place. Returns the
    /// snapshot's name, whether the layer is empty, and the bytes written.
    async fn build(
        &self,
        work: Work,
        key: &str,
        use_cache: bool,
        earlier: Option<PathBuf>,
        vertex: &mut Vertex,
    ) -> Result<(String, bool, u64)> {
        self.materialize_inputs().await?;
        let snapshots = self.shared.store.snapshots_dir();
        let staging = snapshots.join(format!("tmp-build-{}-{}", &key[..16], unique_suffix()));
        std::fs::create_dir_all(&staging).map_err(SolveError::io("create", &staging))?;
        let outcome = match work {
            Work::Exec(exec) => {
                let base_chain = self
                    .inputs
                    .first()
                    .map(|i| i.chain.clone())
                    .unwrap_or_default();
                op::exec::run(self, &exec, &base_chain, &staging, vertex).await
            }
            Work::File(file) => op::file::run(self, file, &staging, earlier).await,
        };
        let committed = match outcome {
            Ok((empty, size)) => {
                let commit = Commit {
                    shared: self.shared.clone(),
                    key: key.to_string(),
                    kind: self.op.definition.kind(),
                    staging: staging.clone(),
                    use_cache,
                    empty,
                    size,
                };
                blocking(move || commit.run()).await.and_then(|r| r)
            }
            Err(error) => Err(error),
        };
        if committed.is_err() {
            let _ = blocking(move || crate::snapshot::overlay::remove(&staging)).await;
        }
        committed
    }

    /// Queues the cache record of a step's result (written at the end of the build);
    /// returns its creation time.
    fn record(
        &self,
        key: &str,
        snapshot: &str,
        (empty, size, created_at): (bool, u64, u64),
        explain: Explain,
    ) {
        let result = ResultRef {
            snapshot: Some(snapshot.to_string()),
            empty_layer: empty,
            ..ResultRef::default()
        };
        let mut record = Record::new(result, explain, size);
        record.created_at = created_at;
        self.shared
            .queue_put(key.to_string(), record, self.identity.clone());
    }
}

/// Ends the vertex of an op that failed with `error`: `CANCELED` when the build stopped it
/// (another step failed, or Ctrl-C), else `ERROR` with the step's message.
pub(super) fn end_failed(vertex: Vertex, error: &SolveError) {
    match error {
        SolveError::Cancelled => vertex.canceled(),
        SolveError::Step { message, .. } => vertex.error(message.to_string()),
        other => vertex.error(other.to_string()),
    }
}

/// A finished staging directory to move into place as the snapshot of `key`.
struct Commit {
    shared: Arc<Shared>,
    key: String,
    kind: &'static str,
    staging: PathBuf,
    use_cache: bool,
    empty: bool,
    size: u64,
}

impl Commit {
    /// Writes the meta file and renames the staging directory into place (blocking).
    /// Returns the snapshot's name, whether the layer is empty, and its size.
    fn run(self) -> Result<(String, bool, u64)> {
        let Commit {
            shared,
            key,
            kind,
            staging,
            use_cache,
            empty,
            size,
        } = self;
        let dir = shared.store.snapshots_dir();
        write_meta(&staging, &key, kind, (empty, cache::unix_now()))?;
        let mut made = shared.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = made.get(&key) {
            // This build made it already (and may be using it): keep that one.
            let name = name.clone();
            drop(made);
            let _ = crate::snapshot::overlay::remove(&staging);
            return Ok((name, empty, size));
        }
        // A snapshot is never replaced in place (another build may have it mounted):
        // a rerun that must not reuse it (--no-cache) gets a name of its own, and
        // the old one goes when `builder prune` finds nothing refers to it.
        let mut name = snapshot_name(&key);
        if dir.join(&name).exists() {
            if use_cache && read_meta(&dir.join(&name)).is_some() {
                // Another process made it meanwhile: use theirs.
                let _ = crate::snapshot::overlay::remove(&staging);
                made.insert(key, name.clone());
                return Ok((name, empty, size));
            }
            // --no-cache, or a broken leftover: ours gets a name of its own.
            name = format!("{name}-{}", unique_suffix());
        }
        let to = dir.join(&name);
        std::fs::rename(&staging, &to).map_err(SolveError::io("rename", &staging))?;
        made.insert(key, name.clone());
        Ok((name, empty, size))
    }
}

/// Writes the meta file of the step snapshot being made in `staging`.
pub(super) fn write_meta(
    staging: &Path,
    key: &str,
    kind: &str,
    (empty, created_at): (bool, u64),
) -> Result<()> {
    let meta = serde_json::json!({
        "key": key,
        "kind": kind,
        "empty": empty,
        "created_at": created_at,
    });
    let meta_path = staging.join(META_FILE);
    std::fs::write(&meta_path, meta.to_string()).map_err(SolveError::io("write", &meta_path))
}

/// The snapshot directory name of a step result with cache key `key`.
pub(super) fn snapshot_name(key: &str) -> String {
    format!("{SNAPSHOT_PREFIX}{key}")
}

/// What a finished step snapshot says about itself.
#[derive(Debug, serde::Deserialize)]
struct SnapshotMeta {
    #[serde(default)]
    empty: bool,
    /// Unix seconds; absent in snapshots made before it was written.
    #[serde(default)]
    created_at: Option<u64>,
}

/// The meta of a complete step snapshot at `dir`, if there is one.
fn read_meta(dir: &Path) -> Option<SnapshotMeta> {
    let bytes = std::fs::read(dir.join(META_FILE)).ok()?;
    let meta: SnapshotMeta = serde_json::from_slice(&bytes).ok()?;
    dir.join("fs").is_dir().then_some(meta)
}

/// Takes the exclusive lock of one cache key (a file per key; blocking until it is free
/// or the build is cancelled).
pub(super) fn lock_key(path: &Path, cancel: &watch::Receiver<bool>) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(SolveError::io("create", dir))?;
    }
    let file = open_lock(path)?;
    lock_waiting(&file, path, true, cancel)?;
    Ok(file)
}

/// Opens (creating it) the lock file at `path`.
pub(super) fn open_lock(path: &Path) -> Result<std::fs::File> {
    std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(SolveError::io("open", path))
}

/// Takes `lock` (exclusive, or shared), waiting for whoever holds it; gives up with
/// [`SolveError::Cancelled`] once the build is cancelled.
pub(super) fn lock_waiting(
    lock: &std::fs::File,
    path: &Path,
    exclusive: bool,
    cancel: &watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let tried = if exclusive {
            lock.try_lock()
        } else {
            lock.try_lock_shared()
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                if *cancel.borrow() {
                    return Err(SolveError::Cancelled);
                }
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(SolveError::io("lock", path)(e)),
        }
    }
}
