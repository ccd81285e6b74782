//! Builds for several platforms (`--platform linux/amd64,linux/arm64`) without emulation:
//! the builder stage runs natively (`FROM --platform=$BUILDPLATFORM`), once; the
//! per-platform stages only copy. The result is an image index: in the store (listed once,
//! run by platform), pushed (read back by skopeo), in an OCI layout, as a directory per
//! platform, and through a registry cache. Privileged, like `build`.

use std::process::Command;

use serde_json::Value;

use crate::build::Env;
use crate::harness::{self, SKOPEO, registry, stderr, text};

/// The cross-compilation pattern: a native builder, a result per target platform.
const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
    RUN echo compiled > /tool\n\
    ARG TARGETARCH\n\
    RUN echo for-$TARGETARCH > /out\n\
    FROM scratch\n\
    COPY --from=build /out /out\n\
    COPY --from=build /tool /tool\n";

const PLATFORMS: &str = "linux/amd64,linux/arm64";

fn skopeo_raw(reference: &str) -> Value {
    let out = Command::new(SKOPEO)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(os/architecture, digest)` of each entry of an index.
fn entries(index: &Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let platform = format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            );
            (platform, m["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn an_index_of_two_platforms_with_the_builder_run_once() {
    let Some(env) = Env::new(true) else { return };
    let Some(reg) = registry::plain() else { return };
    if !harness::have(SKOPEO) {
        return;
    }
    env.write("Dockerfile", CROSS);
    let name = format!("{}/platforms/app:1", reg.addr);
    let out = env.build(&["--platform", PLATFORMS, "-t", &name, "--push", "--load"]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    // Named with their platform; the native builder's first RUN is one step.
    let compile = steps_named(&log, "RUN echo compiled > /tool");
    assert_eq!(compile.len(), 1, "{log}");
    assert!(compile[0].contains("[linux/amd64 build 2/3]"), "{log}");
    // Shown expanded, as BuildKit shows a RUN: one step per platform.
    for arch in ["amd64", "arm64"] {
        assert!(
            log.contains(&format!("] RUN echo for-{arch} > /out")),
            "{log}"
        );
    }
    assert!(log.contains("[linux/arm64 stage-1 1/2] COPY --from=build /out /out"));

    // Pushed as an index; each image says its platform and holds its file.
    let index = skopeo_raw(&name);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = entries(&index).into_iter().map(|(p, _)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for (platform, digest) in entries(&index) {
        let manifest = skopeo_raw(&format!("{}/platforms/app@{digest}", reg.addr));
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let config: Value = serde_json::from_slice(&env.blob(config_digest)).unwrap();
        assert_eq!(
            format!("linux/{}", config["architecture"].as_str().unwrap()),
            platform
        );
    }

    // In the store: one row, its platforms, each image runnable by platform (a scratch
    // image: its files are read back through the local output below).
    let out = env.kiln(&["images"]);
    let rows: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| l.contains("platforms/app"))
        .map(str::to_string)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let out = env.kiln(&["image", "inspect", &name]);
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        inspect[0]["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // Managed by name and by the id `kiln images` shows (the index's).
    let id = rows[0].split_whitespace().nth(2).unwrap().to_string();
    let out = env.kiln(&["image", "inspect", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.kiln(&["tag", &id, "copy:1"]).status.success());
    let out = env.kiln(&["rmi", "copy:1"]);
    assert_eq!(text(&out.stdout), "Untagged: copy:1\n", "{}", stderr(&out));

    // A warm rebuild runs nothing.
    let out = env.build(&["--platform", PLATFORMS, "-t", &name]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(steps_not_cached(&log), Vec::<String>::new(), "{log}");

    // The files, a directory per platform.
    let dest = env.context().join("..").join("out");
    let spec = format!("type=local,dest={}", dest.display());
    let out = env.build(&["--platform", PLATFORMS, "-o", &spec]);
    assert!(out.status.success(), "{}", stderr(&out));
    for arch in ["amd64", "arm64"] {
        let file = dest.join(format!("linux_{arch}/out"));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("for-{arch}\n")
        );
        let tool = dest.join(format!("linux_{arch}/tool"));
        assert_eq!(std::fs::read_to_string(&tool).unwrap(), "compiled\n");
    }
}

#[test]
fn oci_and_docker_archives_hold_the_index() {
    let Some(env) = Env::new(true) else { return };
    if !harness::have(SKOPEO) {
        return;
    }
    env.write("Dockerfile", CROSS);
    let layout = env.context().join("..").join("layout");
    let spec = format!("type=oci,dest={},tar=false,name=app:1", layout.display());
    let out = env.build(&["--platform", PLATFORMS, "-o", &spec]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(SKOPEO)
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:1", layout.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let index: Value = serde_json::from_slice(&out.stdout).unwrap();
    let platforms: Vec<String> = entries(&index).into_iter().map(|(p, _)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    // A docker archive: the index too, and `manifest.json` (what `docker load` reads)
    // naming this machine's image.
    let archive = env.context().join("..").join("d");
    let spec = format!(
        "type=docker,dest={},tar=false,name=app:1",
        archive.display()
    );
    let out = env.build(&["--platform", PLATFORMS, "-o", &spec]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(archive.join(name)).unwrap()).unwrap()
    };
    let index_json = read("index.json");
    assert_eq!(
        index_json["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifest_json = read("manifest.json");
    assert_eq!(manifest_json.as_array().unwrap().len(), 1);
    assert_eq!(manifest_json[0]["RepoTags"], serde_json::json!(["app:1"]));
    let config_path = manifest_json[0]["Config"].as_str().unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(archive.join(config_path)).unwrap()).unwrap();
    assert_eq!(
        config["architecture"],
        kiln::oci::Platform::host().architecture
    );
}

#[test]
fn each_platform_resolves_its_own_base_and_a_missing_one_is_named() {
    let Some(env) = Env::new(true) else { return };
    let Some(reg) = registry::plain() else { return };
    // A base image of two platforms, made by a build for two platforms.
    env.write("Dockerfile", CROSS);
    let base = format!("{}/platforms/base:1", reg.addr);
    let out = env.build(&["--platform", PLATFORMS, "-t", &base, "--push"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let (_other, other_root) = harness::temp_dir();
    let fresh = other_root.join("root");
    let context = env.context();
    let build = |platforms: &str| {
        std::fs::write(
            context.join("Dockerfile"),
            format!("FROM {base}\nCOPY Dockerfile /d\n"),
        )
        .unwrap();
        harness::kiln_with_root(&fresh)
            .args([
                "build",
                "--progress",
                "plain",
                "--platform",
                platforms,
                "-t",
                "child",
            ])
            .arg(&context)
            .output()
            .unwrap()
    };
    let out = build("linux/arm64,linux/amd64");
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let index = entries(&skopeo_raw(&base));
    for (platform, digest) in &index {
        assert!(
            log.contains(&format!("[{platform} 1/2] FROM {base}@{digest}")),
            "{platform} from its own manifest:\n{log}"
        );
    }
    // The name keeps meaning this machine's image.
    let out = harness::kiln(&fresh, &["image", "inspect", &base]);
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect[0]["Architecture"], "amd64");

    let out = build("linux/s390x,linux/amd64");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "no manifest for platform linux/s390x in the index; available: linux/amd64, linux/arm64"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_registry_cache_carries_every_platform() {
    let Some(env) = Env::new(true) else { return };
    let Some(reg) = registry::plain() else { return };
    env.write("Dockerfile", CROSS);
    let cache = format!("type=registry,ref={}/platforms/cache:1,mode=max", reg.addr);
    let out = env.build(&["--platform", PLATFORMS, "--cache-to", &cache]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Another machine: a fresh store with only the base image.
    let (_other, other_root) = harness::temp_dir();
    let fresh = other_root.join("root");
    let archive = harness::busybox().unwrap().docker_archive().unwrap();
    let out = harness::kiln(&fresh, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let from = format!("{}/platforms/cache:1", reg.addr);
    let out = harness::kiln_with_root(&fresh)
        .args(["build", "--progress", "plain", "--platform", PLATFORMS])
        .args(["--cache-from", &from])
        .arg(env.context())
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(steps_not_cached(&log), Vec::<String>::new(), "{log}");
}

/// The header lines (`#N [platform stage i/n] …`) of the distinct steps whose name ends
/// with `name`: plain output repeats a step's header when it comes back to it.
fn steps_named<'a>(log: &'a str, name: &str) -> Vec<&'a str> {
    let mut seen = Vec::new();
    let mut lines = Vec::new();
    for line in log.lines().filter(|l| l.ends_with(name)) {
        let number = line.split(' ').next().unwrap_or_default();
        if !seen.contains(&number) {
            seen.push(number);
            lines.push(line);
        }
    }
    lines
}

