//! `/containers/…`: create, start (under a `kiln __monitor`, so the container outlives
//! the daemon; an exited container runs again), restart, wait, logs (Docker's multiplexed frames), stop, kill, rename, remove, inspect
//! and list.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::http::{self, Request};
use super::networks::EndpointConfig;
use super::{Daemon, DaemonError, Exits, Result, blocking};
use crate::container::{
    self, CgroupLimits, Container, NetworkMode, RunOptions, Status, StdinConfig,
};
use crate::network::{Attachment, PortBinding};
use crate::oci::Platform;

/// How often `wait` and `logs --follow` look at a container's state and log.
pub(super) const POLL: Duration = Duration::from_millis(50);
/// How many [`POLL`]s `wait` gives a monitor to exit after removing its container.
const MONITOR_EXIT_POLLS: usize = 40;
/// Docker's time for `stop` before SIGKILL.
const DEFAULT_STOP_SECONDS: u64 = 10;
const SIGKILL: i32 = 9;
/// Docker's "never" time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(super) async fn route(
    daemon: Arc<Daemon>,
    request: &Request,
    rest: &str,
) -> Result<http::Response> {
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let id = id.to_string();
    match (&request.method, id.as_str(), action) {
        (&Method::GET, "json", "") => list(&daemon, request).await,
        (&Method::POST, "prune", "") => super::prune::containers(&daemon, request).await,
        (&Method::POST, "create", "") => create(&daemon, request).await,
        (_, "", _) => Err(DaemonError::NoRoute),
        (&Method::GET, _, "json") => inspect(&daemon, id).await,
        (&Method::POST, _, "start") => start(&daemon, id).await,
        (&Method::POST, _, "wait") => wait(&daemon, id, request.param("condition")).await,
        (&Method::GET, _, "logs") => logs(&daemon, id, request).await,
        (&Method::POST, _, "attach") => super::attach::attach(&daemon, id, request).await,
        (&Method::POST, _, "exec") => super::exec::create(&daemon, id, request).await,
        (&Method::POST, _, "stop") => stop(&daemon, id, request).await,
        (&Method::POST, _, "restart") => restart(&daemon, id, request).await,
        (&Method::POST, _, "kill") => kill(&daemon, id, request).await,
        (&Method::POST, _, "rename") => rename(&daemon, id, request).await,
        (&Method::POST, _, "resize") => resolve(&daemon, id)
            .await
            .map(|_| http::empty(StatusCode::OK)),
        (&Method::GET | &Method::HEAD | &Method::PUT, _, "archive") => {
            super::copy::route(&daemon, id, request).await
        }
        (&Method::DELETE, _, "") => remove(&daemon, id, request.flag("force")).await,
        _ => Err(DaemonError::NoRoute),
    }
}

/// A 204 (or 304 when nothing changed), as Docker answers container actions.
fn done(changed: bool) -> http::Response {
    http::empty(if changed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

/// Docker's string-or-list (`"Cmd": "sh"` or `"Cmd": ["sh", "-c", …]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(one) => vec![one],
            StrSlice::Many(many) => many,
        }
    }
}

/// The fields of Docker's create body kiln uses; the others are ignored, as dockerd
/// ignores unknown ones.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    image: Option<String>,
    cmd: Option<StrSlice>,
    entrypoint: Option<StrSlice>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    open_stdin: bool,
    stdin_once: bool,
    attach_stdin: bool,
    tty: bool,
    labels: Option<BTreeMap<String, String>>,
    hostname: Option<String>,
    host_config: Option<HostConfig>,
    networking_config: Option<NetworkingConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfig {
    endpoints_config: Option<BTreeMap<String, Option<EndpointConfig>>>,
}

