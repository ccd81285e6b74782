//! `POST /containers/{id}/attach`: the connection is hijacked (`101`, then raw bytes),
//! and the container's output goes over it in Docker's multiplexed frames until the
//! container ends. This is how `docker run` without `-d` (and `docker start -a`) shows
//! the output: it attaches, asks to wait, then starts. kiln forwards no stdin.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::containers::{POLL, follow_log};
use super::http::{self, Request};
use super::{Daemon, Result, blocking};
use crate::container::{self, Container, Status};

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
    let upgrade = request.upgrade.clone();
    tokio::spawn(async move {
        // A client that never takes the connection over gets nothing.
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
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
        let _ = io.shutdown().await;
    });
    Ok(http::hijacked())
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
