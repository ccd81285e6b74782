//! Processes: fork, exec, the init's signal forwarding and reaping, dropping
//! privileges (groups, uid/gid, capabilities, no_new_privs).

use std::ffi::CString;
use std::path::Path;

use rustix::io::Errno;
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets};

use super::error::{Result, SysError};

/// Result of [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(i32),
    Child,
}

/// `fork(2)`. Only for single-threaded callers (the `__sandbox` child, or a
/// test's forked helper): after a fork of a threaded process only
/// async-signal-safe work is allowed in the child.
pub fn fork() -> Result<Fork> {
    // SAFETY: callers are single-threaded (documented above), so the child does
    // not inherit locks held by other threads.
    match unsafe { libc::fork() } {
        -1 => Err(SysError::call("fork", std::io::Error::last_os_error())),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Makes the kernel SIGKILL us when our parent (thread) dies.
pub fn die_with_parent() -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| SysError::call("prctl PR_SET_PDEATHSIG", e))
}

/// The parent's pid (0 when the parent lives in an ancestor pid namespace).
pub fn parent_pid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// Our own pid.
pub fn own_pid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// Starts a new session with this process as its leader (setsid), detaching
/// it from the caller's terminal and process group.
pub fn new_session() -> Result<()> {
    rustix::process::setsid()
        .map(|_| ())
        .map_err(|e| SysError::call("setsid", e))
}

