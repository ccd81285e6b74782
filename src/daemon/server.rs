//! The socket: made with mode 0660 (owned by root and `--group`), refused when another
//! daemon answers on it, served until SIGINT or SIGTERM, removed on the way out.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::error::io_err;
use super::{Daemon, DaemonError, Exits, Result, handle, http};
use crate::registry::{Client, ClientConfig};
use crate::store::Store;

/// How long a stop waits for requests in flight (a `logs --follow` may never end).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and for whom `kiln serve` listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub socket: PathBuf,
    /// The group that may use the socket besides root.
    pub group: Option<String>,
}

/// The socket path of a `--host` value: `unix:///path`.
pub fn socket_path(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
        _ => Err(DaemonError::Host(host.to_string())),
    }
}

/// Serves the API on `options.socket` until SIGINT or SIGTERM; then stops accepting,
/// lets requests in flight finish (up to [`DRAIN_TIMEOUT`]) and removes the socket.
/// `ready` is called once the socket accepts connections.
pub async fn serve(
    store: Store,
    registry: ClientConfig,
    options: &ServeOptions,
    ready: impl FnOnce(&Path),
) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io_err("watch", "SIGINT"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io_err("watch", "SIGTERM"))?;
    let listener = bind(options)?;
    ready(&options.socket);
    let daemon = Arc::new(Daemon {
        store,
        client: Client::new(registry.clone())?,
        registry,
        exits: Exits::default(),
        execs: Default::default(),
    });
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (a client gone at once, no descriptors left) is that
                // client's problem; the daemon keeps serving.
                if let Ok((stream, _)) = accepted {
                    connections.spawn(connection(daemon.clone(), stream, stopping.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&options.socket);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Serves one connection until it closes, or until the daemon stops (then the request in
/// flight finishes and the connection closes).
async fn connection(
    daemon: Arc<Daemon>,
    stream: tokio::net::UnixStream,
    mut stopping: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let daemon = daemon.clone();
        async move {
            let response = match http::Request::read(request).await {
                Ok(request) => handle(daemon, request).await,
                Err(error) => http::error(&error),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopping.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Makes the socket: refuses when a daemon answers there, replaces a stale one.
fn bind(options: &ServeOptions) -> Result<UnixListener> {
    let path = &options.socket;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(DaemonError::NotASocket(path.clone()));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(DaemonError::AlreadyServing(path.clone()));
            }
            std::fs::remove_file(path).map_err(io_err("remove", path))?;
        }
        Err(_) => {}
    }
    let group = options.group.as_deref().map(group_id).transpose()?;
    let listener = UnixListener::bind(path).map_err(io_err("listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("set the mode of", path))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, Some(0), Some(gid))
            .map_err(io_err("set the owner of", path))?;
    }
    Ok(listener)
}

fn group_id(name: &str) -> Result<u32> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(DaemonError::NoSuchGroup(name.to_string())),
        Err(source) => Err(DaemonError::Group {
            name: name.to_string(),
            source,
        }),
    }
}
