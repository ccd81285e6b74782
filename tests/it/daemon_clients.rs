//! `kiln serve` driven by the clients people use besides the docker CLI (see `daemon.rs`
//! for the harness): Debian's Python `docker-compose` 1.29 bringing a two-service project
//! up and down, and the Docker SDK for Python (7.x from PyPI, in a virtualenv made once
//! and kept under cargo's target directory). Needs root, the client and, for the SDK,
//! python3-venv and PyPI; without them the tests print why and pass, and with `CI` set
//! they fail.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::daemon::Serve;
use super::daemon_network::{eventually, free_port, http_get};
use crate::harness::{self, TempRoot, text};

const COMPOSE: &str = "/usr/bin/docker-compose";
const PYTHON: &str = "/usr/bin/python3";
/// The SDK release line the test pins.
const SDK_REQUIREMENT: &str = "docker>=7,<8";

/// One docker-compose project on a daemon.
struct Project<'a> {
    serve: &'a Serve,
    name: &'static str,
    dir: PathBuf,
}

impl Project<'_> {
    fn compose(&self, args: &[&str]) -> Output {
        Command::new(COMPOSE)
            .args(["--ansi", "never", "-p", self.name])
            .args(args)
            .current_dir(&self.dir)
            .env("DOCKER_HOST", self.serve.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_API_VERSION")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `docker-compose ARGS`, which must succeed; its stdout.
    fn compose_ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// What the server keeps in its volume, once it is there.
    fn served_token(&self) -> String {
        let mut token = String::new();
        eventually("the server's file in its volume", || {
            let out = self.compose(&["exec", "-T", "server", "cat", "/www/i"]);
            token = text(&out.stdout).trim().to_string();
            (!out.status.success() || token.len() != 36)
                .then(|| format!("{token}{}", text(&out.stderr)))
        });
        token
    }

    /// Waits until the client's log shows that it got `token` from the server.
    fn client_logged(&self, token: &str) {
        eventually("the client's log", || {
            let logs = self.compose_ok(&["logs", "--no-color", "client"]);
            (!logs
                .lines()
                .any(|l| l.starts_with("client_1 ") && l.ends_with(&format!("| {token}"))))
            .then_some(logs)
        });
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }

    /// `docker ps -a`'s names, sorted.
    fn all_containers(&self) -> Vec<String> {
        let names = self
            .serve
            .docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
        let mut names: Vec<String> = names.lines().map(str::to_string).collect();
        names.sort();
        names
    }

    fn has_network(&self) -> bool {
        let network = format!("{}_default", self.name);
        self.serve
            .docker_ok(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == network)
    }

    fn has_volume(&self) -> bool {
        let volume = format!("{}_data", self.name);
        self.serve
            .docker_ok(&["volume", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == volume)
    }

    fn labels(&self, container: &str) -> BTreeMap<String, String> {
        let json = self
            .serve
            .docker_ok(&["inspect", "-f", "{{json .Config.Labels}}", container]);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }
}

/// A server that serves a file from a named volume (made once, so it outlives the
/// containers) and a client that fetches it by the service's name and logs it.
fn compose_file(port: u16) -> String {
    format!(
        r#"services:
  server:
    image: busybox
    command: ["sh", "-c", "[ -f /www/i ] || cat /proc/sys/kernel/random/uuid > /www/i; exec httpd -f -p 80 -h /www"]
    volumes:
      - data:/www
    ports:
      - "127.0.0.1:{port}:80"
  client:
    image: busybox
    depends_on: [server]
    command: ["sh", "-c", "while true; do wget -qO- http://server/i 2>/dev/null; sleep 0.3; done"]
volumes:
  data:
"#
    )
}

#[test]
fn docker_compose_up_ps_logs_exec_down() {
    if !harness::have(COMPOSE) {
        return;
    }
    let Some(serve) = Serve::start() else { return };
    let dir = TempRoot::new();
    let port = free_port();
    fs::create_dir_all(dir.join("docker-config")).unwrap();
    fs::write(dir.join("docker-compose.yml"), compose_file(port)).unwrap();
    let project = Project {
        serve: &serve,
        name: "kilncompose",
        dir: dir.path().to_path_buf(),
    };
    let (server, client) = (project.container("server"), project.container("client"));

    project.compose_ok(&["up", "-d"]);
    let token = project.served_token();
    project.client_logged(&token);
    let ps = project.compose_ok(&["ps"]);
    for name in [&server, &client] {
        assert!(
            ps.lines()
                .any(|l| l.starts_with(name.as_str()) && l.contains(" Up")),
            "{name} not up in:\n{ps}"
        );
    }
    eventually("the server's published port", || {
        let reply = http_get(port, "/i").unwrap_or_else(|e| e.to_string());
        (!reply.ends_with(&format!("\r\n\r\n{token}\n"))).then_some(reply)
    });

    // What compose finds its containers and network by.
    let labels = project.labels(&server);
    for (key, value) in [
        ("com.docker.compose.project", "kilncompose"),
        ("com.docker.compose.service", "server"),
        ("com.docker.compose.container-number", "1"),
        ("com.docker.compose.oneoff", "False"),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(value),
            "{labels:?}"
        );
    }
    assert!(
        labels.contains_key("com.docker.compose.config-hash"),
        "{labels:?}"
    );
    let by_label = serve.docker_ok(&[
        "ps",
        "--filter",
        "label=com.docker.compose.service=client",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(by_label.trim(), client);
    assert!(project.has_network());
    let network = serve.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{index .Labels \"com.docker.compose.network\"}} {{range .Containers}}{{.Name}} {{end}}",
        "kilncompose_default",
    ]);
    let mut words: Vec<&str> = network.split_whitespace().collect();
    words[1..].sort();
    assert_eq!(words, ["default", client.as_str(), server.as_str()]);

    // exec: output, exit code, and the service name resolving inside.
    assert_eq!(
        project
            .compose_ok(&["exec", "-T", "client", "wget", "-qO-", "http://server/i"])
            .trim(),
        token
    );
    let failed = project.compose(&["exec", "-T", "client", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed.stderr));

    // Recreated (compose renames the old container aside and removes it): the volume's
    // data stays, and the new client reaches the new server.
    let before = serve.docker_ok(&["inspect", "-f", "{{.Id}}", &server]);
    project.compose_ok(&["up", "-d", "--force-recreate", "-t", "1"]);
    assert_ne!(
        serve.docker_ok(&["inspect", "-f", "{{.Id}}", &server]),
        before
    );
    assert_eq!(project.all_containers(), [client.clone(), server.clone()]);
    assert_eq!(project.served_token(), token);
    project.client_logged(&token);

    // Down keeps the named volume; up again finds its data.
    project.compose_ok(&["down", "-t", "1"]);
    assert_eq!(project.all_containers(), Vec::<String>::new());
    assert!(!project.has_network());
    assert!(project.has_volume());
    project.compose_ok(&["up", "-d"]);
    assert_eq!(project.served_token(), token);
    project.client_logged(&token);

    // Down -v takes the volume too.
    project.compose_ok(&["down", "-v", "-t", "1"]);
    assert_eq!(project.all_containers(), Vec::<String>::new());
    assert!(!project.has_network());
    assert!(!project.has_volume());
}

/// The virtualenv's python with the SDK installed: made once (per target directory,
/// kept between runs), or `None` after a skip.
fn sdk_python() -> Option<&'static Path> {
    static PYTHON_WITH_SDK: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON_WITH_SDK.get_or_init(make_sdk_venv) {
        Ok(python) => Some(python),
        Err(reason) => {
            harness::skip(reason);
            None
        }
    }
}

fn has_sdk(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sys, docker; sys.exit(docker.__version__[:2] != '7.')",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn make_sdk_venv() -> Result<PathBuf, String> {
    if !Path::new(PYTHON).exists() {
        return Err(format!("{PYTHON} is missing (apt-get install python3)"));
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docker-sdk-venv");
    let python = venv.join("bin/python");
    // Another test process may be making it too.
    let lock_path = venv.with_extension("lock");
    let lock = fs::File::create(&lock_path).map_err(|e| format!("{lock_path:?}: {e}"))?;
    lock.lock()
        .map_err(|e| format!("locking {lock_path:?}: {e}"))?;
    if has_sdk(&python) {
        return Ok(python);
    }
    let _ = fs::remove_dir_all(&venv);
    let run = |command: &mut Command, what: &str| -> Result<(), String> {
        let out = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            ))
        }
    };
    run(
        Command::new(PYTHON).arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (apt-get install python3-venv)",
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            SDK_REQUIREMENT,
        ]),
        "pip install docker (is PyPI reachable?)",
    )?;
    if !has_sdk(&python) {
        return Err(format!("the virtualenv at {venv:?} has no docker 7.x"));
    }
    Ok(python)
}