/// Closes every descriptor from 3 up (close_range, else a /proc/self/fd walk).
pub fn close_fds_from_3() -> Result<()> {
    // SAFETY: close_range only closes descriptors; nothing in this process keeps
    // raw descriptors ≥ 3 that it uses afterwards (callers are about to exec, or have
    // just started and opened nothing yet).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| SysError::path("read_dir", "/proc/self/fd", e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; EBADF for the read_dir's own (closed) fd is harmless.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The signals the init forwards to its child.
const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn supervised_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks SIGCHLD and the forwarded signals, so they queue for [`supervise`]
/// instead of interrupting (call before forking the supervised child).
pub fn block_supervised_signals() -> Result<()> {
    let set = supervised_set();
    // SAFETY: `set` is initialised; the old mask is not needed.
    let rc = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(SysError::call(
            "sigprocmask",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Restores an exec-ready signal state: empty mask, default dispositions
/// (Rust's runtime ignores SIGPIPE, which exec would otherwise inherit).
pub fn reset_signals() -> Result<()> {
    // SAFETY: setting default dispositions and an empty mask has no memory effects.
    unsafe {
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(SysError::call(
                "sigprocmask",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// How a child ended, as a shell reports it: its exit code, or 128 + signal.
fn shell_status(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// The init loop: forwards the blocked signals to `child`, reaps every child
/// (zombies reparented to us included) and returns `child`'s shell status once
/// it has exited. Requires [`block_supervised_signals`] before the fork.
pub fn supervise(child: i32) -> Result<i32> {
    let set = supervised_set();
    loop {
        // Reap everything that has exited.
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == child {
                return Ok(shell_status(status));
            }
            if pid <= 0 {
                if pid < 0
                    && Errno::from_io_error(&std::io::Error::last_os_error()) == Some(Errno::CHILD)
                {
                    return Err(SysError::Invalid {
                        call: "waitpid",
                        reason: "supervised child vanished".into(),
                    });
                }
                break;
            }
        }
        // SAFETY: `set` is initialised; siginfo is not requested.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: plain kill(2); a failure (child already gone) is harmless.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Overwrites this process's command line with `args` and blanks its environment, in
/// place (the kernel reads `/proc/PID/cmdline` and `environ` from these areas), so what
/// the exec of kiln was started with is no longer readable. `args` is cut to fit.
pub fn overwrite_command_line(args: &[String]) -> Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| SysError::call("read /proc/self/stat", e))?;
    let areas = memory_areas(&stat).ok_or_else(|| SysError::Invalid {
        call: "read /proc/self/stat",
        reason: "no argument and environment areas in it".into(),
    })?;
    let (arg_start, arg_end, env_start, env_end) = areas;
    let mut title: Vec<u8> = Vec::new();
    for arg in args {
        title.extend_from_slice(arg.as_bytes());
        title.push(0);
    }
    let arg_len = arg_end.saturating_sub(arg_start);
    // The area must end in a NUL, or the kernel reads on into the environment.
    title.truncate(arg_len.saturating_sub(1));
    // SAFETY: [arg_start, arg_end) and [env_start, env_end) are this process's own
    // argument and environment strings on its initial stack, mapped writable for the
    // life of the process; nothing holds a Rust reference into them, and the only
    // pointers into them (argv/environ) then read shorter, still NUL-terminated strings.
    unsafe {
        std::ptr::write_bytes(env_start as *mut u8, 0, env_end.saturating_sub(env_start));
        std::ptr::write_bytes(arg_start as *mut u8, 0, arg_len);
        std::ptr::copy_nonoverlapping(title.as_ptr(), arg_start as *mut u8, title.len());
    }
    Ok(())
}

/// `arg_start`, `arg_end`, `env_start`, `env_end` of a `/proc/PID/stat` line
/// (fields 48 to 51, counted after the command name, which may hold spaces).
fn memory_areas(stat: &str) -> Option<(usize, usize, usize, usize)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    let areas = (field(48)?, field(49)?, field(50)?, field(51)?);
    (areas.0 < areas.1 && areas.2 <= areas.3).then_some(areas)
}

/// Restores SIGPIPE's default action (Rust's runtime ignores it): a command whose output
/// pipe closes (`kiln images | head`) then ends quietly, as other tools do, instead of
/// failing on the write.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default touches no memory.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: i32, signal: i32) -> Result<()> {
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(SysError::call("kill", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Ends the process now, without running destructors or atexit handlers
/// (what a forked child must do).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// `execve(path, argv, env)`; returns only on failure.
pub fn exec(path: &Path, argv: &[String], env: &[String]) -> SysError {
    use std::os::unix::ffi::OsStrExt;
    let to_c = |s: &[u8]| {
        CString::new(s).map_err(|_| SysError::Invalid {
            call: "execve",
            reason: "argument with a NUL byte".into(),
        })
    };
    let prepared = (|| -> Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = to_c(path.as_os_str().as_bytes())?;
        let argv = argv
            .iter()
            .map(|a| to_c(a.as_bytes()))
            .collect::<Result<Vec<_>>>()?;
        let env = env
            .iter()
            .map(|e| to_c(e.as_bytes()))
            .collect::<Result<Vec<_>>>()?;
        Ok((path, argv, env))
    })();
    let (path, argv, env) = match prepared {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: all pointers come from CStrings alive across the call and both
    // arrays are NULL-terminated.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    SysError::path(
        "execve",
        Path::new(&*path.to_string_lossy()),
        std::io::Error::last_os_error(),
    )
}

/// Who the process becomes and what it may keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub supplementary_gids: Vec<u32>,
    /// Capability numbers kept in the bounding set (and, for uid 0, in the
    /// permitted and effective sets).
    pub capabilities: Vec<u32>,
    pub no_new_privs: bool,
}

fn cap_mask(caps: &[u32]) -> u64 {
    caps.iter()
        .filter(|c| **c < 64)
        .fold(0, |mask, c| mask | (1u64 << c))
}

/// The highest capability number the running kernel knows (`cap_last_cap`).
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops to `creds`: bounding set reduced, ambient cleared, groups, gid, uid
/// set, then permitted/effective = kept caps for root (empty otherwise, as
/// the kernel clears them on a uid change), inheritable empty (Docker's
/// setting since CVE-2022-24769), and no_new_privs.
pub fn drop_privileges(creds: &Credentials) -> Result<()> {
    let keep = cap_mask(&creds.capabilities);
    for cap in 0..=last_capability() {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl(PR_CAPBSET_DROP) takes an integer capability number.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                // EINVAL: the running kernel does not know this capability.
                if err.raw_os_error() != Some(libc::EINVAL) {
                    return Err(SysError::call("prctl PR_CAPBSET_DROP", err));
                }
            }
        }
    }
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| SysError::call("prctl PR_CAP_AMBIENT_CLEAR_ALL", e))?;
    // Without SECBIT_KEEP_CAPS the uid change below clears permitted/effective
    // for non-root users, which is what Docker gives them.
    let _ = rustix::thread::set_capabilities_secure_bits(CapabilitiesSecureBits::empty());
    let groups: Vec<libc::gid_t> = creds.supplementary_gids.clone();
    // A user namespace that maps only its owner's ids denies setgroups; the groups it
    // started with (none mapped but its own) stay, which is all it can have.
    let denied =
        std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|state| state.trim() == "deny");
    // SAFETY: the pointer and length describe `groups`, alive across the call.
    if !denied && unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(SysError::call("setgroups", std::io::Error::last_os_error()));
    }
    // SAFETY: plain id-setting calls.
    if unsafe { libc::setresgid(creds.gid, creds.gid, creds.gid) } != 0 {
        return Err(SysError::call("setresgid", std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(creds.uid, creds.uid, creds.uid) } != 0 {
        return Err(SysError::call("setresuid", std::io::Error::last_os_error()));
    }
    if creds.uid == 0 {
        let current =
            rustix::thread::capabilities(None).map_err(|e| SysError::call("capget", e))?;
        let kept = current.permitted & CapabilitySet::from_bits_retain(keep);
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: kept,
                permitted: kept,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| SysError::call("capset", e))?;
    }
    if creds.no_new_privs {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| SysError::call("prctl PR_SET_NO_NEW_PRIVS", e))?;
    }
    Ok(())
}

/// A process, identified by its pid and start time (so a reused pid is not it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<ProcessId> {
        ProcessId::of(own_pid())
    }

    /// `pid` if it is alive (not a zombie), with its start time.
    pub fn of(pid: i32) -> Option<ProcessId> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
            return None;
        }
        let start_time = fields.get(19)?.parse().ok()?;
        Some(ProcessId { pid, start_time })
    }

    pub fn is_alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|p| p.start_time == self.start_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_areas_are_read_after_a_command_name_with_spaces() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "1000".into();
        fields[49 - 3] = "1100".into();
        fields[50 - 3] = "1100".into();
        fields[51 - 3] = "1500".into();
        let stat = format!("42 (a (weird) name) {}", fields.join(" "));
        assert_eq!(memory_areas(&stat), Some((1000, 1100, 1100, 1500)));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (arg_start, arg_end, _, _) = memory_areas(&own).unwrap();
        assert!(arg_end > arg_start);
        assert_eq!(memory_areas("1 (x) R 2 3"), None);
    }
}
