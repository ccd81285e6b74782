//! User namespaces, for running without root: a kiln started by a non-root user re-runs
//! itself in a new user namespace where it is uid 0, with the user's subordinate ids
//! (`/etc/subuid`, `/etc/subgid`) mapped above it by the setuid helpers `newuidmap` and
//! `newgidmap`, or, without them, only its own id.

use std::path::Path;

use super::{Result, SysError};

/// One line of a uid or gid map: `count` ids from `inside` map to `outside` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The subordinate ranges `(start, count)` an `/etc/subuid`-format `text` grants the user
/// named `name` with id `id` (lines name the user or its id).
pub fn subordinate_ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse().ok()?;
            let count = fields.next()?.parse().ok()?;
            (owner == name || owner == id).then_some((start, count))
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// The map for `own` at 0 and the subordinate `ranges` from 1 on, at most 65536 ids in
/// all (what images use).
pub fn map_with_subordinates(own: u32, ranges: &[(u32, u32)]) -> Vec<IdRange> {
    const WANTED: u32 = 65536;
    let mut map = vec![IdRange {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next = 1;
    for &(start, count) in ranges {
        if next >= WANTED {
            break;
        }
        let count = count.min(WANTED - next);
        map.push(IdRange {
            inside: next,
            outside: start,
            count,
        });
        next += count;
    }
    map
}

/// Whether this process is in a user namespace other than the initial one.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Where overlayfs keeps its own metadata (opaque directories, redirects): `trusted.*`
/// xattrs as root, `user.*` ones in a user namespace (its `userxattr` option).
pub fn overlay_xattr_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        if in_user_namespace() {
            "user.overlay."
        } else {
            "trusted.overlay."
        }
    })
}

/// Whether `name` is an overlayfs metadata xattr of either kind (never layer content).
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Moves this process into a new user namespace (it has every capability there, and no
/// id is mapped until the parent writes the maps). Single-threaded callers only.
pub fn unshare_user() -> Result<()> {
    // SAFETY: called at the start of main, before any other thread exists, so no thread
    // keeps the old credentials.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
        .map_err(|e| SysError::call("unshare(CLONE_NEWUSER)", e))
}

/// Stops this process (SIGSTOP) until its parent continues it.
pub fn stop_self() -> Result<()> {
    // SAFETY: raise(2) with SIGSTOP; the process resumes on SIGCONT.
    if unsafe { libc::raise(libc::SIGSTOP) } != 0 {
        return Err(SysError::call("raise", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Waits until child `pid` has stopped itself; `false` if it exited instead.
pub fn wait_stopped(pid: i32) -> Result<bool> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        if rc < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SysError::call("waitpid", error));
        }
        if libc::WIFSTOPPED(status) {
            return Ok(true);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Ok(false);
        }
    }
}

/// Writes the maps of `pid` with the setuid helpers (`newuidmap PID IN OUT COUNT…`), both
/// at once.
pub fn map_with_helpers(pid: i32, uids: &[IdRange], gids: &[IdRange]) -> Result<()> {
    let mut running = Vec::with_capacity(2);
    for (helper, map) in [("newuidmap", uids), ("newgidmap", gids)] {
        let mut command = std::process::Command::new(helper);
        command.arg(pid.to_string());
        for range in map {
            command.args([
                range.inside.to_string(),
                range.outside.to_string(),
                range.count.to_string(),
            ]);
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let child = command.spawn().map_err(|e| SysError::call(helper, e))?;
        running.push((helper, child));
    }
    let mut failure = None;
    for (helper, child) in running {
        let out = child
            .wait_with_output()
            .map_err(|e| SysError::call(helper, e))?;
        if !out.status.success() && failure.is_none() {
            failure = Some(SysError::Invalid {
                call: helper,
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Maps only our own uid and gid to 0 in `pid`'s namespace (no helper needed; setgroups
/// is denied there, as the kernel requires for an unprivileged gid map).
pub fn map_single(pid: i32, uid: u32, gid: u32) -> Result<()> {
    let proc = Path::new("/proc").join(pid.to_string());
    for (file, text) in [
        ("setgroups", "deny".to_string()),
        ("uid_map", format!("0 {uid} 1\n")),
        ("gid_map", format!("0 {gid} 1\n")),
    ] {
        let path = proc.join(file);
        std::fs::write(&path, text).map_err(|e| SysError::path("write", &path, e))?;
    }
    Ok(())
}

/// Whether an overlay with an upper can be mounted in a new user namespace (as kiln does
/// without root): a forked child enters one, mapping only its own ids, and tries it in
/// `dir` (which must exist and be empty). `Err` says what failed. Single-threaded callers.
pub fn probe_overlay(dir: &Path) -> Result<()> {
    let report = dir.join("error");
    let (uid, gid) = real_ids();
    match super::process::fork()? {
        super::process::Fork::Child => {
            let outcome = (|| -> Result<()> {
                unshare_user()?;
                map_single(super::process::own_pid(), uid, gid)?;
                super::namespace::unshare(super::namespace::Namespaces {
                    mount: true,
                    ..Default::default()
                })?;
                super::mount::make_rprivate()?;
                let [lower, upper, work, merged] =
                    ["lower", "upper", "work", "merged"].map(|name| dir.join(name));
                for path in [&lower, &upper, &work, &merged] {
                    std::fs::create_dir(path).map_err(|e| SysError::path("mkdir", path, e))?;
                }
                super::mount::mount_overlay(&[lower], Some((&upper, &work)), &merged)?;
                std::fs::write(merged.join("file"), b"x")
                    .map_err(|e| SysError::path("write", &merged, e))?;
                Ok(())
            })();
            if let Err(error) = &outcome {
                let _ = std::fs::write(&report, error.to_string());
            }
            super::process::exit_now(i32::from(outcome.is_err()))
        }
        super::process::Fork::Parent(pid) => {
            let mut status = 0;
            // SAFETY: waitpid writes only `status`.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                return Ok(());
            }
            Err(SysError::Invalid {
                call: "overlay in a user namespace",
                reason: std::fs::read_to_string(&report)
                    .unwrap_or_else(|_| "the probe died".to_string()),
            })
        }
    }
}

/// Our real uid and gid.
pub fn real_ids() -> (u32, u32) {
    (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

/// The name of the user `uid` in the passwd database, when it has one.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_id() {
        let text = "alice:100000:65536\nbob:200000:1000\n1001:300000:500\nbad line\nbob:x:1\n";
        assert_eq!(subordinate_ranges(text, "alice", 1000), [(100000, 65536)]);
        assert_eq!(
            subordinate_ranges(text, "bob", 1001),
            [(200000, 1000), (300000, 500)]
        );
        assert!(subordinate_ranges(text, "carol", 1002).is_empty());
    }

    #[test]
    fn the_map_puts_the_user_at_0_and_subordinates_above() {
        let map = map_with_subordinates(1000, &[(100000, 65536)]);
        assert_eq!(
            map,
            [
                IdRange {
                    inside: 0,
                    outside: 1000,
                    count: 1
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65535
                },
            ]
        );
        let split = map_with_subordinates(1000, &[(200000, 10), (300000, 100000)]);
        assert_eq!(split[2].inside, 11);
        assert_eq!(split[2].count, 65536 - 11);
    }
}