/// One `HostConfig.PortBindings` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostPort {
    host_ip: String,
    host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfig {
    auto_remove: bool,
    network_mode: Option<String>,
    port_bindings: Option<BTreeMap<String, Option<Vec<HostPort>>>>,
    binds: Option<Vec<String>>,
    memory: Option<i64>,
    pids_limit: Option<i64>,
    init: Option<bool>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    security_opt: Option<Vec<String>>,
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// The run options of a create body: Docker's Entrypoint is a list, kiln's one word
/// with the rest of it before the Cmd.
fn run_options(
    body: CreateBody,
    name: Option<String>,
    platform: Option<Platform>,
) -> Result<RunOptions> {
    let image = non_empty(body.image).ok_or_else(|| {
        DaemonError::BadRequest("config cannot be empty in order to create a container".into())
    })?;
    let host = body.host_config.unwrap_or_default();
    let (network, networks) = networks_of(
        host.network_mode.as_deref().unwrap_or(""),
        body.networking_config.unwrap_or_default(),
    )?;
    let ports = port_bindings(host.port_bindings.unwrap_or_default())?;
    let mut args = Vec::new();
    let entrypoint = body.entrypoint.map(StrSlice::into_vec).map(|mut words| {
        let first = if words.is_empty() {
            String::new()
        } else {
            words.remove(0)
        };
        args.extend(words);
        first
    });
    args.extend(body.cmd.map(StrSlice::into_vec).unwrap_or_default());
    let strings = |list: Option<Vec<String>>| list.unwrap_or_default();
    let security = container::parse_security(
        &strings(host.security_opt),
        &strings(host.cap_add),
        &strings(host.cap_drop),
    )?;
    Ok(RunOptions {
        name,
        image_ref: image,
        args,
        entrypoint,
        // `K` alone takes a value from the caller's environment: the client's, never the
        // daemon's (the docker CLI resolves it before sending).
        env: strings(body.env)
            .into_iter()
            .filter(|e| e.contains('='))
            .collect(),
        workdir: non_empty(body.working_dir),
        user: non_empty(body.user),
        hostname: non_empty(body.hostname),
        network,
        networks,
        ports,
        volumes: strings(host.binds),
        limits: CgroupLimits {
            memory_bytes: host.memory.filter(|m| *m > 0).map(|m| m as u64),
            pids: host.pids_limit.filter(|n| *n > 0).map(|n| n as u64),
        },
        auto_remove: host.auto_remove,
        init: host.init.unwrap_or(false),
        platform,
        security,
        stdin: StdinConfig {
            open: body.open_stdin,
            once: body.stdin_once,
            attach: body.attach_stdin,
        },
        tty: body.tty,
        labels: body.labels.unwrap_or_default(),
    })
}

/// The network mode and networks of a create body: `NetworkMode` names the first, and
/// `NetworkingConfig.EndpointsConfig` gives aliases and addresses (and, as API 1.44
/// allows, more networks).
fn networks_of(mode: &str, config: NetworkingConfig) -> Result<(NetworkMode, Vec<Attachment>)> {
    let endpoints = config.endpoints_config.unwrap_or_default();
    let (network, mut networks) = container::network_choice(mode, &[]);
    for attachment in &mut networks {
        if let Some(Some(endpoint)) = endpoints.get(&attachment.network) {
            *attachment = endpoint.attachment(&attachment.network)?;
        }
    }
    if network == NetworkMode::Bridge {
        for (name, endpoint) in &endpoints {
            if !networks.iter().any(|a| &a.network == name) {
                let endpoint = endpoint.clone().unwrap_or_default();
                networks.push(endpoint.attachment(name)?);
            }
        }
    }
    Ok((network, networks))
}

/// `HostConfig.PortBindings`: `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`.
fn port_bindings(bindings: BTreeMap<String, Option<Vec<HostPort>>>) -> Result<Vec<PortBinding>> {
    let mut out = Vec::new();
    for (port, hosts) in bindings {
        for host in hosts.unwrap_or_default() {
            let ip = if host.host_ip.is_empty() || host.host_ip == "0.0.0.0" {
                // Loopback only: kiln publishes nothing on the host's other interfaces
                // unless an address is named.
                String::new()
            } else {
                format!("{}:", host.host_ip)
            };
            let spec = format!("{ip}{}:{port}", host.host_port);
            out.push(
                PortBinding::parse(&spec).map_err(|e| DaemonError::BadRequest(e.to_string()))?,
            );
        }
    }
    Ok(out)
}

/// `POST /containers/create?name=`: 201 `{"Id", "Warnings"}`.
async fn create(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let body: CreateBody = request.json()?;
    let platform = request.platform()?;
    let name = non_empty(request.param("name").map(str::to_string));
    let options = run_options(body, name, platform)?;
    let store = daemon.store.clone();
    let created = blocking(move || Ok(container::create(&store, &options)?)).await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({ "Id": created.config.id, "Warnings": [] }),
    ))
}

