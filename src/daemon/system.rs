//! `/_ping`, `/version` and `/info`: what the docker CLI asks first and prints; and
//! `/system/df`.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{self, Body};
use super::{API_VERSION, Daemon, MIN_API_VERSION, Result, blocking};
use crate::container::{self, Status};
use crate::oci::Platform;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET|HEAD /_ping`: `OK` (no body for HEAD), with the API version in the headers.
pub(super) fn ping(method: &Method) -> http::Response {
    let body = (method == Method::GET).then(|| bytes::Bytes::from_static(b"OK"));
    let mut response = http::respond(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Body::Full(body),
    );
    let headers = response.headers_mut();
    headers.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    response
}

/// A first line of a `/proc` file, trimmed (empty when unreadable).
fn proc_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// The architecture in Go's words (`amd64`, `arm64`), as Docker reports it.
fn go_arch() -> String {
    Platform::host().architecture
}

/// `GET /version`.
pub(super) fn version() -> http::Response {
    let kernel = proc_line("/proc/sys/kernel/osrelease");
    json_ok(&json!({
        "Platform": { "Name": "kiln" },
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": go_arch(),
                "KernelVersion": kernel,
                "Experimental": "false",
            },
        }],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

fn json_ok(value: &Value) -> http::Response {
    http::json(StatusCode::OK, value)
}

/// `PRETTY_NAME` of `/etc/os-release`.
fn operating_system() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|value| value.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn memory_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// `GET /info`: the fields `docker info` prints, counts from the store.
pub(super) async fn info(daemon: &Arc<Daemon>) -> Result<http::Response> {
    let store = daemon.store.clone();
    let (images, containers) = blocking(move || {
        let mut ids: Vec<String> = crate::image::list(&store)?
            .into_iter()
            .map(|row| row.id.to_string())
            .collect();
        ids.sort();
        ids.dedup();
        Ok((ids.len(), container::list(&store)?))
    })
    .await?;
    let count = |status: Status| {
        containers
            .iter()
            .filter(|c| c.state.status == status)
            .count()
    };
    let running = count(Status::Running);
    // Two objects: one `json!` of every field is past the macro's recursion limit.
    let mut counts = json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": containers.len() - running,
        "Images": images,
        "Driver": "overlayfs",
        "DriverStatus": [],
        "Plugins": { "Volume": [], "Network": ["host", "null"], "Authorization": null, "Log": [] },
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": false,
        "CpuCfsQuota": false,
        "CPUShares": false,
        "CPUSet": false,
        "PidsLimit": true,
        "IPv4Forwarding": false,
        "Debug": false,
        "NFd": 0,
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": container::now_rfc3339(),
        "LoggingDriver": "kiln",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2",
        "NEventsListener": 0,
    });
    let host = json!({
        "KernelVersion": proc_line("/proc/sys/kernel/osrelease"),
        "OperatingSystem": operating_system(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {},
            "Mirrors": [],
        },
        "NCPU": std::thread::available_parallelism().map_or(1, usize::from),
        "MemTotal": memory_total(),
        "DockerRootDir": daemon.store.root().display().to_string(),
        "Name": proc_line("/proc/sys/kernel/hostname"),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": { "kiln": { "path": "kiln" } },
        "DefaultRuntime": "kiln",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null,
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "" },
        "RuncCommit": { "ID": "" },
        "InitCommit": { "ID": "" },
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    });
    if let (Value::Object(counts), Value::Object(host)) = (&mut counts, host) {
        counts.extend(host);
    }
    Ok(json_ok(&counts))
}

/// `GET /system/df`: the store's images (with how many containers use each) and
/// containers (with what each has written); kiln has no volumes or build cache entries
/// to report here. `LayersSize` counts each layer once however many images share it (for
/// an image of several platforms, this machine's platform's layers).
pub(super) async fn df(daemon: &Arc<Daemon>) -> Result<http::Response> {
    let store = daemon.store.clone();
    let (mut images, containers, layers_size) = blocking(move || {
        let images = super::images::summaries(&store)?;
        let mut layers = std::collections::HashMap::new();
        for image in &images {
            let hex = image["Id"].as_str().unwrap_or_default();
            let hex = hex.trim_start_matches("sha256:");
            if let Ok((_, resolved)) = crate::image::resolve(&store, hex) {
                for layer in &resolved.layers {
                    layers.insert(layer.digest().to_string(), layer.size());
                }
            }
        }
        let layers_size: u64 = layers.values().sum();
        Ok((images, container::list(&store)?, layers_size))
    })
    .await?;
    for image in &mut images {
        let id = image["Id"].as_str().unwrap_or_default().to_string();
        let users = containers.iter().filter(|c| c.config.image == id).count();
        image["Containers"] = json!(users);
    }
    let now = container::now_secs();
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| {
            let mut entry = super::containers::summary(c, now);
            entry["SizeRw"] = json!(crate::store::disk_usage(&c.dir));
            entry["SizeRootFs"] = json!(0);
            entry
        })
        .collect();
    Ok(json_ok(&json!({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    })))
}
