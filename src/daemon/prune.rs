//! `POST /containers/prune`, `/images/prune` and `/volumes/prune`: what is not in use goes,
//! through the library calls of `kiln rm`, `kiln rmi`/`kiln image prune` and `kiln volume
//! rm`, answered in Docker's shapes with the bytes freed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::filters::Filters;
use super::http::{self, Request};
use super::{Daemon, Result, blocking};
use crate::container::{self, Status, volume};
use crate::image::{self, Removed};
use crate::store::disk_usage;

/// Docker's `null` for an empty list of what was removed.
fn list_or_null(items: Vec<Value>) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items)
    }
}

/// `POST /containers/prune?filters=`: every container that is not running (`label`,
/// `label!`, `until` narrow it).
pub(super) async fn containers(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let filters = Filters::of(request, &["label", "label!", "until"])?;
    let store = daemon.store.clone();
    let (deleted, reclaimed) = blocking(move || {
        let now = container::now_secs();
        let (mut deleted, mut reclaimed) = (Vec::new(), 0);
        for found in container::list(&store)? {
            let created = image::parse_rfc3339(&found.config.created).unwrap_or(0);
            if found.state.status == Status::Running
                || !filters.labels_match(&found.config.labels)
                || !filters.until_match(created, now)?
            {
                continue;
            }
            let size = disk_usage(&found.dir.join("upper"));
            match container::remove(&store, &found.config.id, false) {
                Ok(()) => {
                    deleted.push(json!(found.config.id));
                    reclaimed += size;
                }
                // Started or removed meanwhile: not this prune's to remove.
                Err(
                    container::ContainerError::Running(_) | container::ContainerError::NotFound(_),
                ) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok((deleted, reclaimed))
    })
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "ContainersDeleted": list_or_null(deleted), "SpaceReclaimed": reclaimed }),
    ))
}

/// `POST /images/prune?filters=`: by default the dangling images, which in kiln are the
/// blobs and snapshots no name reaches (every image kiln lists has a name); with
/// `dangling=false` also every image no container uses (its names removed first).
/// `label`, `label!` and `until` choose among the named images.
pub(super) async fn images(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let filters = Filters::of(request, &["dangling", "label", "label!", "until"])?;
    let dangling_only = filters.boolean("dangling")?.unwrap_or(true);
    let store = daemon.store.clone();
    let (deleted, reclaimed) = blocking(move || {
        let mut deleted = Vec::new();
        if !dangling_only {
            let used: HashSet<String> = container::list(&store)?
                .into_iter()
                .map(|c| c.config.image)
                .collect();
            let now = container::now_secs();
            for summary in super::images::summaries(&store)? {
                let id = summary["Id"].as_str().unwrap_or_default().to_string();
                let hex = id.trim_start_matches("sha256:").to_string();
                let runs_in_a_container = used.contains(&id)
                    || image::resolve(&store, &hex)
                        .is_ok_and(|(_, image)| used.contains(&image.config_digest.to_string()));
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(summary["Labels"].clone()).unwrap_or_default();
                let created = summary["Created"].as_i64().unwrap_or(0);
                if runs_in_a_container
                    || !filters.labels_match(&labels)
                    || !filters.until_match(created, now)?
                {
                    continue;
                }
                for Removed::Untagged(name) in image::remove(&store, &hex, true)? {
                    deleted.push(json!({ "Untagged": name }));
                }
                deleted.push(json!({ "Deleted": id }));
            }
        }
        let report = image::prune(&store)?;
        Ok((deleted, report.bytes()))
    })
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "ImagesDeleted": list_or_null(deleted), "SpaceReclaimed": reclaimed }),
    ))
}

/// `POST /volumes/prune?filters=`: the volumes no container uses — from API 1.42 on only
/// the anonymous ones unless `all=true`, before it all of them, as dockerd does; `label`
/// and `label!` narrow it.
pub(super) async fn volumes(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let filters = Filters::of(request, &["label", "label!", "all"])?;
    let before_1_42 = request.version.is_some_and(|version| version < (1, 42));
    let all = filters.boolean("all")?.unwrap_or(before_1_42);
    let store = daemon.store.clone();
    let (deleted, reclaimed) = blocking(move || {
        let (mut deleted, mut reclaimed) = (Vec::new(), 0);
        for found in volume::list(&store)? {
            if !(all || found.anonymous)
                || !filters.labels_match(&found.labels)
                || !volume::users(&store, &found)?.is_empty()
            {
                continue;
            }
            let size = disk_usage(&found.mountpoint);
            volume::remove(&store, &found.name)?;
            deleted.push(json!(found.name));
            reclaimed += size;
        }
        Ok((deleted, reclaimed))
    })
    .await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "VolumesDeleted": list_or_null(deleted), "SpaceReclaimed": reclaimed }),
    ))
}
