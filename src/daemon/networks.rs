//! `/networks…`: list, inspect, create, remove, connect, disconnect and prune, in
//! Docker's shapes; and the `NetworkSettings` of a container.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, Request};
use super::{Daemon, DaemonError, Result, blocking};
use crate::container::{self, Container, NetworkMode, Status};
use crate::network::{self, Attachment, Endpoint, Network, NetworkError, PSEUDO};
use crate::store::Store;

impl From<NetworkError> for DaemonError {
    fn from(error: NetworkError) -> Self {
        DaemonError::Container(Box::new(error.into()))
    }
}

pub(super) async fn route(
    daemon: Arc<Daemon>,
    request: &Request,
    rest: &str,
) -> Result<http::Response> {
    let store = daemon.store.clone();
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let id = id.to_string();
    match (&request.method, id.as_str(), action) {
        (&Method::GET, "", "") => {
            let filters = Filters::parse(request.param("filters"))?;
            let listed = blocking(move || {
                let mut out = Vec::new();
                for (name, driver) in PSEUDO {
                    out.push(pseudo_shape(name, driver));
                }
                for network in network::list(&store)? {
                    out.push(shape(&store, &network, false)?);
                }
                Ok(out)
            })
            .await?;
            let shown: Vec<Value> = listed.into_iter().filter(|n| filters.keep(n)).collect();
            Ok(http::json(StatusCode::OK, &Value::Array(shown)))
        }
        (&Method::POST, "create", "") => {
            let body: CreateBody = request.json()?;
            let created = blocking(move || create(&store, body)).await?;
            Ok(http::json(
                StatusCode::CREATED,
                &json!({ "Id": created.id, "Warning": "" }),
            ))
        }
        (&Method::POST, "prune", "") => {
            let removed = blocking(move || Ok(network::prune(&store)?)).await?;
            let names: Vec<&str> = removed.iter().map(|n| n.name.as_str()).collect();
            Ok(http::json(
                StatusCode::OK,
                &json!({ "NetworksDeleted": names }),
            ))
        }
        (_, "", _) => Err(DaemonError::NoRoute),
        (&Method::GET, _, "") => {
            let shown = blocking(move || network_json(&store, &id)).await?;
            Ok(http::json(StatusCode::OK, &shown))
        }
        (&Method::DELETE, _, "") => {
            blocking(move || Ok(network::remove(&store, &id).map(drop)?)).await?;
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
        (&Method::POST, _, "connect") => {
            let body: ConnectBody = request.json()?;
            blocking(move || connect(&store, &id, body)).await?;
            Ok(http::empty(StatusCode::OK))
        }
        (&Method::POST, _, "disconnect") => {
            let body: ConnectBody = request.json()?;
            blocking(move || Ok(container::disconnect_network(&store, &body.container, &id)?))
                .await?;
            Ok(http::empty(StatusCode::OK))
        }
        _ => Err(DaemonError::NoRoute),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    options: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    check_duplicate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: Option<String>,
    config: Vec<IpamConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
}

fn create(store: &Store, body: CreateBody) -> Result<Network> {
    if body.name.is_empty() {
        return Err(DaemonError::BadRequest(
            "network name cannot be empty".into(),
        ));
    }
    if let Some(driver) = body
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "bridge")
    {
        return Err(DaemonError::BadRequest(format!(
            "plugin \"{driver}\" not found: kiln has only the bridge driver"
        )));
    }
    let ipam = body.ipam.unwrap_or_default();
    if let Some(driver) = ipam
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "default")
    {
        return Err(DaemonError::BadRequest(format!(
            "IPAM driver \"{driver}\" not found"
        )));
    }
    if ipam.config.len() > 1 {
        return Err(DaemonError::BadRequest(
            "kiln's networks have one IPv4 subnet".into(),
        ));
    }
    let config = ipam.config.into_iter().next().unwrap_or_default();
    let _ = body.check_duplicate;
    let created = network::create(
        store,
        &body.name,
        network::CreateOptions {
            subnet: config.subnet.filter(|s| !s.is_empty()),
            gateway: config.gateway.filter(|g| !g.is_empty()),
            labels: body.labels,
            options: body.options,
            internal: body.internal,
        },
    );
    match created {
        Err(NetworkError::Exists(name)) => Err(DaemonError::Conflict(format!(
            "network with name {name} already exists"
        ))),
        other => Ok(other?),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
}

/// One entry of `NetworkingConfig.EndpointsConfig`, or a connect's `EndpointConfig`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct EndpointConfig {
    aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

impl EndpointConfig {
    /// The attachment to `network` this config asks for.
    pub(super) fn attachment(&self, network: &str) -> Result<Attachment> {
        let address =
            match self
                .ipam_config
                .as_ref()
                .and_then(|c| c.ipv4_address.as_deref())
                .filter(|a| !a.is_empty())
            {
                Some(text) => Some(text.parse().map_err(|_| {
                    DaemonError::BadRequest(format!("invalid IPv4 address: {text}"))
                })?),
                None => None,
            };
        Ok(Attachment {
            network: network.to_string(),
            aliases: self.aliases.clone().unwrap_or_default(),
            address,
        })
    }
}

fn connect(store: &Store, network: &str, body: ConnectBody) -> Result<()> {
    let attachment = body
        .endpoint_config
        .unwrap_or_default()
        .attachment(network)?;
    Ok(container::connect_network(
        store,
        &body.container,
        attachment,
    )?)
}

/// `docker network inspect`'s object for the network `name` (or id).
pub fn network_json(store: &Store, name: &str) -> Result<Value> {
    if let Some((name, driver)) = PSEUDO
        .iter()
        .find(|(pseudo, _)| *pseudo == name || network::pseudo_id(pseudo) == name)
    {
        return Ok(pseudo_shape(name, driver));
    }
    let found = network::find(store, name)?;
    shape(store, &found, true)
}

fn pseudo_shape(name: &str, driver: &str) -> Value {
    json!({
        "Name": name,
        "Id": network::pseudo_id(name),
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [] },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": {},
    })
}

