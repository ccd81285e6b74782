//! `kiln serve` driven by the real `docker` CLI (Debian's docker.io client; no dockerd):
//! each test starts its own daemon on a socket and store root of its own. Needs root and
//! /usr/bin/docker; without them the tests print why and pass, and with `CI` set they fail.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{self, TempRoot, kiln_with_root, stderr, text};

const DOCKER: &str = "/usr/bin/docker";
const SIGTERM: i32 = 15;

/// A `kiln serve` on a socket of its own, stopped (SIGTERM) on drop.
pub(crate) struct Serve {
    child: Child,
    pub(crate) socket: PathBuf,
    root: PathBuf,
    docker_config: PathBuf,
    // Last: its drop checks that no process still uses the directory.
    _dir: TempRoot,
}

impl Drop for Serve {
    fn drop(&mut self) {
        // A failed test's containers would outlive it (their monitors outlive the daemon),
        // holding whatever the test process's children inherited.
        if std::thread::panicking() {
            let _ = self
                .docker_command(&["rm", "-f", "-v"])
                .args(self.docker_stdout(&["ps", "-aq"]).split_whitespace())
                .output();
        }
        let _ = kiln::sys::process::send_signal(self.child.id() as i32, SIGTERM);
        let _ = self.child.wait();
    }
}

impl Serve {
    /// A daemon on a fresh root with busybox:latest loaded; `None` (after a skip) when the
    /// tests cannot run here.
    pub(crate) fn start() -> Option<Serve> {
        if !harness::privileged() || !harness::have(DOCKER) {
            return None;
        }
        let archive = harness::busybox()?.docker_archive()?;
        let dir = TempRoot::new();
        let root = dir.join("root");
        let out = kiln_with_root(&root)
            .args(["load", "-q", "-i"])
            .arg(archive)
            .output()
            .unwrap();
        assert!(out.status.success(), "load: {}", text(&out.stderr));
        let socket = dir.join("kiln.sock");
        let docker_config = dir.join("docker-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        let child = serve_command(&root, &socket).spawn().unwrap();
        let serve = Serve {
            child,
            socket,
            root,
            docker_config,
            _dir: dir,
        };
        serve.wait_ready();
        Some(serve)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&self.socket).is_ok() && self.raw("GET", "/_ping", "").0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kiln serve never answered /_ping"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `docker ARGS` against this daemon, to be run.
    pub(crate) fn docker_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(DOCKER);
        command
            .arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", &self.docker_config)
            // The classic builder's `POST /build`: the endpoint kiln serves.
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_HOST");
        command
    }

