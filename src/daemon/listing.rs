//! Which containers `GET /containers/json` and which images `GET /images/json` list:
//! `all`, `limit` and Docker's `filters` for each (an unknown filter name is a 400).

use std::collections::BTreeMap;

use serde_json::Value;

use super::containers::status_word;
use super::filters::{Filters, glob_match};
use super::http::Request;
use super::{DaemonError, Result};
use crate::container::{Container, Status};
use crate::store::Store;

const CONTAINER_FILTERS: &[&str] = &[
    "id", "name", "label", "label!", "status", "ancestor", "exited", "before", "since", "network",
];
const IMAGE_FILTERS: &[&str] = &[
    "dangling",
    "label",
    "label!",
    "reference",
    "before",
    "since",
];
/// Docker's container states (`status=` takes only these).
const STATES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// What `GET /containers/json` asks for, read from the request before the store is.
pub(super) struct ContainerQuery {
    filters: Filters,
    exited: Vec<i32>,
    limit: Option<usize>,
    /// Stopped containers too: `all`, or a status filter or a limit, as dockerd does.
    everything: bool,
}

impl ContainerQuery {
    pub fn of(request: &Request) -> Result<ContainerQuery> {
        let filters = Filters::of(request, CONTAINER_FILTERS)?;
        for status in filters.values("status") {
            if !STATES.contains(&status.as_str()) {
                return Err(DaemonError::BadRequest(format!(
                    "invalid filter 'status={status}'"
                )));
            }
        }
        let exited = filters
            .values("exited")
            .iter()
            .map(|code| {
                code.parse()
                    .map_err(|_| DaemonError::BadRequest(format!("invalid filter 'exited={code}'")))
            })
            .collect::<Result<_>>()?;
        let limit = match request.param("limit").filter(|l| !l.is_empty()) {
            Some(l) => Some(
                l.parse::<i64>()
                    .map_err(|_| DaemonError::BadRequest(format!("invalid limit: {l}")))?,
            ),
            None => None,
        }
        .filter(|l| *l > 0)
        .map(|l| l as usize);
        let everything = request.flag("all") || filters.has("status") || limit.is_some();
        Ok(ContainerQuery {
            filters,
            exited,
            limit,
            everything,
        })
    }
}

/// The containers (newest first, as `container::list` gives them) `query` asks for.
pub(super) fn containers(
    store: &Store,
    query: &ContainerQuery,
    all: Vec<Container>,
) -> Result<Vec<Container>> {
    let (filters, exited, everything) = (&query.filters, &query.exited, query.everything);
    let created_of = |query: &String| -> Result<String> {
        all.iter()
            .find(|c| c.config.name == query.trim_start_matches('/') || c.config.id == *query)
            .or_else(|| {
                let matching: Vec<&Container> = all
                    .iter()
                    .filter(|c| c.config.id.starts_with(query.as_str()))
                    .collect();
                (matching.len() == 1).then(|| matching[0])
            })
            .map(|c| c.config.created.clone())
            .ok_or_else(|| DaemonError::NotFound(format!("No such container: {query}")))
    };
    let before: Vec<String> = filters
        .values("before")
        .iter()
        .map(created_of)
        .collect::<Result<_>>()?;
    let since: Vec<String> = filters
        .values("since")
        .iter()
        .map(created_of)
        .collect::<Result<_>>()?;
    let ancestors = ancestor_ids(store, filters.values("ancestor"));
    let networks = network_names(store, filters.values("network"));
    let mut chosen: Vec<Container> = all
        .iter()
        .filter(|c| everything || c.state.status == Status::Running)
        .filter(|c| {
            let (config, state) = (&c.config, &c.state);
            let any = |name: &str, test: &dyn Fn(&String) -> bool| {
                let values = filters.values(name);
                values.is_empty() || values.iter().any(test)
            };
            any("id", &|id| config.id.starts_with(id.as_str()))
                && any("name", &|name| {
                    config.name.contains(name.trim_start_matches('/'))
                })
                && any("status", &|status| status == status_word(state.status))
                && (exited.is_empty()
                    || (state.status == Status::Exited
                        && exited.contains(&state.exit_code.unwrap_or(0))))
                && (ancestors.is_empty()
                    || ancestors
                        .iter()
                        .any(|a| *a == config.image || *a == config.image_ref))
                && before.iter().all(|t| config.created < *t)
                && since.iter().all(|t| config.created > *t)
                && filters.labels_match(&config.labels)
                && (networks.is_empty() || on_networks(config).any(|n| networks.contains(&n)))
        })
        .cloned()
        .collect();
    if let Some(limit) = query.limit {
        chosen.truncate(limit);
    }
    Ok(chosen)
}

