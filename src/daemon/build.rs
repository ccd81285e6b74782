//! `POST /build`: the classic builder's endpoint (what `DOCKER_BUILDKIT=0 docker build`
//! and the SDKs' `images.build` call), with kiln's own front end behind it. The body is
//! the context as a tar (gzip or not), unpacked into a scratch directory under the store;
//! the answer streams dockerd's `stream`/`aux`/`errorDetail` lines. A client that goes
//! away cancels the build.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::error::io_err;
use super::http::{self, Request, save_upload};
use super::{Daemon, DaemonError, Result, Scratch, blocking};
use crate::build::{Build, BuildError, BuildRequest, CacheImport, ParsedDockerfile};
use crate::oci::Reference;
use crate::progress::{Event, Sink};
use crate::solve::SolveError;

/// What a build request asks for, read from the query before the body is.
struct Options {
    tags: Vec<Reference>,
    dockerfile: String,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    no_cache: bool,
    pull: bool,
    network: Option<String>,
    platforms: Vec<crate::plan::Platform>,
    cache_from: Vec<CacheImport>,
    quiet: bool,
    /// The client's credentials for the registries it pulls from (`X-Registry-Config`).
    credentials: Option<super::push::ConfigCredentials>,
}

fn bad(message: String) -> DaemonError {
    DaemonError::BadRequest(message)
}

/// A JSON query parameter (`buildargs`, `labels`, `cachefrom`); absent or empty is `T`'s
/// default.
fn json_param<T: serde::de::DeserializeOwned + Default>(
    request: &Request,
    name: &str,
) -> Result<T> {
    match request.param(name).filter(|v| !v.is_empty()) {
        Some(text) => serde_json::from_str(text).map_err(|e| bad(format!("invalid {name}: {e}"))),
        None => Ok(T::default()),
    }
}