/// Drives the daemon through the SDK; prints what it saw as one JSON object.
const SDK_SCRIPT: &str = r#"
import json, sys, time
import docker
from docker.errors import BuildError, ContainerError, NotFound

base_url, context, failing = sys.argv[1:4]
client = docker.DockerClient(base_url=base_url)
seen = {"sdk": docker.__version__, "api": client.api.api_version}

def fetch(url):
    return ["sh", "-c", "for n in $(seq 50); do wget -qO- %s 2>/dev/null && exit; sleep 0.2; done; exit 1" % url]

seen["run"] = client.containers.run("busybox", ["sh", "-c", "echo one; echo two"], remove=True).decode()
try:
    client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    seen["run_failed"] = None
except ContainerError as error:
    seen["run_failed"] = error.exit_status

detached = client.containers.run("busybox", ["sh", "-c", "echo detached; exec sleep 300"], detach=True, name="sdk-detached")
detached.reload()
seen["detached"] = [detached.name, detached.status]
deadline = time.time() + 10
while b"detached" not in detached.logs() and time.time() < deadline:
    time.sleep(0.1)
seen["detached_logs"] = detached.logs().decode()
detached.kill()
seen["detached_exit"] = detached.wait()["StatusCode"]
detached.remove()
seen["left"] = [c.name for c in client.containers.list(all=True)]

