//! `POST /containers/{id}/attach`: the connection is hijacked (`101`, then raw bytes),
//! and the container's output goes over it in Docker's multiplexed frames until the
//! container ends. This is how `docker run` without `-d` (and `docker start -a`) shows
//! the output: it attaches, asks to wait, then starts. With `stdin=1`, for a container
//! created with `OpenStdin`, what the client sends is written into the container's stdin
//! fifo; when the client half-closes, the daemon's end of it closes, so a `StdinOnce`
//! container's command reads the end of its input.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::containers::{POLL, follow_log};
use super::http::{self, Request};
use super::{Daemon, Result, blocking};
use crate::container::{self, Container, Status};

/// How long input that has ended waits for its container to start.
const START_WAIT: Duration = Duration::from_secs(60);

pub(super) async fn attach(
    daemon: &Arc<Daemon>,
    id: String,
    request: &Request,
) -> Result<http::Response> {
    let store = daemon.store.clone();
    let found = blocking(move || Ok(container::resolve(&store, &id)?)).await?;
    // Without `logs`, only what the container writes from now on.
    let offset = if request.flag("logs") {
        0
    } else {
        std::fs::metadata(found.log_path()).map_or(0, |m| m.len())
    };
    let stream = request.flag("stream");
    // Opened before the answer, so that input sent before the container starts is kept.
    let stdin = if request.flag("stdin") && found.config.stdin.open {
        let fifo = found.stdin_path();
        // Read-write: opening does not wait for the container to open its end.
        let sender = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&fifo)
            .map_err(super::error::io_err("open", &fifo))?;
        Some(sender)
    } else {
        None
    };
    let upgrade = request.upgrade.clone();
    tokio::spawn(async move {
        // A client that never takes the connection over gets nothing.
        let Ok(upgraded) = upgrade.await else { return };
        let (input, mut io) = tokio::io::split(TokioIo::new(upgraded));
        let feeding = stdin.map(|sender| tokio::spawn(feed(input, sender, found.clone())));
        let (sender, mut frames) = tokio::sync::mpsc::channel(64);
        let follow = if stream {
            tokio::spawn(async move {
                // `docker start -a` of an exited container attaches before it starts.
                if let Some(found) = until_started(found, &sender).await {
                    follow_log(found, offset, sender).await;
                }
            })
        } else {
            drop(sender);
            tokio::spawn(async {})
        };
        while let Some(frame) = frames.recv().await {
            if io.write_all(&frame).await.is_err() {
                // The client is gone: the container runs on, its log keeps the output.
                break;
            }
        }
        drop(frames);
        let _ = follow.await;
        if stream && let Some(feeding) = feeding {
            // The command has ended: no one reads its input any more.
            feeding.abort();
        }
        let _ = io.shutdown().await;
    });
    Ok(http::hijacked())
}

/// Copies the client's input into the container's stdin fifo until the client
/// half-closes (or leaves), then closes the daemon's end — once the container runs (or
/// has run since `before`), so that its end is open and nothing written is lost; a
/// container not started within [`START_WAIT`] (or removed) is not waited for longer.
async fn feed(mut input: impl AsyncRead + Unpin, mut fifo: pipe::Sender, before: Container) {
    let _ = tokio::io::copy(&mut input, &mut fifo).await;
    let started_before = before.state.started_at.clone();
    let mut current = before;
    let deadline = tokio::time::Instant::now() + START_WAIT;
    while current.state.status != Status::Running
        && current.state.started_at == started_before
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
        if current.reload().is_err() {
            break;
        }
    }
    drop(fifo);
}

/// `found` once it is not the exited container it was (started again), polled until
/// then; `None` when the client leaves first.
async fn until_started(
    mut found: Container,
    sender: &tokio::sync::mpsc::Sender<bytes::Bytes>,
) -> Option<Container> {
    let started_before = found.state.started_at.clone();
    while found.state.status == Status::Exited && found.state.started_at == started_before {
        if sender.is_closed() || found.reload().is_err() {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
    Some(found)
}
