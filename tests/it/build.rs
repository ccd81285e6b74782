//! `kiln build` end to end: the built binary on temp contexts and store roots, with the
//! busybox base image (testdata/busybox/make-image.sh) loaded into each root. The results
//! are checked by reading the store (an OCI layout): manifest, config, layer tars.
//! Privileged (root, overlayfs, namespaces): skipped with the reason otherwise, failing
//! under `CI`.

use kiln::progress::Event;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::harness::{self, TempRoot, kiln_with_root, sha256_hex, stderr};

/// A temp store root (with busybox loaded when asked) and a context directory.
pub(crate) struct Env {
    dir: TempRoot,
}

impl Env {
    /// `None` when the test cannot run here (the reason is printed).
    pub(crate) fn new(with_busybox: bool) -> Option<Env> {
        if !harness::privileged() {
            return None;
        }
        let env = Env {
            dir: TempRoot::new(),
        };
        std::fs::create_dir_all(env.context()).unwrap();
        if with_busybox {
            let archive = harness::busybox()?.docker_archive()?;
            let out = env.kiln(&["load", "-i", archive.to_str().unwrap()]);
            assert!(out.status.success(), "load: {}", stderr(&out));
        }
        Some(env)
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub(crate) fn context(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    pub(crate) fn write(&self, path: &str, content: &str) {
        harness::write_file(&self.context(), path, content);
    }

    pub(crate) fn kiln(&self, args: &[&str]) -> Output {
        harness::kiln(&self.root(), args)
    }

    /// `kiln build --progress plain ARGS CONTEXT`.
    pub(crate) fn build(&self, args: &[&str]) -> Output {
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        let context = self.context();
        all.push(context.to_str().unwrap());
        self.kiln(&all)
    }

    pub(crate) fn build_ok(&self, args: &[&str]) -> (String, String) {
        let out = self.build(args);
        assert!(out.status.success(), "build failed:\n{}", stderr(&out));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(id.starts_with("sha256:"), "stdout: {id}");
        (id, stderr(&out))
    }

    pub(crate) fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(self.root().join("blobs/sha256").join(hex)).unwrap()
    }

    /// The manifest and config of the image tagged `name` (full reference).
    pub(crate) fn image(&self, name: &str) -> (Value, Value) {
        let index: Value =
            serde_json::from_slice(&std::fs::read(self.root().join("index.json")).unwrap())
                .unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap_or_else(|| panic!("{name} not in index.json: {index}"));
        let manifest: Value =
            serde_json::from_slice(&self.blob(entry["digest"].as_str().unwrap())).unwrap();
        let config: Value =
            serde_json::from_slice(&self.blob(manifest["config"]["digest"].as_str().unwrap()))
                .unwrap();
        (manifest, config)
    }

    /// Every entry of layer `n` of the image: path → (mode, content).
    pub(crate) fn layer(&self, manifest: &Value, n: usize) -> BTreeMap<String, (u32, Vec<u8>)> {
        let digest = manifest["layers"][n]["digest"].as_str().unwrap();
        let blob = self.blob(digest);
        // Layers kiln builds are stored uncompressed (their digest is the diff_id); base
        // image layers keep the compression they were pulled or loaded with.
        let reader: Box<dyn Read + '_> = match manifest["layers"][n]["mediaType"].as_str() {
            Some("application/vnd.oci.image.layer.v1.tar") => Box::new(&blob[..]),
            Some("application/vnd.oci.image.layer.v1.tar+gzip") => {
                Box::new(flate2::read::GzDecoder::new(&blob[..]))
            }
            other => panic!("layer {n} has media type {other:?}"),
        };
        let mut archive = tar::Archive::new(reader);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.insert(path, (mode, content));
        }
        out
    }
}