/// The network names a `network` filter names (by name or id; `host` and `none` too).
fn network_names(store: &Store, wanted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .map(|w| {
            let pseudo = crate::network::PSEUDO
                .iter()
                .find(|(name, _)| crate::network::pseudo_id(name).starts_with(w.as_str()));
            match (crate::network::find(store, w), pseudo) {
                (Ok(network), _) => network.name,
                (Err(_), Some((name, _))) if w.len() >= 12 => name.to_string(),
                _ => w.clone(),
            }
        })
        .collect()
}

/// The networks a container is on, by name.
fn on_networks(config: &crate::container::ContainerConfig) -> impl Iterator<Item = String> + '_ {
    let mode = match config.network {
        crate::container::NetworkMode::Host => Some("host".to_string()),
        crate::container::NetworkMode::None => Some("none".to_string()),
        crate::container::NetworkMode::Bridge => None,
    };
    mode.into_iter()
        .chain(config.networks.iter().map(|a| a.network.clone()))
}

/// The image ids (and the names as given) an `ancestor` filter names.
fn ancestor_ids(store: &Store, ancestors: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for ancestor in ancestors {
        ids.push(ancestor.clone());
        if let Ok((_, image)) = crate::image::resolve(store, ancestor) {
            ids.push(image.config_digest.to_string());
        }
    }
    ids
}

/// The filters of `GET /images/json`.
pub(super) fn image_filters(request: &Request) -> Result<Filters> {
    Filters::of(request, IMAGE_FILTERS)
}

/// The image summaries (`images::summaries`) `filters` keep; with a `reference` filter,
/// an image shows only the tags it matched.
pub(super) fn images(filters: &Filters, summaries: Vec<Value>) -> Result<Vec<Value>> {
    // Every image kiln holds has a name: none is dangling.
    if filters.boolean("dangling")? == Some(true) {
        return Ok(Vec::new());
    }
    let created_of = |query: &String| -> Result<i64> {
        summaries
            .iter()
            .find(|image| {
                image["Id"].as_str().is_some_and(|id| {
                    id == query || id.trim_start_matches("sha256:").starts_with(query.as_str())
                }) || names(image).any(|name| name == *query || name == format!("{query}:latest"))
            })
            .and_then(|image| image["Created"].as_i64())
            .ok_or_else(|| DaemonError::NotFound(format!("No such image: {query}")))
    };
    let before: Vec<i64> = filters
        .values("before")
        .iter()
        .map(created_of)
        .collect::<Result<_>>()?;
    let since: Vec<i64> = filters
        .values("since")
        .iter()
        .map(created_of)
        .collect::<Result<_>>()?;
    let patterns = filters.values("reference");
    let mut kept = Vec::new();
    for mut image in summaries {
        let created = image["Created"].as_i64().unwrap_or(0);
        let labels: BTreeMap<String, String> =
            serde_json::from_value(image["Labels"].clone()).unwrap_or_default();
        if !filters.labels_match(&labels)
            || !before.iter().all(|t| created < *t)
            || !since.iter().all(|t| created > *t)
        {
            continue;
        }
        if !patterns.is_empty() {
            let matched: Vec<String> = names(&image)
                .filter(|name| patterns.iter().any(|p| reference_matches(p, name)))
                .collect();
            if matched.is_empty() {
                continue;
            }
            image["RepoTags"] = Value::from(matched);
        }
        kept.push(image);
    }
    Ok(kept)
}

fn names(image: &Value) -> impl Iterator<Item = String> + '_ {
    image["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
}

/// Docker's `reference` filter: the pattern against `name:tag`, or against the name alone.
fn reference_matches(pattern: &str, tagged: &str) -> bool {
    let repository =
        tagged.rsplit_once(':').map_or(
            tagged,
            |(repo, tag)| {
                if tag.contains('/') { tagged } else { repo }
            },
        );
    glob_match(pattern, tagged) || glob_match(pattern, repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:lat*", "busybox:latest"));
        assert!(reference_matches(
            "127.0.0.1:5000/*",
            "127.0.0.1:5000/app:v1"
        ));
        assert!(!reference_matches("busy", "busybox:latest"));
    }
}
