//! seccomp and capabilities end to end: Docker's default profile in `kiln run` and in RUN,
//! `--security-opt seccomp=unconfined|PROFILE.json`, `no-new-privileges`,
//! `--cap-add`/`--cap-drop` (which open the profile's capability-guarded syscalls), and
//! `RUN --security=insecure` behind `--allow security.insecure`.
//!
//! The raw syscalls are made by `testdata/seccomp/probe.c`, built static with `cc` once
//! per test process. Privileged (root, overlayfs, namespaces) and needing `cc` and a static
//! libc: skipped with the reason otherwise, failing under `CI`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::build::Env;
use crate::harness::{self, fixture_dir, kiln_with_root, stderr, text};

const EPERM: &str = "1";
const ENOSYS: &str = "38";

/// The probe binary, built once; `None` (after [`harness::skip`]) when it cannot be.
fn probe() -> Option<&'static Path> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = PROBE.get_or_init(|| {
        let dir = fixture_dir().join("seccomp-probe");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/seccomp/probe.c");
        let binary = dir.join("probe");
        let out = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .map_err(|e| format!("cc is needed to build the seccomp probe: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cc -static could not build the seccomp probe (a static libc is needed): {}",
                text(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match built {
        Ok(dir) => Some(dir),
        Err(reason) => {
            harness::skip(reason);
            None
        }
    }
}

/// A store root with busybox loaded.
struct Root {
    _dir: harness::TempRoot,
    root: PathBuf,
}

fn root() -> Option<Root> {
    let (dir, root) = harness::busybox_root()?;
    Some(Root { _dir: dir, root })
}

impl Root {
    /// `kiln run --rm ARGS`, with the probe mounted at `/probe`.
    fn run(&self, args: &[&str]) -> Output {
        let probe = probe().expect("probe built");
        let volume = format!("{}:/probe:ro", probe.display());
        kiln_with_root(&self.root)
            .args(["run", "--rm", "-v", &volume])
            .args(args)
            .output()
            .unwrap()
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        text(&out.stdout)
    }
}

/// The `Key:\tvalue` lines of a `/proc/self/status` excerpt and the probe's `name errno`
/// lines, as one map.
fn fields(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(char::is_whitespace)?;
            Some((
                key.trim_end_matches(':').to_string(),
                value.trim().to_string(),
            ))
        })
        .collect()
}

/// What the default profile makes of the probe's calls.
fn assert_confined(seen: &BTreeMap<String, String>) {
    assert_eq!(seen["Seccomp"], "2", "{seen:?}");
    for name in [
        "keyctl",
        "add_key",
        "perf_event_open",
        "bpf",
        "socket_vsock",
        "personality",
        "unshare_user",
    ] {
        assert_eq!(seen[name], EPERM, "{name}: {seen:?}");
    }
    assert_eq!(seen["clone3"], ENOSYS, "{seen:?}");
    assert_eq!(seen["socket_inet"], "0", "{seen:?}");
}

/// Without a filter, the kernel answers the probe's calls itself: never with EPERM.
fn assert_unconfined(seen: &BTreeMap<String, String>) {
    assert_eq!(seen["Seccomp"], "0", "{seen:?}");
    for name in [
        "keyctl",
        "add_key",
        "perf_event_open",
        "clone3",
        "personality",
    ] {
        assert_ne!(seen[name], EPERM, "{name}: {seen:?}");
    }
    assert_ne!(seen["clone3"], ENOSYS, "{seen:?}");
}

const STATUS_AND_PROBE: &str =
    "grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; /probe/probe";

/// The capabilities this test process (and so kiln) has: what an insecure step gets.
fn own_capabilities() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    fields(&status)["CapEff"].clone()
}

