//! Docker's default seccomp profile (moby's `profiles/seccomp/default.json`), as data:
//! an allowlist with EPERM for everything else; `clone` without namespace flags and
//! `clone3` refused with ENOSYS (so libc falls back to `clone`) unless the container has
//! CAP_SYS_ADMIN; `socket` without AF_ALG and AF_VSOCK; `personality` only with the
//! values programs ask for; and syscalls allowed only with the capability that governs
//! them (mount, unshare, setns, bpf, perf_event_open … with CAP_SYS_ADMIN; ptrace with
//! CAP_SYS_PTRACE; reboot with CAP_SYS_BOOT …). `keyctl`, `add_key` and `request_key`
//! are in no list: the kernel keyring is not namespaced.

use super::profile::{
    Action, Arch, ArchMapEntry, ArgCondition, KernelVersion, Op, Profile, SyscallRule,
};

/// Syscalls every container may make.
#[rustfmt::skip]
const ALLOWED: [&str; 361] = [
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "riscv_hwprobe",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list",
    "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32",
    "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice",
    "stat", "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat",
    "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET | CLONE_NEWCGROUP`: a `clone` with none of these creates no namespace.
const NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// An ALLOW rule for `names`.
fn allow(names: &[&str]) -> SyscallRule {
    SyscallRule {
        names: names.iter().map(|n| n.to_string()).collect(),
        action: Action::Allow,
        ..SyscallRule::default()
    }
}

impl SyscallRule {
    /// Only when the container has every capability of `caps`.
    fn with_caps(mut self, caps: &[&str]) -> Self {
        self.includes.get_or_insert_default().caps = caps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Not when the container has any capability of `caps`.
    fn without_caps(mut self, caps: &[&str]) -> Self {
        self.excludes.get_or_insert_default().caps = caps.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Only on these native architectures (Go's names).
    fn on(mut self, arches: &[&str]) -> Self {
        self.includes.get_or_insert_default().arches =
            arches.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Not on these native architectures.
    fn not_on(mut self, arches: &[&str]) -> Self {
        self.excludes.get_or_insert_default().arches =
            arches.iter().map(|a| a.to_string()).collect();
        self
    }

    fn since_kernel(mut self, version: u32, major: u32) -> Self {
        self.includes.get_or_insert_default().min_kernel = Some(KernelVersion(version, major));
        self
    }

    /// And argument `index` compares with `value` (`value_two` for MASKED_EQ).
    fn arg(mut self, index: u32, op: Op, value: u64, value_two: u64) -> Self {
        self.args.push(ArgCondition {
            index,
            value,
            value_two,
            op,
        });
        self
    }

    fn errno(mut self, errno: u32) -> Self {
        self.action = Action::Errno;
        self.errno_ret = Some(errno);
        self
    }
}

/// Docker's default profile.
pub(super) fn profile() -> Profile {
    let mut syscalls = vec![
        allow(&ALLOWED),
        allow(&["process_vm_readv", "process_vm_writev", "ptrace"]).since_kernel(4, 8),
        allow(&["socket"]).arg(0, Op::Less, 38, 0),
        allow(&["socket"]).arg(0, Op::Equal, 39, 0),
        allow(&["socket"]).arg(0, Op::Greater, 40, 0),
    ];
    // PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query 0xffffffff.
    for persona in [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(allow(&["personality"]).arg(0, Op::Equal, persona, 0));
    }
    syscalls.extend([
        allow(&["sync_file_range2", "swapcontext"]).on(&["ppc64le"]),
        allow(&[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ])
        .on(&["arm", "arm64"]),
        allow(&["arch_prctl"]).on(&["amd64", "x32"]),
        allow(&["modify_ldt"]).on(&["amd64", "x32", "x86"]),
        allow(&[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ])
        .on(&["s390", "s390x"]),
        allow(&["riscv_flush_icache"]).on(&["riscv64"]),
        allow(&["open_by_handle_at"]).with_caps(&["CAP_DAC_READ_SEARCH"]),
        allow(&[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ])
        .with_caps(&["CAP_SYS_ADMIN"]),
        allow(&["clone"])
            .arg(0, Op::MaskedEqual, NAMESPACE_FLAGS, 0)
            .without_caps(&["CAP_SYS_ADMIN"])
            .not_on(&["s390", "s390x"]),
        // s390 passes clone's flags second.
        allow(&["clone"])
            .arg(1, Op::MaskedEqual, NAMESPACE_FLAGS, 0)
            .on(&["s390", "s390x"])
            .without_caps(&["CAP_SYS_ADMIN"]),
        allow(&["clone3"])
            .errno(ENOSYS)
            .without_caps(&["CAP_SYS_ADMIN"]),
        allow(&["reboot"]).with_caps(&["CAP_SYS_BOOT"]),
        allow(&["chroot"]).with_caps(&["CAP_SYS_CHROOT"]),
        allow(&["delete_module", "init_module", "finit_module"]).with_caps(&["CAP_SYS_MODULE"]),
        allow(&["acct"]).with_caps(&["CAP_SYS_PACCT"]),
        allow(&[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ])
        .with_caps(&["CAP_SYS_PTRACE"]),
        allow(&["iopl", "ioperm"]).with_caps(&["CAP_SYS_RAWIO"]),
        allow(&["settimeofday", "stime", "clock_settime", "clock_settime64"])
            .with_caps(&["CAP_SYS_TIME"]),
        allow(&["vhangup"]).with_caps(&["CAP_SYS_TTY_CONFIG"]),
        allow(&[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ])
        .with_caps(&["CAP_SYS_NICE"]),
        allow(&["syslog"]).with_caps(&["CAP_SYSLOG"]),
        allow(&["bpf"]).with_caps(&["CAP_BPF"]),
        allow(&["perf_event_open"]).with_caps(&["CAP_PERFMON"]),
    ]);
    Profile {
        default_action: Some(Action::Errno),
        default_errno_ret: Some(EPERM),
        arch_map: vec![
            ArchMapEntry {
                architecture: Arch::X86_64,
                sub_architectures: vec![Arch::X86, Arch::X32],
            },
            ArchMapEntry {
                architecture: Arch::Aarch64,
                sub_architectures: vec![Arch::Arm],
            },
        ],
        syscalls,
        ..Profile::default()
    }
}
