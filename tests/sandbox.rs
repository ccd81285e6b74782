//! The sandbox, for real: namespaces, overlay root, users, capabilities,
//! descriptors, exit codes, cleanup, and the layer that comes out of a step.
//! Privileged: skipped (with the reason) without root, failing under `CI`.
//!
//! `harness = false`: this binary is also the sandbox child (`__sandbox`),
//! because the shared target dir's `kiln` may belong to another worktree's
//! build at any moment. `cargo test --test sandbox -- FILTER` runs a subset.

// The helpers every integration test shares; the `it` binary uses the parts this one does not.
#[allow(dead_code, unused_imports)]
#[path = "it/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::sandbox::{
    BindMount, CgroupLimits, ExitStatus, NetworkMode, Rootfs, Sandbox, SpawnOptions, Spec, Stream,
};
use kiln::snapshot::diff::{self, DiffOptions, TarEntry};
use kiln::snapshot::settle;

use harness::TempRoot;

/// A test environment: a scratch dir and an overlay root over busybox (plus
/// optional extra lowers on top).
struct Env {
    dir: TempRoot,
    rootfs: Rootfs,
}

impl Env {
    fn new() -> Option<Env> {
        if !harness::privileged() {
            return None;
        }
        let busybox = busybox_rootfs()?;
        let dir = TempRoot::new();
        let rootfs = overlay_root(dir.path(), &[busybox.to_path_buf()]);
        Some(Env { dir, rootfs })
    }

    fn upper(&self) -> PathBuf {
        self.rootfs.writable_dir().to_path_buf()
    }

    fn spec(&self, script: &str) -> Spec {
        Spec::new(self.rootfs.clone(), sh(script))
    }

    async fn run(&self, spec: &Spec) -> Ran {
        run(spec, self.dir.path()).await
    }

    fn layer(&self) -> Vec<TarEntry> {
        let tar = diff::diff(&self.upper(), &DiffOptions::default(), Vec::new()).unwrap();
        diff::list_tar(&tar).unwrap()
    }

    /// The layer the solver makes of the step: the upper settled against its lowers,
    /// then archived.
    fn step_layer(&self) -> Vec<TarEntry> {
        let Rootfs::Overlay { lowers, .. } = &self.rootfs else {
            unreachable!("Env's root is an overlay")
        };
        settle::settle(&self.upper(), lowers, &self.dir.path().join("lower-view")).unwrap();
        self.layer()
    }
}

/// The busybox image's root filesystem (`None` after [`harness::skip`]).
fn busybox_rootfs() -> Option<&'static Path> {
    harness::busybox().map(|image| image.rootfs.as_path())
}

/// An overlay root of `lowers` (top first) with a fresh upper in `dir`.
fn overlay_root(dir: &Path, lowers: &[PathBuf]) -> Rootfs {
    let upper = dir.join("upper");
    let work = dir.join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    Rootfs::Overlay {
        lowers: lowers.to_vec(),
        upper,
        work,
    }
}

/// Options that run this test binary as the sandbox child (it handles `__sandbox` in
/// `main`).
fn options(state_root: &Path) -> SpawnOptions {
    SpawnOptions {
        exe: Some(std::env::current_exe().expect("test executable")),
        state_root: Some(state_root.to_path_buf()),
        ..SpawnOptions::default()
    }
}

/// Output of one sandboxed command.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `spec` to the end.
async fn run(spec: &Spec, state_root: &Path) -> Ran {
    let mut running = Sandbox::spawn(spec, &options(state_root)).expect("sandbox starts");
    let status = running.wait().await.expect("sandbox ends");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Ok(event) = running.events.try_recv() {
        match event.stream {
            Stream::Stdout => stdout.extend(event.data),
            Stream::Stderr => stderr.extend(event.data),
        }
    }
    Ran {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `sh -c script` as the argv of a spec.
fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

type TestFn = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), || Box::pin($name()))),*]
    };
}

