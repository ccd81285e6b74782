//! Bridge networks from the CLI (`kiln network …`, `run --network`, `--network-alias`,
//! `-p`): containers reach each other by name and alias on one network and not across
//! networks, names follow containers as they come and go, ports are published on
//! loopback, and nothing of it appears in the host's network namespace. Needs root,
//! busybox-static and skopeo; without them the tests print why and pass, and with `CI`
//! set they fail instead.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::daemon_network::{eventually, free_port, http_get};
use crate::harness::{self, TempRoot, text};

/// A store root of its own with busybox:latest loaded.
fn root() -> Option<(TempRoot, PathBuf)> {
    harness::busybox_root()
}

fn kiln(root: &Path, args: &[&str]) -> Output {
    harness::kiln(root, args)
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = kiln(root, args);
    assert!(
        out.status.success(),
        "kiln {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Serves `/tmp/i` (holding `content`) over HTTP on port 80.
fn serve(root: &Path, name: &str, extra: &[&str], content: &str) {
    let script = format!("echo {content} > /tmp/i; exec httpd -f -p 80 -h /tmp");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    ok(root, &args);
}

/// Runs busybox `sh -c script` on `network` and returns (exit code, output).
fn on(root: &Path, network: &str, script: &str) -> (i32, String) {
    let out = kiln(
        root,
        &[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// The host's own interfaces: kiln's bridges and veths must never be among them.
fn assert_host_untouched() {
    for entry in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("kb-") && !name.starts_with("kv"),
            "kiln's interface {name} is in the host's network namespace"
        );
    }
}

fn endpoints_left(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for network in std::fs::read_dir(root.join("networks-v1"))
        .unwrap()
        .flatten()
    {
        if let Ok(entries) = std::fs::read_dir(network.path().join("endpoints")) {
            out.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

#[test]
fn containers_reach_each_other_by_name_and_alias_only_on_their_network() {
    let Some((_dir, root)) = root() else { return };
    let root = &root;
    ok(root, &["network", "create", "front"]);
    ok(
        root,
        &["network", "create", "--subnet", "10.77.5.0/24", "back"],
    );
    let ls = ok(root, &["network", "ls"]);
    for name in ["front", "back", "bridge", "host", "none"] {
        assert!(
            ls.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{ls}"
        );
    }
    let inspect = ok(root, &["network", "inspect", "back"]);
    assert!(
        inspect.contains("\"Subnet\": \"10.77.5.0/24\""),
        "{inspect}"
    );
    assert!(inspect.contains("\"Gateway\": \"10.77.5.1\""), "{inspect}");
    let duplicate = kiln(root, &["network", "create", "front"]);
    assert!(!duplicate.status.success());
    assert!(
        text(&duplicate.stderr).contains("already exists"),
        "{}",
        text(&duplicate.stderr)
    );
    let bad = kiln(root, &["network", "create", "../x"]);
    assert!(!bad.status.success());
    let bad_alias = kiln(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "front",
            "--network-alias",
            "x\n10.0.0.1 evil",
            "busybox",
            "true",
        ],
    );
    assert_eq!(
        bad_alias.status.code(),
        Some(125),
        "{}",
        text(&bad_alias.stderr)
    );
    assert!(
        text(&bad_alias.stderr).contains("invalid network alias"),
        "{}",
        text(&bad_alias.stderr)
    );
    // kiln's namespace routes between no networks, whatever the host does.
    let forwarding = std::process::Command::new("nsenter")
        .args([
            "--net=/run/kiln/netns/kiln",
            "cat",
            "/proc/sys/net/ipv4/conf/all/forwarding",
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&forwarding.stdout).trim(),
        "0",
        "{}",
        text(&forwarding.stderr)
    );

    serve(
        root,
        "srv",
        &["--network", "front", "--network-alias", "web"],
        "hello",
    );
    eventually("srv by name and alias", || {
        let (code, out) = on(
            root,
            "front",
            "wget -qO- http://srv/i && wget -qO- http://web/i",
        );
        (code != 0 || out != "hello\nhello\n").then_some(out)
    });
    // From another network neither the name nor the address answers.
    let address = ok(
        root,
        &[
            "exec",
            "srv",
            "sh",
            "-c",
            "ip -4 -o addr show eth0 | awk '{print $4}'",
        ],
    );
    let address = address.trim().split('/').next().unwrap().to_string();
    assert!(address.starts_with("10."), "{address}");
    let (code, out) = on(
        root,
        "back",
        &format!("wget -T 2 -qO- http://srv/i || wget -T 2 -qO- http://{address}/i"),
    );
    assert_ne!(code, 0, "reached across networks: {out}");

    // A container that comes later is in the earlier one's /etc/hosts until it goes.
    ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "late",
            "--network",
            "front",
            "busybox",
            "sleep",
            "60",
        ],
    );
    let hosts = ok(root, &["exec", "srv", "cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == "late")),
        "{hosts}"
    );
    ok(root, &["rm", "-f", "late"]);
    eventually("late leaves srv's /etc/hosts", || {
        let hosts = ok(root, &["exec", "srv", "cat", "/etc/hosts"]);
        hosts.contains("late").then_some(hosts)
    });

    // connect and disconnect a running container.
    ok(
        root,
        &["network", "connect", "--alias", "api", "back", "srv"],
    );
    let (code, out) = on(
        root,
        "back",
        "wget -qO- http://api/i && wget -qO- http://srv/i",
    );
    assert_eq!((code, out.as_str()), (0, "hello\nhello\n"));
    ok(root, &["network", "disconnect", "back", "srv"]);
    let (code, _) = on(root, "back", "wget -T 2 -qO- http://srv/i");
    assert_ne!(code, 0);

    // A network in use stays.
    let busy = kiln(root, &["network", "rm", "front"]);
    assert!(!busy.status.success());
    assert!(
        text(&busy.stderr).contains("active endpoints"),
        "{}",
        text(&busy.stderr)
    );
    assert_host_untouched();

    ok(root, &["rm", "-f", "srv"]);
    assert_eq!(endpoints_left(root), Vec::<PathBuf>::new());
    ok(root, &["network", "rm", "front"]);
    let pruned = ok(root, &["network", "prune", "-f"]);
    assert!(pruned.contains("back"), "{pruned}");
    let ls = ok(root, &["network", "ls"]);
    assert!(!ls.contains("front") && !ls.contains("back"), "{ls}");
    let missing = kiln(
        root,
        &["run", "--rm", "--network", "front", "busybox", "true"],
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("network front not found"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn published_ports_answer_on_loopback() {
    let Some((_dir, root)) = root() else { return };
    let root = &root;
    let port = free_port();
    // Without --network, -p puts the container on the default bridge.
    serve(root, "pub", &["-p", &format!("{port}:80")], "published");
    eventually("the published port", || {
        let reply = http_get(port, "/i").unwrap_or_else(|e| e.to_string());
        (!reply.ends_with("published\n")).then_some(reply)
    });
    let ps = ok(root, &["ps"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // The port is taken: a second container cannot have it.
    let taken = kiln(
        root,
        &[
            "run",
            "--rm",
            "-p",
            &format!("{port}:80"),
            "busybox",
            "true",
        ],
    );
    assert_eq!(taken.status.code(), Some(125), "{}", text(&taken.stderr));
    assert!(
        text(&taken.stderr).contains("port is already allocated"),
        "{}",
        text(&taken.stderr)
    );
    // Detached too: the run fails, as docker's does, instead of a container that exited.
    let taken = kiln(
        root,
        &["run", "-d", "-p", &format!("{port}:80"), "busybox", "true"],
    );
    assert_eq!(taken.status.code(), Some(125), "{}", text(&taken.stderr));
    assert!(
        text(&taken.stderr).contains("port is already allocated"),
        "{}",
        text(&taken.stderr)
    );
    // A random host port, on a user network.
    ok(root, &["network", "create", "pubnet"]);
    serve(
        root,
        "pub2",
        &["--network", "pubnet", "-p", "127.0.0.1::80"],
        "random",
    );
    let line = ok(root, &["ps"])
        .lines()
        .find(|l| l.ends_with("pub2"))
        .unwrap_or_default()
        .to_string();
    let random: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split("->").next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no published port in {line}"));
    eventually("the random published port", || {
        let reply = http_get(random, "/i").unwrap_or_else(|e| e.to_string());
        (!reply.ends_with("random\n")).then_some(reply)
    });
    // Its ports forward to its address on pubnet: that network stays while it runs.
    let refused = kiln(root, &["network", "disconnect", "pubnet", "pub2"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("publishes ports"),
        "{}",
        text(&refused.stderr)
    );
    assert_host_untouched();
    ok(root, &["rm", "-f", "pub", "pub2"]);
    // The listener went with the container.
    eventually("the listener closes", || http_get(port, "/i").ok());
    assert_eq!(endpoints_left(root), Vec::<PathBuf>::new());
    ok(root, &["network", "rm", "pubnet"]);
}

#[test]
fn a_killed_supervisor_leaves_no_endpoint_behind() {
    let Some((_dir, root)) = root() else { return };
    let root = &root;
    ok(root, &["network", "create", "crash"]);
    ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "victim",
            "--network",
            "crash",
            "busybox",
            "sleep",
            "60",
        ],
    );
    assert_eq!(endpoints_left(root).len(), 1);
    // Its monitor (the endpoint's owner) dies with -9: the container dies with it.
    let state = std::fs::read_to_string(
        std::fs::read_dir(root.join("containers-v1"))
            .unwrap()
            .flatten()
            .find(|e| e.path().join("state.json").exists())
            .unwrap()
            .path()
            .join("state.json"),
    )
    .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let owner = state["owner"]["pid"].as_i64().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &owner.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually("the container is reported gone", || {
        let ps = ok(root, &["ps", "-a"]);
        (!ps.lines()
            .any(|l| l.ends_with("victim") && l.contains("Exited")))
        .then_some(ps)
    });
    // The stale record is not an active endpoint.
    ok(root, &["network", "rm", "crash"]);
    ok(root, &["rm", "victim"]);
}

#[test]
fn a_deleted_store_gives_its_subnet_back() {
    if !harness::privileged() {
        return;
    }
    let subnet = "10.66.0.0/24";
    let (gone, gone_path) = harness::temp_dir();
    ok(
        &gone_path.join("root"),
        &["network", "create", "--subnet", subnet, "gone"],
    );
    let (_dir, path) = harness::temp_dir();
    let root = &path.join("root");
    // Every store shares kiln's namespace: the subnet is taken while the other store is.
    let overlap = kiln(root, &["network", "create", "--subnet", subnet, "again"]);
    assert!(!overlap.status.success());
    assert!(
        text(&overlap.stderr).contains("overlaps"),
        "{}",
        text(&overlap.stderr)
    );
    // Deleted without `network rm`: its bridge is swept at the next create.
    drop(gone);
    ok(root, &["network", "create", "--subnet", subnet, "again"]);
    ok(root, &["network", "rm", "again"]);
}
