//! More of `kiln serve` through the real `docker` CLI (see `daemon.rs` for the harness):
//! `docker cp` both ways with no path leaving the container, prune, list filters,
//! resize and `system df`'s shared layers.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::Value;

use super::daemon::Serve;
use crate::harness::{TempRoot, stderr, text};

/// One HTTP/1.0 request with a byte body: the status, the head and the body.
fn request(serve: &Serve, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = UnixStream::connect(&serve.socket).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: kiln\r\nContent-Type: application/x-tar\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    (status, head, body)
}

/// A tar of `(path, content)` files.
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        // `set_path` refuses `..`; a hostile client's archive is written raw.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, content.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The entries of a tar: path and content (empty for anything but a file).
fn untar(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut content = String::new();
            let _ = entry.read_to_string(&mut content);
            (path, content)
        })
        .collect()
}

#[test]
fn cp_both_ways_running_and_stopped() {
    let Some(serve) = Serve::start() else { return };
    let host = TempRoot::new();
    let file = host.join("hostfile");
    std::fs::write(&file, "from host\n").unwrap();
    let file = file.to_str().unwrap();

    serve.docker_ok(&["run", "-d", "--name", "cp-run", "busybox", "sleep", "60"]);
    serve.docker_ok(&["cp", file, "cp-run:/tmp/"]);
    assert_eq!(
        serve.docker_ok(&["exec", "cp-run", "cat", "/tmp/hostfile"]),
        "from host\n"
    );
    serve.docker_ok(&[
        "exec",
        "cp-run",
        "sh",
        "-c",
        "mkdir -p /data/sub && echo inside > /data/sub/f && ln -s / /data/up",
    ]);
    // Names past the tar header's 100 bytes.
    let long_dir = format!("/data/{}/{}", "d".repeat(60), "e".repeat(60));
    let long_file = format!("{long_dir}/{}", "f".repeat(40));
    let script = format!(
        "mkdir -p {long_dir} && echo long > {long_file} && ln -s {long_file} /data/long-link"
    );
    serve.docker_ok(&["exec", "cp-run", "sh", "-c", &script]);
    let out = host.join("out");
    std::fs::create_dir(&out).unwrap();
    serve.docker_ok(&["cp", "cp-run:/data", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("data/sub/f")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("data/up")).unwrap(),
        Path::new("/")
    );
    let on_host = out.join(long_file.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "long\n");
    assert_eq!(
        std::fs::read_link(out.join("data/long-link")).unwrap(),
        Path::new(&long_file)
    );
    // `DIR/.`: what the directory holds, into a directory that does not exist yet.
    let contents = host.join("contents");
    serve.docker_ok(&["cp", "cp-run:/data/.", contents.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(contents.join("sub/f")).unwrap(),
        "inside\n"
    );
    // `-L` follows a final symlink: the file, not the link.
    serve.docker_ok(&["exec", "cp-run", "ln", "-s", "/data/sub/f", "/data/link"]);
    let followed = host.join("followed");
    serve.docker_ok(&["cp", "-L", "cp-run:/data/link", followed.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&followed).unwrap(), "inside\n");
    assert!(!std::fs::symlink_metadata(&followed).unwrap().is_symlink());
    serve.docker_ok(&["rm", "-f", "cp-run"]);

    // A stopped container: written into its writable layer, which a start then sees.
    serve.docker_ok(&[
        "create",
        "--name",
        "cp-stopped",
        "busybox",
        "cat",
        "/copied",
    ]);
    serve.docker_ok(&["cp", file, "cp-stopped:/copied"]);
    assert_eq!(
        serve.docker_ok(&["start", "-a", "cp-stopped"]),
        "from host\n"
    );
    let back = host.join("back");
    serve.docker_ok(&["cp", "cp-stopped:/copied", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from host\n");
    // Kept across a restart; the image is untouched.
    assert_eq!(
        serve.docker_ok(&["start", "-a", "cp-stopped"]),
        "from host\n"
    );
    let fresh = serve.docker(&["run", "--rm", "busybox", "cat", "/copied"]);
    assert!(!fresh.status.success(), "the copy reached the image");
    serve.docker_ok(&["rm", "cp-stopped"]);
}

#[test]
fn cp_paths_stay_inside_the_container() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&[
        "run",
        "-d",
        "--name",
        "jail",
        "busybox",
        "sh",
        "-c",
        "ln -s / /escape && ln -s ../../../.. /tmp/up && echo mine > /etc/marker && sleep 60",
    ]);
    let wait = std::time::Instant::now();
    while !serve
        .docker(&["exec", "jail", "test", "-e", "/etc/marker"])
        .status
        .success()
    {
        assert!(wait.elapsed().as_secs() < 10, "the container never set up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host = TempRoot::new();
    let name = format!("kiln-cp-escape-{}", std::process::id());
    let file = host.join(&name);
    std::fs::write(&file, "payload\n").unwrap();

    // Through a symlink to `/`: the container's /tmp, not the host's.
    serve.docker_ok(&["cp", file.to_str().unwrap(), "jail:/escape/tmp/"]);
    assert!(
        !Path::new("/tmp").join(&name).exists(),
        "escaped to the host"
    );
    let inside = serve.docker_ok(&["exec", "jail", "cat", &format!("/tmp/{name}")]);
    assert_eq!(inside, "payload\n");

    // `..` and a relative symlink out stop at the container's root.
    for path in [
        "/../../../etc/marker",
        "/tmp/up/etc/marker",
        "/escape/etc/marker",
    ] {
        let (status, head, body) = request(
            &serve,
            "GET",
            &format!("/containers/jail/archive?path={path}"),
            b"",
        );
        assert_eq!(status, 200, "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-docker-container-path-stat:"),
            "{head}"
        );
        assert_eq!(untar(&body), [("marker".to_string(), "mine\n".to_string())]);
    }
    let (status, head, body) =
        request(&serve, "HEAD", "/containers/jail/archive?path=/escape", b"");
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty());
    // An archive whose entries climb out is refused; nothing lands outside.
    let evil = tar_of(&[("../../../../tmp/evil-kiln-cp", "x")]);
    let (status, _, body) = request(&serve, "PUT", "/containers/jail/archive?path=/tmp", &evil);
    assert_eq!(status, 400, "{}", text(&body));
    assert!(!Path::new("/tmp/evil-kiln-cp").exists());

    let four = |method: &str, path: &str, body: &[u8]| request(&serve, method, path, body).0;
    assert_eq!(four("GET", "/containers/jail/archive?path=/nope", b""), 404);
    assert_eq!(
        four("HEAD", "/containers/jail/archive?path=/escape/nope", b""),
        404
    );
    assert_eq!(four("GET", "/containers/jail/archive", b""), 400);
    assert_eq!(
        four("GET", "/containers/jail/archive?path=/etc%00x", b""),
        400
    );
    assert_eq!(four("GET", "/containers/ghost/archive?path=/", b""), 404);
    let good = tar_of(&[("f", "x")]);
    assert_eq!(
        four("PUT", "/containers/jail/archive?path=/nope", &good),
        404
    );
    assert_eq!(
        four("PUT", "/containers/jail/archive?path=/etc/marker", &good),
        400
    );
    assert_eq!(
        four("PUT", "/containers/jail/archive?path=/tmp", b"not a tar"),
        400
    );
    // A file over a directory: refused with noOverwriteDirNonDir, as `docker cp` asks.
    let over = tar_of(&[("tmp", "x")]);
    let path = "/containers/jail/archive?path=/&noOverwriteDirNonDir=true";
    assert_eq!(four("PUT", path, &over), 400);
    assert_eq!(
        four("PUT", "/containers/jail/archive?path=/tmp", &good),
        200
    );
    assert_eq!(serve.docker_ok(&["exec", "jail", "cat", "/tmp/f"]), "x");
    // A symlink the archive makes leads its later entries nowhere outside the
    // destination: `lnk -> /` then `lnk/etc/pwned` lands in /tmp/etc/pwned.
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder.append_link(&mut link, "lnk", "/").unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_size(5);
    file.set_mode(0o644);
    builder
        .append_data(&mut file, "lnk/etc/pwned", &b"pwned"[..])
        .unwrap();
    let linked = builder.into_inner().unwrap();
    assert_eq!(
        four("PUT", "/containers/jail/archive?path=/tmp", &linked),
        200
    );
    let seen = serve.docker_ok(&[
        "exec",
        "jail",
        "sh",
        "-c",
        "cat /tmp/etc/pwned; test ! -e /etc/pwned && echo clean",
    ]);
    assert_eq!(seen, "pwnedclean\n");
    serve.docker_ok(&["rm", "-f", "jail"]);
    // A stopped container's volumes are not mounted for cp: refused, not written into
    // the layer the volume hides.
    serve.docker_ok(&[
        "create",
        "--name",
        "held",
        "-v",
        "cp-vol:/data",
        "busybox",
        "true",
    ]);
    let (status, _, body) = request(&serve, "PUT", "/containers/held/archive?path=/data", &good);
    assert_eq!(status, 400, "{}", text(&body));
    assert!(
        text(&body).contains("volume or bind mount at /data"),
        "{}",
        text(&body)
    );
    serve.docker_ok(&["rm", "-v", "held"]);
}

/// Builds `tag` from busybox with `label` (a new image id, the same layers).
fn labelled_image(serve: &Serve, tag: &str, label: &str) {
    let context = TempRoot::new();
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM busybox\nLABEL {label}\n"),
    )
    .unwrap();
    serve.docker_ok(&["build", "-q", "-t", tag, context.path().to_str().unwrap()]);
}

