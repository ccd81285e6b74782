//! Named volumes: `<root>/volumes-v1/<name>/`, with `_data/` (what containers mount) and
//! `volume.json`. `kiln run -v NAME:/path` creates a missing one and, while it is empty,
//! fills it with the image's content at that path, as Docker does; an image's `VOLUME`s
//! not given a volume get an anonymous one, removed with the container by `rm -v` and
//! `--rm`. Data outlives the containers.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{ContainerError, Result, io_err};
use crate::store::Store;

const DIR: &str = "volumes-v1";
const META: &str = "volume.json";
const DATA: &str = "_data";

/// A volume as `kiln volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for an image's `VOLUME` (named by a random id), not by the user.
    #[serde(default)]
    pub anonymous: bool,
    /// Its data directory on the host.
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

/// Docker's rule for volume names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn volumes_dir(store: &Store) -> PathBuf {
    store.root().join(DIR)
}

/// Creates the volume `name` (a random id when `None`), or returns the one that exists.
pub fn create(
    store: &Store,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
) -> Result<Volume> {
    let anonymous = name.is_none();
    let name = match name {
        Some(name) if valid_name(name) => name.to_string(),
        Some(name) => {
            return Err(ContainerError::Usage(format!(
                "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        None => super::create::new_id()?,
    };
    if let Ok(existing) = get(store, &name) {
        return Ok(existing);
    }
    let root = volumes_dir(store);
    fs::create_dir_all(&root).map_err(io_err("create", &root))?;
    // Made beside and renamed into place: a half-made volume is never seen.
    let building = root.join(format!(".new-{}", crate::store::random_name()));
    let volume = Volume {
        name: name.clone(),
        created: super::now_rfc3339(),
        labels,
        anonymous,
        mountpoint: root.join(&name).join(DATA),
    };
    let made = (|| {
        fs::create_dir_all(building.join(DATA)).map_err(io_err("create", &building))?;
        let meta = building.join(META);
        fs::write(&meta, serde_json::to_vec_pretty(&volume)?).map_err(io_err("write", &meta))?;
        fs::rename(&building, root.join(&name)).map_err(io_err("rename", &building))
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&building);
        // Another process made it meanwhile: theirs is the volume.
        if let Ok(existing) = get(store, &name) {
            return Ok(existing);
        }
    }
    made.map(|()| volume)
}

/// The volume `name`.
pub fn get(store: &Store, name: &str) -> Result<Volume> {
    if !valid_name(name) {
        return Err(ContainerError::NoSuchVolume(name.to_string()));
    }
    let dir = volumes_dir(store).join(name);
    let meta = dir.join(META);
    let bytes = match fs::read(&meta) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ContainerError::NoSuchVolume(name.to_string()));
        }
        Err(e) => return Err(io_err("read", &meta)(e)),
    };
    let mut volume: Volume = serde_json::from_slice(&bytes)?;
    volume.mountpoint = dir.join(DATA);
    Ok(volume)
}

/// Every volume, by name.
pub fn list(store: &Store) -> Result<Vec<Volume>> {
    let root = volumes_dir(store);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", &root)(e)),
    };
    let mut volumes: Vec<Volume> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| get(store, &e.file_name().to_string_lossy()).ok())
        .collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(volumes)
}

/// The names of the containers that mount `volume`.
pub fn users(store: &Store, volume: &Volume) -> Result<Vec<String>> {
    Ok(super::state::list(store)?
        .into_iter()
        .filter(|c| {
            c.config
                .mounts
                .iter()
                .any(|m| m.source == volume.mountpoint)
        })
        .map(|c| c.config.name)
        .collect())
}

/// Removes the volume `name` and its data; a volume a container mounts is refused, as
/// Docker refuses it.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let volume = get(store, name)?;
    let used_by = users(store, &volume)?;
    if let Some(container) = used_by.first() {
        return Err(ContainerError::VolumeInUse {
            name: name.to_string(),
            container: container.clone(),
        });
    }
    let dir = volumes_dir(store).join(name);
    let aside = volumes_dir(store).join(format!(".removing-{}", crate::store::random_name()));
    fs::rename(&dir, &aside).map_err(io_err("rename", &dir))?;
    fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))
}

/// Removes the volumes no container mounts: the anonymous ones, or all with `all`.
/// Returns their names.
pub fn prune(store: &Store, all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for volume in list(store)? {
        if (all || volume.anonymous) && users(store, &volume)?.is_empty() {
            remove(store, &volume.name)?;
            removed.push(volume.name);
        }
    }
    Ok(removed)
}