image, log = client.images.build(path=context, tag="sdk-built:v1")
seen["built"] = [image.id, image.tags, client.images.get("sdk-built:v1").id]
seen["build_log"] = "".join(entry.get("stream", "") for entry in log)
seen["built_run"] = client.containers.run("sdk-built:v1", remove=True).decode()
try:
    client.images.build(path=failing, tag="sdk-failing")
    seen["build_failed"] = None
except BuildError as error:
    seen["build_failed"] = str(error)

network = client.networks.create("sdk-net", driver="bridge", labels={"made-by": "sdk"})
seen["network"] = [network.name, network.attrs["Driver"], network.attrs["Labels"]]
server = client.containers.run("busybox", ["sh", "-c", "echo served > /i; exec httpd -f -p 80 -h /"], detach=True, name="sdk-server", network="sdk-net")
seen["by_name"] = client.containers.run("busybox", fetch("http://sdk-server/i"), remove=True, network="sdk-net").decode()
other = client.networks.create("sdk-other")
other.connect(server, aliases=["web"])
seen["by_alias"] = client.containers.run("busybox", fetch("http://web/i"), remove=True, network="sdk-other").decode()
network.reload()
seen["on_network"] = [c.name for c in network.containers]
server.remove(force=True)
network.remove()
other.remove()
seen["networks_left"] = sorted(n.name for n in client.networks.list())
try:
    client.networks.get("sdk-net")
    seen["network_gone"] = False
except NotFound:
    seen["network_gone"] = True

