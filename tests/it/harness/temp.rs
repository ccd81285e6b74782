//! Temporary roots that prove nothing was left behind in them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::store::Store;

/// How long a dropped root waits for processes and mounts to go away (a killed process
/// exits, a lazily detached mount disappears) before calling them leaked.
const SETTLE: Duration = Duration::from_secs(10);

/// A temporary directory for store roots, contexts and scratch layers. Dropping it (unless
/// the test already failed) asserts that nothing under it is still mounted and that no
/// process still uses it, then removes it.
pub struct TempRoot {
    dir: tempfile::TempDir,
}

impl TempRoot {
    pub fn new() -> TempRoot {
        TempRoot {
            dir: tempfile::Builder::new()
                .prefix("kiln-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let path = self.dir.path();
        let deadline = Instant::now() + SETTLE;
        loop {
            let mounts = mounts_naming(path);
            let users = processes_using(path);
            if mounts.is_empty() && users.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind under {}:\nmounts: {mounts:#?}\nprocesses: {users:#?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A fresh [`TempRoot`] and its path, for tests that mostly need the path.
pub fn temp_dir() -> (TempRoot, PathBuf) {
    let dir = TempRoot::new();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// A store opened in a fresh [`TempRoot`] (at `root/` inside it).
pub fn temp_store() -> (TempRoot, Store) {
    let dir = TempRoot::new();
    let store = Store::open(dir.join("root")).unwrap();
    (dir, store)
}

/// Asserts that no mount of this process or thread names `path` (as its mount point, its
/// source or one of its options, such as an overlay's layers).
pub fn assert_no_mounts(path: &Path) {
    let mounts = mounts_naming(path);
    assert!(
        mounts.is_empty(),
        "a mount under {} was left behind:\n{mounts:#?}",
        path.display()
    );
}

fn mounts_naming(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy();
    // A thread of a file op may have a mount namespace of its own.
    let mut found: Vec<String> = ["/proc/self/mountinfo", "/proc/thread-self/mountinfo"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap()
                .lines()
                .filter(|line| line.contains(needle.as_ref()))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Every process whose working directory, root, executable, open files or command line
/// is under `path`, as `pid (name): what`.
fn processes_using(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // Processes come and go while we look: whatever cannot be read is not in use.
        let proc_dir = entry.path();
        let under = |link: &Path| std::fs::read_link(link).is_ok_and(|t| t.starts_with(path));
        let mut uses: Vec<String> = ["cwd", "root", "exe"]
            .into_iter()
            .filter(|link| under(&proc_dir.join(link)))
            .map(str::to_string)
            .collect();
        if let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) {
            uses.extend(
                fds.flatten()
                    .filter(|fd| under(&fd.path()))
                    .map(|fd| format!("fd {}", fd.file_name().to_string_lossy())),
            );
        }
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle.as_ref()) {
            uses.push("command line".into());
        }
        if !uses.is_empty() {
            let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
            found.push(format!("{pid} ({}): {}", comm.trim(), uses.join(", ")));
        }
    }
    found
}

// The leak checks are only worth something if they see leaks.
#[test]
fn a_process_working_in_a_root_is_found() {
    let root = TempRoot::new();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(root.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + SETTLE;
    let found = loop {
        let found = processes_using(root.path());
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&format!("{} ", sleeper.id())) && p.contains("cwd")),
        "{found:?}"
    );
    assert!(processes_using(root.path()).is_empty());
}

#[test]
fn a_mount_under_a_root_is_found() {
    if !super::privileged() {
        return;
    }
    let root = TempRoot::new();
    let target = root.join("mnt");
    std::fs::create_dir(&target).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    let found = mounts_naming(root.path());
    let status = std::process::Command::new("umount")
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(mounts_naming(root.path()).is_empty());
}