const TESTS: &[(&str, TestFn)] = tests![
    the_command_is_pid_1_of_a_fresh_pid_namespace,
    hostname_is_the_containers_and_the_hosts_stays,
    host_files_are_not_reachable,
    network_none_has_only_loopback_and_it_is_up,
    network_none_can_share_one_empty_namespace,
    host_network_sees_the_hosts_interfaces,
    writes_land_in_the_upper_dir_not_in_the_lower,
    generated_etc_files_and_mountpoints_stay_out_of_the_layer,
    deletions_replacements_links_and_setuid_reach_the_diff,
    users_groups_and_environment,
    root_keeps_only_dockers_capabilities_and_cannot_mount,
    only_stdio_descriptors_are_inherited,
    working_dirs_through_proc_do_not_reach_the_host,
    working_dir_is_created_inside_the_container,
    exit_codes_come_back_exactly,
    volumes_are_bound_with_their_mode,
    init_reaps_orphans_and_forwards_signals,
    killing_the_sandbox_process_leaves_nothing_behind,
    kill_stops_the_whole_sandbox,
    inherited_stdio_runs_without_output_events,
    cgroup_limits_apply_and_groups_are_removed,
    pids_limit_stops_fork_bombs,
];

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__sandbox") {
        return kiln::sandbox::child_main(Path::new(args.get(2).map_or("", String::as_str)));
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return std::process::ExitCode::SUCCESS;
    }
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in TESTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(test())));
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        println!("failures: {failed:?}");
        std::process::ExitCode::FAILURE
    }
}

fn find<'a>(entries: &'a [TarEntry], path: &str) -> Option<&'a TarEntry> {
    entries.iter().find(|e| e.path == Path::new(path))
}

async fn the_command_is_pid_1_of_a_fresh_pid_namespace() {
    let Some(env) = Env::new() else { return };
    let mut spec = env.spec(
        "echo pid=$$; tr '\\0' ' ' </proc/1/cmdline; echo; ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '",
    );
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "pid=1", "the command is PID 1");
    assert!(
        lines[1].starts_with("/bin/sh -c echo pid=$$"),
        "{}",
        lines[1]
    );
    // With an init, it is PID 1's first child, and PID 1 shows nothing of kiln.
    spec.init = true;
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "pid=2", "the command is the init's first child");
    assert!(
        lines[1].starts_with("kiln-init -- /bin/sh -c"),
        "{}",
        lines[1]
    );
    assert!(!lines[1].contains("__sandbox"), "{}", lines[1]);
    let pids: Vec<u32> = lines[2]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.contains(&1) && pids.contains(&2), "{pids:?}");
    assert!(
        pids.iter().all(|p| *p < 20),
        "only container processes are visible: {pids:?}"
    );
    harness::assert_no_mounts(env.dir.path());
}

async fn hostname_is_the_containers_and_the_hosts_stays() {
    let Some(env) = Env::new() else { return };
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let spec = env
        .spec("hostname; cat /etc/hostname; cat /etc/hosts")
        .with_network("kiln-box-7", NetworkMode::Host);
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let mut lines = ran.stdout.lines();
    assert_eq!(lines.next(), Some("kiln-box-7"));
    assert_eq!(lines.next(), Some("kiln-box-7"));
    assert!(ran.stdout.contains("127.0.0.1\tlocalhost"));
    assert!(ran.stdout.contains("kiln-box-7"));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_before
    );
}

async fn host_files_are_not_reachable() {
    let Some(env) = Env::new() else { return };
    let worktree = env!("CARGO_MANIFEST_DIR");
    let state = env.dir.path().display().to_string();
    let spec = env.spec(&format!(
        "test -e {worktree}/Cargo.toml && echo worktree-visible; test -e {state} && echo state-visible; \
         test -e /proc/1/root{worktree} && echo via-proc; echo done"
    ));
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "done");
}

