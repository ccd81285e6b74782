//! Seccomp profiles in Docker's JSON format (`docker run --security-opt seccomp=FILE`):
//! the runtime spec's `LinuxSeccomp` with Docker's `archMap` and rules that apply only
//! with (or without) some capabilities, architectures or kernel versions.

use serde::{Deserialize, Deserializer, Serialize};

use super::super::error::SeccompError;

/// The largest errno the kernel passes on (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// A profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What a syscall no rule matches gets. With no rules either, the profile disables
    /// seccomp (as in Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
    /// The errno of an `SCMP_ACT_ERRNO` (or `SCMP_ACT_TRACE`) default; EPERM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures the filter covers besides the native one.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub architectures: Vec<Arch>,
    /// Docker's alternative: the entry of the native architecture names its sub-architectures.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arch_map: Vec<ArchMapEntry>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub flags: Vec<Flag>,
    /// A seccomp agent's socket (`SCMP_ACT_NOTIFY`); refused: kiln has no agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub syscalls: Vec<SyscallRule>,
}

/// A `SCMP_ACT_*` action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// libseccomp's name for killing the thread.
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    #[default]
    Allow,
    /// Hands the syscall to a seccomp agent; refused.
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// A `SCMP_ARCH_*` architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Arch {
    #[serde(rename = "SCMP_ARCH_X86")]
    X86,
    #[serde(rename = "SCMP_ARCH_X86_64")]
    X86_64,
    #[serde(rename = "SCMP_ARCH_X32")]
    X32,
    #[serde(rename = "SCMP_ARCH_ARM")]
    Arm,
    #[serde(rename = "SCMP_ARCH_AARCH64")]
    Aarch64,
    /// Architectures no x86_64 or aarch64 process runs as: accepted, never matched.
    #[serde(
        rename = "SCMP_ARCH_MIPS",
        alias = "SCMP_ARCH_MIPS64",
        alias = "SCMP_ARCH_MIPS64N32",
        alias = "SCMP_ARCH_MIPSEL",
        alias = "SCMP_ARCH_MIPSEL64",
        alias = "SCMP_ARCH_MIPSEL64N32",
        alias = "SCMP_ARCH_PPC",
        alias = "SCMP_ARCH_PPC64",
        alias = "SCMP_ARCH_PPC64LE",
        alias = "SCMP_ARCH_S390",
        alias = "SCMP_ARCH_S390X",
        alias = "SCMP_ARCH_PARISC",
        alias = "SCMP_ARCH_PARISC64",
        alias = "SCMP_ARCH_RISCV64",
        alias = "SCMP_ARCH_LOONGARCH64",
        alias = "SCMP_ARCH_M68K",
        alias = "SCMP_ARCH_SH",
        alias = "SCMP_ARCH_SHEB"
    )]
    Foreign,
}

/// An `archMap` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMapEntry {
    pub architecture: Arch,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sub_architectures: Vec<Arch>,
}

/// A `SECCOMP_FILTER_FLAG_*` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::enum_variant_names)]
pub enum Flag {
    /// Synchronises the other threads; the command is single-threaded when the filter is
    /// installed, so this changes nothing.
    #[serde(rename = "SECCOMP_FILTER_FLAG_TSYNC")]
    Tsync,
    #[serde(rename = "SECCOMP_FILTER_FLAG_LOG")]
    Log,
    #[serde(rename = "SECCOMP_FILTER_FLAG_SPEC_ALLOW")]
    SpecAllow,
    /// Only meaningful with a seccomp agent; refused.
    #[serde(rename = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")]
    WaitKillableRecv,
}

/// One rule: `action` for the syscalls `names` when every argument condition holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// Docker's older spelling of a one-name rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub names: Vec<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub args: Vec<ArgCondition>,
    /// The rule applies only when all of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<RuleFilter>,
    /// The rule does not apply when any of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<RuleFilter>,
}

/// A comparison of syscall argument `index` (0–5) with `value` (`MASKED_EQ`: the
/// argument masked with `value` equals `value_two`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgCondition {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

/// A `SCMP_CMP_*` comparison (unsigned, 64-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    Less,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterOrEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    Greater,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

/// Docker's conditions on a rule: capabilities of the container (`CAP_SYS_ADMIN`),
/// the native architecture as Go names it (`amd64`, `arm64`), the kernel version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFilter {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<KernelVersion>,
}

/// `"<kernel>.<major>"`, e.g. `"4.8"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KernelVersion(pub u32, pub u32);

impl TryFrom<String> for KernelVersion {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let invalid = || format!("invalid kernel version {text:?}, expected \"<kernel>.<major>\"");
        let (kernel, major) = text.split_once('.').ok_or_else(invalid)?;
        let version = KernelVersion(
            kernel.parse().map_err(|_| invalid())?,
            major.parse().map_err(|_| invalid())?,
        );
        if version == KernelVersion(0, 0) {
            return Err(invalid());
        }
        Ok(version)
    }
}

