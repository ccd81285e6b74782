//! Running without root. A kiln started by a non-root user for a command that uses the
//! store re-runs itself in a new user namespace, where it is uid 0 over the user's
//! subordinate ids, and waits for it: the parent maps the ids (it is outside the
//! namespace, where `newuidmap` works), forwards signals and returns the child's exit
//! status. The store is `$XDG_DATA_HOME/kiln` (chosen before the child, which is "root",
//! could take `/var/lib/kiln`), runtime state `$XDG_RUNTIME_DIR/kiln`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::sys::userns;

/// Set (to the parent's pid) for the re-run child.
const CHILD_MARK: &str = "_KILN_USERNS_PARENT";
/// Set for a re-run child that stays in the user's own namespace: `kiln exec`, whose
/// `__enter` joins the container's user namespace instead of one of its own.
const JOIN_MARK: &str = "_KILN_USERNS_JOIN";

/// In the re-run child: enters the new user namespace and waits there until the parent
/// has mapped it. Any other process returns at once.
pub fn enter_if_child() -> Result<()> {
    let Some(parent) = std::env::var_os(CHILD_MARK) else {
        return Ok(());
    };
    // Processes the child starts (the sandbox, monitors) inherit the mark, not the parent.
    if parent.to_string_lossy() != crate::sys::process::parent_pid().to_string()
        || std::env::var_os(JOIN_MARK).is_some()
    {
        return Ok(());
    }
    userns::unshare_user().context("entering a user namespace")?;
    userns::stop_self()?;
    for map in ["/proc/self/uid_map", "/proc/self/gid_map"] {
        if std::fs::read_to_string(map)
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            bail!("the user namespace was not mapped ({map} is empty)");
        }
    }
    Ok(())
}

/// Whether this process should re-run itself in a user namespace.
pub fn needed() -> bool {
    !crate::sys::is_root() && std::env::var_os(CHILD_MARK).is_none()
}

/// Re-runs this command line in a user namespace over the store `root` (with
/// `new_namespace` false, in the user's own: for `kiln exec`, which joins the
/// container's); its exit status.
pub fn rerun(root: &Path, new_namespace: bool) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the kiln binary")?;
    let mut command = std::process::Command::new(&exe);
    command
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARK, crate::sys::process::own_pid().to_string())
        .env("KILN_ROOT", root)
        .env(crate::sandbox::RUNTIME_DIR_ENV, runtime_dir(root));
    if !new_namespace {
        command.env(JOIN_MARK, "1");
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = i32::try_from(child.id()).context("child pid")?;
    if !new_namespace {
        crate::sys::process::block_supervised_signals()?;
        let code = crate::sys::process::supervise(pid)?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    if !userns::wait_stopped(pid)? {
        // It failed before entering the namespace (and said why).
        let status = child.wait()?;
        return Ok(ExitCode::from(
            u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
        ));
    }
    if let Err(error) = map_ids(pid) {
        // Half a map is no namespace to run in: the child never runs on.
        let _ = crate::sys::process::send_signal(pid, libc::SIGKILL);
        let _ = child.wait();
        return Err(error);
    }
    crate::sys::process::send_signal(pid, libc::SIGCONT)?;
    crate::sys::process::block_supervised_signals()?;
    let code = crate::sys::process::supervise(pid)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `$XDG_RUNTIME_DIR/kiln`, else `ROOT/run`.
fn runtime_dir(root: &Path) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir).join("kiln"),
        _ => root.join("run"),
    }
}

/// What the user has for a full map: subordinate uids and gids, and the helpers.
pub struct Subordinates {
    pub user: String,
    pub uids: Vec<(u32, u32)>,
    pub gids: Vec<(u32, u32)>,
    pub helpers: Vec<(&'static str, Option<PathBuf>)>,
}

impl Subordinates {
    pub fn find() -> Subordinates {
        let (uid, _) = userns::real_ids();
        let user = userns::user_name(uid).unwrap_or_else(|| uid.to_string());
        let read = |file: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            userns::subordinate_ranges(&text, &user, uid)
        };
        Subordinates {
            uids: read("/etc/subuid"),
            gids: read("/etc/subgid"),
            helpers: ["newuidmap", "newgidmap"]
                .into_iter()
                .map(|name| (name, find_in_path(name)))
                .collect(),
            user,
        }
    }

