//! Bridge networks through `kiln serve` and the real `docker` CLI (see `daemon.rs` for the
//! harness): `docker network create/ls/inspect/connect/disconnect/rm`, containers that
//! reach each other by name and `--network-alias` on one network and not across
//! networks, `docker rename`, and `-p` published on the host's loopback with `docker port`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::daemon::Serve;
use crate::harness::{stderr, text};

/// Polls until `check` gives `None` (a server needs a moment to listen); `Some(seen)` is
/// what the last failed try saw, for the panic.
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            None => return,
            Some(seen) => last = seen,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: {last}");
}

/// A port nobody listens on now, on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: the whole reply, head and body.
pub(crate) fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// `docker run -d` of busybox serving `/i` (holding `content`) over HTTP on port 80.
fn serve_http(serve: &Serve, name: &str, extra: &[&str], content: &str) {
    let script = format!("echo {content} > /i; exec httpd -f -p 80 -h /");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    serve.docker_ok(&args);
}

/// `docker exec CONTAINER sh -c SCRIPT`: exit code and output (stdout and stderr).
fn exec(serve: &Serve, container: &str, script: &str) -> (i32, String) {
    let out = serve.docker(&["exec", container, "sh", "-c", script]);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Waits until `container` gets `content` from `http://host/i`.
fn reaches(serve: &Serve, container: &str, host: &str, content: &str) {
    let script = format!("timeout 5 wget -qO- http://{host}/i");
    eventually(&format!("{container} reaching {host}"), || {
        let (code, out) = exec(serve, container, &script);
        (code != 0 || out != format!("{content}\n")).then(|| format!("exit {code}: {out}"))
    });
}

/// Asserts that `container` gets nothing from `http://host/i`.
fn cannot_reach(serve: &Serve, container: &str, host: &str) {
    let (code, out) = exec(
        serve,
        container,
        &format!("timeout 5 wget -qO- http://{host}/i"),
    );
    assert_ne!(code, 0, "{container} reached {host}: {out}");
}

/// The address of `container` on `network`, from `docker inspect`.
fn address_on(serve: &Serve, container: &str, network: &str) -> String {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let address = serve.docker_ok(&["inspect", "-f", &format, container]);
    let address = address.trim().to_string();
    assert!(
        address.parse::<std::net::Ipv4Addr>().is_ok(),
        "{container} on {network}: {address:?}"
    );
    address
}

fn network_names(serve: &Serve) -> Vec<String> {
    serve
        .docker_ok(&["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn networks_names_aliases_and_isolation() {
    let Some(serve) = Serve::start() else { return };
    let front = serve.docker_ok(&["network", "create", "front"]);
    assert_eq!(front.trim().len(), 64, "{front}");
    serve.docker_ok(&["network", "create", "--label", "tier=back", "back"]);
    let names = network_names(&serve);
    for name in ["bridge", "host", "none", "front", "back"] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    let inspect = serve.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Id}} {{.Driver}} {{(index .IPAM.Config 0).Subnet}} {{.Labels}}",
        "back",
    ]);
    let fields: Vec<&str> = inspect.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{inspect}");
    assert_eq!(fields[1], "bridge", "{inspect}");
    assert!(fields[2].ends_with("/24"), "{inspect}");
    assert_eq!(fields[3], "map[tier:back]", "{inspect}");
    let duplicate = serve.docker(&["network", "create", "front"]);
    assert!(!duplicate.status.success());
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );

    serve_http(
        &serve,
        "web",
        &["--network", "front", "--network-alias", "www"],
        "front-web",
    );
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "front",
        "busybox",
        "sleep",
        "300",
    ]);
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "back",
        "busybox",
        "sleep",
        "300",
    ]);
    reaches(&serve, "peer", "web", "front-web");
    reaches(&serve, "peer", "www", "front-web");
    let members = serve.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        "front",
    ]);
    let mut members: Vec<&str> = members.split_whitespace().collect();
    members.sort();
    assert_eq!(members, ["peer", "web"]);
    // `ps --filter network=` by name and by id.
    let front_id = front.trim().to_string();
    for wanted in ["front", &front_id[..12]] {
        let listed = serve.docker_ok(&[
            "ps",
            "--filter",
            &format!("network={wanted}"),
            "--format",
            "{{.Names}}",
        ]);
        let mut listed: Vec<&str> = listed.split_whitespace().collect();
        listed.sort();
        assert_eq!(listed, ["peer", "web"], "network={wanted}");
    }

    // Another network neither resolves the names nor routes to the address.
    let web_address = address_on(&serve, "web", "front");
    cannot_reach(&serve, "other", "web");
    let (code, out) = exec(
        &serve,
        "other",
        &format!("nc -w 2 {web_address} 80 </dev/null"),
    );
    assert_ne!(code, 0, "other reached {web_address}: {out}");

    // Connected (with an alias of its own), it reaches them and they reach it.
    serve.docker_ok(&["network", "connect", "--alias", "joined", "front", "other"]);
    reaches(&serve, "other", "web", "front-web");
    reaches(&serve, "other", "www", "front-web");
    let (code, out) = exec(&serve, "peer", "ping -c 1 -W 3 joined");
    assert_eq!(code, 0, "{out}");
    let networks = serve.docker_ok(&[
        "inspect",
        "-f",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        "other",
    ]);
    assert_eq!(networks.trim(), "back front");
    address_on(&serve, "other", "front");

    // Disconnected, the names are gone for it again.
    serve.docker_ok(&["network", "disconnect", "front", "other"]);
    let (code, out) = exec(&serve, "other", "timeout 5 wget -qO- http://web/i");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("bad address"), "{out}");
    let (code, out) = exec(&serve, "peer", "ping -c 1 -W 1 joined");
    assert_ne!(code, 0, "{out}");
    let again = serve.docker(&["network", "disconnect", "front", "other"]);
    assert!(!again.status.success());

    // A network with containers on it stays; empty, it goes.
    let busy = serve.docker(&["network", "rm", "front"]);
    assert!(!busy.status.success());
    assert!(
        stderr(&busy).contains("has active endpoints"),
        "{}",
        stderr(&busy)
    );
    serve.docker_ok(&["rm", "-f", "web", "peer", "other"]);
    serve.docker_ok(&["network", "rm", "front", "back"]);
    let names = network_names(&serve);
    assert!(
        !names.iter().any(|n| n == "front" || n == "back"),
        "{names:?}"
    );
    let gone = serve.docker(&["network", "inspect", "front"]);
    assert!(!gone.status.success());
}

