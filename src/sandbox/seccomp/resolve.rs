//! A profile made concrete for one container on this host, as Docker and runc do it: the
//! architectures it covers, the rules whose conditions (capabilities, architecture,
//! kernel) hold, and per ABI the outcome of each syscall number.
//!
//! runc's rules kept: syscall names an ABI lacks are skipped; a rule whose action is the
//! default action is dropped; a rule with several conditions on one argument becomes one
//! rule per condition (any of them matches); numbers above the newest syscall the profile
//! names return ENOSYS unless the default allows, so a libc newer than the profile falls
//! back instead of failing. For one syscall, rules with argument conditions are tried in
//! the profile's order before its unconditional rule (the most restrictive one if several
//! disagree); nothing matching, the default action.

use super::super::capability;
use super::super::error::SeccompError;
use super::bpf::{
    Abi, AbiTable, Guarded, Outcome, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD,
    RET_LOG, RET_TRACE, RET_TRAP,
};
use super::profile::{Action, Arch, ArgCondition, Profile, RuleFilter};
use super::syscalls::{self, Numbers};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The machine the filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub native: Abi,
    /// The native architecture as Go (and so a profile's `arches`) names it.
    pub go_arch: &'static str,
    /// The other ABIs its processes may use.
    pub compatible: &'static [Abi],
    /// The kernel's version and major revision, for `minKernel`.
    pub kernel: Option<(u32, u32)>,
}

impl Host {
    pub const X86_64: Host = Host {
        native: Abi::X86_64,
        go_arch: "amd64",
        compatible: &[Abi::X86, Abi::X32],
        kernel: None,
    };
    pub const AARCH64: Host = Host {
        native: Abi::Aarch64,
        go_arch: "arm64",
        compatible: &[Abi::Arm],
        kernel: None,
    };

    /// This machine.
    pub fn current() -> Result<Host, SeccompError> {
        let host = match std::env::consts::ARCH {
            "x86_64" => Host::X86_64,
            "aarch64" => Host::AARCH64,
            other => return Err(SeccompError::UnsupportedHost(other)),
        };
        Ok(Host {
            kernel: crate::sys::seccomp::kernel_version(),
            ..host
        })
    }
}

/// The `SECCOMP_RET_*` value of `action` (`errno` for ERRNO and TRACE; EPERM if none).
pub fn ret(action: Action, errno: Option<u32>) -> u32 {
    let data = errno.unwrap_or(EPERM) & 0xffff;
    match action {
        Action::Kill | Action::KillThread => RET_KILL_THREAD,
        Action::KillProcess => RET_KILL_PROCESS,
        Action::Trap => RET_TRAP,
        Action::Errno => RET_ERRNO | data,
        Action::Trace => RET_TRACE | data,
        Action::Log => RET_LOG,
        // Refused by `Profile::check`; a filter that allows nothing it should not.
        Action::Allow | Action::Notify => RET_ALLOW,
    }
}

/// The kernel's precedence: the lower the action's signed value, the stronger.
fn strongest(a: u32, b: u32) -> u32 {
    if ((a & 0xffff_0000) as i32) <= ((b & 0xffff_0000) as i32) {
        a
    } else {
        b
    }
}

/// One rule as the filter applies it, its syscalls looked up (unknown names dropped).
struct Rule {
    syscalls: Vec<&'static Numbers>,
    conditions: Vec<ArgCondition>,
    ret: u32,
}

/// The tables of `profile` for a container keeping `capabilities` on `host`; `None`
/// when the profile disables seccomp (no default action and no rules, as in Docker).
pub fn tables(
    profile: &Profile,
    host: &Host,
    capabilities: &[u32],
) -> Result<Option<Vec<AbiTable>>, SeccompError> {
    profile.check()?;
    let Some(default_action) = profile.default_action else {
        return Ok(None);
    };
    let default = ret(default_action, profile.default_errno_ret);
    let mut rules = Vec::new();
    for rule in &profile.syscalls {
        let applies = match (&rule.includes, &rule.excludes) {
            (Some(includes), _) if !included(includes, host, capabilities)? => false,
            (_, Some(excludes)) if excluded(excludes, host, capabilities)? => false,
            _ => true,
        };
        if !applies {
            continue;
        }
        let syscalls: Vec<&'static Numbers> = match &rule.name {
            Some(name) => syscalls::lookup(name).into_iter().collect(),
            None => rule
                .names
                .iter()
                .filter_map(|n| syscalls::lookup(n))
                .collect(),
        };
        let ret = ret(rule.action, rule.errno_ret);
        let repeated = (0..6).any(|i| rule.args.iter().filter(|a| a.index == i).count() > 1);
        if repeated {
            for condition in &rule.args {
                rules.push(Rule {
                    syscalls: syscalls.clone(),
                    conditions: vec![*condition],
                    ret,
                });
            }
        } else {
            rules.push(Rule {
                syscalls,
                conditions: rule.args.clone(),
                ret,
            });
        }
    }
    let enosys_past_newest = !matches!(default_action, Action::Allow | Action::Log);
    Ok(Some(
        abis(profile, host)
            .into_iter()
            .map(|abi| table(abi, &rules, default, enosys_past_newest))
            .collect(),
    ))
}

