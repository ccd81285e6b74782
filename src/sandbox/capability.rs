//! Linux capabilities by Docker's names, and `--cap-add`/`--cap-drop` applied to Docker's
//! default set as Docker applies them.

use super::error::CapabilityError;
use super::spec::DEFAULT_CAPABILITIES;
use crate::sys;

/// Capability names without `CAP_`, indexed by number (linux/capability.h).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The number of the capability `name` as profiles and the bounding set spell it
/// (`CAP_SYS_ADMIN`); `None` for a name this table does not know.
pub fn number(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("CAP_")?;
    NAMES.iter().position(|n| *n == bare).map(|n| n as u32)
}

/// Docker's default set (what a RUN step and `kiln run` get).
pub fn default_set() -> Vec<u32> {
    DEFAULT_CAPABILITIES.iter().map(|(n, _)| *n).collect()
}

/// Every capability both this table and the running kernel know: what `--cap-add ALL`
/// and `RUN --security=insecure` grant.
pub fn all() -> Vec<u32> {
    let last = sys::process::last_capability().min(NAMES.len() as u32 - 1);
    (0..=last).collect()
}

/// `--cap-add` and `--cap-drop` applied to Docker's default set, with Docker's rules:
/// names in any case, with or without `CAP_`; `ALL` among the added gives every
/// capability but the dropped ones; `ALL` among the dropped gives only the added ones.
/// Sorted, without duplicates.
pub fn adjust(add: &[String], drop: &[String]) -> Result<Vec<u32>, CapabilityError> {
    let add = normalize(add)?;
    let drop = normalize(drop)?;
    let mut caps: Vec<u32> = if add.contains(&Named::All) {
        all()
            .into_iter()
            .filter(|c| !drop.contains(&Named::One(*c)))
            .collect()
    } else if drop.contains(&Named::All) {
        add.iter().filter_map(Named::number).collect()
    } else {
        default_set()
            .into_iter()
            .filter(|c| !drop.contains(&Named::One(*c)))
            .chain(add.iter().filter_map(Named::number))
            .collect()
    };
    caps.sort_unstable();
    caps.dedup();
    Ok(caps)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    All,
    One(u32),
}

impl Named {
    fn number(&self) -> Option<u32> {
        match self {
            Named::All => None,
            Named::One(n) => Some(*n),
        }
    }
}

/// Docker's normalisation: upper case, `CAP_` added when missing, `ALL` kept; unknown
/// names and capabilities the kernel lacks are errors.
fn normalize(names: &[String]) -> Result<Vec<Named>, CapabilityError> {
    let last = sys::process::last_capability();
    names
        .iter()
        .map(|given| {
            let upper = given.to_ascii_uppercase();
            if upper == "ALL" {
                return Ok(Named::All);
            }
            let name = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            match number(&name) {
                Some(n) if n <= last => Ok(Named::One(n)),
                Some(_) => Err(CapabilityError::NotSupported(name)),
                None => Err(CapabilityError::Unknown(name)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_round_trip_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("SYS_ADMIN"), None);
        assert_eq!(number("CAP_NOPE"), None);
        for (n, name) in DEFAULT_CAPABILITIES {
            assert_eq!(number(&format!("CAP_{name}")), Some(n), "{name}");
        }
    }

    #[test]
    fn add_and_drop_follow_docker() {
        assert_eq!(adjust(&[], &[]).unwrap(), default_set());
        let with_admin = adjust(&strings(&["sys_admin"]), &strings(&["CAP_NET_RAW"])).unwrap();
        assert!(with_admin.contains(&21));
        assert!(!with_admin.contains(&13));
        assert_eq!(with_admin.len(), default_set().len());
        assert_eq!(
            adjust(&strings(&["chown", "KILL"]), &strings(&["all"])).unwrap(),
            vec![0, 5]
        );
        let everything = adjust(&strings(&["ALL"]), &strings(&["MKNOD"])).unwrap();
        assert_eq!(everything.len(), all().len() - 1);
        assert!(!everything.contains(&27));
        assert_eq!(adjust(&[], &strings(&["ALL"])).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn unknown_names_are_errors() {
        let error = adjust(&strings(&["FLY"]), &[]).unwrap_err();
        assert_eq!(error.to_string(), "unknown capability: \"CAP_FLY\"");
        assert!(adjust(&[], &strings(&["CAP_"])).is_err());
    }
}
