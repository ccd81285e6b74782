//! `kiln serve`: the Docker Engine API over a unix socket, so the `docker` CLI and the
//! Docker SDKs drive kiln. Every endpoint calls the same library functions as kiln's
//! command line (`image`, `container`, `store`); nothing here shells out to `kiln`.
//!
//! The daemon keeps no state of its own: images are the store's, containers are
//! `container`'s directories, and a started container is owned by its `kiln __monitor`
//! process, so a `kill -9` of the daemon loses nothing.
//!
//! L6: may use what `build` may, and `container` and `build`.

mod archive;
mod attach;
mod build;
mod containers;
mod copy;
mod error;
mod events;
mod exec;
mod filters;
mod http;
mod images;
mod listing;
mod networks;
mod prune;
mod push;
mod server;
mod system;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::Method;

use crate::registry::{Client, ClientConfig};
use crate::store::{Lease, Store};

pub use error::{DaemonError, Result};
pub use networks::network_json;
pub use server::{ServeOptions, serve, socket_path};

/// The newest API version served (and the one `/_ping` announces).
pub const API_VERSION: &str = "1.45";
/// The oldest API version served: docker 20.10's client.
pub const MIN_API_VERSION: &str = "1.41";

/// What every request handler reaches: the store, the registry client, and the exit
/// codes of the monitors this daemon started.
struct Daemon {
    store: Store,
    client: Client,
    /// How `client` was made: builds and pushes with the client's credentials make
    /// clients of their own from it.
    registry: ClientConfig,
    exits: Exits,
    /// The execs created on this daemon (`docker exec`).
    execs: exec::Execs,
}

/// Exit codes of ended monitors by container id (a monitor exits with its container's
/// code), until a `wait` takes them.
#[derive(Clone, Default)]
struct Exits(Arc<Mutex<HashMap<String, i32>>>);

impl Exits {
    fn record(&self, id: String, code: i32) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, code);
    }

    fn take(&self, id: &str) -> Option<i32> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }
}

/// Runs `work` (blocking library calls: disk, locks, polling) off the reactor.
async fn blocking<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await?
}

/// A scratch directory among the store's snapshots (`tmp-KIND-…`) for an uploaded build
/// context or archive, removed on drop. Its lease keeps `image prune` away while it is in
/// use, and prune removes one that a crash leaves behind.
struct Scratch {
    dir: PathBuf,
    _lease: Lease,
}

impl Scratch {
    async fn create(store: &Store, kind: &str) -> Result<Scratch> {
        let store = store.clone();
        let dir = store
            .snapshots_dir()
            .join(format!("tmp-{kind}-{}", crate::store::random_name()));
        blocking(move || {
            let lease = store.lease()?;
            std::fs::create_dir(&dir).map_err(error::io_err("create", &dir))?;
            Ok(Scratch { dir, _lease: lease })
        })
        .await
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Answers one request: the route's response, or Docker's error body.
async fn handle(daemon: Arc<Daemon>, request: http::Request) -> http::Response {
    match route(daemon, request).await {
        Ok(response) => response,
        Err(error) => http::error(&error),
    }
}

async fn route(daemon: Arc<Daemon>, request: http::Request) -> Result<http::Response> {
    let path = request.path.trim_end_matches('/').to_string();
    let (section, rest) = match path.trim_start_matches('/').split_once('/') {
        Some((section, rest)) => (section.to_string(), rest.to_string()),
        None => (path.trim_start_matches('/').to_string(), String::new()),
    };
    match (&request.method, section.as_str(), rest.as_str()) {
        (&Method::GET | &Method::HEAD, "_ping", "") => Ok(system::ping(&request.method)),
        (&Method::GET, "version", "") => Ok(system::version()),
        (&Method::GET, "info", "") => system::info(&daemon).await,
        (&Method::GET, "events", "") => events::stream(daemon, &request),
        (&Method::GET, "system", "df") => system::df(&daemon).await,
        (&Method::POST, "build", "") => build::build(daemon, &request).await,
        (_, "images", _) => images::route(daemon, &request, &rest).await,
        (_, "containers", _) => containers::route(daemon, &request, &rest).await,
        (_, "volumes", _) => volumes::route(daemon, &request, &rest).await,
        (_, "networks", _) => networks::route(daemon, &request, &rest).await,
        (_, "exec", _) => exec::route(daemon, &request, &rest).await,
        _ => Err(DaemonError::NoRoute),
    }
}
