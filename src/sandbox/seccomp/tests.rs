//! The compiled filters, run through a BPF interpreter: Docker's default profile on
//! x86_64 and aarch64 hosts with and without capabilities, custom profiles, comparisons.

use super::bpf::{self, Abi, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_LOG};
use super::profile::{ArgCondition, Op, Profile};
use super::resolve::Host;
use super::{Program, compile, default};
use crate::sandbox::capability;

const EPERM: u32 = RET_ERRNO | 1;
const ENOSYS: u32 = RET_ERRNO | 38;
const KERNEL: Option<(u32, u32)> = Some((6, 1));

const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00;
const SIGCHLD: u64 = 17;

fn host(host: Host) -> Host {
    Host {
        kernel: KERNEL,
        ..host
    }
}

fn default_filter(host_: Host, capabilities: &[u32]) -> Program {
    compile(&default::profile(), &host(host_), capabilities)
        .unwrap()
        .unwrap()
}

/// What the filter returns for syscall `name` of `abi` with `args`.
struct Check<'a>(&'a Program, Abi);

impl Check<'_> {
    fn call(&self, name: &str, args: &[u64]) -> u32 {
        let number = self.1.number(name).unwrap_or_else(|| panic!("{name}"));
        self.number(number, args)
    }

    fn number(&self, number: u32, args: &[u64]) -> u32 {
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        bpf::evaluate(&self.0.instructions, self.1.audit_arch(), number, all)
    }
}

#[test]
fn default_profile_on_x86_64() {
    let filter = default_filter(Host::X86_64, &capability::default_set());
    let x86_64 = Check(&filter, Abi::X86_64);
    for name in [
        "read",
        "write",
        "execve",
        "openat",
        "fchmodat2",
        "arch_prctl",
        "chroot",
    ] {
        assert_eq!(x86_64.call(name, &[]), RET_ALLOW, "{name}");
    }
    for name in [
        "unshare",
        "setns",
        "mount",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "reboot",
        "kexec_load",
        "open_by_handle_at",
    ] {
        assert_eq!(x86_64.call(name, &[]), EPERM, "{name}");
    }
    // ptrace needs kernel 4.8 only.
    assert_eq!(x86_64.call("ptrace", &[]), RET_ALLOW);
    // clone creates no namespace; clone3 sends libc back to clone.
    assert_eq!(x86_64.call("clone", &[SIGCHLD]), RET_ALLOW);
    assert_eq!(x86_64.call("clone", &[CLONE_THREAD_FLAGS]), RET_ALLOW);
    assert_eq!(x86_64.call("clone", &[CLONE_NEWUSER | SIGCHLD]), EPERM);
    assert_eq!(x86_64.call("clone", &[CLONE_NEWNS]), EPERM);
    assert_eq!(x86_64.call("clone3", &[]), ENOSYS);
    // socket without AF_ALG (38) and AF_VSOCK (40).
    for (family, ret) in [(1, RET_ALLOW), (2, RET_ALLOW), (38, EPERM), (39, RET_ALLOW)] {
        assert_eq!(x86_64.call("socket", &[family]), ret, "family {family}");
    }
    assert_eq!(x86_64.call("socket", &[40]), EPERM);
    assert_eq!(x86_64.call("socket", &[44]), RET_ALLOW);
    // personality: only what programs ask for.
    for persona in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            x86_64.call("personality", &[persona]),
            RET_ALLOW,
            "{persona:#x}"
        );
    }
    assert_eq!(x86_64.call("personality", &[0x0040_0000]), EPERM);
    // Numbers past the newest syscall the profile names: ENOSYS; below: EPERM.
    assert_eq!(x86_64.number(1000, &[]), ENOSYS);
    assert_eq!(x86_64.number(x86_64_newest() + 1, &[]), ENOSYS);
    assert_eq!(x86_64.call("kexec_file_load", &[]), EPERM);
    // The i386 and x32 ABIs are covered; other architectures are killed.
    let x86 = Check(&filter, Abi::X86);
    assert_eq!(x86.call("socketcall", &[]), RET_ALLOW);
    assert_eq!(x86.call("open", &[]), RET_ALLOW);
    assert_eq!(x86.call("clone", &[CLONE_NEWUSER]), EPERM);
    assert_eq!(x86.call("unshare", &[]), EPERM);
    let x32 = Check(&filter, Abi::X32);
    assert_eq!(x32.call("read", &[]), RET_ALLOW);
    assert_eq!(x32.call("keyctl", &[]), EPERM);
    assert_eq!(
        Check(&filter, Abi::Aarch64).number(63, &[]),
        RET_KILL_PROCESS
    );
}

/// The largest x86_64 number among the syscalls Docker's profile names.
fn x86_64_newest() -> u32 {
    default::profile()
        .syscalls
        .iter()
        .flat_map(|rule| rule.names.iter())
        .filter_map(|name| Abi::X86_64.number(name))
        .max()
        .unwrap()
}

