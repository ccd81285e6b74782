//! `kiln run --security-opt`, `--cap-add` and `--cap-drop`, read as Docker reads them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ContainerError, Result};
use crate::sandbox::capability;
use crate::sandbox::seccomp::{Profile, Seccomp};

/// What a container's command may do beyond its namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Capability numbers: Docker's default set unless `--cap-add`/`--cap-drop` changed it.
    pub capabilities: Vec<u32>,
    pub seccomp: Seccomp,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
}

impl Default for Security {
    /// Docker's defaults: its capability set and seccomp profile, no_new_privs off.
    fn default() -> Self {
        Security {
            capabilities: capability::default_set(),
            seccomp: Seccomp::Default,
            no_new_privileges: false,
        }
    }
}

/// `--security-opt` values (`seccomp=unconfined|builtin|PROFILE.json`,
/// `no-new-privileges[=BOOL]`, `:` in place of `=` as Docker also takes), `--cap-add` and
/// `--cap-drop`. A profile file is read and checked here.
pub fn parse_security(
    security_opts: &[String],
    cap_add: &[String],
    cap_drop: &[String],
) -> Result<Security> {
    let mut security = Security {
        capabilities: capability::adjust(cap_add, cap_drop)?,
        ..Security::default()
    };
    for opt in security_opts {
        let invalid = || ContainerError::Usage(format!("invalid --security-opt: {opt:?}"));
        let (key, value) = match opt.split_once('=').or_else(|| opt.split_once(':')) {
            Some((key, value)) => (key, Some(value)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", None) => security.no_new_privileges = true,
            ("no-new-privileges", Some(value)) => {
                security.no_new_privileges = parse_bool(value).ok_or_else(invalid)?;
            }
            ("seccomp", Some("unconfined")) => security.seccomp = Seccomp::Unconfined,
            ("seccomp", Some("builtin")) => security.seccomp = Seccomp::Default,
            ("seccomp", Some(file)) if !file.is_empty() => {
                let path = PathBuf::from(file);
                let json =
                    std::fs::read(&path).map_err(|source| ContainerError::SeccompProfileRead {
                        path: path.clone(),
                        source,
                    })?;
                let profile = Profile::parse(&json)
                    .map_err(|source| ContainerError::SeccompProfile { path, source })?;
                security.seccomp = Seccomp::Profile(Box::new(profile));
            }
            ("apparmor" | "label" | "systempaths" | "writable-cgroups", _) => {
                return Err(ContainerError::Usage(format!(
                    "--security-opt {opt:?}: kiln supports seccomp=… and no-new-privileges"
                )));
            }
            _ => return Err(invalid()),
        }
    }
    Ok(security)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn security_opts_as_docker_reads_them() {
        assert_eq!(parse_security(&[], &[], &[]).unwrap(), Security::default());
        let unconfined = parse_security(
            &strings(&["seccomp=unconfined", "no-new-privileges"]),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(unconfined.seccomp, Seccomp::Unconfined);
        assert!(unconfined.no_new_privileges);
        let colon = parse_security(
            &strings(&["seccomp:unconfined", "no-new-privileges:false"]),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(colon.seccomp, Seccomp::Unconfined);
        assert!(!colon.no_new_privileges);
        for bad in [
            "seccomp",
            "seccomp=",
            "no-new-privileges=maybe",
            "nope=1",
            "apparmor=x",
        ] {
            assert!(
                parse_security(&strings(&[bad]), &[], &[]).is_err(),
                "{bad} was accepted"
            );
        }
        let caps = parse_security(&[], &strings(&["NET_ADMIN"]), &strings(&["chown"])).unwrap();
        assert!(caps.capabilities.contains(&12));
        assert!(!caps.capabilities.contains(&0));
        assert!(parse_security(&[], &strings(&["FLY"]), &[]).is_err());
    }

    #[test]
    fn profile_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let opt = format!("seccomp={}", good.display());
        let security = parse_security(&[opt], &[], &[]).unwrap();
        assert!(matches!(security.seccomp, Seccomp::Profile(_)));

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).unwrap();
        let error = parse_security(&[format!("seccomp={}", bad.display())], &[], &[])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("decoding seccomp profile ("), "{error}");
        assert!(error.contains("SCMP_ACT_SOMETIMES"), "{error}");

        let missing = dir.path().join("missing.json");
        let error = parse_security(&[format!("seccomp={}", missing.display())], &[], &[])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("opening seccomp profile ("), "{error}");
    }
}