/// The RUN and COPY steps of plain progress output that did not show `CACHED`.
fn steps_not_cached(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("] RUN ") || line.contains("] COPY "))
        .filter(|line| {
            let number = line.split(' ').next().unwrap_or_default();
            !log.contains(&format!("{number} CACHED"))
        })
        .map(str::to_string)
        .collect()
}

/// The case: a native builder stage and a per-platform final stage that runs
/// `uname -m` (emulated for arm64) over a two-platform base.
#[test]
fn foreign_steps_run_emulated_in_a_build_for_two_platforms() {
    let Some(env) = Env::new(false) else { return };
    let Some(reg) = registry::plain() else { return };
    let Some(_) = harness::push_busybox_index(reg, "platforms/busybox", "multi") else {
        return;
    };
    let base = format!("{}/platforms/busybox:multi", reg.addr);
    env.write(
        "Dockerfile",
        &format!(
            "FROM --platform=$BUILDPLATFORM {base} AS build\n\
             RUN echo compiled > /tool\n\
             FROM {base}\n\
             COPY --from=build /tool /tool\n\
             ARG TARGETARCH\n\
             RUN uname -m > /m && echo $TARGETARCH > /t\n"
        ),
    );
    let name = format!("{}/platforms/uname:1", reg.addr);
    let out = env.build(&["--platform", PLATFORMS, "-t", &name, "--push", "--load"]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    let compile = steps_named(&log, "RUN echo compiled > /tool").len();
    assert_eq!(compile, 1, "the builder stage ran once:\n{log}");
    assert!(
        log.contains("[linux/arm64 stage-1 3/3] RUN uname -m"),
        "{log}"
    );

    let index = skopeo_raw(&name);
    let platforms: Vec<String> = entries(&index).into_iter().map(|(p, _)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = env.kiln(&[
            "run",
            "--rm",
            "--platform",
            platform,
            &name,
            "cat",
            "/m",
            "/t",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let arch = platform.rsplit('/').next().unwrap();
        assert_eq!(text(&out.stdout), format!("{machine}\n{arch}\n"));
    }
    let out = env.kiln(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &name,
        "uname",
        "-m",
    ]);
    assert_eq!(text(&out.stdout), "aarch64\n", "{}", stderr(&out));

    let out = env.build(&["--platform", PLATFORMS, "-t", &name]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(steps_not_cached(&log), Vec::<String>::new(), "{log}");
}

#[test]
fn the_insecure_entitlement_holds_for_every_platform() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM busybox\nRUN --security=insecure true\n",
    );
    let out = env.build(&["--platform", PLATFORMS]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("security.insecure is not allowed"),
        "{}",
        stderr(&out)
    );
}
