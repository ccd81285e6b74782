//! Foreign platforms through binfmt_misc emulation: the arm64 busybox image and the
//! host's pushed as one multi-platform index, `kiln build --platform linux/arm64` running
//! its RUN steps emulated, the error at the RUN line when nothing emulates a platform, and
//! `kiln system binfmt`. Needs root and Debian's qemu-user-static (registered by
//! `.ci/run`, or by the harness as root); skipped with the reason otherwise, failing
//! under `CI`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::build::Env;
use crate::harness::{self, SKOPEO, TempRoot, kiln_command, kiln_with_root, registry, stderr};

#[test]
fn pushed_index_lists_both_platforms() {
    let Some(registry) = registry::plain() else {
        return;
    };
    let Some(digest) = harness::push_busybox_index(registry, "emulation/index", "two") else {
        return;
    };
    let out = Command::new(SKOPEO)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/emulation/index:two", registry.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", stderr(&out));
    assert_eq!(
        format!("sha256:{}", harness::sha256_hex(&out.stdout)),
        digest
    );
    let index: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let platform = &entry["platform"];
            (
                format!(
                    "{}/{}",
                    platform["os"].as_str().unwrap(),
                    platform["architecture"].as_str().unwrap()
                ),
                entry["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (amd64, arm64) = (
        harness::busybox().unwrap(),
        harness::busybox_arm64().unwrap(),
    );
    assert_eq!(
        entries,
        [
            ("linux/amd64".to_string(), amd64.manifest.clone()),
            ("linux/arm64".to_string(), arm64.manifest.clone()),
        ]
    );
}

#[test]
fn build_for_arm64_runs_its_steps_emulated() {
    let Some(env) = Env::new(false) else { return };
    let Some(registry) = registry::plain() else {
        return;
    };
    if harness::push_busybox_index(registry, "emulation/base", "latest").is_none() {
        return;
    }
    env.write(
        "Dockerfile",
        &format!("FROM {}/emulation/base\nRUN uname -m > /m\n", registry.addr),
    );
    env.build_ok(&["--platform", "linux/arm64", "-t", "emulated"]);
    let (manifest, config) = env.image("docker.io/library/emulated:latest");
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux", "{config}");
    // The base is the index's arm64 image, and its busybox ran as aarch64.
    let arm64 = harness::busybox_arm64().unwrap();
    assert_eq!(manifest["layers"][0]["digest"], arm64.layer.as_str());
    assert_eq!(env.layer(&manifest, 1)["m"].1, b"aarch64\n");
}

/// `kiln build --platform PLATFORM` of the context of `env`, with binfmt_misc looked for
/// in `binfmt`.
fn build_with_binfmt(env: &Env, platform: &str, binfmt: &Path) -> Output {
    kiln_with_root(&env.root())
        .env("KILN_BINFMT_DIR", binfmt)
        .args(["build", "--progress", "plain", "--platform", platform])
        .arg(env.context())
        .output()
        .unwrap()
}

#[test]
fn missing_emulator_fails_at_the_run_line_with_the_fix() {
    let Some(env) = Env::new(true) else { return };
    env.write("Dockerfile", "FROM busybox\nRUN uname -m > /m\n");
    let binfmt = TempRoot::new();

    let out = build_with_binfmt(&env, "linux/s390x", binfmt.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("cannot run linux/s390x binaries"), "{err}");
    let mount = format!(
        "mount -t binfmt_misc binfmt_misc {}",
        binfmt.path().display()
    );
    assert!(err.contains(&mount), "{err}");

    // Mounted, with nothing registered.
    std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
    let out = build_with_binfmt(&env, "linux/s390x", binfmt.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("no emulator for linux/s390x"), "{err}");
    assert!(err.contains("apt-get install qemu-user-static"), "{err}");
    assert!(err.contains("kiln system binfmt --install"), "{err}");

    // A build without RUN needs no emulator.
    env.write("Dockerfile", "FROM busybox\nCOPY Dockerfile /\n");
    let out = build_with_binfmt(&env, "linux/s390x", binfmt.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `kiln system binfmt ARGS`, with binfmt_misc looked for in `binfmt` when given.
fn system_binfmt(args: &[&str], binfmt: Option<&Path>) -> Output {
    let mut command = kiln_command();
    if let Some(dir) = binfmt {
        command.env("KILN_BINFMT_DIR", dir);
    }
    command
        .args(["system", "binfmt"])
        .args(args)
        .output()
        .unwrap()
}

/// The line of `platform` in `kiln system binfmt`'s output.
fn platform_line<'a>(stdout: &'a str, platform: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(platform))
        .unwrap_or_else(|| panic!("no {platform} in\n{stdout}"))
}

#[test]
fn system_binfmt_shows_the_emulators_and_installs_once() {
    if !harness::have_root() || !harness::arm64_emulation() {
        return;
    }
    let out = system_binfmt(&[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = harness::text(&out.stdout);
    assert!(
        stdout.starts_with("binfmt_misc: mounted at /proc/sys/fs/binfmt_misc\n"),
        "{stdout}"
    );
    let arm64 = platform_line(&stdout, "linux/arm64");
    let flags = arm64
        .rsplit_once("flags ")
        .map(|(_, f)| f.trim_end_matches(')'));
    assert!(flags.is_some_and(|f| f.contains('F')), "{arm64}");
    let host = kiln::oci::Platform::host().to_string();
    assert!(
        platform_line(&stdout, &host).ends_with("native"),
        "{stdout}"
    );

    // Installing registers what is missing (nothing, after `.ci/run`); again, nothing.
    let out = system_binfmt(&["--install"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = system_binfmt(&["--install"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = harness::text(&out.stdout);
    assert!(
        stdout.contains("qemu-aarch64: already registered"),
        "{stdout}"
    );
    assert!(!stdout.contains(": registered"), "{stdout}");

    let empty = TempRoot::new();
    let out = system_binfmt(&[], Some(empty.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = harness::text(&out.stdout);
    assert!(stdout.contains("binfmt_misc is not mounted"), "{stdout}");
    assert!(
        platform_line(&stdout, "linux/arm64").ends_with("missing"),
        "{stdout}"
    );
}

#[test]
fn installing_emulators_needs_root() {
    if !harness::have_root() || !harness::have("/usr/bin/setpriv") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TempRoot::new();
    let kiln = dir.join("kiln");
    // Copied by another process, so no descriptor of this one holds it open for writing.
    let copied = Command::new("cp")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg(&kiln)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&kiln)
        .args(["system", "binfmt", "--install"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registering emulators needs root"),
        "{}",
        stderr(&out)
    );
}