volume = client.volumes.create("sdk-vol", labels={"made-by": "sdk"})
seen["volume"] = [volume.name, volume.attrs["Driver"], volume.attrs["Labels"]]
client.containers.run("busybox", ["sh", "-c", "echo kept > /data/f"], remove=True, volumes={"sdk-vol": {"bind": "/data", "mode": "rw"}})
seen["volume_read"] = client.containers.run("busybox", ["cat", "/data/f"], remove=True, volumes=["sdk-vol:/data:ro"]).decode()
seen["volumes"] = [v.name for v in client.volumes.list()]
client.volumes.get("sdk-vol").remove()
seen["volumes_left"] = [v.name for v in client.volumes.list()]
print(json.dumps(seen))
"#;

#[test]
fn the_python_sdk_runs_builds_and_manages_networks_and_volumes() {
    if !harness::privileged() {
        return;
    }
    let Some(python) = sdk_python() else { return };
    let Some(serve) = Serve::start() else { return };
    let dir = TempRoot::new();
    let context = dir.join("context");
    fs::create_dir_all(&context).unwrap();
    // A heredoc: kiln's front end, not dockerd's classic builder, reads the Dockerfile.
    fs::write(
        context.join("Dockerfile"),
        "FROM busybox AS base\nRUN <<EOF\necho from-heredoc > /made\nEOF\n\
         FROM busybox\nCOPY --from=base /made /made\nCOPY hello.txt /hello.txt\n\
         CMD [\"cat\", \"/made\", \"/hello.txt\"]\n",
    )
    .unwrap();
    fs::write(context.join("hello.txt"), "hello from the context\n").unwrap();
    let failing = dir.join("failing");
    fs::create_dir_all(&failing).unwrap();
    fs::write(failing.join("Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let script = dir.join("sdk.py");
    fs::write(&script, SDK_SCRIPT).unwrap();

    let out = Command::new(python)
        .arg(&script)
        .arg(serve.host())
        .arg(&context)
        .arg(&failing)
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the SDK script: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let str_of = |key: &str| seen[key].as_str().unwrap_or_default().to_string();
    assert!(str_of("sdk").starts_with("7."), "{seen}");
    assert_eq!(str_of("api"), "1.45");

    assert_eq!(str_of("run"), "one\ntwo\n");
    assert_eq!(seen["run_failed"], 3);
    assert_eq!(
        seen["detached"],
        serde_json::json!(["sdk-detached", "running"])
    );
    assert_eq!(str_of("detached_logs"), "detached\n");
    assert_eq!(seen["detached_exit"], 137);
    assert_eq!(seen["left"], serde_json::json!([]));

    let built = &seen["built"];
    let id = built[0].as_str().unwrap_or_default();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{built}");
    assert_eq!(built[1], serde_json::json!(["sdk-built:v1"]));
    assert_eq!(built[2], built[0]);
    let image_id = serve.docker_ok(&["image", "inspect", "-f", "{{.Id}}", "sdk-built:v1"]);
    assert_eq!(image_id.trim(), id);
    assert!(
        str_of("build_log").contains(&format!("Successfully built {}", &id[7..19])),
        "{}",
        str_of("build_log")
    );
    assert_eq!(
        str_of("built_run"),
        "from-heredoc\nhello from the context\n"
    );
    assert!(
        str_of("build_failed").contains("exit code: 3"),
        "{}",
        seen["build_failed"]
    );

    assert_eq!(
        seen["network"],
        serde_json::json!(["sdk-net", "bridge", { "made-by": "sdk" }])
    );
    assert_eq!(str_of("by_name"), "served\n");
    assert_eq!(str_of("by_alias"), "served\n");
    assert_eq!(seen["on_network"], serde_json::json!(["sdk-server"]));
    assert_eq!(
        seen["networks_left"],
        serde_json::json!(["bridge", "host", "none"])
    );
    assert_eq!(seen["network_gone"], true);

    assert_eq!(
        seen["volume"],
        serde_json::json!(["sdk-vol", "local", { "made-by": "sdk" }])
    );
    assert_eq!(str_of("volume_read"), "kept\n");
    assert_eq!(seen["volumes"], serde_json::json!(["sdk-vol"]));
    assert_eq!(seen["volumes_left"], serde_json::json!([]));
    assert!(
        serve.docker_ok(&["ps", "-aq"]).trim().is_empty(),
        "containers left behind"
    );
}
