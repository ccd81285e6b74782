//! `/images/…`: list, inspect, history, tag, remove and pull (`push` pushes, `archive`
//! saves and loads) (a stream of JSON progress
//! lines, as dockerd sends them). Image names may contain `/`, so the name is the rest of
//! the path before the endpoint's last segment.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::http::{self, Request};
use super::{Daemon, DaemonError, Result, blocking};
use crate::image::{self, Removed};
use crate::oci::Reference;
use crate::progress::{Clock, Event, Items, Sink};
use crate::store::Store;

pub(super) async fn route(
    daemon: Arc<Daemon>,
    request: &Request,
    rest: &str,
) -> Result<http::Response> {
    let method = &request.method;
    if method == Method::GET && rest == "json" {
        return list(&daemon, request).await;
    }
    if method == Method::POST && rest == "prune" {
        return super::prune::images(&daemon, request).await;
    }
    if method == Method::POST && rest == "create" {
        return pull(&daemon, request);
    }
    if method == Method::GET && rest == "get" {
        let names = request.params("names").into_iter().map(str::to_string);
        return super::archive::save(&daemon, names.collect()).await;
    }
    if method == Method::POST && rest == "load" {
        return super::archive::load(&daemon, request).await;
    }
    let named = |suffix: &str| rest.strip_suffix(suffix).filter(|n| !n.is_empty());
    let name = match (method, named("/json"), named("/history"), named("/tag")) {
        (&Method::GET, Some(name), _, _) => return inspect(&daemon, name).await,
        (&Method::GET, _, Some(name), _) => return history(&daemon, name).await,
        (&Method::POST, _, _, Some(name)) => return tag(&daemon, name, request).await,
        _ => rest,
    };
    if let (&Method::POST, Some(name)) = (method, named("/push")) {
        return super::push::push(&daemon, name, request).await;
    }
    if let (&Method::GET, Some(name)) = (method, named("/get")) {
        return super::archive::save(&daemon, vec![name.to_string()]).await;
    }
    if method == Method::DELETE && !name.is_empty() {
        return remove(&daemon, name, request.flag("force")).await;
    }
    Err(DaemonError::NoRoute)
}

fn ok(value: &Value) -> http::Response {
    http::json(StatusCode::OK, value)
}

/// Seconds since the epoch of an RFC 3339 time (0 when absent or unreadable).
fn unix_time(text: Option<&str>) -> i64 {
    text.and_then(image::parse_rfc3339).unwrap_or(0)
}

/// How Docker names an image in messages: `busybox:latest`, `repo@sha256:…`.
pub(super) fn shown_name(reference: &Reference) -> String {
    match (reference.tag(), reference.digest()) {
        (_, Some(digest)) => format!("{}@{digest}", reference.familiar()),
        (Some(tag), None) => format!("{}:{tag}", reference.familiar()),
        (None, None) => reference.familiar(),
    }
}

/// `GET /images/json?filters=`: one entry per image (id), with all its names.
async fn list(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let filters = super::listing::image_filters(request)?;
    let store = daemon.store.clone();
    let entries = blocking(move || super::listing::images(&filters, summaries(&store)?)).await?;
    Ok(ok(&Value::Array(entries)))
}

/// Docker's image summaries of the store: one per image id, with all its names
/// (`Containers` is -1, not counted, as `/images/json` answers by default).
pub(super) fn summaries(store: &Store) -> Result<Vec<Value>> {
    let rows = image::list(store)?;
    let mut entries: Vec<Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for row in &rows {
        let id = row.id.to_string();
        if seen.contains(&id) {
            continue;
        }
        seen.push(id.clone());
        let names: Vec<&image::ImageSummary> = rows.iter().filter(|r| r.id == row.id).collect();
        let tags: Vec<String> = names
            .iter()
            .filter_map(|r| r.tag.as_ref().map(|t| format!("{}:{t}", r.repository)))
            .collect();
        let query = match &row.tag {
            Some(tag) => format!("{}:{tag}", row.repository),
            None => format!("{}@{}", row.repository, row.digest),
        };
        let inspected = image::inspect(store, &query).unwrap_or_default();
        entries.push(json!({
            "Id": id,
            "ParentId": "",
            "RepoTags": tags,
            "RepoDigests": inspected.get("RepoDigests").cloned().unwrap_or(json!([])),
            "Created": unix_time(row.created.as_deref()),
            "Size": row.size,
            "SharedSize": -1,
            "VirtualSize": row.size,
            "Labels": inspected["Config"].get("Labels").cloned().unwrap_or(json!({})),
            "Containers": -1,
        }));
    }
    Ok(entries)
}

/// `GET /images/{name}/json`.
async fn inspect(daemon: &Arc<Daemon>, name: &str) -> Result<http::Response> {
    let (store, name) = (daemon.store.clone(), name.to_string());
    let mut object = blocking(move || Ok(image::inspect(&store, &name)?)).await?;
    let size = object["Size"].clone();
    object["VirtualSize"] = size;
    // The build container's config, which API 1.45 dropped, stays at every version:
    // docker-compose 1.29 negotiates the newest one and still indexes it (for its
    // `Volumes`) when it recreates a container. kiln keeps none, so it is empty, as
    // dockerd's is for images BuildKit made.
    object["Container"] = json!("");
    object["ContainerConfig"] = empty_container_config();
    Ok(ok(&object))
}

