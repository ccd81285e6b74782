//! `HEAD`, `GET` and `PUT /containers/{id}/archive?path=`: what `docker cp` calls. HEAD and
//! GET answer with the path's stat in `X-Docker-Container-Path-Stat` (base64 JSON), GET
//! with a tar of it; PUT extracts a tar into a directory (`noOverwriteDirNonDir`
//! refuses to replace a directory with a file or the reverse). `container::archive` does
//! the work, every path resolved inside the container's root.

use std::fs::File;
use std::sync::Arc;

use base64::Engine;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::archive::ChannelWriter;
use super::http::{self, Request, save_upload};
use super::{Daemon, DaemonError, Result, Scratch, blocking};
use crate::container::{self, FileKind as Kind, PathStat};

const STAT_HEADER: &str = "x-docker-container-path-stat";

pub(super) async fn route(
    daemon: &Arc<Daemon>,
    id: String,
    request: &Request,
) -> Result<http::Response> {
    let path = request
        .param("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| DaemonError::BadRequest("path cannot be empty".into()))?
        .to_string();
    if request.method == Method::PUT {
        return put(daemon, id, path, request).await;
    }
    let (store, query, asked) = (daemon.store.clone(), id.clone(), path.clone());
    let stat = blocking(move || Ok(container::stat_path(&store, &query, &asked)?)).await?;
    let mut response = if request.method == Method::HEAD {
        http::empty(StatusCode::OK)
    } else {
        let (response, sender) = http::stream("application/x-tar");
        let store = daemon.store.clone();
        tokio::task::spawn_blocking(move || {
            // A failure midway ends the stream early: the client sees a truncated archive.
            let out =
                std::io::BufWriter::with_capacity(super::archive::CHUNK, ChannelWriter(sender));
            let _ = container::archive_path(&store, &id, &path, out);
        });
        response
    };
    if let Ok(value) = HeaderValue::from_str(&stat_header(&stat)) {
        response.headers_mut().insert(STAT_HEADER, value);
    }
    Ok(response)
}

/// `PUT`: the archive is saved under the store, then extracted.
async fn put(
    daemon: &Arc<Daemon>,
    id: String,
    path: String,
    request: &Request,
) -> Result<http::Response> {
    let no_overwrite = request.flag("noOverwriteDirNonDir");
    let upload = request.take_upload()?;
    let scratch = Scratch::create(&daemon.store, "cp").await?;
    let archive = scratch.dir.join("archive.tar");
    save_upload(upload, &archive).await?;
    let store = daemon.store.clone();
    blocking(move || {
        let file = File::open(&archive).map_err(super::error::io_err("open", &archive))?;
        container::extract_archive(&store, &id, &path, file, no_overwrite)?;
        drop(scratch);
        Ok(())
    })
    .await?;
    Ok(http::empty(StatusCode::OK))
}

/// Go's `os.FileMode` of a stat: permission bits, and Go's own bits for the type,
/// setuid, setgid and sticky.
fn go_mode(stat: &PathStat) -> u32 {
    let kind = match stat.kind {
        Kind::Dir => 1 << 31,
        Kind::Symlink => 1 << 27,
        Kind::Fifo => 1 << 25,
        Kind::Socket => 1 << 24,
        Kind::CharDevice => (1 << 26) | (1 << 21),
        Kind::BlockDevice => 1 << 26,
        Kind::File => 0,
    };
    let special = [(0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)]
        .iter()
        .filter(|(unix, _)| stat.permissions & unix != 0)
        .fold(0, |bits, (_, go)| bits | go);
    kind | special | (stat.permissions & 0o777)
}

/// The value of `X-Docker-Container-Path-Stat`.
fn stat_header(stat: &PathStat) -> String {
    let value = json!({
        "name": stat.name,
        "size": stat.size,
        "mode": go_mode(stat),
        "mtime": crate::oci::time::format_rfc3339(stat.mtime.0, Some(stat.mtime.1)),
        "linkTarget": stat.link_target,
    });
    base64::engine::general_purpose::STANDARD.encode(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_file_modes() {
        let stat = |kind, permissions| PathStat {
            name: "x".into(),
            size: 0,
            kind,
            permissions,
            mtime: (0, 0),
            link_target: String::new(),
        };
        assert_eq!(go_mode(&stat(Kind::Dir, 0o755)), 0x8000_01ed);
        assert_eq!(go_mode(&stat(Kind::File, 0o4755)), (1 << 23) | 0o755);
        assert_eq!(go_mode(&stat(Kind::Symlink, 0o777)), (1 << 27) | 0o777);
        let header = stat_header(&stat(Kind::File, 0o644));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header)
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(value["mode"], 0o644);
        assert!(
            value["mtime"]
                .as_str()
                .unwrap()
                .starts_with("1970-01-01T00:00:00")
        );
    }
}