/// The native ABI, and those of `architectures` (or of the native entry of `archMap`)
/// that this host's processes can use.
fn abis(profile: &Profile, host: &Host) -> Vec<Abi> {
    let native_arch = match host.native {
        Abi::Aarch64 => Arch::Aarch64,
        _ => Arch::X86_64,
    };
    let listed: Vec<Arch> = match profile
        .arch_map
        .iter()
        .find(|entry| entry.architecture == native_arch)
    {
        Some(entry) => entry.sub_architectures.clone(),
        None => profile.architectures.clone(),
    };
    let mut abis = vec![host.native];
    for arch in listed {
        let abi = match arch {
            Arch::X86 => Abi::X86,
            Arch::X32 => Abi::X32,
            Arch::Arm => Abi::Arm,
            Arch::X86_64 | Arch::Aarch64 | Arch::Foreign => continue,
        };
        if host.compatible.contains(&abi) && !abis.contains(&abi) {
            abis.push(abi);
        }
    }
    abis
}

fn has_cap(capabilities: &[u32], name: &str) -> bool {
    capability::number(name).is_some_and(|n| capabilities.contains(&n))
}

fn kernel_at_least(host: &Host, filter: &RuleFilter) -> Result<Option<bool>, SeccompError> {
    let Some(min) = filter.min_kernel else {
        return Ok(None);
    };
    let kernel = host.kernel.ok_or_else(|| {
        SeccompError::Invalid("the kernel version, which minKernel needs, is unknown".into())
    })?;
    Ok(Some(kernel >= (min.0, min.1)))
}

/// Docker's `includes`: every condition given holds.
fn included(filter: &RuleFilter, host: &Host, capabilities: &[u32]) -> Result<bool, SeccompError> {
    Ok(
        (filter.arches.is_empty() || filter.arches.iter().any(|a| a == host.go_arch))
            && filter.caps.iter().all(|c| has_cap(capabilities, c))
            && kernel_at_least(host, filter)? != Some(false),
    )
}

/// Docker's `excludes`: any condition given holds.
fn excluded(filter: &RuleFilter, host: &Host, capabilities: &[u32]) -> Result<bool, SeccompError> {
    Ok(filter.arches.iter().any(|a| a == host.go_arch)
        || filter.caps.iter().any(|c| has_cap(capabilities, c))
        || kernel_at_least(host, filter)? == Some(true))
}

/// The outcome of each syscall of `abi` the rules name.
fn table(abi: Abi, rules: &[Rule], default: u32, enosys_past_newest: bool) -> AbiTable {
    // (number, rule index): sorted, each number's rules stay in the profile's order.
    let mut hits: Vec<(u32, usize)> = Vec::new();
    let mut newest = None;
    for (index, rule) in rules.iter().enumerate() {
        for number in rule.syscalls.iter().filter_map(|numbers| abi.pick(numbers)) {
            newest = newest.max(Some(number));
            if rule.ret != default {
                hits.push((number, index));
            }
        }
    }
    hits.sort_unstable();
    let syscalls = hits
        .chunk_by(|a, b| a.0 == b.0)
        .map(|hits| {
            let rules = hits.iter().map(|(_, index)| &rules[*index]);
            (hits[0].0, outcome(rules, default))
        })
        .collect();
    AbiTable {
        abi,
        syscalls,
        default,
        past_newest: newest
            .filter(|_| enosys_past_newest)
            .map(|n| (n, RET_ERRNO | ENOSYS)),
    }
}

/// What one syscall returns under its `rules`.
fn outcome<'a>(rules: impl Iterator<Item = &'a Rule>, default: u32) -> Outcome {
    let mut unconditional = None;
    let mut guarded = Vec::new();
    for rule in rules {
        if rule.conditions.is_empty() {
            unconditional = Some(unconditional.map_or(rule.ret, |ret| strongest(ret, rule.ret)));
        } else {
            guarded.push(Guarded {
                conditions: rule.conditions.clone(),
                ret: rule.ret,
            });
        }
    }
    let otherwise = unconditional.unwrap_or(default);
    if guarded.is_empty() {
        Outcome::Return(otherwise)
    } else {
        Outcome::Guarded {
            rules: guarded,
            otherwise,
        }
    }
}