    /// Why a full map cannot be made, if it cannot.
    pub fn missing(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.uids.is_empty() {
            missing.push(format!(
                "no subordinate uids for {} in /etc/subuid",
                self.user
            ));
        }
        if self.gids.is_empty() {
            missing.push(format!(
                "no subordinate gids for {} in /etc/subgid",
                self.user
            ));
        }
        for (name, path) in &self.helpers {
            if path.is_none() {
                missing.push(format!("no {name} (Debian's uidmap package)"));
            }
        }
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

/// The executable `name` in `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Maps the child's ids: the user's own at 0 and its subordinate ids above, else (with a
/// warning) only its own. Which one is chosen before anything is written: a map is
/// written once.
fn map_ids(pid: i32) -> Result<()> {
    let (uid, gid) = userns::real_ids();
    let subordinates = Subordinates::find();
    let Some(reason) = subordinates.missing() else {
        let uids = userns::map_with_subordinates(uid, &subordinates.uids);
        let gids = userns::map_with_subordinates(gid, &subordinates.gids);
        return userns::map_with_helpers(pid, &uids, &gids)
            .context("mapping the user namespace with your subordinate ids");
    };
    eprintln!(
        "kiln: warning: running without root with only your own id mapped ({reason}): \
         only uid 0 works inside, so files owned by other users cannot be made \
         (see kiln system check)"
    );
    userns::map_single(pid, uid, gid).context("mapping the user namespace")?;
    Ok(())
}

/// How a `kiln system check` line came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, with a limit.
    Warn,
    /// Rootless kiln cannot work until it is fixed.
    Fail,
}

/// One thing running without root needs: whether this machine has it, and the fix.
pub struct Finding {
    pub verdict: Verdict,
    pub what: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

fn finding(verdict: Verdict, what: &'static str, detail: String, fix: Option<String>) -> Finding {
    Finding {
        verdict,
        what,
        detail,
        fix,
    }
}

/// `kiln system check`: what running without root needs, for the current user.
pub fn check(root: Option<&Path>) -> Vec<Finding> {
    let subordinates = Subordinates::find();
    let user = subordinates.user.clone();
    let mut findings = Vec::new();
    for (what, file, ranges, flag) in [
        (
            "subordinate uids",
            "/etc/subuid",
            &subordinates.uids,
            "--add-subuids",
        ),
        (
            "subordinate gids",
            "/etc/subgid",
            &subordinates.gids,
            "--add-subgids",
        ),
    ] {
        let total: u64 = ranges.iter().map(|(_, count)| u64::from(*count)).sum();
        let fix = format!("sudo usermod {flag} 100000-165535 {user}");
        findings.push(match total {
            0 => finding(
                Verdict::Warn,
                what,
                format!("none for {user} in {file}: only uid 0 will work inside"),
                Some(fix),
            ),
            n if n < 65535 => finding(
                Verdict::Warn,
                what,
                format!("{n} for {user} in {file}; images may use ids up to 65535"),
                Some(fix),
            ),
            n => finding(Verdict::Ok, what, format!("{n} for {user} in {file}"), None),
        });
    }
    for (name, path) in &subordinates.helpers {
        findings.push(match path {
            Some(path) => finding(
                Verdict::Ok,
                "id map helper",
                path.display().to_string(),
                None,
            ),
            None => finding(
                Verdict::Warn,
                "id map helper",
                format!("{name} not found: only uid 0 will work inside"),
                Some("sudo apt-get install uidmap".into()),
            ),
        });
    }
    findings.extend(sysctl_findings());
    findings.push(overlay_finding(root));
    findings.push(cgroup_finding());
    findings
}

fn read_number(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn sysctl_findings() -> Vec<Finding> {
    let mut findings = Vec::new();
    let max = read_number("/proc/sys/user/max_user_namespaces");
    findings.push(match max {
        Some(0) => finding(
            Verdict::Fail,
            "user namespaces",
            "user.max_user_namespaces is 0".into(),
            Some("sudo sysctl -w user.max_user_namespaces=15000".into()),
        ),
        Some(n) => finding(
            Verdict::Ok,
            "user namespaces",
            format!("user.max_user_namespaces = {n}"),
            None,
        ),
        None => finding(
            Verdict::Fail,
            "user namespaces",
            "this kernel has none".into(),
            Some("a kernel built with CONFIG_USER_NS".into()),
        ),
    });
    if read_number("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        findings.push(finding(
            Verdict::Fail,
            "unprivileged user namespaces",
            "kernel.unprivileged_userns_clone is 0".into(),
            Some("sudo sysctl -w kernel.unprivileged_userns_clone=1".into()),
        ));
    }
    if read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        findings.push(finding(
            Verdict::Fail,
            "AppArmor",
            "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and later)".into(),
            Some(
                "an AppArmor profile allowing userns for the kiln binary, or \
                 sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
                    .into(),
            ),
        ));
    }
    findings
}

/// Tries an overlay in a user namespace in a scratch directory of the store (or /tmp).
fn overlay_finding(root: Option<&Path>) -> Finding {
    let base = root
        .filter(|r| r.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let dir = base.join(format!(".kiln-check-{}", crate::store::random_name()));
    let outcome = std::fs::create_dir(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| userns::probe_overlay(&dir).map_err(|e| e.to_string()));
    remove_probe(&dir);
    match outcome {
        Ok(()) => finding(
            Verdict::Ok,
            "overlay in a user namespace",
            format!("mounted one in {}", base.display()),
            None,
        ),
        Err(error) => finding(
            Verdict::Fail,
            "overlay in a user namespace",
            error,
            Some("Linux 5.11 or later, and a store on a filesystem with user xattrs".into()),
        ),
    }
}

/// Removes the probe's directory: overlay leaves its `work/work` with mode 0, which its
/// owner must open up first.
fn remove_probe(dir: &Path) {
    fn open_up(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
    open_up(dir);
    let _ = std::fs::remove_dir_all(dir);
}

fn cgroup_finding() -> Finding {
    if !crate::sys::namespace::cgroup2_unified() {
        return finding(
            Verdict::Warn,
            "cgroup limits",
            "cgroup v1 here: -m and --pids-limit work only as root".into(),
            Some("boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)".into()),
        );
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or("/");
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let writable = rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).is_ok();
    if writable {
        finding(
            Verdict::Ok,
            "cgroup limits",
            format!("{} is delegated to you", dir.display()),
            None,
        )
    } else {
        finding(
            Verdict::Warn,
            "cgroup limits",
            format!(
                "{} is not delegated to you: -m and --pids-limit work only as root",
                dir.display()
            ),
            Some("run kiln in a systemd user service with Delegate=yes".into()),
        )
    }
}
