//! Thin cgroup code: one group per sandbox under `kiln/<id>`, for v1
//! (a hierarchy per controller, as on this machine) and v2 (unified).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Result, SysError};

/// Resource limits of one sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.pids.is_none()
    }
}

/// Created groups (one per v1 controller, or one v2 group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub dirs: Vec<PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| SysError::path("write", path, e))
}

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| SysError::path("mkdir", path, e))
}

impl Cgroup {
    /// Creates `kiln/<id>` under the mounted hierarchies at `root` (normally
    /// `/sys/fs/cgroup`) and writes `limits`. Fails (with the reason) where
    /// the hierarchy is missing or not writable.
    pub fn create(root: &Path, id: &str, limits: CgroupLimits) -> Result<Cgroup> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(SysError::Invalid {
                call: "cgroup create",
                reason: format!("bad group id {id:?}"),
            });
        }
        let mut group = Cgroup { dirs: Vec::new() };
        let result = if root.join("cgroup.controllers").exists() {
            group.create_v2(root, id, limits)
        } else {
            group.create_v1(root, id, limits)
        };
        if let Err(error) = result {
            let _ = group.remove();
            return Err(error);
        }
        Ok(group)
    }

    fn create_v2(&mut self, root: &Path, id: &str, limits: CgroupLimits) -> Result<()> {
        let mut wanted = Vec::new();
        if limits.memory_bytes.is_some() {
            wanted.push("+memory");
        }
        if limits.pids.is_some() {
            wanted.push("+pids");
        }
        let parent = root.join("kiln");
        mkdir(&parent)?;
        if !wanted.is_empty() {
            // The root may already delegate them; an error here shows up below.
            let _ = write(&root.join("cgroup.subtree_control"), &wanted.join(" "));
            write(&parent.join("cgroup.subtree_control"), &wanted.join(" "))?;
        }
        let dir = parent.join(id);
        mkdir(&dir)?;
        self.dirs.push(dir.clone());
        if let Some(bytes) = limits.memory_bytes {
            write(&dir.join("memory.max"), &bytes.to_string())?;
        }
        if let Some(pids) = limits.pids {
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    fn create_v1(&mut self, root: &Path, id: &str, limits: CgroupLimits) -> Result<()> {
        let settings = [
            ("memory", "memory.limit_in_bytes", limits.memory_bytes),
            ("pids", "pids.max", limits.pids),
        ];
        for (controller, file, value) in settings {
            let Some(value) = value else { continue };
            let hierarchy = root.join(controller);
            if !hierarchy.join("cgroup.procs").exists() {
                return Err(SysError::Invalid {
                    call: "cgroup create",
                    reason: format!(
                        "no cgroup v1 {controller} hierarchy at {}",
                        hierarchy.display()
                    ),
                });
            }
            let dir = hierarchy.join("kiln").join(id);
            mkdir(&dir)?;
            self.dirs.push(dir.clone());
            write(&dir.join(file), &value.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes its pid to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Removes the groups (retrying briefly while exiting tasks still count).
    pub fn remove(&self) -> Result<()> {
        for dir in &self.dirs {
            let mut tries = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) => return Err(SysError::path("rmdir", dir, e)),
                }
            }
        }
        Ok(())
    }
}

/// Moves the calling process into the groups whose `cgroup.procs` files are given.
pub fn join(procs_files: &[PathBuf]) -> Result<()> {
    let pid = std::process::id().to_string();
    for file in procs_files {
        write(file, &pid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CgroupLimits = CgroupLimits {
        memory_bytes: Some(1 << 30),
        pids: Some(64),
    };

    #[test]
    fn v2_writes_unified_limits_and_delegates_controllers() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "memory pids").unwrap();
        let group = Cgroup::create(root.path(), "abc", LIMITS).unwrap();
        let dir = root.path().join("kiln/abc");
        assert_eq!(group.dirs, vec![dir.clone()]);
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "1073741824"
        );
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "64");
        let delegated =
            fs::read_to_string(root.path().join("kiln/cgroup.subtree_control")).unwrap();
        assert_eq!(delegated, "+memory +pids");
        assert_eq!(group.procs_files(), vec![dir.join("cgroup.procs")]);
    }

    #[test]
    fn v1_uses_one_hierarchy_per_controller() {
        let root = tempfile::tempdir().unwrap();
        for controller in ["memory", "pids"] {
            fs::create_dir(root.path().join(controller)).unwrap();
            fs::write(root.path().join(controller).join("cgroup.procs"), "").unwrap();
        }
        let group = Cgroup::create(root.path(), "abc", LIMITS).unwrap();
        let memory = root.path().join("memory/kiln/abc");
        let pids = root.path().join("pids/kiln/abc");
        assert_eq!(group.dirs, vec![memory.clone(), pids.clone()]);
        assert_eq!(
            fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap(),
            "1073741824"
        );
        assert_eq!(fs::read_to_string(pids.join("pids.max")).unwrap(), "64");
    }

    #[test]
    fn missing_hierarchies_and_bad_ids_are_errors_that_say_why() {
        let root = tempfile::tempdir().unwrap();
        let error = Cgroup::create(root.path(), "abc", LIMITS).unwrap_err();
        assert!(
            error.to_string().contains("no cgroup v1 memory hierarchy"),
            "{error}"
        );
        assert!(Cgroup::create(root.path(), "../x", LIMITS).is_err());
        assert!(Cgroup::create(root.path(), "", LIMITS).is_err());
    }
}