#[test]
fn scratch_copy_files_modes_and_heredoc() {
    let Some(env) = Env::new(false) else { return };
    env.write("app/hello.txt", "hello\n");
    env.write("app/run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        env.context().join("app/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    env.write("ignored.txt", "no");
    env.write(".dockerignore", "ignored.txt\n");
    env.write(
        "Dockerfile",
        "FROM scratch\nCOPY app/ /app/\nCOPY <<EOF /etc/motd\nwelcome\nEOF\nCOPY --chmod=600 app/hello.txt /secret\n",
    );
    let (id, _) = env.build_ok(&["-t", "scratch-copy"]);
    let (manifest, config) = env.image("docker.io/library/scratch-copy:latest");
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(config_digest, id);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(config["history"].as_array().unwrap().len(), 3);
    assert!(config["history"][0]["created"].is_string());
    let first = env.layer(&manifest, 0);
    assert_eq!(first["app/hello.txt"].1, b"hello\n");
    assert_eq!(first["app/run.sh"].0 & 0o777, 0o755);
    assert!(!first.keys().any(|k| k.contains("ignored")));
    let second = env.layer(&manifest, 1);
    assert_eq!(second["etc/motd"].1, b"welcome\n");
    let third = env.layer(&manifest, 2);
    assert_eq!(third["secret"].0 & 0o777, 0o600);

    // skopeo reads the store as an OCI layout.
    if Path::new(harness::SKOPEO).exists() {
        let out = Command::new(harness::SKOPEO)
            .arg("inspect")
            .arg(format!(
                "oci:{}:docker.io/library/scratch-copy:latest",
                env.root().display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
        // The uncompressed layers kiln builds travel in a saved archive too.
        let archive = env.dir.path().join("saved.tar");
        let out = env.kiln(&["save", "-o", archive.to_str().unwrap(), "scratch-copy"]);
        assert!(out.status.success(), "save: {}", stderr(&out));
        let out = Command::new(harness::SKOPEO)
            .args(["copy", "-q"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:x", env.dir.path().join("copied").display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
    }
}

#[test]
fn run_on_busybox_writes_files_and_whiteouts() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo built > /built.txt && rm /bin/vi && mkdir -p /data && echo x > /data/x\n",
    );
    env.build_ok(&["-t", "runner"]);
    let (manifest, config) = env.image("docker.io/library/runner:latest");
    // The base layer, then ours.
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    let layer = env.layer(&manifest, 1);
    assert_eq!(layer["built.txt"].1, b"built\n");
    assert_eq!(layer["data/x"].1, b"x\n");
    assert!(layer.contains_key("bin/.wh.vi"), "{:?}", layer.keys());
    assert!(!layer.keys().any(|k| k.starts_with("etc/hosts")));
}

#[test]
fn metadata_instructions_and_build_args() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nARG NAME=default\nENV GREETING=hi-$NAME\nWORKDIR /srv/app\n\
         RUN echo \"$GREETING $NAME\" > out.txt\nUSER 1000:1000\nLABEL a=b\nEXPOSE 8080\n\
         ENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"echo hi\"]\n",
    );
    env.build_ok(&["-t", "meta", "--build-arg", "NAME=given", "--label", "c=d"]);
    let (manifest, config) = env.image("docker.io/library/meta:latest");
    let c = &config["config"];
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi-given")
    );
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"]["a"], "b");
    assert_eq!(c["Labels"]["c"], "d");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object());
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo hi"]));
    let layers = manifest["layers"].as_array().unwrap().len();
    let run = env.layer(&manifest, layers - 1);
    assert_eq!(run["srv/app/out.txt"].1, b"hi-given given\n");
}

#[test]
fn multistage_target_and_copy_from() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox AS build\nRUN echo artifact > /artifact\n\
         FROM busybox AS broken\nRUN exit 3\n\
         FROM scratch AS final\nCOPY --from=build /artifact /artifact\n\
         FROM final AS extra\nRUN exit 4\n",
    );
    // `broken` and `extra` are not needed for `final`: they never run.
    let (_, log) = env.build_ok(&["-t", "multi", "--target", "final"]);
    assert!(!log.contains("exit 3"), "{log}");
    let (manifest, _) = env.image("docker.io/library/multi:latest");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(env.layer(&manifest, 0)["artifact"].1, b"artifact\n");
}

