//! Docker's USER against the container's `/etc/passwd` and `/etc/group`:
//! `name`, `uid`, `uid:gid`, `name:group`, `uid:group`, `name:gid`.

use super::error::UserError;

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub supplementary_gids: Vec<u32>,
    /// From passwd when the user is listed there.
    pub home: Option<String>,
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(Group {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `user` with the contents of the container's passwd and group
/// files (empty strings when the files are missing). Numeric ids need no
/// entry; names must exist. Supplementary groups are the groups listing the
/// user by name (only when no group was given explicitly, as Docker does).
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let user = user.trim();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    if group_part == Some("") {
        return Err(UserError::Invalid(user.to_string()));
    }
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|p| p.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|p| p.name == user_part)
                .ok_or_else(|| UserError::UnknownUser(user_part.to_string()))?,
        ),
    };
    let uid = match (&entry, user_part.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(p), Err(_)) => p.uid,
        (None, Err(_)) => return Err(UserError::UnknownUser(user_part.to_string())),
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        },
        None => entry.as_ref().map_or(0, |p| p.gid),
    };
    let mut supplementary_gids = Vec::new();
    if let (None, Some(p)) = (group_part, &entry) {
        for g in group_entries(group) {
            if g.members.contains(&p.name) && g.gid != gid && !supplementary_gids.contains(&g.gid) {
                supplementary_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        supplementary_gids,
        home: entry.map(|p| p.home.to_string()),
    })
}

/// The default PATH of a container (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The final environment: `env` plus PATH and HOME defaults where missing.
pub fn environment(env: &[String], home: Option<&str>) -> Vec<String> {
    let mut out = env.to_vec();
    let has = |key: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    };
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!(
            "HOME={}",
            home.filter(|h| !h.is_empty()).unwrap_or("/")
        ));
    }
    out
}

/// Finds `program` along the `PATH` of `env` (as the container sees it), or
/// takes it as a path when it has a '/'.
pub fn lookup_program(
    program: &str,
    env: &[String],
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    if program.contains('/') {
        return Some(program.to_string());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
        .find(|candidate| exists(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nwheel:x:10:root,app\n";

    #[test]
    fn resolves_every_docker_user_form() {
        let r = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.supplementary_gids.clone()),
            (1000, 1000, vec![50, 10])
        );
        assert_eq!(r.home.as_deref(), Some("/home/app"));
        let r = resolve("1000", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        let r = resolve("1000:1000", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.supplementary_gids.len()), (1000, 1000, 0));
        let r = resolve("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 50));
        let r = resolve("4242:4343", "", "").unwrap();
        assert_eq!((r.uid, r.gid, r.home), (4242, 4343, None));
        let r = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.supplementary_gids), (0, 0, vec![10]));
        assert_eq!(
            resolve("nobody", PASSWD, GROUP),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            resolve("app:nogroup", PASSWD, GROUP),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
        assert!(matches!(
            resolve("app:", PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
    }

    #[test]
    fn environment_gets_path_and_home_defaults() {
        let env = environment(&["A=1".into()], Some("/home/app"));
        assert_eq!(
            env,
            vec![
                "A=1".to_string(),
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/home/app".into()
            ]
        );
        let env = environment(&["PATH=/x".into(), "HOME=/h".into()], Some("/home/app"));
        assert_eq!(env, vec!["PATH=/x".to_string(), "HOME=/h".into()]);
    }

    #[test]
    fn programs_are_looked_up_on_the_containers_path() {
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        assert_eq!(
            lookup_program("sh", &env, |p| p == "/bin/sh").as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(
            lookup_program("./x", &env, |_| false).as_deref(),
            Some("./x")
        );
        assert_eq!(lookup_program("nope", &env, |_| false), None);
    }
}