async fn network_none_has_only_loopback_and_it_is_up() {
    let Some(env) = Env::new() else { return };
    let spec = env
        .spec("ls /sys/class/net; ip link show lo")
        .with_network("box", NetworkMode::None);
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let mut lines = ran.stdout.lines();
    assert_eq!(lines.next(), Some("lo"));
    assert!(ran.stdout.contains("UP"), "lo is up: {}", ran.stdout);
    assert_eq!(
        ran.stdout.lines().filter(|l| l.contains(": <")).count(),
        1,
        "only lo: {}",
        ran.stdout
    );
    let resolv = env
        .spec("cat /etc/resolv.conf | wc -c")
        .with_network("box", NetworkMode::None);
    assert_eq!(
        env.run(&resolv).await.stdout.trim(),
        "0",
        "no DNS without a network"
    );
}

async fn network_none_can_share_one_empty_namespace() {
    let Some(env) = Env::new() else { return };
    let mut options = options(env.dir.path());
    options.share_empty_net_ns = true;
    let spec = env
        .spec("ls /sys/class/net; ip link show lo; readlink /proc/self/ns/net")
        .with_network("box", NetworkMode::None);
    let mut namespaces = Vec::new();
    for _ in 0..2 {
        let mut running = Sandbox::spawn(&spec, &options).unwrap();
        let status = running.wait().await.unwrap();
        let mut out = String::new();
        while let Ok(event) = running.events.try_recv() {
            out.push_str(&String::from_utf8_lossy(&event.data));
        }
        assert_eq!(status.code, 0, "{out}");
        assert!(out.starts_with("lo\n"), "{out}");
        assert!(out.contains("UP"), "{out}");
        namespaces.push(out.lines().last().unwrap().to_string());
    }
    assert_eq!(namespaces[0], namespaces[1], "one shared namespace");
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(namespaces[0], host.display().to_string());
}

async fn host_network_sees_the_hosts_interfaces() {
    let Some(env) = Env::new() else { return };
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let ran = env
        .run(&env.spec("ls /sys/class/net; touch /sys/x 2>/dev/null || echo ro"))
        .await;
    let mut lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.pop(), Some("ro"), "/sys is read-only: {}", ran.stdout);
    assert_eq!(lines, host);
}

async fn writes_land_in_the_upper_dir_not_in_the_lower() {
    let Some(env) = Env::new() else { return };
    let busybox = busybox_rootfs().unwrap();
    let passwd_before = std::fs::read(busybox.join("etc/passwd")).unwrap();
    let ran = env
        .run(&env.spec("echo new > /tmp/new; echo extra >> /etc/passwd"))
        .await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(env.upper().join("tmp/new")).unwrap(),
        "new\n"
    );
    assert!(
        std::fs::read_to_string(env.upper().join("etc/passwd"))
            .unwrap()
            .ends_with("extra\n")
    );
    assert_eq!(
        std::fs::read(busybox.join("etc/passwd")).unwrap(),
        passwd_before
    );
    assert!(!busybox.join("tmp/new").exists());
}

async fn generated_etc_files_and_mountpoints_stay_out_of_the_layer() {
    let Some(env) = Env::new() else { return };
    // busybox has no /etc/hostname: the sandbox must create the mountpoint.
    assert!(!busybox_rootfs().unwrap().join("etc/hostname").exists());
    let ran = env
        .run(&env.spec("cat /etc/hostname; mkdir -p /data"))
        .await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, "kiln\n");
    // /etc stays copied up in the upper (the mountpoint was made in it), unchanged.
    assert!(env.upper().join("etc").is_dir());
    assert!(!env.upper().join("etc/hostname").exists());
    let entries = env.step_layer();
    let paths: Vec<_> = entries
        .iter()
        .map(|e| e.path.display().to_string())
        .collect();
    assert_eq!(
        paths,
        vec!["data/"],
        "only the command's change is in the layer"
    );

    // A root that has none of /proc, /dev, /sys, /etc: all are created and removed again.
    let empty = env.dir.path().join("empty-lower");
    std::fs::create_dir(&empty).unwrap();
    let dir = env.dir.path().join("second");
    std::fs::create_dir(&dir).unwrap();
    let rootfs = overlay_root(
        &dir,
        &[empty.clone(), busybox_rootfs().unwrap().to_path_buf()],
    );
    let upper = rootfs.writable_dir().to_path_buf();
    std::fs::write(upper.join("kept"), "x").unwrap();
    let bare = Rootfs::Overlay {
        lowers: vec![empty],
        upper: upper.clone(),
        work: dir.join("work"),
    };
    // Busybox is bind-mounted as a volume so the command can run at all.
    let mut spec = Spec::new(bare, vec!["/bb/bin/busybox".into(), "true".into()]);
    spec.mounts.push(BindMount {
        source: busybox_rootfs().unwrap().to_path_buf(),
        destination: "/bb".into(),
        readonly: true,
    });
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let mut left: Vec<_> = std::fs::read_dir(&upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["kept"]);
}

