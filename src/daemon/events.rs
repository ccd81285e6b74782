//! `GET /events`: what happened to containers and images (the store's event log), past
//! ones from `since`, then new ones as they come until `until` or the client leaves; with
//! Docker's `filters` (`type`, `event`, `container`, `image`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::http::{self, Request};
use super::{Daemon, DaemonError, Result};
use crate::store::events::Event;

/// How often the log is read for new events.
const POLL: Duration = Duration::from_millis(100);

pub(super) fn stream(daemon: Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let since = time_param(request.param("since"))?;
    let until = time_param(request.param("until"))?;
    let filters = Filters::parse(request.param("filters"))?;
    let (response, sender) = http::stream("application/json");
    tokio::spawn(async move {
        let store = daemon.store.clone();
        // Without `since`, only what happens from now on.
        let mut offset = match since {
            Some(_) => 0,
            None => store.read_events(0).1,
        };
        loop {
            let (events, next) = store.read_events(offset);
            offset = next;
            for event in events {
                let at = event.time_nano as f64 / 1e9;
                if since.is_some_and(|since| at < since) || !filters.keep(&event) {
                    continue;
                }
                if until.is_some_and(|until| at > until) {
                    return;
                }
                let Ok(mut line) = serde_json::to_vec(&shown(&event)) else {
                    continue;
                };
                line.push(b'\n');
                if sender.send(Bytes::from(line)).await.is_err() {
                    return; // The client left.
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            if until.is_some_and(|until| now > until) || sender.is_closed() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(response)
}

/// The event as the API sends it: also the older `status`/`id`/`from` fields.
fn shown(event: &Event) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    value["status"] = event.action.clone().into();
    value["id"] = event.actor.id.clone().into();
    if let Some(image) = event.actor.attributes.get("image") {
        value["from"] = image.clone().into();
    }
    value["scope"] = "local".into();
    value
}

/// `since`/`until`: Unix seconds, possibly with a fraction (`1700000000.000000000`).
fn time_param(text: Option<&str>) -> Result<Option<f64>> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f64>().map_err(|_| {
                DaemonError::BadRequest(format!("invalid time {t:?}: give Unix seconds"))
            })
        })
        .transpose()
}

/// `filters`: `{"type":["container"],"event":["start"]}` (or the older `{"type":{"container":true}}`).
#[derive(Debug, Default)]
struct Filters(HashMap<String, Vec<String>>);

/// Docker's `filters` parameter as a map from filter name to wanted values.
pub(super) fn parse_filters(text: Option<&str>) -> Result<HashMap<String, Vec<String>>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(HashMap::new());
    };
    let value: Value = serde_json::from_str(text).map_err(DaemonError::Json)?;
    let object = value
        .as_object()
        .ok_or_else(|| DaemonError::BadRequest("filters must be a JSON object".into()))?;
    let mut filters = HashMap::new();
    for (key, values) in object {
        let list: Vec<String> = match values {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Value::Object(map) => map.keys().cloned().collect(),
            _ => {
                return Err(DaemonError::BadRequest(format!(
                    "filter {key}: a list of values"
                )));
            }
        };
        filters.insert(key.clone(), list);
    }
    Ok(filters)
}

impl Filters {
    fn parse(text: Option<&str>) -> Result<Filters> {
        parse_filters(text).map(Filters)
    }

    fn keep(&self, event: &Event) -> bool {
        self.0.iter().all(|(key, wanted)| {
            let attr = |name: &str| event.actor.attributes.get(name).map(String::as_str);
            let have: Vec<&str> = match key.as_str() {
                "type" => vec![event.kind.as_str()],
                "event" => vec![event.action.as_str()],
                "container" if event.kind == "container" => {
                    vec![event.actor.id.as_str(), attr("name").unwrap_or_default()]
                }
                "image" => vec![
                    attr("image")
                        .or(attr("name"))
                        .unwrap_or(event.actor.id.as_str()),
                ],
                "container" => return false,
                _ => return true,
            };
            wanted.iter().any(|w| {
                have.iter().any(|h| {
                    h == w || (key == "container" && h.starts_with(w.as_str()) && w.len() >= 12)
                })
            })
        })
    }
}