    pub(crate) fn docker(&self, args: &[&str]) -> Output {
        self.docker_command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `docker ARGS`'s stdout, whether or not it succeeds.
    fn docker_stdout(&self, args: &[&str]) -> String {
        text(&self.docker(args).stdout)
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub(crate) fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// One HTTP/1.0 request on the socket: the status and the body.
    pub(crate) fn raw(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = UnixStream::connect(&self.socket).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: kiln\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // The server may answer (and close) before reading an oversized body.
        let _ = stream.write_all(request.as_bytes());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }
}

fn serve_command(root: &Path, socket: &Path) -> Command {
    let mut command = kiln_with_root(root);
    command
        .arg("serve")
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn version_info_and_the_socket() {
    let Some(serve) = Serve::start() else { return };
    let version = serve.docker_ok(&["version"]);
    assert!(version.contains("Server: kiln"), "{version}");
    assert!(
        version.contains(&format!("Version:          {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(version.contains("1.45 (minimum version 1.41)"), "{version}");
    let info = serve.docker_ok(&["info"]);
    for line in [
        "Containers: 0",
        "Images: 1",
        "Server Version: ",
        "Storage Driver: overlayfs",
    ] {
        assert!(info.contains(line), "{line:?} missing from:\n{info}");
    }
    let mode = std::fs::metadata(&serve.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    // A second daemon on the same socket refuses to start.
    let second = serve_command(&serve.root, &serve.socket).output().unwrap();
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("another daemon is listening"),
        "{}",
        text(&second.stderr)
    );
    // The version prefix is optional; versions kiln does not serve are refused.
    assert_eq!(serve.raw("GET", "/v1.41/_ping", "").0, 200);
    assert_eq!(serve.raw("HEAD", "/v1.45/_ping", ""), (200, String::new()));
    let (status, body) = serve.raw("GET", "/v1.40/version", "");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Minimum supported API version is 1.41"),
        "{body}"
    );
    assert_eq!(serve.raw("GET", "/nowhere", "").0, 404);
}

#[test]
fn stop_on_sigterm_removes_the_socket_and_a_stale_one_is_replaced() {
    let Some(mut serve) = Serve::start() else {
        return;
    };
    kiln::sys::process::send_signal(serve.child.id() as i32, SIGTERM).unwrap();
    let status = serve.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!serve.socket.exists());
    // A socket file nobody listens on is stale: a new daemon replaces it.
    drop(std::os::unix::net::UnixListener::bind(&serve.socket).unwrap());
    assert!(serve.socket.exists());
    serve.child = serve_command(&serve.root, &serve.socket).spawn().unwrap();
    serve.wait_ready();
}

#[test]
fn images_tag_inspect_history_rmi() {
    let Some(serve) = Serve::start() else { return };
    let images = serve.docker_ok(&["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("busybox ") && l.contains("latest")),
        "{images}"
    );
    serve.docker_ok(&["tag", "busybox", "kiln-test/bb:v1"]);
    let images = serve.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let ids: Vec<&str> = images
        .lines()
        .filter(|l| l.starts_with("busybox:latest ") || l.starts_with("kiln-test/bb:v1 "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(ids.len(), 2, "{images}");
    assert_eq!(ids[0], ids[1], "{images}");
    let id = serve.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "kiln-test/bb:v1"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert!(
        id.trim().starts_with(&format!("sha256:{}", ids[0])),
        "{id} {images}"
    );
    let history = serve.docker_ok(&["history", "kiln-test/bb:v1"]);
    assert!(history.lines().count() >= 2, "{history}");
    let removed = serve.docker_ok(&["rmi", "kiln-test/bb:v1"]);
    assert!(removed.contains("Untagged: kiln-test/bb:v1"), "{removed}");
    let out = serve.docker(&["image", "inspect", "kiln-test/bb:v1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No such image: kiln-test/bb:v1"),
        "{}",
        text(&out.stderr)
    );
    let (status, body) = serve.raw("DELETE", "/images/nothing-here", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"message\""), "{body}");
}

#[test]
fn pull_from_the_loopback_registry() {
    let Some(registry) = harness::registry::plain() else {
        return;
    };
    let Some(serve) = Serve::start() else { return };
    let name = format!("{}/daemon-pull/busybox:latest", registry.addr);
    let out = harness::kiln(&serve.root, &["tag", "busybox", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = harness::kiln(&serve.root, &["push", "-q", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serve.docker_ok(&["rmi", &name]);
    let pulled = serve.docker_ok(&["pull", &name]);
    assert!(
        pulled.contains("Pulling from daemon-pull/busybox"),
        "{pulled}"
    );
    assert!(pulled.contains("Digest: sha256:"), "{pulled}");
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {name}")),
        "{pulled}"
    );
    let images = serve.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == name), "{images}");
    let again = serve.docker_ok(&["pull", &name]);
    assert!(again.contains("Status: Image is up to date for"), "{again}");
    let missing = serve.docker(&[
        "pull",
        &format!("{}/daemon-pull/none:latest", registry.addr),
    ]);
    assert!(!missing.status.success());
}

#[test]
fn run_detached_ps_logs_stop_rm() {
    let Some(serve) = Serve::start() else { return };
    let id = serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo hi; echo there; sleep 30",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = serve.docker_ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.ends_with(" web"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(line.starts_with(&id[..12]) && line.contains("Up "), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = serve.docker(&["logs", "web"]);
        if text(&out.stdout) == "hi\nthere\n" {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {:?}", out);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(serve.docker_ok(&["logs", "--tail", "1", "web"]), "there\n");
    let running = serve.docker_ok(&["inspect", "--format", "{{.State.Status}} {{.Name}}", "web"]);
    assert_eq!(running.trim(), "running /web");
    // A running container is not removed without force.
    let out = serve.docker(&["rm", "web"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container is running"),
        "{}",
        text(&out.stderr)
    );
    serve.docker_ok(&["stop", "-t", "1", "web"]);
    let state = serve.docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web",
    ]);
    assert_eq!(state.trim(), "exited 137");
    assert!(!serve.docker_ok(&["ps"]).contains(" web"));
    let all = serve.docker_ok(&["ps", "-a"]);
    assert!(
        all.lines()
            .any(|l| l.ends_with(" web") && l.contains("Exited (137)")),
        "{all}"
    );
    serve.docker_ok(&["rm", "web"]);
    assert!(!serve.docker_ok(&["ps", "-a"]).contains(" web"));
}

#[test]
fn logs_follow_wait_kill() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
    ]);
    // Follows until the container exits.
    assert_eq!(serve.docker_ok(&["logs", "-f", "counter"]), "1\n2\n3\n");
    assert_eq!(serve.docker_ok(&["wait", "counter"]).trim(), "0");
    serve.docker_ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "30"]);
    serve.docker_ok(&["kill", "sleeper"]);
    assert_eq!(serve.docker_ok(&["wait", "sleeper"]).trim(), "137");
    let out = serve.docker(&["kill", "sleeper"]);
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
    serve.docker_ok(&["rm", "counter", "sleeper"]);
}

#[test]
fn bad_requests_get_4xx() {
    let Some(serve) = Serve::start() else { return };
    let (status, body) = serve.raw("POST", "/v1.41/containers/create", "{\"Image\": ");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"message\":\"invalid JSON"), "{body}");
    let (status, body) = serve.raw("POST", "/containers/create", "[1, 2]");
    assert_eq!(status, 400, "{body}");
    let (status, body) = serve.raw("POST", "/containers/create", "{}");
    assert_eq!(status, 400, "{body}");
    let big = format!("{{\"Image\": \"{}\"}}", "x".repeat(2 << 20));
    let (status, body) = serve.raw("POST", "/containers/create", &big);
    assert_eq!(status, 400, "{body}");
    let (status, body) = serve.raw("POST", "/containers/create", r#"{"Image":"nothing-here"}"#);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No such image: nothing-here"), "{body}");
    let (status, body) = serve.raw("GET", "/containers/nothing-here/json", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No such container: nothing-here"), "{body}");
    let (status, body) = serve.raw(
        "POST",
        "/containers/create?name=a/b",
        r#"{"Image":"busybox"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = serve.raw(
        "POST",
        "/containers/create?name=dup",
        r#"{"Image":"busybox"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = serve.raw(
        "POST",
        "/containers/create?name=dup",
        r#"{"Image":"busybox"}"#,
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = serve.raw("POST", "/containers/dup/kill?signal=NOPE", "");
    assert_eq!(status, 400, "{body}");
    let (status, _) = serve.raw("DELETE", "/containers/dup", "");
    assert_eq!(status, 204);
}

#[test]
fn run_attached_with_and_without_rm() {
    let Some(serve) = Serve::start() else { return };
    // create, attach (a hijacked connection), wait, start: the output and the exit code.
    assert_eq!(
        serve.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]),
        "hi\n"
    );
    let out = serve.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\nerr\n");
    let all = serve.docker_ok(&["ps", "-aq"]);
    assert!(all.trim().is_empty(), "--rm containers stay: {all}");
    assert_eq!(
        serve.docker_ok(&["run", "--name", "kept", "busybox", "echo", "kept"]),
        "kept\n"
    );
    let all = serve.docker_ok(&["ps", "-a"]);
    assert!(
        all.lines()
            .any(|l| l.ends_with(" kept") && l.contains("Exited (0)")),
        "{all}"
    );
    serve.docker_ok(&["rm", "kept"]);
}

/// A build context directory holding `files`.
fn context(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn docker_build_multi_stage_with_a_heredoc() {
    let Some(serve) = Serve::start() else { return };
    let dir = TempRoot::new();
    let app = context(
        &dir.join("app"),
        &[
            (
                "Dockerfile",
                "FROM busybox AS base\nRUN <<EOF\necho hi > /x\nEOF\n\n\
                 FROM busybox\nCOPY --from=base /x /x\nCOPY data/note.txt /note.txt\n",
            ),
            ("data/note.txt", "a note\n"),
            (".dockerignore", "secret.txt\n"),
            ("secret.txt", "not sent\n"),
        ],
    );
    let context_arg = app.to_str().unwrap();
    let built = serve.docker_ok(&[
        "build",
        "-t",
        "app:1",
        "-t",
        "kiln-test/app:v2",
        context_arg,
    ]);
    assert!(built.contains("Successfully built "), "{built}");
    assert!(built.contains("Successfully tagged app:1"), "{built}");
    assert!(
        built.contains("Successfully tagged kiln-test/app:v2"),
        "{built}"
    );
    assert_eq!(
        serve.docker_ok(&["run", "--rm", "app:1", "cat", "/x"]),
        "hi\n"
    );
    assert_eq!(
        serve.docker_ok(&["run", "--rm", "kiln-test/app:v2", "cat", "/note.txt"]),
        "a note\n"
    );
    let id = serve.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "app:1"]);
    let short = &id.trim()["sha256:".len()..][..12];
    assert!(
        built.contains(&format!("Successfully built {short}")),
        "{built}"
    );
    // kiln's own build of the same context on the same root: the same steps, cached, give
    // the same image.
    let out = harness::kiln(&serve.root, &["build", "-q", context_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), id.trim());
    // Quiet: only the id.
    let quiet = serve.docker_ok(&["build", "-q", context_arg]);
    assert_eq!(quiet.trim(), id.trim());
    // The uploaded contexts are gone once their builds end.
    let left: Vec<_> = std::fs::read_dir(serve.root.join("snapshots-v1"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn docker_build_failures() {
    let Some(serve) = Serve::start() else { return };
    let dir = TempRoot::new();
    let failing = context(
        &dir.join("failing"),
        &[("Dockerfile", "FROM busybox\nRUN echo boom; exit 3\n")],
    );
    let out = serve.docker(&["build", failing.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(text(&out.stdout).contains("boom"), "{}", text(&out.stdout));
    let broken = context(
        &dir.join("broken"),
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=nope true\n")],
    );
    let out = serve.docker(&["build", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Dockerfile:2: "),
        "{}",
        text(&out.stderr)
    );
    // A Dockerfile outside the context is refused.
    let (status, body) = serve.raw("POST", "/build?dockerfile=../etc/passwd", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("errorDetail"), "{body}");
    let (status, body) = serve.raw("POST", "/build?buildargs=%7Bnot-json", "");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_client_gone_mid_build_cancels_it() {
    let Some(serve) = Serve::start() else { return };
    let dir = TempRoot::new();
    let slow = context(
        &dir.join("slow"),
        &[("Dockerfile", "FROM busybox\nRUN echo started; sleep 60\n")],
    );
    let mut child = Command::new(DOCKER)
        .arg("-H")
        .arg(serve.host())
        .args(["build", slow.to_str().unwrap()])
        .env("DOCKER_CONFIG", &serve.docker_config)
        .env("DOCKER_BUILDKIT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("started") {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(read > 0, "the build ended early: {seen}");
        seen.push_str(&line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    loop {
        let records = std::fs::read_dir(serve.root.join("builds-v1"))
            .into_iter()
            .flatten()
            .flatten();
        let cancelled = records
            .filter_map(|r| std::fs::read_to_string(r.path().join("record.json")).ok())
            .any(|record| record.contains("\"status\": \"cancelled\""));
        if cancelled {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the build went on after its client left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn push_to_the_loopback_registry() {
    let Some(registry) = harness::registry::plain() else {
        return;
    };
    if !harness::have(harness::SKOPEO) {
        return;
    }
    let Some(serve) = Serve::start() else { return };
    let name = format!("{}/daemon-push/busybox:v1", registry.addr);
    serve.docker_ok(&["tag", "busybox", &name]);
    let pushed = serve.docker_ok(&["push", &name]);
    assert!(
        pushed.contains(&format!(
            "The push refers to repository [{}/daemon-push/busybox]",
            registry.addr
        )),
        "{pushed}"
    );
    let digest = pushed
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{pushed}"))
        .to_string();
    let out = Command::new(harness::SKOPEO)
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), digest);
    // Every tag of the repository (`--all-tags`: no tag in the request).
    let repository = format!("{}/daemon-push/busybox", registry.addr);
    serve.docker_ok(&["tag", "busybox", &format!("{repository}:v2")]);
    let all = serve.docker_ok(&["push", "--all-tags", &repository]);
    assert!(all.contains("v1: digest: sha256:"), "{all}");
    assert!(all.contains("v2: digest: sha256:"), "{all}");
    let (status, body) = serve.raw("POST", "/images/daemon-push/nothing-here/push", "");
    assert_eq!(status, 404, "{body}");
    // An image the store does not have is an error line; docker exits non-zero.
    let out = serve.docker(&["push", &format!("{}/daemon-push/none:v1", registry.addr)]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No such image"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn push_with_the_clients_credentials() {
    use base64::Engine as _;
    let Some(registry) = harness::registry::basic_auth() else {
        return;
    };
    let Some(serve) = Serve::start() else { return };
    let name = format!("{}/daemon-auth/busybox:v1", registry.addr);
    serve.docker_ok(&["tag", "busybox", &name]);
    // The daemon's store has no credentials: without the client's, the push is refused.
    let out = serve.docker(&["push", &name]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    // The docker CLI sends its own in X-Registry-Auth.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        harness::registry::USER,
        harness::registry::PASSWORD
    ));
    std::fs::write(
        serve.docker_config.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let pushed = serve.docker_ok(&["push", &name]);
    assert!(pushed.contains("v1: digest: sha256:"), "{pushed}");
    // A build pulls its base with the client's credentials (X-Registry-Config).
    serve.docker_ok(&["rmi", &name]);
    let dir = TempRoot::new();
    let app = context(
        &dir.join("app"),
        &[(
            "Dockerfile",
            &format!("FROM {name}\nRUN echo pulled > /p\n"),
        )],
    );
    let built = serve.docker_ok(&["build", "-t", "from-private", app.to_str().unwrap()]);
    assert!(
        built.contains("Successfully tagged from-private"),
        "{built}"
    );
    // Without them, the same pull is refused.
    serve.docker_ok(&["rmi", &name, "from-private"]);
    std::fs::write(serve.docker_config.join("config.json"), "{}").unwrap();
    let refused = serve.docker(&["build", "--no-cache", app.to_str().unwrap()]);
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
}

#[test]
fn save_and_load_round_trip() {
    let Some(first) = Serve::start() else { return };
    let Some(second) = Serve::start() else { return };
    let dir = TempRoot::new();
    let app = context(
        &dir.join("app"),
        &[("Dockerfile", "FROM busybox\nRUN echo saved > /s\n")],
    );
    first.docker_ok(&["build", "-q", "-t", "app:1", app.to_str().unwrap()]);
    let id = first.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "app:1"]);
    let archive = dir.join("app.tar");
    first.docker_ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    // Into a daemon of another store: the image, its layers and its name come with it.
    let loaded = second.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: app:1"), "{loaded}");
    assert_eq!(
        second.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "app:1"]),
        id
    );
    assert_eq!(
        second.docker_ok(&["run", "--rm", "app:1", "cat", "/s"]),
        "saved\n"
    );
    // And back into the first after its name is gone.
    first.docker_ok(&["rmi", "app:1"]);
    let loaded = first.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: app:1"), "{loaded}");
    assert!(
        first
            .docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .lines()
            .any(|l| l == "app:1")
    );
    let (status, body) = first.raw("GET", "/images/get?names=nothing-here", "");
    assert_eq!(status, 404, "{body}");
    let (status, body) = first.raw("POST", "/images/load", "not an archive");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn start_again_and_restart() {
    let Some(serve) = Serve::start() else { return };
    let script = "echo ran >> /count; cat /count";
    assert_eq!(
        serve.docker_ok(&["run", "--name", "again", "busybox", "sh", "-c", script]),
        "ran\n"
    );
    // An exited container runs again, on the filesystem it left.
    assert_eq!(serve.docker_ok(&["start", "-a", "again"]), "ran\nran\n");
    let state = serve.docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        "again",
    ]);
    assert_eq!(state.trim(), "exited 0");
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "looping",
        "busybox",
        "sh",
        "-c",
        "echo started; sleep 30",
    ]);
    serve.docker_ok(&["restart", "-t", "1", "looping"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while serve.docker_ok(&["logs", "looping"]) != "started\nstarted\n" {
        assert!(
            Instant::now() < deadline,
            "{}",
            serve.docker_ok(&["logs", "looping"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = serve.docker_ok(&["inspect", "--format", "{{.State.Status}}", "looping"]);
    assert_eq!(running.trim(), "running");
    serve.docker_ok(&["rm", "-f", "again", "looping"]);
}

#[test]
fn system_df() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&["run", "--name", "user", "busybox", "true"]);
    let df = serve.docker_ok(&["system", "df"]);
    let row = |kind: &str| -> Vec<String> {
        df.lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{df}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // TYPE TOTAL ACTIVE SIZE RECLAIMABLE
    assert_eq!(row("Images")[1..3], ["1", "1"], "{df}");
    assert_eq!(row("Containers")[1..3], ["1", "0"], "{df}");
    assert_eq!(row("Local Volumes")[2..4], ["0", "0"], "{df}");
    serve.docker_ok(&["rm", "user"]);
}

#[test]
fn volumes_through_the_docker_cli() {
    let Some(serve) = Serve::start() else { return };
    assert_eq!(
        serve.docker_ok(&["volume", "create", "shared"]).trim(),
        "shared"
    );
    let ls = serve.docker_ok(&["volume", "ls", "-q"]);
    assert_eq!(ls.trim(), "shared");
    let inspect = serve.docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{.Driver}} {{.Name}}",
        "shared",
    ]);
    assert_eq!(inspect.trim(), "local shared");
    // Data written by one container is there for the next.
    serve.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let read = serve.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(read, "kept\n");
    // In use: refused; then removed.
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "shared:/data",
        "busybox",
        "sleep",
        "60",
    ]);
    let out = serve.docker(&["volume", "rm", "shared"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );
    serve.docker_ok(&["rm", "-f", "holder"]);
    serve.docker_ok(&["volume", "rm", "shared"]);
    let out = serve.docker(&["volume", "inspect", "shared"]);
    assert!(!out.status.success());
    assert!(serve.docker_ok(&["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn events_of_a_container_s_life() {
    let Some(serve) = Serve::start() else { return };
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serve.docker_ok(&["run", "--rm", "--name", "evented", "busybox", "true"]);
    serve.docker_ok(&["tag", "busybox", "busybox:events"]);
    // Everything has happened: the stream may end a second from now.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let since = start.to_string();
    let shown = serve.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=evented",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        [
            "container create evented",
            "container start evented",
            "container die evented",
            "container destroy evented",
        ],
        "{shown}"
    );
    let images = serve.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert!(
        images.contains("tag docker.io/library/busybox:events"),
        "{images}"
    );
}

#[test]
fn exec_in_a_running_container() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&[
        "run", "-d", "--name", "exec-me", "-e", "FOO=bar", "busybox", "sleep", "60",
    ]);
    let out = serve.docker(&[
        "exec",
        "-e",
        "X=1",
        "exec-me",
        "sh",
        "-c",
        "echo $FOO $X; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "bar 1\n");
    assert_eq!(stderr(&out), "to-stderr\n");
    let out = serve.docker_ok(&[
        "exec",
        "-u",
        "65534",
        "-w",
        "/tmp",
        "exec-me",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(out, "65534\n/tmp\n");
    serve.docker_ok(&["exec", "-d", "exec-me", "touch", "/tmp/detached"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !serve
        .docker(&["exec", "exec-me", "test", "-e", "/tmp/detached"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the detached exec never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    serve.docker_ok(&["rm", "-f", "exec-me"]);
    let out = serve.docker(&["exec", "exec-me", "true"]);
    assert!(!out.status.success());
}

#[test]
fn fifty_concurrent_runs_all_succeed() {
    let Some(serve) = Serve::start() else { return };
    let serve = std::sync::Arc::new(serve);
    let runs: Vec<_> = (0..50)
        .map(|n| {
            let serve = serve.clone();
            std::thread::spawn(move || {
                serve.docker(&[
                    "run",
                    "--rm",
                    "busybox",
                    "sh",
                    "-c",
                    &format!("echo run-{n}"),
                ])
            })
        })
        .collect();
    for (n, run) in runs.into_iter().enumerate() {
        let out = run.join().unwrap();
        assert!(out.status.success(), "run {n}: {}", stderr(&out));
        assert_eq!(text(&out.stdout), format!("run-{n}\n"));
    }
    // `--rm` left nothing behind.
    assert!(serve.docker_ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn a_daemon_killed_mid_run_restarts_and_reports_the_container() {
    let Some(mut serve) = Serve::start() else {
        return;
    };
    serve.docker_ok(&["run", "-d", "--name", "survivor", "busybox", "sleep", "60"]);
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    // kill -9: the containers are their monitors', not the daemon's.
    let _ = kiln::sys::process::send_signal(serve.child.id() as i32, 9);
    let _ = serve.child.wait();
    std::thread::sleep(Duration::from_millis(1500));
    serve.child = serve_command(&serve.root, &serve.socket).spawn().unwrap();
    serve.wait_ready();
    let ps = serve.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.lines().any(|l| l.starts_with("survivor Up ")), "{ps}");
    assert!(
        ps.lines().any(|l| l.starts_with("short Exited (7)")),
        "{ps}"
    );
    serve.docker_ok(&["rm", "-f", "survivor", "short"]);
}

#[test]
fn a_terminal_asked_for_gets_the_output_raw() {
    let Some(serve) = Serve::start() else { return };
    // Multiplexed frames would show their 8-byte headers to a client that asked for -t.
    let out = serve.docker_ok(&[
        "run",
        "-t",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(out, "out\nerr\n");
    serve.docker_ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "tty-me",
        "busybox",
        "sh",
        "-c",
        "echo started; sleep 60",
    ]);
    let exec = serve.docker_ok(&["exec", "-t", "tty-me", "echo", "in-exec"]);
    assert_eq!(exec, "in-exec\n");
    let logs = serve.docker_ok(&["logs", "tty-me"]);
    assert_eq!(logs, "started\n");
    let inspect = serve.docker_ok(&["inspect", "--format", "{{.Config.Tty}}", "tty-me"]);
    assert_eq!(inspect.trim(), "true");
    serve.docker_ok(&["rm", "-f", "tty-me"]);
}
