//! Shared fixtures of the privileged tests: the busybox root filesystem (built
//! once per test binary), the skip-or-fail rule, and sandbox helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use kiln::sandbox::{ExitStatus, Rootfs, Sandbox, SpawnOptions, Spec, Stream};

/// Skips the calling test (printing why), or fails it when `CI` is set.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("privileged test cannot run under CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Whether the tests run as root (from `/proc`, without a syscall crate).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Why privileged tests cannot run here, if they cannot.
pub fn privileged_unavailable() -> Option<String> {
    if !is_root() {
        return Some("needs root (namespaces, overlay mounts)".into());
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.ends_with("overlay")) {
        return Some("overlayfs is not available".into());
    }
    if !Path::new("/proc/self/ns/pid").exists() {
        return Some("namespaces are not available".into());
    }
    None
}

/// Returns early from a test (after [`skip`]) when it cannot run here.
#[macro_export]
macro_rules! require_privileges {
    () => {
        if let Some(reason) = common::privileged_unavailable() {
            common::skip(&reason);
            return;
        }
    };
}

/// The busybox image's `rootfs/`, built once per test binary under the target dir.
pub fn busybox() -> Option<&'static Path> {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = ROOTFS.get_or_init(|| {
        if !Path::new("/bin/busybox").exists() {
            return Err("/bin/busybox is missing (apt-get install busybox-static)".into());
        }
        let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-image");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox/make-image.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dest)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "make-image.sh failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(dest.join("rootfs"))
    });
    match made {
        Ok(path) => Some(path.as_path()),
        Err(reason) => {
            skip(reason);
            None
        }
    }
}

/// A fresh temp directory on the same filesystem as the target dir, where
/// overlay upper/work dirs live (removed on drop).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiln-test-")
        .tempdir()
        .expect("temp dir")
}

/// An overlay root of `lowers` (top first) with a fresh upper in `dir`.
pub fn overlay_root(dir: &Path, lowers: &[PathBuf]) -> Rootfs {
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

/// Options that run this test binary as the sandbox child (it handles
/// `__sandbox` itself; see tests/sandbox.rs).
pub fn options(state_root: &Path) -> SpawnOptions {
    SpawnOptions {
        exe: Some(std::env::current_exe().expect("test executable")),
        state_root: Some(state_root.to_path_buf()),
        ..SpawnOptions::default()
    }
}

/// Output of one sandboxed command.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `spec` to the end.
pub async fn run(spec: &Spec, state_root: &Path) -> Ran {
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
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// A fresh directory that lives as long as the test process: statics are never dropped,
/// so a small `sh` watchdog removes it when the process exits.
// The watchdog must outlive this process, so it is deliberately never waited for.
#[allow(clippy::zombie_processes)]
pub fn process_temp_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep();
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; rm -rf "$2""#)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    dir
}