fn options(request: &Request, daemon: &Daemon) -> Result<Options> {
    let tags = request
        .params("t")
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|t| crate::image::parse_reference(t).map_err(DaemonError::from))
        .collect::<Result<Vec<_>>>()?;
    let dockerfile = request
        .param("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    // The client sends `null` for an argument it found no value for: left unset.
    let build_args: BTreeMap<String, Option<String>> = json_param(request, "buildargs")?;
    let network = match request.param("networkmode").unwrap_or("") {
        "" | "default" => None,
        mode @ ("host" | "none") => Some(mode.to_string()),
        other => {
            return Err(bad(format!(
                "network mode {other} is not supported: kiln builds with default, host or none"
            )));
        }
    };
    let mut platforms = Vec::new();
    for text in request.param("platform").unwrap_or("").split(',') {
        let text = text.trim();
        if !text.is_empty() {
            platforms.push(
                crate::plan::Platform::parse(text)
                    .map_err(|e| bad(format!("invalid platform {text}: {e}")))?,
            );
        }
    }
    let cache_from: Vec<String> = json_param(request, "cachefrom")?;
    let cache_from = cache_from
        .iter()
        .map(|spec| CacheImport::parse(spec).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    Ok(Options {
        tags,
        dockerfile,
        build_args: build_args
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        labels: json_param(request, "labels")?,
        target: request
            .param("target")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        no_cache: request.flag("nocache"),
        pull: request.flag("pull"),
        network,
        platforms,
        cache_from,
        quiet: request.flag("q"),
        credentials: super::push::ConfigCredentials::parse(
            request.header("x-registry-config"),
            daemon.registry.credentials.clone(),
        )?,
    })
}

/// `POST /build`: reads the context, then answers 200 with the build's stream (a
/// Dockerfile that does not parse is an error line in it, as dockerd answers).
pub(super) async fn build(daemon: Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let options = options(request, &daemon)?;
    let upload = request.take_upload()?;
    let scratch = Scratch::create(&daemon.store, "build-context").await?;
    let archive = scratch.dir.join("context.tar");
    let context = scratch.dir.join("context");
    save_upload(upload, &archive).await?;
    blocking(move || unpack_context(&archive, &context)).await?;
    let (response, sender) = http::stream("application/json");
    tokio::spawn(async move {
        let result = run(&daemon, &scratch, options, &sender).await;
        if let Err(message) = result {
            let _ = sender
                .send(line(
                    &json!({ "errorDetail": { "message": message }, "error": message }),
                ))
                .await;
        }
        drop(scratch);
    });
    Ok(response)
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn stream_line(text: &str) -> Bytes {
    line(&json!({ "stream": text }))
}

/// Parses the Dockerfile and runs the build; the error text when it fails.
async fn run(
    daemon: &Daemon,
    scratch: &Scratch,
    options: Options,
    sender: &mpsc::Sender<Bytes>,
) -> std::result::Result<(), String> {
    let context = scratch.dir.join("context");
    let bytes = read_dockerfile(&context, &options.dockerfile).map_err(|e| e.to_string())?;
    let parsed = ParsedDockerfile::parse(&bytes).map_err(|diagnostics| {
        let lines: Vec<String> = diagnostics
            .iter()
            .map(|d| {
                format!(
                    "{}:{}: {}",
                    options.dockerfile, d.span.start.line, d.message
                )
            })
            .collect();
        lines.join("\n")
    })?;
    let quiet = options.quiet;
    let tags = options.tags.clone();
    let request = BuildRequest {
        stages: parsed.stages,
        escape: parsed.escape,
        dockerfile_name: options.dockerfile.clone(),
        // Steps are identified by it (to explain cache misses): the scratch directory's
        // name would change with every upload.
        dockerfile_path: options.dockerfile,
        context,
        target: options.target,
        tags: options.tags,
        build_args: options.build_args,
        labels: options.labels,
        no_cache: options.no_cache,
        no_cache_filter: Vec::new(),
        pull: options.pull,
        network: options.network,
        allow_insecure: false,
        secrets: BTreeMap::new(),
        ssh: BTreeMap::new(),
        platforms: options.platforms,
        jobs: None,
        cache_from: options.cache_from,
        cache_to: Vec::new(),
        outputs: Vec::new(),
        stdout: None,
    };
    let (sink, events) = Sink::channel();
    let forward = tokio::spawn(forward_progress(events, sender.clone(), quiet));
    let (cancel, cancelled) = watch::channel(false);
    // The response body dropped (the client went away) cancels the build.
    let watcher = {
        let sender = sender.clone();
        tokio::spawn(async move {
            sender.closed().await;
            let _ = cancel.send(true);
        })
    };
    let registry = match options.credentials {
        Some(credentials) => crate::registry::ClientConfig {
            credentials: Arc::new(credentials),
            ..daemon.registry.clone()
        },
        None => daemon.registry.clone(),
    };
    let builder = Build::new(daemon.store.clone(), registry);
    let outcome = builder.run(request, &sink, cancelled).await;
    drop(sink);
    watcher.abort();
    let _ = forward.await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return Err(failure(sender, error).await),
    };
    let id = outcome.exported.image_id.to_string();
    let mut lines = vec![line(&json!({ "aux": { "ID": id } }))];
    if quiet {
        // What `docker build -q` prints: the stream, which is the id alone.
        lines.push(stream_line(&format!("{id}\n")));
    } else {
        let short: String = outcome.exported.image_id.hex().chars().take(12).collect();
        lines.push(stream_line(&format!("Successfully built {short}\n")));
        for tag in &tags {
            lines.push(stream_line(&format!(
                "Successfully tagged {}\n",
                super::images::shown_name(tag)
            )));
        }
    }
    for bytes in lines {
        let _ = sender.send(bytes).await;
    }
    Ok(())
}

/// The message of a failed build: a failing step's own words, after its last lines of
/// output (sent as stream lines, as the command line shows them).
async fn failure(sender: &mpsc::Sender<Bytes>, error: BuildError) -> String {
    if let BuildError::Solve { source, .. } = &error
        && let SolveError::Step { message, tail, .. } = &**source
    {
        let mut text = String::new();
        for line in tail.iter() {
            text.push_str(&format!(" > {line}\n"));
        }
        if !text.is_empty() {
            let _ = sender.send(stream_line(&text)).await;
        }
        return message.to_string();
    }
    error.to_string()
}

/// Turns the build's events into `stream` lines, like kiln's plain progress.
async fn forward_progress(
    mut events: mpsc::UnboundedReceiver<Event>,
    sender: mpsc::Sender<Bytes>,
    quiet: bool,
) {
    while let Some(event) = events.recv().await {
        let text = match event {
            _ if quiet => continue,
            Event::VertexStarted { id, name, .. } => format!("#{id} {name}\n"),
            Event::VertexCached { id } => format!("#{id} CACHED\n"),
            Event::VertexLog { id, data, .. } => data
                .lines()
                .map(|l| format!("#{id} {l}\n"))
                .collect::<String>(),
            Event::VertexDone { id, duration } => format!("#{id} DONE {duration:.1}s\n"),
            Event::VertexError { id, message } => format!("#{id} ERROR: {message}\n"),
            Event::VertexCanceled { id } => format!("#{id} CANCELED\n"),
            Event::BuildWarning { message } => format!("WARNING: {message}\n"),
            Event::VertexMiss { .. }
            | Event::VertexProgress { .. }
            | Event::VertexStatus { .. } => {
                continue;
            }
        };
        if sender.send(stream_line(&text)).await.is_err() {
            // The client is gone; the build is being cancelled.
            return;
        }
    }
}

/// The Dockerfile at `name` inside the context, which it may not leave.
fn read_dockerfile(context: &Path, name: &str) -> Result<Vec<u8>> {
    let relative = inside(Path::new(name)).ok_or_else(|| {
        bad(format!(
            "the Dockerfile {name} is outside the build context"
        ))
    })?;
    let path = context.join(relative);
    let real = std::fs::canonicalize(&path)
        .map_err(|e| bad(format!("Cannot locate specified Dockerfile: {name} ({e})")))?;
    let real_context = std::fs::canonicalize(context).map_err(io_err("resolve", context))?;
    if !real.starts_with(&real_context) {
        return Err(bad(format!(
            "the Dockerfile {name} is outside the build context"
        )));
    }
    std::fs::read(&real).map_err(io_err("read", &real))
}

/// `path` as a path inside a directory: relative, without `..` (`./` parts dropped).
fn inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Unpacks the context archive (plain or gzip, told by its first bytes) into `dest`:
/// directories, files and links only, none of them leading out of `dest`.
fn unpack_context(archive: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir(dest).map_err(io_err("create", dest))?;
    let mut input = BufReader::new(File::open(archive).map_err(io_err("open", archive))?);
    let gzip = input
        .fill_buf()
        .map_err(io_err("read", archive))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    let broken = |e: std::io::Error| bad(format!("the build context is not a tar archive: {e}"));
    for entry in tar.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let kind = entry.header().entry_type();
        let wanted = kind.is_dir() || kind.is_file() || kind.is_symlink() || kind.is_hard_link();
        if !wanted {
            continue;
        }
        let name = entry.path().map_err(broken)?.into_owned();
        if inside(&name).is_none() && name.components().next().is_some() {
            return Err(bad(format!(
                "the build context has a path outside it: {}",
                name.display()
            )));
        }
        // `unpack_in` refuses paths (and link targets of hard links) that leave `dest`,
        // also through symbolic links the archive made.
        let unpacked = entry.unpack_in(dest).map_err(broken)?;
        if !unpacked {
            return Err(bad(format!(
                "the build context has a path outside it: {}",
                name.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // `set_path` refuses `..`; the raw name field takes it as an attacker writes it.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn context_archives_unpack_inside_only() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.tar");
        std::fs::write(&plain, archive(&[("Dockerfile", b"FROM scratch\n")])).unwrap();
        unpack_context(&plain, &dir.path().join("a")).unwrap();
        assert_eq!(
            read_dockerfile(&dir.path().join("a"), "./Dockerfile").unwrap(),
            b"FROM scratch\n"
        );
        assert!(read_dockerfile(&dir.path().join("a"), "../plain.tar").is_err());

        let gz = dir.path().join("ctx.tar.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &archive(&[("x/y", b"hi")])).unwrap();
        std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
        unpack_context(&gz, &dir.path().join("b")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b/x/y")).unwrap(), b"hi");

        let escape = dir.path().join("escape.tar");
        std::fs::write(&escape, archive(&[("../outside", b"no")])).unwrap();
        assert!(unpack_context(&escape, &dir.path().join("c")).is_err());
        assert!(!dir.path().join("outside").exists());
    }
}
