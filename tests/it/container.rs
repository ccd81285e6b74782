//! Container commands end to end (`kiln run`, `ps`, `rm`, `logs`, `stop`): the built
//! `kiln` binary on the busybox image (`testdata/busybox/make-image.sh`), loaded once
//! into a shared store root. Needs root, busybox-static and skopeo; without them the
//! tests print why and pass, and with `CI` set they fail instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{self, TempRoot, fixture_dir, kiln_with_root, text};

/// The busybox archive the store roots load, and the root most tests share.
struct Fixture {
    archive: &'static Path,
    root: PathBuf,
}

/// Loads busybox:latest into the store root `root`.
fn load(archive: &Path, root: &Path) {
    let out = kiln_with_root(root)
        .args(["load", "-q", "-i"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {}", text(&out.stderr));
}

impl Fixture {
    /// A store root of its own with busybox:latest loaded (and the directory holding it).
    fn new_root(&self) -> (TempRoot, PathBuf) {
        let (dir, path) = harness::temp_dir();
        let root = path.join("root");
        load(self.archive, &root);
        (dir, root)
    }

    fn command(&self, root: &Path, args: &[&str]) -> Command {
        let mut command = kiln_with_root(root);
        command.args(args);
        command
    }

    /// Runs kiln on the shared root.
    fn kiln(&self, args: &[&str]) -> Output {
        harness::kiln(&self.root, args)
    }

    /// The `ps -a` line of the container named `name`.
    fn ps_line(&self, name: &str) -> Option<String> {
        let out = self.kiln(&["ps", "-a"]);
        assert!(out.status.success(), "ps: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .map(str::to_string)
    }

    /// Polls `ps -a` until the line for `name` contains `what`.
    fn wait_for_status(&self, name: &str, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = self.ps_line(name).unwrap_or_default();
            if line.contains(what) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never showed {what:?}: {line}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The fixture, made once; `None` (after [`harness::skip`]) when these tests cannot run.
fn fixture() -> Option<&'static Fixture> {
    if !harness::privileged() {
        return None;
    }
    let archive = harness::busybox()?.oci_archive()?;
    static F: OnceLock<Fixture> = OnceLock::new();
    Some(F.get_or_init(|| {
        let root = fixture_dir().join("container-root");
        load(archive, &root);
        Fixture { archive, root }
    }))
}

macro_rules! fixture {
    () => {
        match fixture() {
            Some(f) => f,
            None => return,
        }
    };
}

/// Runs in the foreground; returns (exit code, stdout).
fn run(f: &Fixture, args: &[&str]) -> (i32, String) {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    let out = f.kiln(&all);
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

fn no_kiln_mounts(root: &Path) {
    harness::assert_no_mounts(root);
    harness::assert_no_mounts(Path::new("/run/kiln/sandbox"));
}

#[test]
fn run_echo_and_exit_codes() {
    let f = fixture!();
    assert_eq!(run(f, &["busybox", "echo", "hello"]), (0, "hello\n".into()));
    assert_eq!(run(f, &["busybox", "sh", "-c", "exit 7"]).0, 7);
    // The command is PID 1, which its own namespace cannot kill: a child kills itself.
    assert_eq!(
        run(f, &["busybox", "sh", "-c", "sh -c 'kill -9 $$'; exit $?"]).0,
        137
    );
    assert_eq!(run(f, &["busybox", "no-such-command"]).0, 127);
}

#[test]
fn stdin_only_with_interactive() {
    let f = fixture!();
    let feed = |args: &[&str]| {
        let mut child = f
            .command(&f.root, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"piped\n").unwrap();
        text(&child.wait_with_output().unwrap().stdout)
    };
    assert_eq!(feed(&["run", "--rm", "-i", "busybox", "cat"]), "piped\n");
    assert_eq!(feed(&["run", "--rm", "busybox", "cat"]), "");
}

#[test]
fn run_options_env_workdir_user_hostname() {
    let f = fixture!();
    let (code, out) = run(
        f,
        &[
            "-e",
            "FOO=bar",
            "-w",
            "/made/here",
            "-u",
            "1000:1000",
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            "echo $FOO; pwd; id; hostname",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "bar\n/made/here\nuid=1000(app) gid=1000(app)\nbox\n");
}

#[test]
fn entrypoint_and_cmd_override() {
    let f = fixture!();
    // CMD args replace the image's Cmd (["sh"]).
    assert_eq!(run(f, &["busybox", "echo", "a", "b"]).1, "a b\n");
    // --entrypoint replaces the entrypoint and clears Cmd; args follow it.
    assert_eq!(
        run(f, &["--entrypoint", "echo", "busybox", "x", "y"]).1,
        "x y\n"
    );
    assert_eq!(run(f, &["--entrypoint", "pwd", "busybox"]).1, "/\n");
}

#[test]
fn network_none_has_only_lo_and_default_hostname_is_short_id() {
    let f = fixture!();
    let (code, out) = run(f, &["--network", "none", "busybox", "ls", "/sys/class/net"]);
    assert_eq!((code, out.as_str()), (0, "lo\n"));
    let (_, hostname) = run(f, &["busybox", "hostname"]);
    let hostname = hostname.trim();
    assert_eq!(hostname.len(), 12, "{hostname}");
    assert!(hostname.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn volumes_read_write_and_read_only() {
    let f = fixture!();
    let host = TempRoot::new();
    let data = host.path().join("made-by-run");
    let rw = format!("{}:/data", data.display());
    let (code, _) = run(f, &["-v", &rw, "busybox", "sh", "-c", "echo hi > /data/f"]);
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "hi\n");
    let ro = format!("{}:/data:ro", data.display());
    let (code, out) = run(
        f,
        &[
            "-v",
            &ro,
            "busybox",
            "sh",
            "-c",
            "cat /data/f; echo x > /data/g",
        ],
    );
    assert_ne!(code, 0);
    assert_eq!(out, "hi\n");
    assert!(!data.join("g").exists());
}

/// Every readable `/proc/*/cmdline` and `/proc/*/environ` inside, NULs as spaces.
const PROC_TEXTS: &str = "for p in /proc/[0-9]*; do \
    tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; tr '\\0' ' ' < $p/environ 2>/dev/null; echo; done";

/// Nothing of the host's kiln (its binary, the store, the sandbox's state) is visible.
fn assert_no_host_path(f: &Fixture, seen: &str) {
    let fixture = fixture_dir().to_string_lossy().into_owned();
    let root = f.root.to_string_lossy().into_owned();
    for host in [fixture.as_str(), root.as_str(), "__sandbox", "/run/kiln"] {
        assert!(!seen.contains(host), "{host} is visible inside:\n{seen}");
    }
}

#[test]
fn the_command_is_pid_1_and_no_host_path_is_visible() {
    let f = fixture!();
    let script = format!("echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; {PROC_TEXTS}");
    let (code, out) = run(f, &["-e", "MARK=1", "busybox", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert!(lines[1].starts_with("sh -c echo $$"), "{out}");
    assert!(
        out.contains("MARK=1"),
        "the command's environ is read: {out}"
    );
    assert_no_host_path(f, &out);
}

#[test]
fn init_flag_puts_a_minimal_init_at_pid_1_that_reaps() {
    let f = fixture!();
    // The inner shell exits at once; its background sleep is orphaned to PID 1, which
    // must reap it when it ends.
    let script = format!(
        "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; \
         sh -c 'sleep 0.2 &'; sleep 1; \
         grep -l '^[0-9]* ([a-z]*) Z' /proc/[0-9]*/stat | wc -l; {PROC_TEXTS}"
    );
    let (code, out) = run(f, &["--init", "busybox", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2", "{out}");
    assert!(lines[1].starts_with("kiln-init -- sh -c"), "{out}");
    assert_eq!(lines[2].trim(), "0", "no zombie is left: {out}");
    assert_no_host_path(f, &out);
    // The command's exit code is the container's.
    assert_eq!(run(f, &["--init", "busybox", "sh", "-c", "exit 9"]).0, 9);
    // The init holds nothing the container could borrow: CAP_KILL alone, no_new_privs.
    let (code, out) = run(
        f,
        &[
            "--init",
            "busybox",
            "grep",
            "-E",
            "CapEff|NoNewPrivs",
            "/proc/1/status",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("CapEff:\t0000000000000020"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn a_command_of_another_user_dies_with_kiln() {
    let f = fixture!();
    // Dropping to a user clears the parent-death signal: kiln must set it again, or the
    // command (PID 1 of its namespace) outlives a killed monitor.
    let out = f.kiln(&[
        "run", "-d", "--name", "orphan", "--user", "65534", "busybox", "sleep", "271",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    f.wait_for_status("orphan", "Up ");
    let sleeping = || {
        Command::new("pgrep")
            .args(["-f", "^sleep 271$"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // `Up` is recorded once the sandbox is spawned; the command is exec'd a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sleeping() {
        assert!(Instant::now() < deadline, "the command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let monitors = Command::new("pgrep")
        .args(["-f", "__monitor"])
        .output()
        .unwrap();
    for pid in text(&monitors.stdout).split_whitespace() {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.contains(&id) {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping() {
        assert!(
            Instant::now() < deadline,
            "the command survived its monitor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = f.kiln(&["rm", "-f", "orphan"]);
}

#[test]
fn stop_reaches_a_pid_1_that_traps_term() {
    let f = fixture!();
    let script = "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let out = f.kiln(&[
        "run", "-d", "--name", "trapper", "busybox", "sh", "-c", script,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    f.wait_for_status("trapper", "Up ");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text(&f.kiln(&["logs", "trapper"]).stdout).contains("ready") {
        assert!(Instant::now() < deadline, "the container never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = f.kiln(&["stop", "-t", "30", "trapper"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    // Exit 0 from the trap: TERM reached PID 1 (a KILL after the timeout gives 137).
    let line = f.ps_line("trapper").unwrap();
    assert!(line.contains("Exited (0)"), "{line}");
    assert!(text(&f.kiln(&["logs", "trapper"]).stdout).contains("got-term"));
    assert!(f.kiln(&["rm", "trapper"]).status.success());
}

#[test]
fn the_container_has_its_own_cgroup_namespace() {
    let f = fixture!();
    if !Path::new("/proc/self/ns/cgroup").exists() {
        harness::skip("this kernel has no cgroup namespaces");
        return;
    }
    let (code, out) = run(f, &["busybox", "cat", "/proc/self/cgroup"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.is_empty());
    for line in out.lines() {
        assert!(line.ends_with(":/"), "each hierarchy at its root: {out}");
    }
}

#[test]
fn detached_ps_logs_and_exit() {
    let f = fixture!();
    let out = f.kiln(&[
        "run",
        "-d",
        "--name",
        "detached1",
        "busybox",
        "sh",
        "-c",
        "echo from-detached; echo oops >&2; sleep 1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    // Running: `ps` (no -a) lists it.
    let ps = text(&f.kiln(&["ps"]).stdout);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    let line = ps
        .lines()
        .find(|l| l.ends_with("detached1"))
        .unwrap_or_else(|| panic!("not listed: {ps}"));
    assert!(line.starts_with(&id[..12]), "{line}");
    assert!(line.contains("Up "), "{line}");
    assert!(line.contains("\"sh -c 'echo from-de…\""), "{line}");
    let line = f.wait_for_status("detached1", "Exited (0) ");
    assert!(line.ends_with("detached1"));
    let ps = text(&f.kiln(&["ps"]).stdout);
    assert!(!ps.contains("detached1"), "{ps}");
    let logs = f.kiln(&["logs", "detached1"]);
    assert_eq!(text(&logs.stdout), "from-detached\noops\n");
    let rm = f.kiln(&["rm", &id[..8]]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(f.ps_line("detached1").is_none());
    assert!(!f.root.join("containers-v1").join(&id).exists());
}

#[test]
fn stop_and_rm_of_a_running_container() {
    let f = fixture!();
    let out = f.kiln(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    f.wait_for_status("sleeper", "Up ");
    // rm refuses a running container.
    let rm = f.kiln(&["rm", "sleeper"]);
    assert!(!rm.status.success());
    assert!(
        text(&rm.stderr).contains("container is running"),
        "{}",
        text(&rm.stderr)
    );
    // Duplicate names are refused.
    let dup = f.kiln(&["run", "--name", "sleeper", "busybox", "true"]);
    assert_eq!(dup.status.code(), Some(125));
    assert!(
        text(&dup.stderr).contains("already in use"),
        "{}",
        text(&dup.stderr)
    );
    let started = Instant::now();
    let stop = f.kiln(&["stop", "-t", "2", "sleeper"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert_eq!(text(&stop.stdout), "sleeper\n");
    // Not a speed check: `stop` must end the 100 s sleep itself (TERM, then KILL
    // after -t 2), not wait for it, so any bound well below 100 s proves that.
    assert!(started.elapsed() < Duration::from_secs(60));
    let line = f.ps_line("sleeper").unwrap();
    assert!(
        line.contains("Exited (143)") || line.contains("Exited (137)"),
        "{line}"
    );
    assert!(f.kiln(&["rm", "sleeper"]).status.success());

    // rm -f kills a running one.
    let out = f.kiln(&["run", "-d", "--name", "forced", "busybox", "sleep", "100"]);
    assert!(out.status.success());
    let id = text(&out.stdout).trim().to_string();
    f.wait_for_status("forced", "Up ");
    let rm = f.kiln(&["rm", "-f", "forced"]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(!f.root.join("containers-v1").join(id).exists());
}

#[test]
fn image_rm_refuses_an_image_in_use() {
    let f = fixture!();
    let (_dir, root) = f.new_root();
    let out = harness::kiln(&root, &["run", "--name", "user", "busybox", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rm = harness::kiln(&root, &["image", "rm", "busybox"]);
    assert!(!rm.status.success());
    assert!(
        text(&rm.stderr).contains("being used by container"),
        "{}",
        text(&rm.stderr)
    );
    let rm = harness::kiln(&root, &["image", "rm", "-f", "busybox"]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    // Prune keeps the snapshot the container runs on.
    let prune = harness::kiln(&root, &["image", "prune", "-f"]);
    assert!(prune.status.success(), "{}", text(&prune.stderr));
    let snapshots = std::fs::read_dir(root.join("snapshots-v1"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 1);
    let rm = harness::kiln(&root, &["rm", "user"]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    let prune = harness::kiln(&root, &["image", "prune", "-f"]);
    assert!(prune.status.success(), "{}", text(&prune.stderr));
    let snapshots = std::fs::read_dir(root.join("snapshots-v1"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 0);
}

#[test]
fn killed_foreground_run_is_cleaned_up() {
    let f = fixture!();
    let (_dir, root) = f.new_root();
    let mut kept = f
        .command(
            &root,
            &["run", "--name", "victim", "busybox", "sleep", "100"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut removed = f
        .command(
            &root,
            &[
                "run",
                "--rm",
                "--name",
                "victim-rm",
                "busybox",
                "sleep",
                "100",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ps_in = |name: &str| {
        text(&harness::kiln(&root, &["ps", "-a"]).stdout)
            .lines()
            .find(|l| l.ends_with(name))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(ps_in("victim").contains("Up ") && ps_in("victim-rm").contains("Up ")) {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The sandbox's process, from its state.
    let containers = root.join("containers-v1");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(&containers).unwrap().flatten() {
        if let Ok(state) = std::fs::read_to_string(entry.path().join("state.json")) {
            let state: serde_json::Value = serde_json::from_str(&state).unwrap();
            pids.push(state["pid"].as_i64().unwrap());
        }
    }
    assert_eq!(pids.len(), 2);
    kept.kill().unwrap();
    removed.kill().unwrap();
    kept.wait().unwrap();
    removed.wait().unwrap();
    // The sandboxes die with their owner.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < deadline, "sandbox outlived kiln");
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = ps_in("victim");
    assert!(line.contains("Exited (137)"), "{line}");
    assert_eq!(ps_in("victim-rm"), "");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(left.len(), 1);
    no_kiln_mounts(&root);
}

#[test]
fn rm_flag_leaves_no_state() {
    let f = fixture!();
    let (_dir, root) = f.new_root();
    let out = harness::kiln(&root, &["run", "--rm", "busybox", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = harness::kiln(&root, &["run", "--rm", "-d", "busybox", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let containers = root.join("containers-v1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = std::fs::read_dir(&containers)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ps = text(&harness::kiln(&root, &["ps", "-a", "-q"]).stdout);
    assert_eq!(ps, "");
    no_kiln_mounts(&root);
}

#[test]
fn named_and_anonymous_volumes() {
    let f = fixture!();
    let (_dir, context) = harness::temp_dir();
    harness::write_file(
        &context,
        "Dockerfile",
        "FROM busybox\nRUN mkdir /data && echo from-image > /data/f && chown 1234 /data/f\nVOLUME /data\n",
    );
    let out = f.kiln(&["build", "-q", "-t", "volimg", context.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A named volume: filled from the image on first use, its data kept across containers.
    let (code, out) = run(
        f,
        &[
            "-v",
            "kept:/data",
            "volimg",
            "sh",
            "-c",
            "ls -ln /data; echo mine > /data/new",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 1234 ") && out.ends_with(" f\n"), "{out}");
    let (code, out) = run(
        f,
        &["-v", "kept:/data", "volimg", "cat", "/data/f", "/data/new"],
    );
    assert_eq!((code, out.as_str()), (0, "from-image\nmine\n"));
    let ls = f.kiln(&["volume", "ls", "-q"]);
    assert!(
        text(&ls.stdout).lines().any(|l| l == "kept"),
        "{}",
        text(&ls.stdout)
    );

    // In use: refused; free: removed.
    let out = f.kiln(&[
        "run",
        "-d",
        "--name",
        "vol-holder",
        "-v",
        "kept:/data",
        "volimg",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rm = f.kiln(&["volume", "rm", "kept"]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(text(&rm.stderr).contains("volume is in use by container vol-holder"));
    assert!(f.kiln(&["rm", "-f", "vol-holder"]).status.success());
    let rm = f.kiln(&["volume", "rm", "kept"]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));

    // The image's VOLUME gets an anonymous volume, gone with `rm -v` (and with --rm).
    let before = text(&f.kiln(&["volume", "ls", "-q"]).stdout)
        .lines()
        .count();
    let out = f.kiln(&["run", "--name", "anon-user", "volimg", "cat", "/data/f"]);
    assert_eq!(text(&out.stdout), "from-image\n");
    let during = text(&f.kiln(&["volume", "ls", "-q"]).stdout)
        .lines()
        .count();
    assert_eq!(during, before + 1);
    assert!(f.kiln(&["rm", "-v", "anon-user"]).status.success());
    let (code, _) = run(f, &["volimg", "true"]);
    assert_eq!(code, 0);
    let after = text(&f.kiln(&["volume", "ls", "-q"]).stdout)
        .lines()
        .count();
    assert_eq!(after, before);

    // Bad names are refused.
    let (code, _) = run(f, &["-v", "bad/name:/data", "volimg", "true"]);
    assert_eq!(code, 125);
}

#[test]
fn exec_runs_in_the_running_container() {
    let f = fixture!();
    let out = f.kiln(&[
        "run",
        "-d",
        "--name",
        "exec-target",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "busybox",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    f.wait_for_status("exec-target", "Up ");
    // Its namespaces (PID 1 is the container's command), environment, working directory.
    let out = f.kiln(&[
        "exec",
        "exec-target",
        "sh",
        "-c",
        "echo $FOO $(pwd); tr '\\0' ' ' < /proc/1/cmdline; echo; grep Seccomp: /proc/self/status",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "bar /tmp\nsleep 60 \nSeccomp:\t2\n");
    // -u, -w, -e, the exit code, and stdin only with -i.
    let out = f.kiln(&[
        "exec",
        "-u",
        "65534",
        "-w",
        "/",
        "-e",
        "X=1",
        "exec-target",
        "sh",
        "-c",
        "id -u; pwd; echo $X; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stdout), "65534\n/\n1\n");
    let mut child = kiln_with_root(&f.root)
        .args(["exec", "-i", "exec-target", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"through stdin\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "through stdin\n");
    assert!(f.kiln(&["rm", "-f", "exec-target"]).status.success());
    let out = f.kiln(&["exec", "exec-target", "true"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn start_runs_a_stopped_container_again_and_restart_stops_then_starts() {
    let f = fixture!();
    let script = "n=$(cat /count 2>/dev/null || echo 0); echo run-$n; echo $((n + 1)) > /count";
    let out = f.kiln(&["run", "--name", "again", "busybox", "sh", "-c", script]);
    assert_eq!(text(&out.stdout), "run-0\n");
    // The same container, on the filesystem it left.
    let out = f.kiln(&["start", "-a", "again"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "run-1\n");
    let out = f.kiln(&["start", "again"]);
    assert_eq!(text(&out.stdout), "again\n");
    f.wait_for_status("again", "Exited (0)");
    assert_eq!(
        text(&f.kiln(&["logs", "again"]).stdout),
        "run-0\nrun-1\nrun-2\n"
    );
    assert!(f.kiln(&["rm", "again"]).status.success());

    let out = f.kiln(&[
        "run",
        "-d",
        "--name",
        "cycled",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    f.wait_for_status("cycled", "Up ");
    let out = f.kiln(&["restart", "-t", "5", "cycled"]);
    assert_eq!(text(&out.stdout), "cycled\n", "{}", text(&out.stderr));
    f.wait_for_status("cycled", "Up ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(&f.kiln(&["logs", "cycled"]).stdout) != "up\nup\n" {
        assert!(
            Instant::now() < deadline,
            "the restart never ran the command again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(f.kiln(&["rm", "-f", "cycled"]).status.success());
}

#[test]
fn a_detached_container_holds_none_of_its_starters_descriptors() {
    let f = fixture!();
    let (dir, path) = harness::temp_dir();
    let lock = path.join("lock");
    // flock(1) runs kiln with the locked file open: kiln's monitor must not keep it.
    let out = Command::new("flock")
        .arg(&lock)
        .arg(harness::kiln_path())
        .arg("--root")
        .arg(&f.root)
        .args(["run", "-d", "--name", "fd-heir", "busybox", "sleep", "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let free = Command::new("flock")
        .args(["-n", lock.to_str().unwrap(), "true"])
        .status()
        .unwrap();
    let _ = f.kiln(&["rm", "-f", "fd-heir"]);
    drop(dir);
    assert!(free.success(), "the monitor kept the starter's lock");
}