async fn deletions_replacements_links_and_setuid_reach_the_diff() {
    let Some(env) = Env::new() else { return };
    let script = "rm /etc/group; rm -rf /home; echo file > /home; \
        rm -rf /usr/sbin; mkdir /usr/sbin; echo x > /usr/sbin/only; \
        echo a > /tmp/f; ln /tmp/f /tmp/g; chmod 4755 /tmp/f; mkfifo /tmp/p";
    let ran = env.run(&env.spec(script)).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let entries = env.layer();
    let paths: Vec<String> = entries
        .iter()
        .map(|e| e.path.display().to_string())
        .collect();
    let whiteout = find(&entries, "etc/.wh.group").expect("whiteout for the deleted file");
    assert_eq!(
        (whiteout.kind, whiteout.mode, whiteout.body.len()),
        (b'0', 0, 0)
    );
    let home = find(&entries, "home").expect("the directory replaced by a file");
    assert_eq!(
        (home.kind, home.body.as_slice()),
        (b'0', b"file\n".as_slice())
    );
    let sbin = paths.iter().position(|p| p == "usr/sbin/").unwrap();
    assert_eq!(
        paths[sbin + 1],
        "usr/sbin/.wh..wh..opq",
        "opaque marker right after the dir"
    );
    assert_eq!(paths[sbin + 2], "usr/sbin/only");
    let f = find(&entries, "tmp/f").unwrap();
    assert_eq!((f.kind, f.mode), (b'0', 0o4755));
    let g = find(&entries, "tmp/g").unwrap();
    assert_eq!(
        (g.kind, g.link.as_deref()),
        (b'1', Some(Path::new("tmp/f")))
    );
    assert_eq!(find(&entries, "tmp/p").unwrap().kind, b'6');
    assert!(entries.iter().all(|e| {
        e.xattrs
            .iter()
            .all(|(k, _)| !k.starts_with(b"trusted.overlay."))
    }));
}

async fn users_groups_and_environment() {
    let Some(env) = Env::new() else { return };
    let mut spec =
        env.spec("id -u; id -g; id -G; echo $HOME; echo $PATH; grep CapEff /proc/self/status");
    spec.process.user = "1000:1000".into();
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(&lines[..3], &["1000", "1000", "1000"]);
    assert_eq!(lines[3], "/home/app");
    assert_eq!(
        lines[4],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(lines[5], "CapEff:\t0000000000000000");

    spec.process.user = "app".into();
    let ran = env.run(&spec).await;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[2], "1000 50", "supplementary groups from /etc/group");

    spec.process.user = "nosuchuser".into();
    let ran = env.run(&spec).await;
    assert_eq!(ran.status.code, 125);
    assert!(ran.stderr.contains("nosuchuser"), "{}", ran.stderr);
}

