//! `/volumes…`: list, create, inspect, remove and prune named volumes, in Docker's shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, Request};
use super::{Daemon, DaemonError, Result, blocking};
use crate::container::volume::{self, Volume};

pub(super) async fn route(
    daemon: Arc<Daemon>,
    request: &Request,
    rest: &str,
) -> Result<http::Response> {
    let store = daemon.store.clone();
    match (&request.method, rest) {
        (&Method::GET, "") => {
            let volumes = blocking(move || Ok(volume::list(&store)?)).await?;
            let shown: Vec<Value> = volumes.iter().map(shape).collect();
            Ok(ok(&json!({ "Volumes": shown, "Warnings": [] })))
        }
        (&Method::POST, "create") => {
            let body: CreateBody = request.json()?;
            if body.driver.as_deref().is_some_and(|d| d != "local") {
                return Err(DaemonError::BadRequest(
                    "kiln has only the local volume driver".into(),
                ));
            }
            let created = blocking(move || {
                Ok(volume::create(
                    &store,
                    body.name.as_deref().filter(|n| !n.is_empty()),
                    body.labels,
                )?)
            })
            .await?;
            Ok(http::json(StatusCode::CREATED, &shape(&created)))
        }
        (&Method::POST, "prune") => super::prune::volumes(&daemon, request).await,
        (&Method::GET, name) if !name.is_empty() => {
            let name = name.to_string();
            let found = blocking(move || Ok(volume::get(&store, &name)?)).await?;
            Ok(ok(&shape(&found)))
        }
        (&Method::DELETE, name) if !name.is_empty() => {
            let name = name.to_string();
            blocking(move || Ok(volume::remove(&store, &name)?)).await?;
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(DaemonError::NoRoute),
    }
}

/// The body of `POST /volumes/create`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn ok(value: &Value) -> http::Response {
    http::json(StatusCode::OK, value)
}

/// Docker's volume object.
fn shape(volume: &Volume) -> Value {
    json!({
        "Name": volume.name,
        "Driver": "local",
        "Mountpoint": volume.mountpoint,
        "CreatedAt": volume.created,
        "Labels": volume.labels,
        "Scope": "local",
        "Options": {},
    })
}