/// Docker's container config with nothing set.
fn empty_container_config() -> Value {
    json!({
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": null,
        "Cmd": null,
        "Image": "",
        "Volumes": null,
        "WorkingDir": "",
        "Entrypoint": null,
        "OnBuild": null,
        "Labels": null,
    })
}

/// `GET /images/{name}/history`, newest first.
async fn history(daemon: &Arc<Daemon>, name: &str) -> Result<http::Response> {
    let (store, name) = (daemon.store.clone(), name.to_string());
    let rows = blocking(move || Ok(image::history(&store, &name)?)).await?;
    let entries: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "Id": row.id.as_ref().map_or("<missing>".to_string(), ToString::to_string),
                "Created": unix_time(row.created.as_deref()),
                "CreatedBy": row.created_by,
                "Tags": null,
                "Size": row.size,
                "Comment": row.comment,
            })
        })
        .collect();
    Ok(ok(&Value::Array(entries)))
}

/// `POST /images/{name}/tag?repo=&tag=`: 201.
async fn tag(daemon: &Arc<Daemon>, name: &str, request: &Request) -> Result<http::Response> {
    let repo = request.param("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(DaemonError::BadRequest(
            "repository name must have at least one component".into(),
        ));
    }
    let tag = request
        .param("tag")
        .filter(|t| !t.is_empty())
        .unwrap_or("latest");
    let target = image::parse_reference(&format!("{repo}:{tag}"))?;
    let (store, name) = (daemon.store.clone(), name.to_string());
    blocking(move || Ok(image::tag(&store, &name, &target)?)).await?;
    Ok(http::empty(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=`: the names removed (content goes with `image prune`).
async fn remove(daemon: &Arc<Daemon>, name: &str, force: bool) -> Result<http::Response> {
    let (store, name) = (daemon.store.clone(), name.to_string());
    let removed = blocking(move || Ok(image::remove(&store, &name, force)?)).await?;
    let entries: Vec<Value> = removed
        .into_iter()
        .map(|Removed::Untagged(name)| json!({ "Untagged": name }))
        .collect();
    Ok(ok(&Value::Array(entries)))
}

/// The reference `POST /images/create` asks for: `fromImage`, with `tag` (a tag or a
/// digest) when given.
fn pull_reference(request: &Request) -> Result<Reference> {
    let from = request.param("fromImage").unwrap_or("");
    if from.is_empty() {
        return Err(DaemonError::BadRequest(
            "kiln imports no images (fromSrc); give fromImage to pull".into(),
        ));
    }
    let name = match request.param("tag").filter(|t| !t.is_empty()) {
        Some(digest) if digest.contains(':') => format!("{from}@{digest}"),
        Some(tag) => format!("{from}:{tag}"),
        None => from.to_string(),
    };
    Ok(image::parse_reference(&name)?)
}

/// One line of the pull stream.
pub(super) fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// `POST /images/create?fromImage=&tag=`: pulls, streaming dockerd's progress lines; a
/// failure after the stream began is an `errorDetail` line.
fn pull(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let reference = pull_reference(request)?;
    let platform = request.platform()?;
    let (response, sender) = http::stream("application/json");
    let daemon = daemon.clone();
    tokio::spawn(async move {
        let shown = shown_name(&reference);
        let tag = reference
            .digest()
            .map(ToString::to_string)
            .or_else(|| reference.tag().map(str::to_string))
            .unwrap_or_else(|| "latest".to_string());
        let repository = reference.repository().to_string();
        let _ = sender
            .send(line(
                &json!({ "status": format!("Pulling from {repository}"), "id": tag }),
            ))
            .await;
        let (sink, events) = Sink::channel();
        let forward = tokio::spawn(forward_progress(events, sender.clone()));
        let items = Items::new(sink, Clock::from_fn(|| 0.0), 0);
        let pulled = image::pull(
            &daemon.store,
            &daemon.client,
            &reference,
            platform.as_ref(),
            items,
        )
        .await;
        let _ = forward.await;
        let lines = match pulled {
            Ok(pulled) => vec![
                json!({ "status": format!("Digest: {}", pulled.digest) }),
                json!({ "status": if pulled.downloaded {
                    format!("Status: Downloaded newer image for {shown}")
                } else {
                    format!("Status: Image is up to date for {shown}")
                }}),
            ],
            Err(error) => {
                let message = DaemonError::from(error).message();
                vec![json!({ "errorDetail": { "message": message }, "error": message })]
            }
        };
        for value in lines {
            let _ = sender.send(line(&value)).await;
        }
    });
    Ok(response)
}

/// Turns the pull's layer events into dockerd's progress lines until the pull is done.
pub(super) async fn forward_progress(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    sender: mpsc::Sender<Bytes>,
) {
    while let Some(event) = events.recv().await {
        if let Event::VertexStatus {
            item,
            status,
            current,
            total,
            ..
        } = event
        {
            let mut value = json!({ "status": status, "id": item, "progressDetail": {} });
            if let Some(current) = current {
                value["progressDetail"] = json!({ "current": current, "total": total });
            }
            // A client gone mid-pull does not stop the pull: it finishes into the store.
            let _ = sender.send(line(&value)).await;
        }
    }
}