#[test]
fn a_renamed_container_is_reached_by_its_new_name() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&["network", "create", "renames"]);
    serve_http(&serve, "before", &["--network", "renames"], "renamed");
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "asker",
        "--network",
        "renames",
        "busybox",
        "sleep",
        "300",
    ]);
    reaches(&serve, "asker", "before", "renamed");
    serve.docker_ok(&["rename", "before", "after"]);
    reaches(&serve, "asker", "after", "renamed");
    cannot_reach(&serve, "asker", "before");
    let names = serve.docker_ok(&["ps", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["after", "asker"]);
    let taken = serve.docker(&["rename", "after", "asker"]);
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains("is already in use"),
        "{}",
        stderr(&taken)
    );
    let missing = serve.docker(&["rename", "nobody", "somebody"]);
    assert!(
        stderr(&missing).contains("No such container: nobody"),
        "{}",
        stderr(&missing)
    );
    serve.docker_ok(&["rm", "-f", "after", "asker"]);
    serve.docker_ok(&["network", "rm", "renames"]);
}

#[test]
fn published_ports_answer_on_loopback_and_docker_port_names_them() {
    let Some(serve) = Serve::start() else { return };
    let port = free_port();
    let mapping = format!("127.0.0.1:{port}:80");
    serve_http(&serve, "published", &["-p", &mapping], "published");
    eventually("the published port", || {
        let reply = http_get(port, "/i").unwrap_or_else(|e| e.to_string());
        (!reply.ends_with("\r\n\r\npublished\n")).then_some(reply)
    });
    assert_eq!(
        serve.docker_ok(&["port", "published"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    assert_eq!(
        serve.docker_ok(&["port", "published", "80"]),
        format!("127.0.0.1:{port}\n")
    );
    let ps = serve.docker_ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert!(
        ps.contains(&format!("published 127.0.0.1:{port}->80/tcp")),
        "{ps}"
    );

    // A host port kiln picks, for a container on a user network.
    serve.docker_ok(&["network", "create", "ports"]);
    serve_http(
        &serve,
        "picked",
        &["--network", "ports", "-p", "127.0.0.1::80"],
        "picked",
    );
    let bound = serve.docker_ok(&["port", "picked", "80/tcp"]);
    let picked: u16 = bound
        .trim()
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("docker port: {bound}"));
    assert_ne!(picked, 0);
    eventually("the picked port", || {
        let reply = http_get(picked, "/i").unwrap_or_else(|e| e.to_string());
        (!reply.ends_with("\r\n\r\npicked\n")).then_some(reply)
    });

    // The port is taken while its container runs, and free once it is gone.
    // The start fails (not the container, after it started), as dockerd's does.
    let taken = serve.docker(&["run", "--name", "second", "-p", &mapping, "busybox", "true"]);
    assert_eq!(taken.status.code(), Some(125), "{}", stderr(&taken));
    assert!(
        stderr(&taken).contains("port is already allocated"),
        "{}",
        stderr(&taken)
    );
    serve.docker_ok(&["rm", "-f", "published", "picked", "second"]);
    eventually("the listener closes", || {
        http_get(port, "/i").ok().map(|reply| reply.to_string())
    });
    serve.docker_ok(&["network", "rm", "ports"]);
}
