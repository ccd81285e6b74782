//! `--chown` and WORKDIR owners: `user`, `user:group`, `uid:gid`, `:group`, with names looked
//! up in the destination root's `/etc/passwd` and `/etc/group` (BuildKit's `readUser`).

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use super::error::{Error, Result};
use super::resolve::resolve;

/// A numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// Resolves `spec` against the root filesystem at `root` (`None`: no root to read names
/// from, so only numeric ids work). An empty spec is root.
///
/// As BuildKit's `readUser` (solver/llbsolver/ops/user_linux.go): a numeric user without a
/// group gets `gid = uid`; a user name without a group gets the user's primary group from
/// `/etc/passwd`; `:group` leaves the user root. A name the root's files lack (or a root
/// without them) is no error: an unknown user is 0:0, an unknown group leaves the gid as
/// the user part gave it. Only without a root at all (scratch) does a name fail, as
/// BuildKit's "invalid missing user mount".
pub fn resolve_owner(spec: &str, root: Option<&Path>) -> Result<Owner> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let mut owner = Owner::ROOT;
    if !user.is_empty() {
        if let Ok(uid) = user.parse::<u32>() {
            owner = Owner { uid, gid: uid };
        } else {
            let root = root.ok_or_else(|| Error::UnknownUser {
                name: user.to_string(),
            })?;
            if let Some((uid, gid)) =
                read_db(root, "/etc/passwd").and_then(|text| lookup(&text, user, 2, Some(3)))
            {
                owner = Owner {
                    uid,
                    gid: gid.unwrap_or(0),
                };
            }
        }
    }
    if let Some(group) = group {
        match group.parse::<u32>() {
            Ok(gid) => owner.gid = gid,
            Err(_) => {
                let root = root.ok_or_else(|| Error::UnknownGroup {
                    name: group.to_string(),
                })?;
                if let Some((gid, _)) =
                    read_db(root, "/etc/group").and_then(|text| lookup(&text, group, 2, None))
                {
                    owner.gid = gid;
                }
            }
        }
    }
    Ok(owner)
}

fn read_db(root: &Path, path: &str) -> Option<String> {
    let resolved = resolve(root, OsStr::new(path), true).ok()?;
    let bytes = fs::read(resolved.host).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The numeric fields `id_field` (and `second`) of the first line whose name is `name`.
fn lookup(
    text: &str,
    name: &str,
    id_field: usize,
    second: Option<usize>,
) -> Option<(u32, Option<u32>)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() != Some(&name) {
                return None;
            }
            let id = fields.get(id_field)?.parse().ok()?;
            let second = match second {
                Some(i) => Some(fields.get(i)?.parse().ok()?),
                None => None,
            };
            Some((id, second))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let root = Some(dir.path());
        let o = |uid, gid| Owner { uid, gid };
        assert_eq!(resolve_owner("", root).unwrap(), o(0, 0));
        assert_eq!(resolve_owner("app", root).unwrap(), o(1000, 1001));
        assert_eq!(resolve_owner("app:staff", root).unwrap(), o(1000, 50));
        assert_eq!(resolve_owner("42", None).unwrap(), o(42, 42));
        assert_eq!(resolve_owner("42:7", None).unwrap(), o(42, 7));
        assert_eq!(resolve_owner(":staff", root).unwrap(), o(0, 50));
        assert_eq!(resolve_owner("app:", root).unwrap(), o(1000, 1001));
        // Unknown names: root for a user, the gid left as is for a group (BuildKit).
        assert_eq!(resolve_owner("nobody", root).unwrap(), o(0, 0));
        assert_eq!(resolve_owner("1:wheel", root).unwrap(), o(1, 1));
        assert_eq!(resolve_owner("app:wheel", root).unwrap(), o(1000, 1001));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_owner("app:staff", Some(empty.path())).unwrap(),
            o(0, 0)
        );
        // No root to read names from (scratch) fails.
        assert!(matches!(
            resolve_owner("app", None),
            Err(Error::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_owner("1:wheel", None),
            Err(Error::UnknownGroup { .. })
        ));
    }
}