async fn root_keeps_only_dockers_capabilities_and_cannot_mount() {
    let Some(env) = Env::new() else { return };
    let ran = env
        .run(&env.spec(
            "grep -E 'Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs' /proc/self/status; \
             mkdir -p /mnt; mount -t tmpfs tmpfs /mnt 2>&1 && echo MOUNTED; \
             echo 1 > /proc/sys/kernel/domainname 2>&1 || echo proc-sys-ro; \
             for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
               test -e $f && echo \"$f $(wc -c < $f)\"; done",
        ))
        .await;
    let out = &ran.stdout;
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("CapPrm:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("MOUNTED"), "{out}");
    assert!(
        out.contains("denied") || out.contains("not permitted"),
        "{out}"
    );
    assert!(out.contains("proc-sys-ro"), "{out}");
    for masked in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ] {
        if Path::new(masked).exists() {
            assert!(
                out.contains(&format!("{masked} 0\n")),
                "{masked} is masked: {out}"
            );
        }
    }
    // CAP_SYS_MODULE (16) is not in the bounding set: no module loading.
    let bounding = u64::from_str_radix("a80425fb", 16).unwrap();
    assert_eq!(bounding & (1 << 16), 0);
}

async fn only_stdio_descriptors_are_inherited() {
    let Some(env) = Env::new() else { return };
    let leaked = leak_host_dirs();
    let ran = env.run(&env.spec("ls /proc/self/fd | tr '\\n' ' '")).await;
    drop(leaked);
    assert_eq!(ran.status.code, 0, "{}", ran.stderr);
    // 0 1 2, plus the directory ls is reading.
    assert_eq!(ran.stdout.trim(), "0 1 2 3");
}

async fn working_dirs_through_proc_do_not_reach_the_host() {
    let Some(env) = Env::new() else { return };
    // A marker only the container root has.
    let marker_layer = env.dir.path().join("marker");
    std::fs::create_dir(&marker_layer).unwrap();
    std::fs::write(marker_layer.join("container-root-marker"), "").unwrap();
    let dir = env.dir.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let rootfs = overlay_root(
        &dir,
        &[marker_layer, busybox_rootfs().unwrap().to_path_buf()],
    );
    // Leak host directory descriptors into the sandbox the way a careless
    // parent would (no CLOEXEC): the sandbox must close them before chdir.
    let leaked = leak_host_dirs();
    let mut cwds: Vec<String> = (0..=10).map(|n| format!("/proc/self/fd/{n}")).collect();
    cwds.extend(
        [
            "/proc/self/cwd",
            "/proc/1/cwd",
            "/proc/1/root",
            "/proc/self/root/..",
            "/proc/2/cwd",
        ]
        .map(String::from),
    );
    for cwd in cwds {
        let mut spec = Spec::new(
            rootfs.clone(),
            sh("for i in 1 2 3 4 5 6 7 8 9 10; do cd ..; done; ls"),
        );
        spec.process.cwd = cwd.clone();
        let ran = env.run(&spec).await;
        if ran.status.code == 0 {
            assert!(
                ran.stdout.lines().any(|l| l == "container-root-marker"),
                "cwd {cwd} escaped the container: {}",
                ran.stdout
            );
        } else {
            assert_eq!(
                ran.status.code, 125,
                "cwd {cwd} fails cleanly: {}",
                ran.stderr
            );
            assert!(ran.stderr.contains("working directory"), "{}", ran.stderr);
        }
    }
    drop(leaked);
}

fn leak_host_dirs() -> Vec<std::os::fd::OwnedFd> {
    (0..8)
        .map(|_| {
            let fd: std::os::fd::OwnedFd = std::fs::File::open("/").unwrap().into();
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty()).unwrap();
            fd
        })
        .collect()
}

async fn working_dir_is_created_inside_the_container() {
    let Some(env) = Env::new() else { return };
    let mut spec = env.spec("pwd");
    spec.process.cwd = "/work/deep/dir".into();
    let ran = env.run(&spec).await;
    assert_eq!(ran.stdout, "/work/deep/dir\n");
    assert!(env.upper().join("work/deep/dir").is_dir());
}

