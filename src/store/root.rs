//! Choosing the store root: `--root` > `$KILN_ROOT` > `/var/lib/kiln` (root) >
//! `$XDG_DATA_HOME/kiln` > `~/.local/share/kiln`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Result, StoreError};

const SYSTEM_ROOT: &str = "/var/lib/kiln";

/// Everything root selection looks at, so it can be tested without touching the process.
#[derive(Debug, Clone, Default)]
pub struct RootSources {
    pub cli_root: Option<PathBuf>,
    pub kiln_root_env: Option<OsString>,
    pub euid_is_root: bool,
    pub xdg_data_home: Option<OsString>,
    pub home: Option<OsString>,
}

impl RootSources {
    /// The sources of the running process, with `--root` if given.
    pub fn from_process(cli_root: Option<&Path>) -> RootSources {
        RootSources {
            cli_root: cli_root.map(Path::to_path_buf),
            kiln_root_env: std::env::var_os("KILN_ROOT"),
            euid_is_root: crate::sys::is_root(),
            xdg_data_home: std::env::var_os("XDG_DATA_HOME"),
            home: std::env::var_os("HOME"),
        }
    }
}

/// The store root for this process.
pub fn select_root(cli_root: Option<&Path>) -> Result<PathBuf> {
    select_root_from(&RootSources::from_process(cli_root)).ok_or(StoreError::NoRoot)
}

/// The store root for `sources`; empty variables count as unset, and a relative
/// `XDG_DATA_HOME` is ignored as the XDG spec requires.
pub fn select_root_from(sources: &RootSources) -> Option<PathBuf> {
    let non_empty = |v: &Option<OsString>| v.as_ref().filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = &sources.cli_root {
        return Some(root.clone());
    }
    if let Some(root) = non_empty(&sources.kiln_root_env) {
        return Some(root);
    }
    if sources.euid_is_root {
        return Some(PathBuf::from(SYSTEM_ROOT));
    }
    if let Some(data) = non_empty(&sources.xdg_data_home).filter(|p| p.is_absolute()) {
        return Some(data.join("kiln"));
    }
    non_empty(&sources.home).map(|home| home.join(".local/share/kiln"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(
        cli: Option<&str>,
        env: Option<&str>,
        root: bool,
        xdg: Option<&str>,
        home: Option<&str>,
    ) -> RootSources {
        RootSources {
            cli_root: cli.map(PathBuf::from),
            kiln_root_env: env.map(OsString::from),
            euid_is_root: root,
            xdg_data_home: xdg.map(OsString::from),
            home: home.map(OsString::from),
        }
    }

    #[test]
    fn precedence() {
        let cases = [
            (
                sources(Some("/cli"), Some("/env"), true, Some("/x"), Some("/h")),
                Some("/cli"),
            ),
            (
                sources(None, Some("/env"), true, Some("/x"), Some("/h")),
                Some("/env"),
            ),
            (
                sources(None, Some(""), true, Some("/x"), Some("/h")),
                Some("/var/lib/kiln"),
            ),
            (
                sources(None, None, false, Some("/x"), Some("/h")),
                Some("/x/kiln"),
            ),
            (
                sources(None, None, false, Some("rel"), Some("/h")),
                Some("/h/.local/share/kiln"),
            ),
            (
                sources(None, None, false, None, Some("/h")),
                Some("/h/.local/share/kiln"),
            ),
            (sources(None, None, false, None, None), None),
        ];
        for (sources, expected) in cases {
            assert_eq!(
                select_root_from(&sources),
                expected.map(PathBuf::from),
                "{sources:?}"
            );
        }
    }
}