/// A network as Docker shows it; `Containers` (the running ones on it) for inspect.
fn shape(store: &Store, network: &Network, with_containers: bool) -> Result<Value> {
    let mut containers = serde_json::Map::new();
    if with_containers {
        for endpoint in network::endpoints_of_network(store, network)? {
            containers.insert(
                endpoint.container_id.clone(),
                json!({
                    "Name": endpoint.container_name,
                    "EndpointID": endpoint.id,
                    "MacAddress": endpoint.mac,
                    "IPv4Address": format!("{}/{}", endpoint.address, endpoint.prefix),
                    "IPv6Address": "",
                }),
            );
        }
    }
    Ok(json!({
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{ "Subnet": network.subnet_text(), "Gateway": network.gateway.to_string() }],
        },
        "Internal": network.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": network.options,
        "Labels": network.labels,
    }))
}

/// `filters` of `GET /networks`: name and id (substring/prefix), label, driver, type.
struct Filters(std::collections::HashMap<String, Vec<String>>);

impl Filters {
    fn parse(text: Option<&str>) -> Result<Filters> {
        let map = super::events::parse_filters(text)?;
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "name" | "id" | "label" | "driver" | "type" | "scope" | "dangling"
            ) {
                return Err(DaemonError::BadRequest(format!("invalid filter '{key}'")));
            }
        }
        Ok(Filters(map))
    }

    fn keep(&self, network: &Value) -> bool {
        let text = |key: &str| network[key].as_str().unwrap_or_default().to_string();
        self.0.iter().all(|(key, wanted)| {
            wanted.iter().any(|want| match key.as_str() {
                "name" => text("Name").contains(want.as_str()),
                "id" => text("Id").starts_with(want.as_str()),
                "driver" => text("Driver") == *want,
                "scope" => want == "local",
                "type" => {
                    let predefined = PSEUDO.iter().any(|(n, _)| *n == text("Name"))
                        || text("Name") == network::DEFAULT_BRIDGE;
                    (want == "builtin") == predefined
                }
                "label" => {
                    let labels = &network["Labels"];
                    match want.split_once('=') {
                        Some((k, v)) => labels[k].as_str() == Some(v),
                        None => labels.get(want.as_str()).is_some(),
                    }
                }
                _ => true,
            })
        })
    }
}

/// A container's `NetworkSettings`: its networks (addresses while it runs) and ports.
pub(super) fn settings(store: &Store, found: &Container) -> Value {
    let (c, s) = (&found.config, &found.state);
    let running = s.status == Status::Running;
    let endpoints: Vec<Endpoint> = if running && c.network == NetworkMode::Bridge {
        network::endpoints_of(store, &c.id).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut networks = serde_json::Map::new();
    match c.network {
        NetworkMode::Host | NetworkMode::None => {
            let name = if c.network == NetworkMode::Host {
                "host"
            } else {
                "none"
            };
            networks.insert(
                name.into(),
                endpoint_shape(&network::pseudo_id(name), None, &[]),
            );
        }
        NetworkMode::Bridge => {
            for attachment in &c.networks {
                let network_id = network::find(store, &attachment.network)
                    .map(|n| n.id)
                    .unwrap_or_default();
                let endpoint = endpoints.iter().find(|e| e.network == attachment.network);
                let mut aliases = attachment.aliases.clone();
                if attachment.network != network::DEFAULT_BRIDGE {
                    aliases.push(found.short_id().to_string());
                }
                networks.insert(
                    attachment.network.clone(),
                    endpoint_shape(&network_id, endpoint, &aliases),
                );
            }
        }
    }
    let mut ports = serde_json::Map::new();
    for binding in &s.ports {
        let key = format!("{}/{}", binding.container_port, binding.protocol.as_str());
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({
                "HostIp": binding.host_ip.to_string(),
                "HostPort": binding.host_port.to_string(),
            }));
        }
    }
    let default = endpoints
        .iter()
        .find(|e| e.network == network::DEFAULT_BRIDGE);
    json!({
        "Bridge": "",
        "SandboxID": "",
        "Ports": ports,
        "IPAddress": default.map(|e| e.address.to_string()).unwrap_or_default(),
        "IPPrefixLen": default.map_or(0, |e| e.prefix),
        "Gateway": default.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "MacAddress": default.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

fn endpoint_shape(network_id: &str, endpoint: Option<&Endpoint>, aliases: &[String]) -> Value {
    json!({
        "IPAMConfig": null,
        "Links": null,
        "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
        "NetworkID": network_id,
        "EndpointID": endpoint.map(|e| e.id.clone()).unwrap_or_default(),
        "Gateway": endpoint.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "IPAddress": endpoint.map(|e| e.address.to_string()).unwrap_or_default(),
        "IPPrefixLen": endpoint.map_or(0, |e| e.prefix),
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": endpoint.map(|e| e.mac.clone()).unwrap_or_default(),
        "DriverOpts": null,
    })
}

/// `docker ps`'s `Ports`: one entry per published port.
pub(super) fn port_summary(found: &Container) -> Value {
    Value::Array(
        found
            .state
            .ports
            .iter()
            .map(|b| {
                json!({
                    "IP": b.host_ip.to_string(),
                    "PrivatePort": b.container_port,
                    "PublicPort": b.host_port,
                    "Type": b.protocol.as_str(),
                })
            })
            .collect(),
    )
}
