//! kiln without root: the tests (run as root) make a user with subordinate ids and one
//! without, and run the kiln binary as them with `setpriv`. A multi-stage build with RUN,
//! USER, `COPY --chown` and a cache mount gives the same image as the same build as root;
//! its result runs; nothing is written outside the user's own directories; without
//! subordinate ids kiln warns and only uid 0 works.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{self, TempRoot, kiln_with_root, stderr, text};

/// A user with subordinate ids (from [`SUBORDINATE_START`]), and one without.
const USER: &str = "kiln-rootless";
const SINGLE_USER: &str = "kiln-single-id";
const SUBORDINATE_START: u32 = 420_000;
const SUBORDINATE_COUNT: u32 = 65_536;

/// The user's uid and gid, creating the user (and its subordinate ranges) when missing.
fn ensure_user(name: &str, subordinates: bool) -> (u32, u32) {
    if Command::new("id").arg(name).output().unwrap().status.code() != Some(0) {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd: {}", stderr(&out));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let has = text.lines().any(|l| l.starts_with(&format!("{name}:")));
        if subordinates && !has {
            let line = format!("{name}:{SUBORDINATE_START}:{SUBORDINATE_COUNT}\n");
            let mut all = text.clone();
            all.push_str(&line);
            std::fs::write(file, all).unwrap();
        }
        if !subordinates && has {
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{name}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(file, kept).unwrap();
        }
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(name).output().unwrap();
        text(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Whether this machine can run these tests (root, the tools); otherwise skips.
fn can_run() -> bool {
    if !harness::privileged() {
        return false;
    }
    [
        "/usr/bin/newuidmap",
        "/usr/bin/setpriv",
        "/usr/sbin/useradd",
    ]
    .iter()
    .all(|tool| harness::have(tool))
        && harness::busybox()
            .and_then(|b| b.docker_archive())
            .is_some()
}

/// A user's home for one test: the kiln binary, the busybox archive and a context, all
/// theirs; `XDG_*` point inside it.
struct UserDir {
    _dir: TempRoot,
    path: PathBuf,
    uid: u32,
    gid: u32,
}

impl UserDir {
    fn new(uid: u32, gid: u32) -> UserDir {
        let (dir, path) = harness::temp_dir();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_kiln"), path.join("kiln")).unwrap();
        let archive = harness::busybox().unwrap().docker_archive().unwrap();
        std::fs::copy(archive, path.join("busybox.tar")).unwrap();
        std::fs::create_dir_all(path.join("ctx")).unwrap();
        let user_dir = UserDir {
            _dir: dir,
            path,
            uid,
            gid,
        };
        user_dir.chown();
        user_dir
    }

    fn chown(&self) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn write(&self, name: &str, content: &str) {
        harness::write_file(&self.path.join("ctx"), name, content);
        self.chown();
    }

    /// `kiln ARGS` as the user, with a clean environment of its own.
    fn kiln(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(self.path.join("kiln"))
            .args(args)
            .current_dir(&self.path)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.path)
            .env("XDG_DATA_HOME", self.path.join("data"))
            .env("XDG_RUNTIME_DIR", self.path.join("run"))
            .env("TMPDIR", self.path.join("tmp"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    }
}

const DOCKERFILE: &str = "FROM busybox AS build\n\
    RUN echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd && mkdir -p /out \\\n\
     && echo built > /out/file && chown 1000:1000 /out/file\n\
    USER app\n\
    RUN --mount=type=cache,target=/cache,uid=1000 id -u > /cache/who && cp /cache/who /tmp/who\n\
    FROM busybox\n\
    COPY --from=build --chown=1000:1000 /out /out\n\
    COPY --from=build /tmp/who /who\n\
    RUN ls -ln /out > /listing\n";

/// Entries under the shared writable places owned by `ids` (other than `except`).
fn owned_in_shared_places(ids: &[std::ops::Range<u32>], except: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = ["/tmp", "/var/tmp", "/dev/shm", "/run"]
        .iter()
        .map(|p| (PathBuf::from(p), 0))
        .collect();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.starts_with(except) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if ids.iter().any(|range| range.contains(&meta.uid())) {
                found.push(path.clone());
            }
            if meta.is_dir() && depth < 2 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}

#[test]
fn a_build_without_root_equals_the_build_as_root_and_runs() {
    if !can_run() {
        return;
    }
    let (uid, gid) = ensure_user(USER, true);
    let home = UserDir::new(uid, gid);
    home.write("Dockerfile", DOCKERFILE);
    let ids = [
        uid..uid + 1,
        SUBORDINATE_START..SUBORDINATE_START + SUBORDINATE_COUNT,
    ];
    let before = owned_in_shared_places(&ids, &home.path);

    let out = home.kiln(&["load", "-i", "busybox.tar"]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let out = home.kiln(&["build", "--progress", "plain", "-t", "app", "ctx"]);
    let log = stderr(&out);
    assert!(out.status.success(), "rootless build: {log}");
    let rootless_id = text(&out.stdout).trim().to_string();
    assert!(
        home.path.join("data/kiln/builds-v1").is_dir(),
        "the store is under XDG_DATA_HOME"
    );

    // The same build as root, on a store of its own.
    let (_root_dir, root_path) = harness::temp_dir();
    let root = root_path.join("root");
    let archive = home.path.join("busybox.tar");
    let out = harness::kiln(&root, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let context = home.path.join("ctx");
    let out = kiln_with_root(&root)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "-t", "app"])
        .arg(&context)
        .output()
        .unwrap();
    assert!(out.status.success(), "root build: {}", stderr(&out));
    let root_id = text(&out.stdout).trim().to_string();
    if rootless_id != root_id {
        // Say what differs: both images as `kiln image inspect` shows them.
        let listing = |out: Output| format!("{}{}", text(&out.stdout), stderr(&out));
        let rootless_layers = listing(home.kiln(&["image", "inspect", "app"]));
        let root_layers = listing(harness::kiln(&root, &["image", "inspect", "app"]));
        panic!(
            "not the same image as root: {rootless_id} vs {root_id}\n\
             without root:\n{rootless_layers}\nas root:\n{root_layers}"
        );
    }

    // Its result runs, as root inside, with the layers' owners.
    let out = home.kiln(&[
        "run",
        "--rm",
        "app",
        "sh",
        "-c",
        "id -u; cat /who; cat /listing; cat /out/file",
    ]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "0", "{shown}");
    assert_eq!(lines[1], "1000", "{shown}");
    assert!(shown.contains(" 1000     1000 "), "{shown}");
    assert!(shown.ends_with("built\n"), "{shown}");

    // `exec` joins a running container's namespaces (its user namespace first).
    let out = home.kiln(&["run", "-d", "--name", "svc", "app", "sleep", "30"]);
    assert!(out.status.success(), "run -d: {}", stderr(&out));
    let out = home.kiln(&["exec", "svc", "sh", "-c", "id -u; cat /out/file; echo $$"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(text(&out.stdout), "0\nbuilt\n2\n");
    let out = home.kiln(&["exec", "-u", "1000", "svc", "sh", "-c", "id -u; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "1000\n");
    let out = home.kiln(&["rm", "-f", "svc"]);
    assert!(out.status.success(), "rm: {}", stderr(&out));

    let after = owned_in_shared_places(&ids, &home.path);
    let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        new.is_empty(),
        "written outside the user's directories: {new:?}"
    );
}

#[test]
fn without_subordinate_ids_only_uid_0_works_and_kiln_says_so() {
    if !can_run() {
        return;
    }
    let (uid, gid) = ensure_user(SINGLE_USER, false);
    let home = UserDir::new(uid, gid);
    let out = home.kiln(&["load", "-i", "busybox.tar"]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    assert!(
        stderr(&out).contains("only your own id mapped"),
        "{}",
        stderr(&out)
    );
    home.write("Dockerfile", "FROM busybox\nRUN echo ok > /ok\n");
    let out = home.kiln(&["build", "-q", "ctx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    home.write(
        "Dockerfile",
        "FROM busybox\nRUN touch /x && chown 1000 /x\n",
    );
    let out = home.kiln(&["build", "--progress", "plain", "ctx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Invalid argument"),
        "{}",
        stderr(&out)
    );

    let out = home.kiln(&["system", "check"]);
    let report = text(&out.stdout);
    assert!(
        report.contains(&format!("none for {SINGLE_USER} in /etc/subuid")),
        "{report}"
    );
    assert!(
        report.contains("fix: sudo usermod --add-subuids"),
        "{report}"
    );
}