async fn exit_codes_come_back_exactly() {
    let Some(env) = Env::new() else { return };
    for (script, code) in [
        ("exit 0", 0),
        ("exit 7", 7),
        // PID 1 cannot be killed from inside its namespace: a child kills itself.
        ("sh -c 'kill -9 $$'; exit $?", 137),
        ("sh -c 'kill -TERM $$'; exit $?", 143),
    ] {
        let ran = env.run(&env.spec(script)).await;
        assert_eq!(ran.status.code, code, "{script}: {}", ran.stderr);
        assert_eq!(ran.status.setup_error, None);
    }
    let ran = env
        .run(&Spec::new(
            env.rootfs.clone(),
            vec!["no-such-program".into()],
        ))
        .await;
    assert_eq!(ran.status.code, 127, "{}", ran.stderr);
}

async fn volumes_are_bound_with_their_mode() {
    let Some(env) = Env::new() else { return };
    let volume = env.dir.path().join("vol");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("in"), "from host").unwrap();
    let mut spec =
        env.spec("cat /v/in; echo out > /v/out; touch /ro/x 2>/dev/null || echo read-only");
    spec.mounts = vec![
        BindMount {
            source: volume.clone(),
            destination: "/v".into(),
            readonly: false,
        },
        BindMount {
            source: volume.clone(),
            destination: "/ro".into(),
            readonly: true,
        },
    ];
    let ran = env.run(&spec).await;
    assert_eq!(ran.stdout, "from hostread-only\n", "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(volume.join("out")).unwrap(),
        "out\n"
    );
    assert!(!env.upper().join("v").exists() && !env.upper().join("ro").exists());
}

async fn init_reaps_orphans_and_forwards_signals() {
    let Some(env) = Env::new() else { return };
    let mut spec = env.spec("(sleep 0.2 &); sleep 0.5; ps -o stat | grep -c '^Z' || true");
    spec.init = true;
    let ran = env.run(&spec).await;
    assert_eq!(ran.stdout.trim(), "0", "no zombies: {}", ran.stdout);

    let spec =
        env.spec("trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done");
    let mut running = Sandbox::spawn(&spec, &options(env.dir.path())).unwrap();
    wait_for(&mut running, "ready").await;
    let pid = running.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = running.wait().await.unwrap();
    assert_eq!(status.code, 3);
}