#[test]
fn capabilities_open_their_syscalls() {
    let mut caps = capability::default_set();
    caps.push(capability::number("CAP_SYS_ADMIN").unwrap());
    let filter = default_filter(Host::X86_64, &caps);
    let x86_64 = Check(&filter, Abi::X86_64);
    for name in [
        "unshare",
        "mount",
        "setns",
        "bpf",
        "perf_event_open",
        "clone3",
    ] {
        assert_eq!(x86_64.call(name, &[]), RET_ALLOW, "{name}");
    }
    assert_eq!(x86_64.call("clone", &[CLONE_NEWUSER]), RET_ALLOW);
    assert_eq!(x86_64.call("keyctl", &[]), EPERM);
    assert_eq!(x86_64.call("ptrace", &[]), RET_ALLOW);

    let without_chroot: Vec<u32> = capability::default_set()
        .into_iter()
        .filter(|c| Some(*c) != capability::number("CAP_SYS_CHROOT"))
        .collect();
    let filter = default_filter(Host::X86_64, &without_chroot);
    assert_eq!(Check(&filter, Abi::X86_64).call("chroot", &[]), EPERM);

    let filter = default_filter(
        Host::X86_64,
        &[capability::number("CAP_SYS_PTRACE").unwrap()],
    );
    assert_eq!(
        Check(&filter, Abi::X86_64).call("process_madvise", &[]),
        RET_ALLOW
    );
}

#[test]
fn default_profile_on_aarch64() {
    let filter = default_filter(Host::AARCH64, &capability::default_set());
    let aarch64 = Check(&filter, Abi::Aarch64);
    assert_eq!(aarch64.call("openat", &[]), RET_ALLOW);
    assert_eq!(aarch64.call("clone", &[SIGCHLD]), RET_ALLOW);
    assert_eq!(aarch64.call("clone", &[CLONE_NEWUSER]), EPERM);
    assert_eq!(aarch64.call("clone3", &[]), ENOSYS);
    assert_eq!(aarch64.call("unshare", &[]), EPERM);
    let arm = Check(&filter, Abi::Arm);
    assert_eq!(arm.call("set_tls", &[]), RET_ALLOW);
    assert_eq!(arm.call("clone", &[CLONE_NEWUSER]), EPERM);
    assert_eq!(Check(&filter, Abi::X86_64).number(0, &[]), RET_KILL_PROCESS);
}

#[test]
fn default_profile_is_short_enough() {
    for h in [Host::X86_64, Host::AARCH64] {
        let filter = default_filter(h, &capability::all());
        assert!(
            filter.instructions.len() < 1000,
            "{}",
            filter.instructions.len()
        );
    }
}

fn custom(json: &str) -> Program {
    let profile = Profile::parse(json.as_bytes()).unwrap();
    compile(&profile, &host(Host::X86_64), &capability::default_set())
        .unwrap()
        .unwrap()
}

#[test]
fn custom_profiles() {
    let filter = custom(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 13},
                         {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
                         {"names": ["no_such_call"], "action": "SCMP_ACT_KILL"}]}"#,
    );
    let x86_64 = Check(&filter, Abi::X86_64);
    assert_eq!(x86_64.call("mkdirat", &[]), RET_ERRNO | 13);
    assert_eq!(x86_64.call("getpid", &[]), RET_LOG);
    assert_eq!(x86_64.call("read", &[]), RET_ALLOW);
    // An allowing default: new syscalls stay allowed; only the native ABI is covered.
    assert_eq!(x86_64.number(1000, &[]), RET_ALLOW);
    assert_eq!(Check(&filter, Abi::X86).call("read", &[]), RET_KILL_PROCESS);

    // Two conditions on one argument: either matches (runc's rule).
    let filter = custom(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 1, "value": 15, "op": "SCMP_CMP_EQ"},
                                   {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    for abi in [Abi::X86_64, Abi::X86] {
        let check = Check(&filter, abi);
        assert_eq!(check.call("kill", &[1, 15]), RET_ALLOW);
        assert_eq!(check.call("kill", &[1, 9]), RET_ALLOW);
        assert_eq!(check.call("kill", &[1, 2]), EPERM);
    }

    // A conditional rule is tried before the syscall's unconditional one.
    let filter = custom(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                          "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    let x86_64 = Check(&filter, Abi::X86_64);
    assert_eq!(x86_64.call("write", &[1]), RET_ALLOW);
    assert_eq!(x86_64.call("write", &[2]), RET_ERRNO | 5);

    // No default action and no rules: seccomp off, as in Docker.
    let off = Profile::parse(b"{}").unwrap();
    assert_eq!(compile(&off, &host(Host::X86_64), &[]).unwrap(), None);
}

#[test]
fn comparisons_are_unsigned_64_bit() {
    let values = [
        0u64,
        1,
        2,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0002,
        0x2_0000_0001,
        u64::MAX,
    ];
    let ops = [
        Op::Equal,
        Op::NotEqual,
        Op::Less,
        Op::LessOrEqual,
        Op::Greater,
        Op::GreaterOrEqual,
        Op::MaskedEqual,
    ];
    for op in ops {
        for value in values {
            let rule = super::profile::SyscallRule {
                names: vec!["ioctl".into()],
                args: vec![ArgCondition {
                    index: 2,
                    value,
                    value_two: value & 0x1_0000_0001,
                    op,
                }],
                ..Default::default()
            };
            let profile = Profile {
                default_action: Some(super::profile::Action::Errno),
                syscalls: vec![rule],
                ..Profile::default()
            };
            let filter = compile(&profile, &host(Host::X86_64), &[])
                .unwrap()
                .unwrap();
            for arg in values {
                let holds = match op {
                    Op::Equal => arg == value,
                    Op::NotEqual => arg != value,
                    Op::Less => arg < value,
                    Op::LessOrEqual => arg <= value,
                    Op::Greater => arg > value,
                    Op::GreaterOrEqual => arg >= value,
                    Op::MaskedEqual => arg & value == value & 0x1_0000_0001,
                };
                let expected = if holds { RET_ALLOW } else { EPERM };
                let got = Check(&filter, Abi::X86_64).call("ioctl", &[0, 0, arg]);
                assert_eq!(got, expected, "{op:?} {arg:#x} against {value:#x}");
            }
        }
    }
}
