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

/// In the re-run child: enters the new user namespace and waits there until the parent
/// has mapped it. Any other process returns at once.
pub fn enter_if_child() -> Result<()> {
    let Some(parent) = std::env::var_os(CHILD_MARK) else {
        return Ok(());
    };
    // Processes the child starts (the sandbox, monitors) inherit the mark, not the parent.
    if parent.to_string_lossy() != crate::sys::process::parent_pid().to_string() {
        return Ok(());
    }
    userns::unshare_user().context("entering a user namespace")?;
    userns::stop_self()?;
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    if map.trim().is_empty() {
        bail!("the user namespace was not mapped");
    }
    Ok(())
}

/// Whether this process should re-run itself in a user namespace.
pub fn needed() -> bool {
    !crate::sys::is_root() && std::env::var_os(CHILD_MARK).is_none()
}

/// Re-runs this command line in a user namespace over the store `root`; its exit status.
pub fn rerun(root: &Path) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the kiln binary")?;
    let mut child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARK, crate::sys::process::own_pid().to_string())
        .env("KILN_ROOT", root)
        .env(crate::sandbox::RUNTIME_DIR_ENV, runtime_dir(root))
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = i32::try_from(child.id()).context("child pid")?;
    if !userns::wait_stopped(pid)? {
        // It failed before entering the namespace (and said why).
        let status = child.wait()?;
        return Ok(ExitCode::from(
            u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
        ));
    }
    let mapped = map_ids(pid);
    crate::sys::process::send_signal(pid, libc::SIGCONT)?;
    mapped?;
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
/// warning) only its own.
fn map_ids(pid: i32) -> Result<()> {
    let (uid, gid) = userns::real_ids();
    let subordinates = Subordinates::find();
    let reason = match subordinates.missing() {
        None => {
            let uids = userns::map_with_subordinates(uid, &subordinates.uids);
            let gids = userns::map_with_subordinates(gid, &subordinates.gids);
            match userns::map_with_helpers(pid, &uids, &gids) {
                Ok(()) => return Ok(()),
                Err(error) => error.to_string(),
            }
        }
        Some(reason) => reason,
    };
    eprintln!(
        "kiln: warning: running without root with only your own id mapped ({reason}): \
         only uid 0 works inside, so files owned by other users cannot be made \
         (see kiln system check)"
    );
    userns::map_single(pid, uid, gid).context("mapping the user namespace")?;
    Ok(())
}