async fn wait_for(running: &mut kiln::sandbox::Running, text: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(text) {
        let event = tokio::time::timeout_at(deadline, running.events.recv())
            .await
            .expect("output in time")
            .expect("output");
        if event.stream == Stream::Stdout {
            seen.push_str(&String::from_utf8_lossy(&event.data));
        }
    }
    seen
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie awaiting the host's reaper is no longer running.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

async fn killing_the_sandbox_process_leaves_nothing_behind() {
    let Some(env) = Env::new() else { return };
    let spec = env.spec("echo ready; exec sleep 1000");
    let mut running = Sandbox::spawn(&spec, &options(env.dir.path())).unwrap();
    wait_for(&mut running, "ready").await;
    let outer = running.pid().unwrap();
    // The init became the command (PID 1 of the sandbox).
    let init = children(outer)[0];
    let command = init;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{command}/cmdline"))
        .unwrap()
        .starts_with("sleep")
    {
        assert!(Instant::now() < deadline, "the command never became sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::Command::new("kill")
        .args(["-9", &outer.to_string()])
        .status()
        .unwrap();
    let status = running.wait().await.unwrap();
    assert_eq!(status.code, 137);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(gone(init) && gone(command)) {
        assert!(
            Instant::now() < deadline,
            "init {init} or command {command} survived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    harness::assert_no_mounts(env.dir.path());
    let states: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        states.iter().all(|n| n != "kiln-sandbox"),
        "state dir removed? {states:?}"
    );
}

async fn kill_stops_the_whole_sandbox() {
    let Some(env) = Env::new() else { return };
    let spec = env.spec("(sleep 1000 &); echo ready; exec sleep 1000");
    let mut running = Sandbox::spawn(&spec, &options(env.dir.path())).unwrap();
    wait_for(&mut running, "ready").await;
    let outer = running.pid().unwrap();
    let init = children(outer)[0];
    running.kill().unwrap();
    let status = running.wait().await.unwrap();
    assert_eq!(status.code, 137);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(init) {
        assert!(Instant::now() < deadline, "init {init} survived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sleepers = std::process::Command::new("pgrep")
        .args(["-x", "sleep"])
        .output();
    if let Ok(out) = sleepers {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
            assert!(
                !root.starts_with(env.dir.path()),
                "sleep {pid} of the sandbox survived"
            );
        }
    }
    harness::assert_no_mounts(env.dir.path());
}

async fn inherited_stdio_runs_without_output_events() {
    let Some(env) = Env::new() else { return };
    let mut options = options(env.dir.path());
    options.stdio = kiln::sandbox::StdioMode::Inherit;
    let mut running = Sandbox::spawn(&env.spec("exit 5"), &options).unwrap();
    assert_eq!(running.wait().await.unwrap().code, 5);
    assert!(running.events.try_recv().is_err());
}

async fn cgroup_limits_apply_and_groups_are_removed() {
    let Some(env) = Env::new() else { return };
    let mut spec = env.spec("cat /proc/self/cgroup; echo ready; sleep 0.5");
    spec.limits = CgroupLimits {
        memory_bytes: Some(64 << 20),
        pids: Some(32),
    };
    let mut running = match Sandbox::spawn(&spec, &options(env.dir.path())) {
        Ok(running) => running,
        Err(kiln::sandbox::SandboxError::Cgroup(reason)) => {
            harness::skip(&format!("cgroups not writable here: {reason}"));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let inside = wait_for(&mut running, "ready").await;
    // Seen from the host, the command is in the sandbox's groups.
    let command = children(running.pid().unwrap())[0];
    let host_view = std::fs::read_to_string(format!("/proc/{command}/cgroup")).unwrap();
    let status = running.wait().await.unwrap();
    assert_eq!(status.code, 0, "{inside}");
    let groups: Vec<&str> = host_view.lines().filter(|l| l.contains("/kiln/")).collect();
    assert!(groups.iter().any(|l| l.contains("memory")), "{host_view}");
    assert!(groups.iter().any(|l| l.contains("pids")), "{host_view}");
    // Inside, its own cgroup namespace shows each group as the root.
    if Path::new("/proc/self/ns/cgroup").exists() {
        for line in inside.lines().filter(|l| l.contains(':')) {
            assert!(line.ends_with(":/"), "{inside}");
        }
    }
    let id = groups[0].rsplit('/').next().unwrap();
    for root in [
        "/sys/fs/cgroup/memory/kiln",
        "/sys/fs/cgroup/pids/kiln",
        "/sys/fs/cgroup/kiln",
    ] {
        assert!(!Path::new(root).join(id).exists(), "{root}/{id} removed");
    }
}

async fn pids_limit_stops_fork_bombs() {
    let Some(env) = Env::new() else { return };
    let mut spec = env.spec("for i in $(seq 40); do sleep 2 & done 2>/dev/null; jobs -p | wc -l");
    spec.limits = CgroupLimits {
        memory_bytes: None,
        pids: Some(10),
    };
    let mut running = match Sandbox::spawn(&spec, &options(env.dir.path())) {
        Ok(running) => running,
        Err(kiln::sandbox::SandboxError::Cgroup(reason)) => {
            harness::skip(&format!("cgroups not writable here: {reason}"));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let _ = running.wait().await.unwrap();
    let mut out = String::new();
    while let Ok(event) = running.events.try_recv() {
        if event.stream == Stream::Stdout {
            out.push_str(&String::from_utf8_lossy(&event.data));
        }
    }
    let started: u32 = out.trim().parse().unwrap_or(0);
    assert!(started < 10, "at most pids.max processes: {out}");
}