#[test]
fn run_applies_the_default_profile() {
    let Some(root) = root() else { return };
    if probe().is_none() {
        return;
    }
    let seen = fields(&root.run_ok(&["busybox", "sh", "-c", STATUS_AND_PROBE]));
    assert_confined(&seen);
    // Docker's default capabilities, and no no_new_privs for `run`.
    assert_eq!(seen["CapEff"], "00000000a80425fb", "{seen:?}");
    assert_eq!(seen["NoNewPrivs"], "0", "{seen:?}");
    let out = root.run(&["busybox", "unshare", "-U", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_unconfined_lifts_the_filter() {
    let Some(root) = root() else { return };
    if probe().is_none() {
        return;
    }
    let unconfined = ["--security-opt", "seccomp=unconfined", "busybox"];
    let seen = fields(&root.run_ok(&[&unconfined[..], &["sh", "-c", STATUS_AND_PROBE]].concat()));
    assert_unconfined(&seen);
    assert_eq!(seen["unshare_user"], "0", "{seen:?}");
    root.run_ok(&[&unconfined[..], &["unshare", "-U", "true"]].concat());
}

#[test]
fn capabilities_feed_the_profile() {
    let Some(root) = root() else { return };
    if probe().is_none() {
        return;
    }
    // CAP_SYS_ADMIN opens unshare, bpf, perf_event_open and clone3 in Docker's profile.
    let seen = fields(&root.run_ok(&[
        "--cap-add",
        "sys_admin",
        "busybox",
        "sh",
        "-c",
        STATUS_AND_PROBE,
    ]));
    assert_eq!(seen["Seccomp"], "2", "{seen:?}");
    assert_eq!(seen["CapEff"], "00000000a82425fb", "{seen:?}");
    for name in ["perf_event_open", "bpf", "clone3", "unshare_user"] {
        assert_ne!(seen[name], EPERM, "{name}: {seen:?}");
    }
    assert_ne!(seen["clone3"], ENOSYS, "{seen:?}");
    assert_eq!(seen["keyctl"], EPERM, "{seen:?}");

    let only_chown = root.run_ok(&[
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_CHOWN",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "-E",
        "^(CapEff|CapBnd|NoNewPrivs):",
        "/proc/self/status",
    ]);
    let seen = fields(&only_chown);
    assert_eq!(seen["CapEff"], "0000000000000001", "{only_chown}");
    assert_eq!(seen["CapBnd"], "0000000000000001", "{only_chown}");
    assert_eq!(seen["NoNewPrivs"], "1", "{only_chown}");

    let out = root.run(&["--cap-add", "FLY", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("unknown capability: \"CAP_FLY\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_with_a_profile_file() {
    let Some(root) = root() else { return };
    if probe().is_none() {
        return;
    }
    let dir = harness::temp_dir();
    let profile = dir.1.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = root.run(&["--security-opt", &opt, "busybox", "mkdir", "/made"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let seen = fields(&root.run_ok(&[
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        STATUS_AND_PROBE,
    ]));
    assert_eq!(seen["Seccomp"], "2", "{seen:?}");
    assert_eq!(seen["unshare_user"], "0", "{seen:?}");

    let bad = dir.1.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}"#,
    )
    .unwrap();
    let out = root.run(&[
        "--security-opt",
        &format!("seccomp={}", bad.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("decoding seccomp profile ({})", bad.display())),
        "{err}"
    );
    assert!(
        err.contains("invalid type: map, expected a sequence"),
        "{err}"
    );

    let missing = dir.1.join("missing.json");
    let out = root.run(&[
        "--security-opt",
        &format!("seccomp={}", missing.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("opening seccomp profile ("),
        "{}",
        stderr(&out)
    );
}

/// Builds `dockerfile` (with the probe in the context) and returns the files the image's
/// last layer holds under `/out/`.
fn build_outputs(env: &Env, dockerfile: &str, args: &[&str]) -> BTreeMap<String, String> {
    let probe = probe().expect("probe built");
    std::fs::copy(probe.join("probe"), env.context().join("probe")).unwrap();
    env.write("Dockerfile", dockerfile);
    let mut all = vec!["-t", "probed"];
    all.extend_from_slice(args);
    env.build_ok(&all);
    let (manifest, _) = env.image("docker.io/library/probed:latest");
    let top = manifest["layers"].as_array().unwrap().len() - 1;
    env.layer(&manifest, top)
        .into_iter()
        .filter_map(|(path, (_, content))| {
            let name = path.strip_prefix("out/")?.to_string();
            (!name.is_empty()).then(|| (name, String::from_utf8(content).unwrap()))
        })
        .collect()
}

#[test]
fn run_steps_get_the_default_profile() {
    let Some(env) = Env::new(true) else { return };
    if probe().is_none() {
        return;
    }
    let out = build_outputs(
        &env,
        &format!(
            "FROM busybox\nCOPY probe /probe/probe\n\
             RUN mkdir /out && ({STATUS_AND_PROBE}) > /out/seen\n"
        ),
        &[],
    );
    let seen = fields(&out["seen"]);
    assert_confined(&seen);
    assert_eq!(seen["CapEff"], "00000000a80425fb", "{seen:?}");
}

#[test]
fn insecure_run_needs_the_entitlement() {
    let Some(env) = Env::new(true) else { return };
    if probe().is_none() {
        return;
    }
    let dockerfile = format!(
        "FROM busybox\nCOPY probe /probe/probe\n\
         RUN --security=insecure mkdir /out && ({STATUS_AND_PROBE}) > /out/seen\n"
    );
    std::fs::copy(probe().unwrap().join("probe"), env.context().join("probe")).unwrap();
    env.write("Dockerfile", &dockerfile);
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("security.insecure is not allowed"), "{err}");
    assert!(err.contains("--allow security.insecure"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");

    let out = build_outputs(&env, &dockerfile, &["--allow", "security.insecure"]);
    let seen = fields(&out["seen"]);
    assert_unconfined(&seen);
    assert_eq!(seen["CapEff"], own_capabilities(), "{seen:?}");
    assert_eq!(seen["NoNewPrivs"], "0", "{seen:?}");
}
