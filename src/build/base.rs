//! Base images: resolved in the store while the plan is made, pulled when missing (every
//! one with `--pull`), each pull shown as a progress vertex of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::{BuildError, BuildRequest};
use crate::image;
use crate::oci::{Digest, Reference};
use crate::plan::{self, Plan, Platform};
use crate::progress::{Clock, Sink};
use crate::registry::{Client, ClientConfig};
use crate::solve::{PullError, SolveError, StoreResolver};
use crate::store::Store;

/// The pulls of one build: they are numbered `#1`, `#2`, … before the solver's steps, and
/// the build's cancel signal stops the one running.
#[derive(Clone)]
pub(super) struct Pulls {
    sink: Sink,
    clock: Clock,
    count: Arc<AtomicU64>,
    cancel: watch::Receiver<bool>,
}

impl Pulls {
    pub(super) fn new(sink: Sink, clock: Clock, cancel: watch::Receiver<bool>) -> Pulls {
        Pulls {
            sink,
            clock,
            count: Arc::new(AtomicU64::new(0)),
            cancel,
        }
    }

    /// A sink for what comes after the pulls, numbered after them.
    pub(super) fn offset_sink(&self) -> Sink {
        self.sink.offset(self.count.load(Ordering::SeqCst))
    }

    /// Pulls `reference` into `store` under a vertex of its own, each layer an item of it.
    /// A cancelled build drops the pull (an interrupted pull leaves no partial content).
    /// `lazy`: only the manifest and config, untagged (see [`image::pull_metadata`]);
    /// returns the manifest's digest then.
    fn pull(
        &self,
        store: &Store,
        client: &Client,
        reference: &Reference,
        platform: &Platform,
        lazy: bool,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Option<Digest>, PullError> {
        let id = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let name = if lazy {
            format!("resolving {reference}")
        } else {
            format!("pulling {reference}")
        };
        let vertex = self.sink.vertex(&self.clock, id, name);
        let mut cancel = self.cancel.clone();
        let cancelled = async move {
            // A dropped sender never cancels.
            if cancel.wait_for(|cancelled| *cancelled).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let pulled: Result<Option<Digest>, PullError> = runtime.block_on(async {
            let pull = async {
                if lazy {
                    image::pull_metadata(store, client, reference, Some(platform))
                        .await
                        .map(Some)
                } else {
                    image::pull(store, client, reference, Some(platform), vertex.items())
                        .await
                        .map(|_| None)
                }
            };
            tokio::select! {
                pulled = pull => pulled.map_err(Into::into),
                () = cancelled => Err(SolveError::Cancelled.into()),
            }
        });
        match pulled {
            Ok(digest) => {
                vertex.done();
                Ok(digest)
            }
            Err(error) => {
                if matches!(error.downcast_ref(), Some(SolveError::Cancelled)) {
                    vertex.canceled();
                } else {
                    vertex.error(error.to_string());
                }
                Err(error)
            }
        }
    }
}

/// Plans `request`'s build, pulling the base images it needs that the store lacks. The
/// planner is synchronous, so it runs on a blocking thread and pulls through the runtime.
pub(super) async fn plan(
    store: &Store,
    registry: &ClientConfig,
    request: &BuildRequest,
    pulls: &Pulls,
) -> Result<Plan, BuildError> {
    let options = plan::Options {
        target: request.target.clone(),
        labels: request.labels.clone(),
        escape: request.escape,
        dockerfile_name: request.dockerfile_name.clone(),
        build_args: request.build_args.clone(),
        no_cache_filter: request.no_cache_filter.clone(),
        network: request.network.clone(),
        target_platform: request.platform.clone().unwrap_or_else(Platform::host),
        ..plan::Options::default()
    };
    let store = store.clone();
    let registry = registry.clone();
    let stages = request.stages.clone();
    let always_pull = request.pull;
    // With an imported cache, a base image's layers are often never needed: fetch them
    // only when a step that runs does (or an output).
    let lazy = !request.cache_from.is_empty();
    let planning_pulls = pulls.clone();
    let runtime = tokio::runtime::Handle::current();
    let planned = tokio::task::spawn_blocking(move || {
        let mut client: Option<Client> = None;
        let pull_store = store.clone();
        let puller: crate::solve::Puller<'_> = Box::new(move |reference, platform| {
            let client = match &mut client {
                Some(client) => client,
                empty => empty.insert(Client::new(registry.clone())?),
            };
            planning_pulls.pull(&pull_store, client, reference, platform, lazy, &runtime)
        });
        let mut resolver = StoreResolver::new(store, Some(puller)).always_pull(always_pull);
        plan::build(&stages, &options, &mut resolver)
    })
    .await?;
    // The planner reports a cancelled pull as a base image it could not resolve.
    if planned.is_err() && *pulls.cancel.borrow() {
        return Err(BuildError::Solve {
            source: Box::new(SolveError::Cancelled),
            step_log: None,
            failed_step: None,
        });
    }
    Ok(planned?)
}
