//! The debugger for failed steps: `kiln build --on-error=shell`, `kiln debug` and
//! `kiln build history ls|inspect|logs`. Privileged, like `build`.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::build::Env;
use crate::harness::{kiln_with_root, stderr, text};

/// A RUN that leaves a file, a cache mount's file, a secret and an environment, then fails.
const FAILING: &str = "FROM busybox\n\
    ENV GREETING=hello\n\
    WORKDIR /work\n\
    RUN echo builder:x:1234:1234::/tmp:/bin/sh >> /etc/passwd\n\
    USER builder\n\
    RUN --mount=type=cache,target=/cache,uid=1234 --mount=type=secret,id=token,env=TOKEN \
        echo made > /tmp/made-here; echo in-cache > /cache/c; echo output-line; exit 3\n";

fn debug(env: &Env, args: &[&str]) -> Output {
    let mut all = vec!["debug"];
    all.extend_from_slice(args);
    env.kiln(&all)
}

fn history_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["build", "history"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = env.kiln(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn debug_reopens_the_failed_step_and_keeps_nothing() {
    let Some(env) = Env::new(true) else { return };
    env.write("Dockerfile", FAILING);
    env.write("token.txt", "s3cret");
    let token = env.context().join("token.txt");
    let secret = format!("id=token,src={}", token.display());
    let out = env.build(&["--secret", &secret]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // The step's files, environment, user, working directory and cache mount are there.
    let out = debug(
        &env,
        &[
            "--",
            "sh",
            "-c",
            "cat /tmp/made-here; echo $GREETING; id -u; pwd; cat /cache/c",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "made\nhello\n1234\n/work\nin-cache\n");
    // The secret is not: neither its value nor its variable was kept.
    let err = stderr(&out);
    assert!(
        err.contains("not reopened: secret token in $TOKEN"),
        "{err}"
    );
    let out = debug(&env, &["--last", "--", "sh", "-c", "echo ${TOKEN:-unset}"]);
    assert_eq!(text(&out.stdout), "unset\n");
    let kept = std::fs::read_dir(env.root().join("builds-v1")).unwrap();
    for record in kept {
        let state = record.unwrap().path().join("failed-step/step.json");
        let json = std::fs::read_to_string(&state).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
    }

    // The command's exit code is the debug's; what a session writes is gone next time.
    let out = debug(&env, &["--", "sh", "-c", "touch /tmp/junk; exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    let out = debug(&env, &["--", "ls", "/tmp/junk"]);
    assert!(!out.status.success(), "a session's writes are not kept");
    // Not in the cache mount either: later builds never see a session's files.
    let out = debug(
        &env,
        &["--", "sh", "-c", "echo junk > /cache/junk && cat /cache/c"],
    );
    assert_eq!(text(&out.stdout), "in-cache\n", "{}", stderr(&out));
    let mounts = env.root().join("cache-v1/mounts");
    for mount in std::fs::read_dir(&mounts).unwrap() {
        let mount = mount.unwrap().path();
        assert!(!mount.join("junk").exists(), "{} changed", mount.display());
    }
    // The kept step is its owner's alone (its environment may hold proxy credentials).
    for record in std::fs::read_dir(env.root().join("builds-v1")).unwrap() {
        let kept = record.unwrap().path().join("failed-step");
        if let Ok(meta) = std::fs::metadata(&kept) {
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
                0o700
            );
        }
    }

    // The failure is not cached: the same build runs the step again.
    let out = env.build(&["--secret", &secret]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("output-line"), "the step ran again:\n{err}");

    // A build by id prefix; a record that does not exist.
    let builds = history_json(&env, &["ls"]);
    let id = builds[1]["id"].as_str().unwrap().to_string();
    let out = debug(&env, &[&id[..8], "--", "cat", "/tmp/made-here"]);
    assert_eq!(text(&out.stdout), "made\n", "{}", stderr(&out));
    let out = debug(&env, &["ffffffffffffffff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no build record ffffffffffffffff"));
}

#[test]
fn on_error_shell_opens_a_shell_then_fails_the_build() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nENV STAGE=one\nRUN echo partial > /left-behind && false\n",
    );
    let mut child = kiln_with_root(&env.root())
        .args(["build", "--progress", "plain", "--on-error", "shell"])
        .arg(env.context())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"cat /left-behind; echo stage=$STAGE; exit 9\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "the build still fails:\n{err}");
    assert!(err.contains("a shell in the failed step"), "{err}");
    assert_eq!(text(&out.stdout), "partial\nstage=one\n");
    // Leaving the shell cleaned up: no session directory is left in the store.
    let leftovers: Vec<String> = std::fs::read_dir(env.root().join("snapshots-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Without --on-error=shell nothing reads standard input.
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("a shell in the failed step"));
}

#[test]
fn history_lists_inspects_and_prints_logs() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo first-line && echo second-line\n",
    );
    let out = env.build(&["-t", "history-ok"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.write("Dockerfile", "FROM busybox\nCOPY missing.txt /\n");
    let out = env.build(&[]);
    assert_eq!(out.status.code(), Some(1));

    let out = env.kiln(&["build", "history", "ls"]);
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("BUILD ID"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains("failed") && lines[2].contains("succeeded"),
        "{table}"
    );
    assert!(
        lines[2].contains("docker.io/library/history-ok:latest"),
        "{table}"
    );

    let builds = history_json(&env, &["ls"]);
    let (failed, ok) = (&builds[0], &builds[1]);
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["debuggable"], false,
        "a COPY keeps no step to reopen"
    );
    let ok_id = ok["id"].as_str().unwrap();

    let inspect = history_json(&env, &["inspect", ok_id]);
    assert_eq!(inspect["status"], "succeeded");
    assert!(inspect["image_id"].as_str().unwrap().starts_with("sha256:"));
    let out = env.kiln(&["build", "history", "inspect"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("Status:      failed"), "{shown}");
    assert!(shown.contains("missing.txt"), "{shown}");

    // The RUN's complete output, by step number.
    let steps = inspect["steps"].as_object().unwrap();
    let (run_step, _) = steps
        .iter()
        .find(|(_, name)| name.as_str().unwrap().contains("RUN echo first-line"))
        .unwrap();
    let out = env.kiln(&["build", "history", "logs", ok_id, "--step", run_step]);
    let logs = text(&out.stdout);
    assert!(
        logs.contains(&format!(
            "#{run_step} first-line\n#{run_step} second-line\n"
        )),
        "{logs}"
    );
    let out = env.kiln(&["build", "history", "logs", ok_id, "--step", "99"]);
    assert_eq!(out.status.code(), Some(1));

    // Reopening a build that did not fail at a RUN says why not.
    let out = debug(&env, &[ok_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("it has no failed step"),
        "{}",
        stderr(&out)
    );
    let out = debug(&env, &["--last"]);
    assert!(
        stderr(&out).contains("which is not a RUN"),
        "{}",
        stderr(&out)
    );
    let out = env.kiln(&["build", "history", "inspect", "nosuchbuild"]);
    assert_eq!(out.status.code(), Some(1));
}