/// Fills the empty `dest` with the image's content at `path`: the directory as the image's
/// layers (`lowers`, top first, overlay-upper format: whiteouts are 0/0 character devices,
/// opaque directories carry overlay's `opaque` xattr) show it merged.
pub(super) fn copy_up(lowers: &[PathBuf], path: &str, dest: &Path) -> Result<()> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut shown = Vec::new();
    'layers: for layer in lowers {
        // An ancestor hidden or replaced by a file here hides every layer below.
        let mut ancestor = PathBuf::new();
        let mut last = false;
        for component in rel.parent().into_iter().flat_map(|p| p.components()) {
            ancestor.push(component);
            match fs::symlink_metadata(layer.join(&ancestor)) {
                Ok(meta) if meta.is_dir() => last |= is_opaque(&layer.join(&ancestor)),
                Ok(_) => break 'layers,
                Err(_) => {}
            }
        }
        let here = layer.join(rel);
        match fs::symlink_metadata(&here) {
            Ok(meta) if meta.is_dir() => {
                last |= is_opaque(&here);
                shown.push(here);
            }
            Ok(_) => break,
            Err(_) => {}
        }
        if last {
            break;
        }
    }
    for dir in shown.iter().rev() {
        merge(dir, dest)?;
    }
    if let Some(top) = shown.first() {
        copy_attributes(top, dest)?;
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(crate::sys::lgetxattr(dir, name), Ok(Some(v)) if v == b"y"))
}

/// Lays the layer directory `src` over `dest`: whiteouts remove, opaque directories
/// replace, everything else is copied with its owner, mode and mtime.
fn merge(src: &Path, dest: &Path) -> Result<()> {
    for entry in fs::read_dir(src).map_err(io_err("read", src))? {
        let entry = entry.map_err(io_err("read", src))?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let meta = fs::symlink_metadata(&from).map_err(io_err("stat", &from))?;
        let existing = fs::symlink_metadata(&to).ok();
        let replace = |to: &Path| match existing.as_ref() {
            Some(m) if m.is_dir() => fs::remove_dir_all(to).map_err(io_err("remove", to)),
            Some(_) => fs::remove_file(to).map_err(io_err("remove", to)),
            None => Ok(()),
        };
        if crate::sys::is_whiteout(&meta) {
            replace(&to)?;
        } else if meta.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) || is_opaque(&from) {
                replace(&to)?;
            }
            if !to.is_dir() {
                fs::create_dir(&to).map_err(io_err("create", &to))?;
            }
            merge(&from, &to)?;
            copy_attributes(&from, &to)?;
        } else if meta.file_type().is_symlink() {
            replace(&to)?;
            let target = fs::read_link(&from).map_err(io_err("read link", &from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io_err("symlink", &to))?;
            crate::sys::lchown(&to, meta.uid(), meta.gid())?;
        } else if meta.is_file() {
            replace(&to)?;
            fs::copy(&from, &to).map_err(io_err("copy", &from))?;
            copy_attributes(&from, &to)?;
        }
    }
    Ok(())
}

/// `to` gets `from`'s owner, mode and times.
fn copy_attributes(from: &Path, to: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(from).map_err(io_err("stat", from))?;
    crate::sys::lchown(to, meta.uid(), meta.gid())?;
    fs::set_permissions(to, meta.permissions()).map_err(io_err("chmod", to))?;
    let mtime = meta.modified().map_err(io_err("stat", from))?;
    let atime = meta.accessed().map_err(io_err("stat", from))?;
    crate::sys::set_times_nofollow(to, atime, mtime)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("data") && valid_name("a.b_c-1"));
        assert!(!valid_name("a") && !valid_name("-x") && !valid_name("a/b") && !valid_name(".."));
    }

    #[test]
    fn copy_up_merges_the_layers_as_overlay_would() {
        let dir = tempfile::tempdir().unwrap();
        let (bottom, top, dest) = (
            dir.path().join("bottom"),
            dir.path().join("top"),
            dir.path().join("dest"),
        );
        for (layer, files) in [
            (&bottom, vec!["data/kept", "data/gone", "data/sub/deep"]),
            (&top, vec!["data/new"]),
        ] {
            for file in files {
                let path = layer.join(file);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, file).unwrap();
            }
        }
        fs::create_dir_all(&dest).unwrap();
        let whiteout = top.join("data/gone");
        let made = crate::sys::create_whiteout(&whiteout);
        if made.is_err() {
            eprintln!("skipping: whiteouts need root");
            return;
        }
        copy_up(&[top.clone(), bottom.clone()], "/data", &dest).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["kept", "new", "sub"]);
        assert_eq!(
            fs::read_to_string(dest.join("sub/deep")).unwrap(),
            "data/sub/deep"
        );
        // A layer above that replaces the directory by a file hides it all.
        let file_over = dir.path().join("over");
        fs::create_dir_all(&file_over).unwrap();
        fs::write(file_over.join("data"), "file").unwrap();
        let empty = dir.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        copy_up(&[file_over, top, bottom], "/data", &empty).unwrap();
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    }
}