impl From<KernelVersion> for String {
    fn from(version: KernelVersion) -> String {
        format!("{}.{}", version.0, version.1)
    }
}

/// Go's JSON reads `null` as an empty list; so do we.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

impl Profile {
    /// Reads a profile in Docker's JSON format and checks it (see [`Profile::check`]).
    pub fn parse(json: &[u8]) -> Result<Profile, SeccompError> {
        let profile: Profile = serde_json::from_slice(json)?;
        profile.check()?;
        Ok(profile)
    }

    /// What Docker and runc refuse, and what kiln cannot do (a seccomp agent), whatever
    /// the capabilities: `name` with `names`, `architectures` with `archMap`, rules
    /// without syscalls, argument indexes past 5, rules but no default action.
    pub fn check(&self) -> Result<(), SeccompError> {
        let invalid = |message: String| Err(SeccompError::Invalid(message));
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return invalid(
                "both 'architectures' and 'archMap' are specified in the seccomp profile, \
                 use either 'architectures' or 'archMap'"
                    .into(),
            );
        }
        if self.default_action.is_none() && !self.syscalls.is_empty() {
            return invalid("the profile has syscall rules but no defaultAction".into());
        }
        if let Some(errno) = self.default_errno_ret.filter(|e| *e > MAX_ERRNO) {
            return invalid(format!("defaultErrnoRet {errno} is not an errno"));
        }
        if self.listener_path.is_some()
            || self.flags.contains(&Flag::WaitKillableRecv)
            || self.default_action == Some(Action::Notify)
        {
            return invalid(
                "SCMP_ACT_NOTIFY needs a seccomp agent, which kiln does not run".into(),
            );
        }
        for rule in &self.syscalls {
            let shown = || rule.name.clone().unwrap_or_else(|| rule.names.join(","));
            if rule.name.is_some() && !rule.names.is_empty() {
                return invalid(
                    "both 'name' and 'names' are specified in the seccomp profile, \
                     use either 'name' or 'names'"
                        .into(),
                );
            }
            if rule.name.is_none() && rule.names.is_empty() {
                return invalid("a syscall rule names no syscall".into());
            }
            if rule.action == Action::Notify {
                return invalid(format!(
                    "{}: SCMP_ACT_NOTIFY needs a seccomp agent, which kiln does not run",
                    shown()
                ));
            }
            if let Some(errno) = rule.errno_ret.filter(|e| *e > MAX_ERRNO) {
                return invalid(format!("{}: errnoRet {errno} is not an errno", shown()));
            }
            if let Some(arg) = rule.args.iter().find(|a| a.index > 5) {
                return invalid(format!(
                    "{}: argument index {} is out of range (syscalls have 6)",
                    shown(),
                    arg.index
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_profiles() {
        let json = br#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null,
                 "comment": "", "includes": {}, "excludes": {}},
                {"name": "clone", "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                           "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "4.8"}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        }"#;
        let profile = Profile::parse(json).unwrap();
        assert_eq!(profile.default_action, Some(Action::Errno));
        assert_eq!(profile.arch_map[1].architecture, Arch::Foreign);
        assert!(profile.arch_map[1].sub_architectures.is_empty());
        assert_eq!(profile.syscalls[1].args[0].op, Op::MaskedEqual);
        assert_eq!(
            profile.syscalls[2].includes.as_ref().unwrap().min_kernel,
            Some(KernelVersion(4, 8))
        );
        assert_eq!(profile.syscalls[3].errno_ret, Some(38));
        // What the spec file carries reads back the same.
        let again: Profile =
            serde_json::from_str(&serde_json::to_string(&profile).unwrap()).unwrap();
        assert_eq!(again, profile);
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let refused = |json: &str| Profile::parse(json.as_bytes()).unwrap_err().to_string();
        assert!(refused("{").contains("EOF"));
        assert!(refused(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).contains("SCMP_ACT_MAYBE"));
        assert!(
            refused(
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
            )
            .contains("use either 'architectures' or 'archMap'")
        );
        assert!(
            refused(
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a",
                "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#
            )
            .contains("use either 'name' or 'names'")
        );
        assert!(
            refused(
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1,
                "op": "SCMP_CMP_EQ"}]}]}"#
            )
            .contains("argument index 6")
        );
        assert!(
            refused(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}"#)
                .contains("no defaultAction")
        );
        assert!(
            refused(
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_NOTIFY"}]}"#
            )
            .contains("seccomp agent")
        );
        assert!(
            refused(
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#
            )
            .contains("invalid kernel version")
        );
    }
}
