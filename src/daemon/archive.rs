//! `GET /images/get?names=`, `GET /images/{name}/get` (save: a docker archive, streamed
//! as `image::save` writes it) and `POST /images/load` (a docker or OCI archive, saved
//! under the store, then `image::load`).

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use super::http::{self, Request, save_upload};
use super::images::line;
use super::{Daemon, DaemonError, Result, Scratch, blocking};
use crate::image::{self, ArchiveFormat};

/// How much of the archive is gathered before it goes to the client as one chunk.
pub(super) const CHUNK: usize = 256 << 10;

/// Writes into the response body's channel from a blocking thread; a client gone is a
/// broken pipe, which stops the save.
pub(super) struct ChannelWriter(pub(super) mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(data))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Saves `names` as one docker archive. Every name is looked up first, so a missing
/// image is a 404 rather than a torn stream.
pub(super) async fn save(daemon: &Arc<Daemon>, names: Vec<String>) -> Result<http::Response> {
    if names.is_empty() {
        return Err(DaemonError::BadRequest("no images to save".into()));
    }
    let store = daemon.store.clone();
    let checked = names.clone();
    blocking(move || {
        for name in &checked {
            image::inspect(&store, name)?;
        }
        Ok(())
    })
    .await?;
    let (response, sender) = http::stream("application/x-tar");
    let store = daemon.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, ChannelWriter(sender));
        // A failure midway ends the stream early: the client sees a truncated archive,
        // as dockerd's clients do.
        if image::save(&store, &names, ArchiveFormat::Docker, &mut out).is_ok() {
            let _ = out.flush();
        }
    });
    Ok(response)
}

/// `POST /images/load?quiet=`: the archive is read whole, loaded, and each image
/// reported as dockerd does (`Loaded image: NAME`, or its id when unnamed).
pub(super) async fn load(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let upload = request.take_upload()?;
    let scratch = Scratch::create(&daemon.store, "load").await?;
    let archive = scratch.dir.join("images.tar");
    save_upload(upload, &archive).await?;
    let store = daemon.store.clone();
    let loaded = blocking(move || {
        let file = File::open(&archive).map_err(super::error::io_err("open", &archive))?;
        let loaded = image::load(&store, file, &archive)?;
        drop(scratch);
        Ok(loaded)
    })
    .await?;
    let mut body = Vec::new();
    for image in loaded {
        if image.names.is_empty() {
            body.extend_from_slice(&line(
                &json!({ "stream": format!("Loaded image ID: {}\n", image.id) }),
            ));
        }
        for name in image.names {
            body.extend_from_slice(&line(
                &json!({ "stream": format!("Loaded image: {name}\n") }),
            ));
        }
    }
    Ok(http::respond(
        hyper::StatusCode::OK,
        "application/json",
        http::Body::Full(Some(Bytes::from(body))),
    ))
}