#[test]
fn failing_run_names_the_line_and_shows_output() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo first-line && seq 1 30 && echo second-line >&2 && exit 3\n",
    );
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    // The error shows the last lines; the build record keeps the whole output.
    assert!(err.contains("second-line"), "{err}");
    let full = err
        .lines()
        .find_map(|l| l.strip_prefix("the step's full output: "))
        .unwrap_or_else(|| panic!("no log path in {err}"));
    // stdout and stderr are two pipes: lines of one keep their order, not across them.
    let log = std::fs::read_to_string(full).unwrap();
    let stdout: Vec<&str> = log.lines().filter(|l| *l != "second-line").collect();
    let mut expected = vec!["first-line".to_string()];
    expected.extend((1..=30).map(|n| n.to_string()));
    assert_eq!(stdout, expected, "{log}");
    assert!(log.lines().any(|l| l == "second-line"), "{log}");
    // Nothing half-made is left.
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("snapshots-v1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn missing_copy_source_is_a_clear_error() {
    let Some(env) = Env::new(false) else { return };
    env.write("Dockerfile", "FROM scratch\nCOPY nope.txt /\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("nope.txt"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn cache_hits_touch_and_changed_files() {
    let Some(env) = Env::new(true) else { return };
    env.write("a.txt", "a\n");
    env.write("b.txt", "b\n");
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo base > /base\nCOPY . /src/\nRUN cat /src/a.txt > /copy\n",
    );
    let (first, _) = env.build_ok(&["-t", "cached"]);
    let (second, log) = env.build_ok(&["-t", "cached"]);
    assert_eq!(first, second, "a warm rebuild keeps the image id");
    assert_eq!(log.matches("CACHED").count(), 3, "{log}");

    // touch keeps the cache.
    let file = std::fs::File::options()
        .write(true)
        .open(env.context().join("a.txt"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(file);
    let (third, log) = env.build_ok(&["-t", "cached"]);
    assert_eq!(third, first);
    assert_eq!(log.matches("CACHED").count(), 3, "{log}");

    // One changed byte reruns from that COPY on, naming the file.
    env.write("a.txt", "A\n");
    let (fourth, log) = env.build_ok(&["-t", "cached"]);
    assert_ne!(fourth, first);
    assert_eq!(log.matches("CACHED").count(), 1, "{log}");
    assert!(log.contains("cache miss: 1 file changed: a.txt"), "{log}");

    // --no-cache reruns everything.
    let (_, log) = env.build_ok(&["-t", "cached", "--no-cache"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
}

#[test]
fn independent_stages_run_in_parallel() {
    let Some(env) = Env::new(true) else { return };
    let mut dockerfile = String::new();
    for s in ["a", "b", "c", "d"] {
        dockerfile.push_str(&format!(
            "FROM busybox AS {s}\nRUN sleep 1 && echo {s} > /{s}\n"
        ));
    }
    dockerfile.push_str("FROM scratch\n");
    for s in ["a", "b", "c", "d"] {
        dockerfile.push_str(&format!("COPY --from={s} /{s} /{s}\n"));
    }
    env.write("Dockerfile", &dockerfile);
    // Not a speed check: the progress events say when each RUN started and how long it
    // took, and with --jobs 4 the four 1-second steps must all be running at once.
    let context = env.context();
    let out = env.kiln(&[
        "build",
        "--progress",
        "rawjson",
        "--jobs",
        "4",
        "-t",
        "parallel",
        context.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "build failed:\n{}", stderr(&out));
    let events: Vec<Event> = stderr(&out)
        .lines()
        .filter_map(|line| Event::from_json_line(line).ok())
        .collect();
    let mut runs = std::collections::BTreeMap::new();
    for event in &events {
        if let Event::VertexStarted {
            id,
            name,
            started_at,
        } = event
            && name.contains("RUN sleep 1")
        {
            runs.insert(*id, (*started_at, None));
        }
    }
    for event in &events {
        if let Event::VertexDone { id, duration } = event
            && let Some((started, end)) = runs.get_mut(id)
        {
            *end = Some(*started + *duration);
        }
    }
    assert_eq!(runs.len(), 4, "{events:?}");
    let last_start = runs
        .values()
        .map(|(start, _)| *start)
        .fold(f64::MIN, f64::max);
    let first_end = runs
        .values()
        .map(|(_, end)| end.expect("every RUN finished"))
        .fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "the RUN steps did not overlap: {runs:?}"
    );
}

#[test]
fn quiet_and_iidfile() {
    let Some(env) = Env::new(false) else { return };
    env.write("f", "x");
    env.write("Dockerfile", "FROM scratch\nCOPY f /f\n");
    let iid = env.dir.path().join("iid");
    let out = env.kiln(&[
        "build",
        "-q",
        "--iidfile",
        iid.to_str().unwrap(),
        env.context().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"));
    assert_eq!(std::fs::read_to_string(iid).unwrap(), id);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn run_heredoc_cache_mount_and_arg_miss() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nARG V=one\nRUN <<EOT\n#!/bin/sh\necho \"script $V\" > /script.txt\nEOT\n\
         RUN --mount=type=cache,target=/cache echo x >> /cache/n && wc -l < /cache/n > /count\n",
    );
    env.build_ok(&["-t", "heredoc"]);
    let (manifest, _) = env.image("docker.io/library/heredoc:latest");
    let script = env.layer(&manifest, 1);
    assert_eq!(script["script.txt"].1, b"script one\n");
    // The script itself is mounted outside the layer.
    assert!(
        !script.keys().any(|k| k.starts_with("dev")),
        "{:?}",
        script.keys()
    );
    let counted = env.layer(&manifest, 2);
    assert_eq!(counted["count"].1, b"1\n");
    assert!(!counted.keys().any(|k| k.starts_with("cache/")));

    // A changed build arg is named; the cache mount persists across builds.
    let (_, log) = env.build_ok(&["-t", "heredoc", "--build-arg", "V=two"]);
    assert!(log.contains("cache miss: ARG V changed"), "{log}");
    let (manifest, _) = env.image("docker.io/library/heredoc:latest");
    assert_eq!(env.layer(&manifest, 1)["script.txt"].1, b"script two\n");
    assert_eq!(env.layer(&manifest, 2)["count"].1, b"2\n");
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let Some(env) = Env::new(true) else { return };
    env.write("f.txt", "f\n");
    env.write(
        "Dockerfile",
        "FROM busybox\nCOPY f.txt /f.txt\nRUN mkdir /made && echo x > /made/x\n",
    );
    let args = ["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    let (first, _) = env.build_ok(&args);
    // Later file times, same image: mtimes are clamped, history times fixed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, _) = env.build_ok(&args);
    assert_eq!(
        first, second,
        "two --no-cache builds with SOURCE_DATE_EPOCH differ"
    );
}

#[test]
fn identical_stages_and_unreachable_sources() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox AS a\nRUN echo same > /s\nFROM busybox AS b\nRUN echo same > /s\n\
         FROM scratch\nCOPY --from=a /s /a\nCOPY --from=b /s /b\n",
    );
    let (_, log) = env.build_ok(&["-t", "same"]);
    let (manifest, _) = env.image("docker.io/library/same:latest");
    assert_eq!(env.layer(&manifest, 1)["b"].1, b"same\n", "{log}");

    // A git source that cannot be fetched fails its step, naming the remote.
    env.write(
        "Dockerfile",
        "FROM busybox\nADD git://127.0.0.1:1/repo.git /src\n",
    );
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("git ls-remote of git://127.0.0.1:1/repo.git failed"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn interrupt_stops_the_build_and_cleans_up() {
    let Some(env) = Env::new(true) else { return };
    env.write("Dockerfile", "FROM busybox\nRUN echo started && sleep 60\n");
    let mut child = kiln_with_root(&env.root())
        .args(["build", "--progress", "plain"])
        .arg(env.context())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the step's first output line, then Ctrl-C.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match stderr_pipe.read(&mut buf) {
                Ok(0) | Err(_) => break seen,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let marker = env.root().join("snapshots-v1");
    // The step is running once its temporary directory exists.
    while Instant::now() < deadline {
        let running = std::fs::read_dir(&marker).ok().is_some_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("tmp-build-"))
        });
        if running {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let start = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    // Not a speed check: the step sleeps 60 s, so ending well before proves the
    // interrupt stopped it instead of waiting for it.
    assert!(start.elapsed().as_secs() < 45, "took {:?}", start.elapsed());
    assert!(log.contains("cancelled"), "{log}");
    let leftovers: Vec<_> = std::fs::read_dir(&marker)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn interrupt_stops_a_base_image_pull() {
    let Some(env) = Env::new(false) else { return };
    // A registry that accepts connections and never answers: the pull waits on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    env.write("Dockerfile", &format!("FROM {addr}/never/answers:latest\n"));
    let mut child = kiln_with_root(&env.root())
        .args(["build", "--progress", "plain"])
        .arg(env.context())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    accepted
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the pull reached the registry");
    let start = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    // Not a speed check: the client retries an unanswering registry for minutes, so
    // ending well before proves the interrupt dropped the pull.
    assert!(start.elapsed().as_secs() < 45, "took {:?}", start.elapsed());
    assert!(log.contains("cancelled"), "{log}");
    let records = env.root().join("builds-v1");
    let record = std::fs::read_dir(&records)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let record = std::fs::read_to_string(record.path().join("record.json")).unwrap();
    assert!(record.contains("\"status\": \"cancelled\""), "{record}");
}

// ---------------------------------------------------------------------------------------
// RUN mounts, sources and command-line options

/// Every entry name of every layer kiln built for `name` (base layers skipped).
fn built_paths(env: &Env, name: &str) -> Vec<String> {
    let (manifest, _) = env.image(name);
    let layers = manifest["layers"].as_array().unwrap();
    let mut out = Vec::new();
    for (n, layer) in layers.iter().enumerate() {
        if layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar" {
            out.extend(env.layer(&manifest, n).into_keys());
        }
    }
    out
}

#[test]
fn run_mounts_secrets_tmpfs_binds_and_caches() {
    let Some(env) = Env::new(true) else { return };
    env.write("a.txt", "hello\n");
    env.write("sub/s.txt", "sub\n");
    env.write("hidden.txt", "private\n");
    env.write(".dockerignore", "hidden.txt\n");
    let secret = env.dir.path().join("token");
    std::fs::write(&secret, "tok3n").unwrap();
    env.write(
        "Dockerfile",
        "FROM busybox AS stage\n\
         RUN mkdir /out && echo one > /out/1\n\
         RUN echo two > /out/2\n\
         FROM busybox\n\
         RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-secret && stat -c %a /run/secrets/tok > /secret-mode\n\
         RUN --mount=type=secret,id=tok,env=TOKEN,target=/s,mode=0440 echo \"$TOKEN\" > /seen-env && stat -c %a /s >> /secret-mode\n\
         RUN --mount=type=tmpfs,target=/scratch,size=1m touch /scratch/x && df /scratch | tail -1 | awk '{print $2}' > /tmpfs-size\n\
         RUN --mount=type=bind,target=/ctx ls /ctx > /ctx-list\n\
         RUN --mount=type=bind,target=/ctx,rw echo changed > /ctx/a.txt && cat /ctx/a.txt > /rw-seen\n\
         RUN --mount=type=bind,from=stage,source=/out,target=/o cat /o/1 /o/2 > /from-stage\n\
         RUN --mount=type=bind,source=../../sub,target=/sub cat /sub/s.txt > /sub-seen\n\
         RUN --mount=type=cache,target=/cache,uid=1000,mode=0700,sharing=locked stat -c '%u %a' /cache > /cache-stat && echo x >> /cache/log\n\
         RUN --mount=type=cache,target=/root/.npm,sharing=locked --mount=type=cache,target=/root/.cache,sharing=locked touch /root/.npm/a /root/.cache/b\n",
    );
    let secret_arg = format!("id=tok,src={}", secret.display());
    let (_, log) = env.build_ok(&["-t", "mounts", "--secret", &secret_arg]);
    let name = "docker.io/library/mounts:latest";
    let (manifest, _) = env.image(name);
    let mut files = BTreeMap::new();
    for n in 1..manifest["layers"].as_array().unwrap().len() {
        files.extend(env.layer(&manifest, n));
    }
    let text = |path: &str| String::from_utf8_lossy(&files[path].1).into_owned();
    assert_eq!(text("seen-secret"), "tok3n", "{log}");
    assert_eq!(text("seen-env"), "tok3n\n");
    assert_eq!(text("secret-mode"), "400\n440\n");
    assert_eq!(text("tmpfs-size"), "1024\n");
    // The context as COPY sees it: .dockerignore applies.
    assert_eq!(text("ctx-list"), "Dockerfile\na.txt\nsub\n");
    assert_eq!(text("rw-seen"), "changed\n");
    assert_eq!(text("from-stage"), "one\ntwo\n");
    // `..` in a bind source stays inside the context.
    assert_eq!(text("sub-seen"), "sub\n");
    assert_eq!(text("cache-stat"), "1000 700\n");
    // Writes to a rw bind never reach the context; mounts leave nothing in the layers.
    assert_eq!(
        std::fs::read_to_string(env.context().join("a.txt")).unwrap(),
        "hello\n"
    );
    let paths = built_paths(&env, name);
    for leaked in [
        "run/secrets/tok",
        "s",
        "scratch/x",
        "ctx/a.txt",
        "o/1",
        "cache/log",
    ] {
        assert!(!paths.iter().any(|p| p == leaked), "{leaked} in {paths:?}");
    }
    assert!(!log.contains("tok3n"), "a secret reached the log: {log}");

    // A required secret that is missing fails the step; an optional one is skipped.
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n",
    );
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("secret nope not found"),
        "{}",
        stderr(&out)
    );
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope\n",
    );
    env.build_ok(&[]);
}

#[test]
fn ssh_agent_socket_is_forwarded() {
    let Some(env) = Env::new(true) else { return };
    let socket = env.dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock\n",
    );
    let ssh = format!("default={}", socket.display());
    env.build_ok(&["-t", "ssh", "--ssh", &ssh]);
    let (manifest, _) = env.image("docker.io/library/ssh:latest");
    assert_eq!(
        env.layer(&manifest, 1)["sock"].1,
        b"/run/buildkit/ssh_agent.0\n"
    );
    // A key file is not an agent: a usage error.
    let key = env.dir.path().join("id_ed25519");
    std::fs::write(&key, "key").unwrap();
    let out = env.build(&["--ssh", &format!("default={}", key.display())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not an agent socket"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn add_url_checksum_and_revalidation() {
    let Some(env) = Env::new(false) else { return };
    let body = std::sync::Arc::new(std::sync::Mutex::new(b"payload v1\n".to_vec()));
    let served = body.clone();
    let server = harness::registry::FakeServer::start(move |req| {
        let content = served.lock().unwrap().clone();
        let etag = format!("\"{}\"", content.len() + content[8] as usize);
        if req.headers.get("if-none-match") == Some(&etag) {
            return harness::registry::Resp::new(304);
        }
        harness::registry::Resp::new(200)
            .header("ETag", &etag)
            .header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
            .body(content)
    });
    let url = format!("http://{}/files/tool.txt", server.addr);
    let sum = format!("sha256:{}", sha256_hex(b"payload v1\n"));
    env.write(
        "Dockerfile",
        &format!("FROM scratch\nADD {url} /f.txt\nADD --checksum={sum} {url} /dir/\n"),
    );
    env.build_ok(&["-t", "url"]);
    let (manifest, _) = env.image("docker.io/library/url:latest");
    let first = env.layer(&manifest, 0);
    assert_eq!(first["f.txt"], (0o600, b"payload v1\n".to_vec()));
    assert_eq!(env.layer(&manifest, 1)["dir/tool.txt"].1, b"payload v1\n");

    // Unchanged: the server answers 304 and every step is cached.
    let gets = || server.count(|r| r.method == "GET");
    let before = gets();
    let (_, log) = env.build_ok(&["-t", "url"]);
    assert_eq!(log.matches("CACHED").count(), 3, "{log}");
    assert_eq!(server.count(|r| r.headers.contains_key("if-none-match")), 1);
    assert_eq!(gets(), before + 1, "the pinned one is not fetched again");

    // Changed content: the unpinned ADD reruns; the pinned one now mismatches.
    *body.lock().unwrap() = b"payload v2 (longer)\n".to_vec();
    let out = env.build(&["-t", "url", "--no-cache"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(err.contains(&sum), "{err}");

    // Pinned to the new content, the download is unconditional: a 304 could not prove
    // the stored copy has that digest.
    let sum2 = format!("sha256:{}", sha256_hex(b"payload v2 (longer)\n"));
    env.write(
        "Dockerfile",
        &format!("FROM scratch\nADD --checksum={sum2} {url} /g\n"),
    );
    env.build_ok(&["-t", "url2"]);
    let last = server.requests.lock().unwrap().last().cloned().unwrap();
    assert!(!last.headers.contains_key("if-none-match"), "{last:?}");
    let (manifest, _) = env.image("docker.io/library/url2:latest");
    assert_eq!(env.layer(&manifest, 0)["g"].1, b"payload v2 (longer)\n");
}

#[test]
fn network_no_cache_filter_metadata_and_stdin() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox AS base\nRUN echo base > /base\nFROM base\nRUN cat /proc/net/dev | tail -n +3 | wc -l > /ifaces\n",
    );
    let metadata = env.dir.path().join("meta.json");
    let (id, _) = env.build_ok(&[
        "-t",
        "net",
        "--network",
        "none",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ]);
    let (manifest, _) = env.image("docker.io/library/net:latest");
    assert_eq!(env.layer(&manifest, 2)["ifaces"].1, b"1\n", "only lo");
    let meta: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(meta["containerimage.config.digest"], id.as_str());
    assert_eq!(meta["image.name"], "docker.io/library/net:latest");
    let digest = meta["containerimage.digest"].as_str().unwrap();
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest);
    assert!(env.root().join("blobs/sha256").join(&digest[7..]).exists());

    // --no-cache-filter reruns that stage's steps only.
    let (_, log) = env.build_ok(&[
        "-t",
        "net",
        "--network",
        "none",
        "--no-cache-filter",
        "base",
    ]);
    assert_eq!(log.matches("CACHED").count(), 1, "{log}");
    // The network is part of the key: host networking misses.
    let (_, log) = env.build_ok(&["-t", "net"]);
    assert!(log.contains("cache miss: network changed"), "{log}");

    // `kiln build -`: the Dockerfile on stdin and an empty context.
    let mut child = kiln_with_root(&env.root())
        .args(["build", "-q", "-t", "stdin", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"FROM busybox\nRUN echo from-stdin > /s\n",
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (manifest, _) = env.image("docker.io/library/stdin:latest");
    assert_eq!(env.layer(&manifest, 1)["s"].1, b"from-stdin\n");

    // Another OS is refused up front.
    let out = env.build(&["--platform", "windows/amd64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("kiln builds images for this machine's OS only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pull_flag_resolves_the_tag_again() {
    let Some(env) = Env::new(true) else { return };
    let Some(registry) = harness::registry::plain() else {
        return;
    };
    // Push busybox as `base`, build on it, then move the tag to another image.
    let base = format!("{}/pull-test/base:latest", registry.addr);
    assert!(env.kiln(&["tag", "busybox", &base]).status.success());
    let out = env.kiln(&["push", "-q", &base]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.write("Dockerfile", &format!("FROM {base}\nRUN echo v > /v\n"));
    env.build_ok(&["-t", "child"]);
    env.write("Dockerfile", "FROM busybox\nRUN echo moved > /moved\n");
    env.build_ok(&["-t", &base]);
    let out = env.kiln(&["push", "-q", &base]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Locally, the tag goes back to the old image; only the registry has the new one.
    assert!(env.kiln(&["tag", "busybox", &base]).status.success());
    env.write("Dockerfile", &format!("FROM {base}\nRUN echo v > /v\n"));
    let (_, log) = env.build_ok(&["-t", "child"]);
    assert!(
        !log.contains("pulling"),
        "a stored tag is used as is: {log}"
    );
    let (_, log) = env.build_ok(&["-t", "child", "--pull"]);
    assert!(log.contains("pulling"), "{log}");
    let (_, config) = env.image("docker.io/library/child:latest");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
}

#[test]
fn concurrent_builds_share_one_root() {
    let Some(env) = Env::new(true) else { return };
    env.write("a.txt", "a\n");
    env.write(
        "Dockerfile",
        "FROM busybox\nCOPY a.txt /a.txt\nRUN sleep 0.3 && cat /a.txt > /b.txt\n",
    );
    let builds: Vec<_> = (0..4)
        .map(|i| {
            let tag = format!("parallel-{i}");
            kiln_with_root(&env.root())
                .args(["build", "-q", "-t", &tag])
                .arg(env.context())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = builds
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // Each step was made once: one snapshot per step, no temporary left over.
    let snapshots: Vec<String> = std::fs::read_dir(env.root().join("snapshots-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        snapshots.iter().filter(|n| n.starts_with("build-")).count(),
        2,
        "{snapshots:?}"
    );
    assert!(
        !snapshots.iter().any(|n| n.starts_with("tmp-")),
        "{snapshots:?}"
    );
    let (_, log) = env.build_ok(&["-t", "parallel-0"]);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
}

#[test]
fn incremental_copy_equals_a_fresh_one_and_prune_keeps_images() {
    let Some(env) = Env::new(true) else { return };
    // The RUN step writes /count: without a fixed epoch its mtime (whole seconds in the tar)
    // would make the two builds' RUN layers differ whenever they straddle a second.
    const EPOCH: &str = "SOURCE_DATE_EPOCH=1700000000";
    for i in 0..50 {
        env.write(&format!("tree/d{}/f{i}.txt", i % 5), &format!("file {i}\n"));
    }
    env.write(
        "Dockerfile",
        "FROM busybox\nCOPY tree /src/\nRUN find /src -type f | wc -l > /count\n",
    );
    env.build_ok(&["-t", "inc", "--build-arg", EPOCH]);
    env.write("tree/d1/f1.txt", "changed\n");
    std::fs::remove_file(env.context().join("tree/d2/f2.txt")).unwrap();
    let (_, log) = env.build_ok(&["-t", "inc", "--build-arg", EPOCH]);
    assert!(log.contains("cache miss: 1 file changed"), "{log}");
    let (_, incremental) = env.image("docker.io/library/inc:latest");
    let (_, log) = env.build_ok(&["-t", "inc", "--no-cache", "--build-arg", EPOCH]);
    assert!(!log.contains("CACHED"), "{log}");
    let (manifest, fresh) = env.image("docker.io/library/inc:latest");
    assert_eq!(
        incremental["rootfs"]["diff_ids"], fresh["rootfs"]["diff_ids"],
        "the incremental COPY's layer differs from a fresh one"
    );
    assert_eq!(env.layer(&manifest, 2)["count"].1, b"49\n");

    // `system df` sees the cache; `builder prune` keeps what the next build hits.
    let df = env.kiln(&["system", "df"]);
    let df = String::from_utf8_lossy(&df.stdout).into_owned();
    assert!(df.contains("Build Cache"), "{df}");
    let out = env.kiln(&["builder", "prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, log) = env.build_ok(&["-t", "inc", "--build-arg", EPOCH]);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
    // --all empties it; the image still runs (its layers are blobs, not cache).
    let out = env.kiln(&["builder", "prune", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let leftover: Vec<String> = std::fs::read_dir(env.root().join("snapshots-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-") || n.starts_with("tmp-"))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    let out = env.kiln(&["run", "--rm", "inc", "cat", "/count"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "49\n",
        "{}",
        stderr(&out)
    );
    let (_, log) = env.build_ok(&["-t", "inc", "--build-arg", EPOCH]);
    assert!(!log.contains("CACHED"), "{log}");
}