#[test]
fn prune_containers_images_and_volumes() {
    let Some(serve) = Serve::start() else { return };
    let stopped = serve.docker_ok(&["create", "--name", "p-stopped", "busybox", "true"]);
    serve.docker_ok(&[
        "create",
        "--name",
        "p-labelled",
        "--label",
        "keep=1",
        "busybox",
    ]);
    serve.docker_ok(&["run", "-d", "--name", "p-running", "busybox", "sleep", "60"]);
    let out = serve.docker_ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.contains(stopped.trim()), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    let left = serve.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left, "p-running\np-labelled\n");
    let out = serve.docker_ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert!(!out.contains("p-labelled"), "too new to go: {out}");
    serve.docker_ok(&["container", "prune", "-f", "--filter", "label=keep=1"]);
    let left = serve.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left, "p-running\n");

    labelled_image(&serve, "other:1", "x=y");
    // Dangling only by default: a named image stays.
    serve.docker_ok(&["image", "prune", "-f"]);
    serve.docker_ok(&["image", "inspect", "other:1"]);
    let out = serve.docker_ok(&["image", "prune", "-a", "-f", "--filter", "label=nope"]);
    assert!(!out.contains("other:1"), "{out}");
    let out = serve.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: other:1"), "{out}");
    // busybox runs in p-running: kept.
    let images = serve.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images, "busybox:latest\n");

    serve.docker_ok(&["volume", "create", "loose"]);
    serve.docker_ok(&["volume", "create", "--label", "keep=1", "kept"]);
    let out = serve.docker_ok(&["volume", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.contains("loose") && !out.contains("kept"), "{out}");
    assert_eq!(serve.docker_ok(&["volume", "ls", "-q"]), "kept\n");
    serve.docker_ok(&["volume", "prune", "-f"]);
    assert!(serve.docker_ok(&["volume", "ls", "-q"]).is_empty());
    let out = serve.docker(&["container", "prune", "-f", "--filter", "colour=red"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid filter 'colour'"),
        "{}",
        stderr(&out)
    );
    serve.docker_ok(&["rm", "-f", "p-running"]);
}

#[test]
fn ps_and_images_filters() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&[
        "run", "--name", "f-zero", "--label", "team=a", "busybox", "true",
    ]);
    serve.docker(&["run", "--name", "f-three", "busybox", "sh", "-c", "exit 3"]);
    let running = serve.docker_ok(&["run", "-d", "--name", "f-run", "busybox", "sleep", "60"]);
    let names = |filters: &[&str]| -> String {
        let mut args = vec!["ps", "--format", "{{.Names}}"];
        args.extend_from_slice(filters);
        let out = serve.docker_ok(&args);
        let mut names: Vec<&str> = out.lines().collect();
        names.sort();
        names.join(" ")
    };
    assert_eq!(names(&[]), "f-run");
    assert_eq!(names(&["-a"]), "f-run f-three f-zero");
    assert_eq!(names(&["-a", "--filter", "exited=3"]), "f-three");
    assert_eq!(names(&["-a", "--filter", "exited=0"]), "f-zero");
    assert_eq!(names(&["--filter", "status=exited"]), "f-three f-zero");
    assert_eq!(names(&["-a", "--filter", "name=f-t"]), "f-three");
    assert_eq!(
        names(&["-a", "--filter", &format!("id={}", &running[..10])]),
        "f-run"
    );
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox"]),
        "f-run f-three f-zero"
    );
    assert_eq!(names(&["-a", "--filter", "ancestor=other"]), "");
    assert_eq!(names(&["-a", "--filter", "before=f-three"]), "f-zero");
    assert_eq!(names(&["-a", "--filter", "since=f-zero"]), "f-run f-three");
    assert_eq!(names(&["-a", "--filter", "label=team"]), "f-zero");
    assert_eq!(names(&["-a", "--filter", "label=team=a"]), "f-zero");
    assert_eq!(names(&["-a", "--filter", "label=team=b"]), "");
    let labels = serve.docker_ok(&["inspect", "--format", "{{.Config.Labels.team}}", "f-zero"]);
    assert_eq!(labels, "a\n");
    assert_eq!(names(&["-n", "1"]), "f-run");
    assert_eq!(names(&["-n", "2"]), "f-run f-three");
    for bad in ["status=sleepy", "colour=red", "exited=x"] {
        let out = serve.docker(&["ps", "-a", "--filter", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            stderr(&out).contains("invalid filter"),
            "{bad}: {}",
            stderr(&out)
        );
    }

    labelled_image(&serve, "other:1", "x=y");
    let images = |filters: &[&str]| -> String {
        let mut args = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        args.extend_from_slice(filters);
        let out = serve.docker_ok(&args);
        let mut names: Vec<&str> = out.lines().collect();
        names.sort();
        names.join(" ")
    };
    assert_eq!(images(&[]), "busybox:latest other:1");
    assert_eq!(images(&["--filter", "reference=busy*"]), "busybox:latest");
    assert_eq!(images(&["--filter", "reference=other:1"]), "other:1");
    assert_eq!(images(&["--filter", "dangling=true"]), "");
    assert_eq!(
        images(&["--filter", "dangling=false"]),
        "busybox:latest other:1"
    );
    assert_eq!(images(&["--filter", "label=x=y"]), "other:1");
    assert_eq!(images(&["--filter", "since=busybox"]), "other:1");
    assert_eq!(images(&["--filter", "before=other:1"]), "busybox:latest");
    let out = serve.docker(&["images", "--filter", "colour=red"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid filter 'colour'"),
        "{}",
        stderr(&out)
    );
    serve.docker_ok(&["rm", "-f", "f-run", "f-three", "f-zero"]);
}

#[test]
fn resize_and_shared_layers_in_df() {
    let Some(serve) = Serve::start() else { return };
    serve.docker_ok(&["run", "-d", "--name", "sized", "busybox", "sleep", "60"]);
    assert_eq!(
        serve
            .raw("POST", "/containers/sized/resize?h=40&w=80", "")
            .0,
        200
    );
    assert_eq!(
        serve
            .raw("POST", "/containers/ghost/resize?h=40&w=80", "")
            .0,
        404
    );
    let (status, body) = serve.raw("POST", "/containers/sized/exec", r#"{"Cmd":["true"]}"#);
    assert_eq!(status, 201, "{body}");
    let exec: Value = serde_json::from_str(&body).unwrap();
    let id = exec["Id"].as_str().unwrap();
    assert_eq!(
        serve
            .raw("POST", &format!("/exec/{id}/resize?h=1&w=1"), "")
            .0,
        200
    );
    assert_eq!(serve.raw("POST", "/exec/ghost/resize?h=1&w=1", "").0, 404);
    serve.docker_ok(&["rm", "-f", "sized"]);

    // Two images, the same layers: counted once.
    labelled_image(&serve, "twin:1", "twin=1");
    let (status, body) = serve.raw("GET", "/system/df", "");
    assert_eq!(status, 200, "{body}");
    let df: Value = serde_json::from_str(&body).unwrap();
    let images = df["Images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{body}");
    let busybox = images
        .iter()
        .find(|i| i["RepoTags"][0] == "busybox:latest")
        .unwrap();
    assert_eq!(df["LayersSize"], busybox["Size"], "{body}");
}

/// `docker ARGS` with `input` on its standard input.
fn docker_with_input(serve: &Serve, args: &[&str], input: &str) -> std::process::Output {
    let mut child = serve
        .docker_command(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn stdin_of_run_and_exec() {
    let Some(serve) = Serve::start() else { return };
    let out = docker_with_input(&serve, &["run", "-i", "--rm", "busybox", "cat"], "hello\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "hello\n");
    let out = docker_with_input(
        &serve,
        &[
            "run",
            "-i",
            "--name",
            "once",
            "busybox",
            "sh",
            "-c",
            "wc -l; exit 4",
        ],
        "a\nb\nc\n",
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(text(&out.stdout).trim(), "3");
    let config = serve.docker_ok(&[
        "inspect",
        "--format",
        "{{.Config.OpenStdin}} {{.Config.StdinOnce}} {{.Config.AttachStdin}}",
        "once",
    ]);
    assert_eq!(config, "true true true\n");
    let closed = serve.docker_ok(&["create", "busybox", "true"]);
    let config = serve.docker_ok(&[
        "inspect",
        "--format",
        "{{.Config.OpenStdin}} {{.Config.StdinOnce}}",
        closed.trim(),
    ]);
    assert_eq!(config, "false false\n");

    // Detached with -i: the input stays open, so `cat` keeps running.
    serve.docker_ok(&["run", "-d", "-i", "--name", "held", "busybox", "cat"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let state = serve.docker_ok(&["inspect", "--format", "{{.State.Status}}", "held"]);
    assert_eq!(state, "running\n");

    let out = docker_with_input(&serve, &["exec", "-i", "held", "cat"], "x\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "x\n");
    let out = docker_with_input(
        &serve,
        &["exec", "-i", "held", "sh", "-c", "read v; exit $v"],
        "7\n",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // Without -i the command's input is empty.
    let out = docker_with_input(&serve, &["exec", "held", "cat"], "ignored\n");
    assert_eq!(text(&out.stdout), "");
    serve.docker_ok(&["rm", "-f", "held", "once", closed.trim()]);
}