async fn resolve(daemon: &Arc<Daemon>, id: String) -> Result<Container> {
    let store = daemon.store.clone();
    blocking(move || Ok(container::resolve(&store, &id)?)).await
}

/// `POST /containers/{id}/start`: under a monitor process the daemon reaps.
async fn start(daemon: &Arc<Daemon>, id: String) -> Result<http::Response> {
    let (store, exits) = (daemon.store.clone(), daemon.exits.clone());
    let started = blocking(move || {
        let mut found = container::resolve(&store, &id)?;
        let was_exited = found.state.status == Status::Exited;
        if !container::ready_to_start(&mut found)? {
            return Ok(false);
        }
        if was_exited {
            exits.take(&found.config.id);
        }
        let mut monitor = container::start_monitor(&store, &found)?;
        let failure = container::start_failure(&found);
        // The monitor exits with the container's code: kept for `wait` on a container
        // that `--rm` removes before its end is seen.
        std::thread::spawn(move || {
            let code = monitor.wait().ok().and_then(|status| status.code());
            if let Some(code) = code {
                exits.record(found.config.id, code);
            }
        });
        if let Some(reason) = failure {
            return Err(container::ContainerError::StartFailed(reason).into());
        }
        Ok(true)
    })
    .await?;
    Ok(done(started))
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed`: the headers at
/// once (the docker CLI starts the container only once it has them), the exit code when
/// the condition is met.
async fn wait(daemon: &Arc<Daemon>, id: String, condition: Option<&str>) -> Result<http::Response> {
    let condition = match condition.filter(|c| !c.is_empty()).unwrap_or("not-running") {
        "not-running" => WaitFor::NotRunning,
        "next-exit" => WaitFor::NextExit,
        "removed" => WaitFor::Removed,
        other => {
            return Err(DaemonError::BadRequest(format!(
                "invalid condition: \"{other}\""
            )));
        }
    };
    let found = resolve(daemon, id).await?;
    let (response, sender) = http::stream("application/json");
    let exits = daemon.exits.clone();
    tokio::spawn(async move {
        let (code, error) = match wait_for(found, condition, &exits).await {
            Ok(code) => (code, Value::Null),
            Err(error) => (-1, json!({ "Message": error.to_string() })),
        };
        let body = json!({ "StatusCode": code, "Error": error });
        let _ = sender.send(Bytes::from(format!("{body}\n"))).await;
    });
    Ok(response)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    NotRunning,
    NextExit,
    Removed,
}

/// Polls the container until `condition` holds; its exit code then.
async fn wait_for(mut current: Container, condition: WaitFor, exits: &Exits) -> Result<i32> {
    loop {
        let ended = match condition {
            WaitFor::NotRunning => current.state.status != Status::Running,
            WaitFor::NextExit => current.state.status == Status::Exited,
            WaitFor::Removed => false,
        };
        if ended {
            break;
        }
        tokio::time::sleep(POLL).await;
        match container::load(&current.dir) {
            Ok(mut reloaded) => {
                // An owner gone without recording the end: refresh records it.
                container::refresh(&mut reloaded)?;
                current = reloaded;
            }
            // Removed (`--rm`, `rm -f`): its monitor's exit, else its last state.
            Err(_) if !current.dir.exists() => {
                // The monitor may still be exiting after removing the container.
                for _ in 0..MONITOR_EXIT_POLLS {
                    if current.state.status == Status::Exited {
                        break;
                    }
                    if let Some(code) = exits.take(&current.config.id) {
                        return Ok(code);
                    }
                    tokio::time::sleep(POLL).await;
                }
                break;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(current.state.exit_code.unwrap_or(0))
}

/// The container's output as the client reads it: a frame of Docker's multiplexed
/// stream (stdout: kiln's log combines both), or raw for a container created with `Tty`.
pub(super) fn output_chunk(found: &Container, data: &[u8]) -> Bytes {
    super::exec::chunk(found.config.tty, 1, data)
}

/// Where the last `tail` lines of `log` begin.
fn tail_start(log: &[u8], tail: Option<usize>) -> usize {
    let Some(lines) = tail else { return 0 };
    if lines == 0 {
        return log.len();
    }
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
        .map_or(0, |(at, _)| at + 1)
}

/// `GET /containers/{id}/logs?stdout&stderr&follow&tail`: kiln's log is stdout and
/// stderr combined, sent as stdout frames; `follow` streams until the container exits.
async fn logs(daemon: &Arc<Daemon>, id: String, request: &Request) -> Result<http::Response> {
    if !request.flag("stdout") && !request.flag("stderr") {
        return Err(DaemonError::BadRequest(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let tail = match request.param("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| DaemonError::BadRequest(format!("invalid tail value: {n}")))?,
        ),
    };
    let follow = request.flag("follow");
    let found = resolve(daemon, id).await?;
    let (response, sender) = http::stream("application/vnd.docker.multiplexed-stream");
    tokio::spawn(async move {
        let log = container::read_log(&found).unwrap_or_default();
        let start = tail_start(&log, tail);
        if start < log.len()
            && sender
                .send(output_chunk(&found, &log[start..]))
                .await
                .is_err()
        {
            return;
        }
        if follow {
            follow_log(found, log.len() as u64, sender).await;
        }
    });
    Ok(response)
}

/// Sends what the log gains from `offset` until the container has ended (or is removed,
/// or the client is gone). The log is opened once: a `--rm` container's log stays
/// readable after its directory is removed.
pub(super) async fn follow_log(mut found: Container, offset: u64, sender: mpsc::Sender<Bytes>) {
    let Ok(mut file) = std::fs::File::open(found.log_path()) else {
        return;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return;
    }
    loop {
        let running = found.reload().is_ok()
            && found.state.status != Status::Exited
            && !container::refresh(&mut found).unwrap_or(true);
        let mut fresh = Vec::new();
        let _ = file.read_to_end(&mut fresh);
        if !fresh.is_empty() && sender.send(output_chunk(&found, &fresh)).await.is_err() {
            return;
        }
        // Read once more after the end, so nothing written before it is lost.
        if !running || sender.is_closed() {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The `t` of `stop` and `restart`: seconds before SIGKILL.
fn stop_seconds(request: &Request) -> Result<u64> {
    Ok(match request.param("t").filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| DaemonError::BadRequest(format!("invalid value for t: {t}")))?
            .max(0) as u64,
        None => DEFAULT_STOP_SECONDS,
    })
}

/// `POST /containers/{id}/restart?t=`: stopped if running, then started again.
async fn restart(daemon: &Arc<Daemon>, id: String, request: &Request) -> Result<http::Response> {
    stop(daemon, id.clone(), request).await?;
    start(daemon, id).await?;
    Ok(done(true))
}

/// `POST /containers/{id}/stop?t=`: 304 when it was not running.
async fn stop(daemon: &Arc<Daemon>, id: String, request: &Request) -> Result<http::Response> {
    let seconds = stop_seconds(request)?;
    let store = daemon.store.clone();
    let stopped = blocking(move || {
        if container::resolve(&store, &id)?.state.status != Status::Running {
            return Ok(false);
        }
        container::stop(&store, &id, Duration::from_secs(seconds))?;
        Ok(true)
    })
    .await?;
    Ok(done(stopped))
}

/// `POST /containers/{id}/kill?signal=` (default SIGKILL).
async fn kill(daemon: &Arc<Daemon>, id: String, request: &Request) -> Result<http::Response> {
    let signal = match request.param("signal").filter(|s| !s.is_empty()) {
        Some(name) => container::parse_signal(name)
            .ok_or_else(|| DaemonError::BadRequest(format!("Invalid signal: {name}")))?,
        None => SIGKILL,
    };
    let store = daemon.store.clone();
    blocking(move || Ok(container::kill(&store, &id, signal)?)).await?;
    Ok(done(true))
}

/// `POST /containers/{id}/rename?name=` (compose renames the container it replaces).
async fn rename(daemon: &Arc<Daemon>, id: String, request: &Request) -> Result<http::Response> {
    let name = non_empty(request.param("name").map(str::to_string))
        .ok_or_else(|| DaemonError::BadRequest("Neither old nor new names may be empty".into()))?;
    let store = daemon.store.clone();
    blocking(move || Ok(container::rename(&store, &id, &name)?)).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `DELETE /containers/{id}?force=`.
async fn remove(daemon: &Arc<Daemon>, id: String, force: bool) -> Result<http::Response> {
    let store = daemon.store.clone();
    blocking(move || Ok(container::remove(&store, &id, force)?)).await?;
    Ok(done(true))
}

pub(super) fn status_word(status: Status) -> &'static str {
    match status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

fn network_mode(config: &container::ContainerConfig) -> String {
    match config.network {
        NetworkMode::Host => "host".into(),
        NetworkMode::None => "none".into(),
        NetworkMode::Bridge => config
            .networks
            .first()
            .map_or_else(|| "none".into(), |a| a.network.clone()),
    }
}

fn binds(found: &Container) -> Vec<String> {
    found
        .config
        .mounts
        .iter()
        .map(|m| {
            let mode = if m.readonly { ":ro" } else { "" };
            format!("{}:{}{mode}", m.source.display(), m.destination)
        })
        .collect()
}

/// `HostConfig.PortBindings` as asked for.
fn port_bindings_of(config: &container::ContainerConfig) -> Value {
    let mut map = serde_json::Map::new();
    for b in &config.ports {
        let key = format!("{}/{}", b.container_port, b.protocol.as_str());
        let entry = map.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            let port = if b.host_port == 0 {
                String::new()
            } else {
                b.host_port.to_string()
            };
            list.push(json!({ "HostIp": b.host_ip.to_string(), "HostPort": port }));
        }
    }
    Value::Object(map)
}

/// The networks `docker ps` names (without addresses, which need the network records).
fn networks_summary(config: &container::ContainerConfig) -> Value {
    let names: Vec<String> = match config.network {
        NetworkMode::Bridge => config.networks.iter().map(|a| a.network.clone()).collect(),
        _ => vec![network_mode(config)],
    };
    Value::Object(names.into_iter().map(|n| (n, json!({}))).collect())
}

/// `GET /containers/{id}/json`.
async fn inspect(daemon: &Arc<Daemon>, id: String) -> Result<http::Response> {
    let found = resolve(daemon, id).await?;
    let store = daemon.store.clone();
    let shown = found.clone();
    let settings = blocking(move || Ok(super::networks::settings(&store, &shown))).await?;
    let (c, s) = (&found.config, &found.state);
    let running = s.status == Status::Running;
    let value = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.command.first().cloned().unwrap_or_default(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": status_word(s.status),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": if running { s.pid.unwrap_or(0) } else { 0 },
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": s.started_at.clone().unwrap_or_else(|| ZERO_TIME.to_string()),
            "FinishedAt": s.finished_at.clone().unwrap_or_else(|| ZERO_TIME.to_string()),
        },
        "Image": c.image,
        "Name": format!("/{}", c.name),
        "RestartCount": 0,
        "Driver": "overlayfs",
        "Platform": "linux",
        "LogPath": found.log_path().display().to_string(),
        "HostConfig": {
            "AutoRemove": c.auto_remove,
            "NetworkMode": network_mode(c),
            "PortBindings": port_bindings_of(c),
            "Binds": binds(&found),
            "Memory": c.limits.memory_bytes.unwrap_or(0),
            "PidsLimit": c.limits.pids.unwrap_or(0),
            "Init": c.init,
            // What `docker logs` reads; clients (compose's `logs`, the SDK's `run`) look
            // for a driver whose logs the API serves, as Docker's default `json-file`'s are.
            "LogConfig": { "Type": "json-file", "Config": {} },
        },
        "Config": {
            "Hostname": c.hostname,
            "User": c.user,
            "Env": c.env,
            "Cmd": c.command,
            "Entrypoint": null,
            "Image": c.image_ref,
            "WorkingDir": c.working_dir,
            "Tty": c.tty,
            "OpenStdin": c.stdin.open,
            "StdinOnce": c.stdin.once,
            "AttachStdin": c.stdin.attach,
            "Labels": c.labels,
        },
        "Mounts": [],
        "NetworkSettings": settings,
    });
    Ok(http::json(StatusCode::OK, &value))
}

/// `GET /containers/json?all=&limit=&filters=`: what `docker ps` prints.
async fn list(daemon: &Arc<Daemon>, request: &Request) -> Result<http::Response> {
    let query = super::listing::ContainerQuery::of(request)?;
    let store = daemon.store.clone();
    let chosen = blocking(move || {
        let all = container::list(&store)?;
        super::listing::containers(&store, &query, all)
    })
    .await?;
    let now = container::now_secs();
    let entries: Vec<Value> = chosen.iter().map(|c| summary(c, now)).collect();
    Ok(http::json(StatusCode::OK, &Value::Array(entries)))
}

/// One container as `/containers/json` (and `/system/df`) lists it.
pub(super) fn summary(c: &Container, now: i64) -> Value {
    json!({
        "Id": c.config.id,
        "Names": [format!("/{}", c.config.name)],
        "Image": c.config.image_ref,
        "ImageID": c.config.image,
        "Command": c.config.command.join(" "),
        "Created": crate::image::parse_rfc3339(&c.config.created).unwrap_or(0),
        "Ports": super::networks::port_summary(c),
        "Labels": c.config.labels,
        "State": status_word(c.state.status),
        "Status": container::status_text(c, now),
        "HostConfig": { "NetworkMode": network_mode(&c.config) },
        "NetworkSettings": { "Networks": networks_summary(&c.config) },
        "Mounts": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_a_log() {
        let log = b"a\nb\nc\n";
        assert_eq!(tail_start(log, None), 0);
        assert_eq!(&log[tail_start(log, Some(1))..], b"c\n");
        assert_eq!(&log[tail_start(log, Some(2))..], b"b\nc\n");
        assert_eq!(tail_start(log, Some(9)), 0);
        assert_eq!(tail_start(log, Some(0)), log.len());
    }

    #[test]
    fn create_body_as_run_options() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"busybox","Entrypoint":["/bin/sh","-c"],"Cmd":"echo hi",
                "Env":["A=1","FROM_CLIENT"],"Unknown":{"x":1},
                "HostConfig":{"NetworkMode":"none","Memory":1048576,"AutoRemove":true}}"#,
        )
        .unwrap();
        let options = run_options(body, Some("n".into()), None).unwrap();
        assert_eq!(options.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(options.args, ["-c", "echo hi"]);
        assert_eq!(options.env, ["A=1"]);
        assert_eq!(options.network, NetworkMode::None);
        assert_eq!(options.limits.memory_bytes, Some(1 << 20));
        assert!(options.auto_remove);
        let bridge: CreateBody =
            serde_json::from_str(r#"{"Image":"busybox","HostConfig":{"NetworkMode":"bridge"}}"#)
                .unwrap();
        // `bridge` is the default bridge network, as Docker's; a bad address is refused.
        let options = run_options(bridge, None, None).unwrap();
        assert_eq!(options.network, NetworkMode::Bridge);
        assert_eq!(options.networks.len(), 1);
        assert_eq!(options.networks[0].network, "bridge");
        let bad_address: CreateBody = serde_json::from_str(
            r#"{"Image":"busybox","HostConfig":{"NetworkMode":"front"},
                "NetworkingConfig":{"EndpointsConfig":{"front":{"IPAMConfig":{"IPv4Address":"x"}}}}}"#,
        )
        .unwrap();
        assert!(run_options(bad_address, None, None).is_err());
        assert!(run_options(CreateBody::default(), None, None).is_err());
    }
}
