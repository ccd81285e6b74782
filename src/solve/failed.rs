//! A RUN step that failed, kept so it can be reopened (`kiln build --on-error=shell`,
//! `kiln debug`): the overlay upper as the command left it, and the sandbox spec it ran
//! with (filesystem below, mounts, environment, user, working directory).
//!
//! The step's staging directory is renamed aside (`snapshots-v1/tmp-build-failed-*`, so a
//! prune collects it if nobody claims it); the build then moves it into its record. Secret
//! and SSH mounts are never kept: their files and variables are left out and listed in
//! [`FailedStep::omitted`].
//!
//! A reopened step runs over a throwaway upper stacked on the kept one, so nothing a debug
//! session does reaches the kept state, a layer or the cache.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Result, SolveError, unique_suffix};
use crate::sandbox::{Rootfs, Sandbox, SpawnOptions, Spec, StdioMode, StepMount};
use crate::store::Store;

/// The description of a kept step, in its directory.
pub const STATE_FILE: &str = "step.json";
/// The command's overlay upper, inside the kept directory.
const UPPER: &str = "ov/upper";

/// What a kept failed step is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedStep {
    /// The step's name as progress showed it (`[2/3] RUN make`).
    pub name: String,
    /// The spec the command ran with. Relative paths are inside the kept directory.
    pub spec: Spec,
    /// Mounts that were not kept (`secret token at /run/secrets/token`).
    pub omitted: Vec<String>,
}

impl FailedStep {
    /// Reads the description in `dir`.
    pub fn load(dir: &Path) -> Result<FailedStep> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(SolveError::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| SolveError::Decode {
            what: "the failed step's state",
            path,
            source,
        })
    }
}

/// Keeps the failed step of `staging`: renames it aside and writes its description.
/// `private` lists the destinations of secret and SSH binds, which are left out (the
/// caller has already removed their files). Returns the kept directory.
pub(super) fn keep(
    store: &Store,
    name: &str,
    spec: &Spec,
    staging: &Path,
    omitted: Vec<(String, String)>,
) -> Result<PathBuf> {
    let kept = store
        .snapshots_dir()
        .join(format!("tmp-build-failed-{}", unique_suffix()));
    std::fs::rename(staging, &kept).map_err(SolveError::io("rename", staging))?;
    // The environment may hold proxy credentials: the kept step is its owner's alone.
    std::fs::set_permissions(&kept, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(SolveError::io("chmod", &kept))?;
    // The overlay's work directory is of no use once unmounted.
    let _ = crate::snapshot::overlay::remove(&kept.join("ov/work"));
    let mut spec = spec.clone();
    let relative = |path: &Path| match path.strip_prefix(staging) {
        Ok(inside) => inside.to_path_buf(),
        Err(_) => path.to_path_buf(),
    };
    if let Rootfs::Overlay { upper, work, .. } = &mut spec.rootfs {
        *upper = relative(upper);
        *work = relative(work);
    }
    let private: Vec<&str> = omitted.iter().map(|(target, _)| target.as_str()).collect();
    spec.mounts
        .retain(|m| !private.contains(&m.destination.as_str()));
    for mount in &mut spec.mounts {
        mount.source = relative(&mount.source);
    }
    for mount in &mut spec.step_mounts {
        match mount {
            StepMount::Within { root, .. } => *root = relative(root),
            StepMount::Overlay { lowers, upper, .. } => {
                for lower in lowers {
                    *lower = relative(lower);
                }
                if let Some((upper, work)) = upper {
                    *upper = relative(upper);
                    *work = relative(work);
                }
            }
            StepMount::Tmpfs { .. } => {}
        }
    }
    let state = FailedStep {
        name: name.to_string(),
        spec,
        omitted: omitted.into_iter().map(|(_, what)| what).collect(),
    };
    let path = kept.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(&state).map_err(|source| SolveError::Encode {
        what: "the failed step's state",
        source,
    })?;
    std::fs::write(&path, json).map_err(SolveError::io("write", &path))?;
    Ok(kept)
}

/// Runs `argv` (default: `/bin/sh`) in the failed step kept in `dir`, on the caller's
/// terminal, over a throwaway upper in the store that is removed afterwards. Returns
/// the command's exit code. The store's lease is held meanwhile, so no prune takes the
/// layers underneath.
pub async fn reopen(store: &Store, dir: &Path, argv: Option<Vec<String>>) -> Result<i32> {
    let state = FailedStep::load(dir)?;
    let _lease = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.lease()).await??
    };
    let session = store
        .snapshots_dir()
        .join(format!("tmp-build-debug-{}", unique_suffix()));
    let outcome = run_session(&state, dir, &session, argv).await;
    let _ = crate::snapshot::overlay::remove(&session);
    outcome
}

async fn run_session(
    state: &FailedStep,
    dir: &Path,
    session: &Path,
    argv: Option<Vec<String>>,
) -> Result<i32> {
    let mut spec = session_spec(state, dir, session)?;
    if let Some(argv) = argv {
        spec.process.argv = argv;
    }
    let options = SpawnOptions {
        stdio: StdioMode::Inherit,
        ..SpawnOptions::default()
    };
    let mut running = Sandbox::spawn(&spec, &options).map_err(SolveError::DebugSandbox)?;
    let status = running.wait().await.map_err(SolveError::DebugSandbox)?;
    if let Some(reason) = status.setup_error {
        return Err(SolveError::DebugSetup { reason });
    }
    Ok(status.code)
}

/// The kept spec made runnable: the kept upper as the top lower, a fresh upper and work
/// directory (and fresh ones for writable bind overlays) under `session`, and `/bin/sh`.
fn session_spec(state: &FailedStep, dir: &Path, session: &Path) -> Result<Spec> {
    let mut spec = state.spec.clone();
    let inside = |path: &Path| {
        if path.is_relative() {
            dir.join(path)
        } else {
            path.to_path_buf()
        }
    };
    let fresh = |name: &str| -> Result<(PathBuf, PathBuf)> {
        let (upper, work) = (
            session.join(name).join("upper"),
            session.join(name).join("work"),
        );
        for path in [&upper, &work] {
            std::fs::create_dir_all(path).map_err(SolveError::io("create", path))?;
        }
        Ok((upper, work))
    };
    let Rootfs::Overlay { lowers, .. } = &spec.rootfs else {
        return Err(SolveError::FailedStepGone {
            path: dir.to_path_buf(),
            what: "an overlay root".into(),
        });
    };
    let mut all_lowers = vec![dir.join(UPPER)];
    all_lowers.extend(lowers.iter().cloned());
    for lower in &all_lowers {
        if !lower.is_dir() {
            return Err(SolveError::FailedStepGone {
                path: dir.to_path_buf(),
                what: format!("layer {} (pruned since the build?)", lower.display()),
            });
        }
    }
    let (upper, work) = fresh("root")?;
    spec.rootfs = Rootfs::Overlay {
        lowers: all_lowers,
        upper,
        work,
    };
    // Writable binds from outside the kept step (cache mounts) get a throwaway upper of
    // their own: a session must not change what later builds find there.
    let (outside, kept_binds): (Vec<_>, Vec<_>) = std::mem::take(&mut spec.mounts)
        .into_iter()
        .partition(|m| !m.readonly && m.source.is_absolute() && m.source.is_dir());
    spec.mounts = kept_binds;
    for mount in &mut spec.mounts {
        mount.source = inside(&mount.source);
    }
    for (number, mount) in spec.step_mounts.iter_mut().enumerate() {
        match mount {
            StepMount::Within { root, .. } => *root = inside(root),
            StepMount::Overlay { lowers, upper, .. } => {
                for lower in lowers.iter_mut() {
                    *lower = inside(lower);
                }
                if upper.is_some() {
                    *upper = Some(fresh(&format!("mount-{number}"))?);
                }
            }
            StepMount::Tmpfs { .. } => {}
        }
    }
    for (number, bind) in outside.into_iter().enumerate() {
        // The overlay's root takes the upper's owner and mode: the mount's own.
        let (upper, work) = fresh(&format!("bind-{number}"))?;
        let meta = std::fs::metadata(&bind.source).map_err(SolveError::io("stat", &bind.source))?;
        std::fs::set_permissions(&upper, meta.permissions())
            .map_err(SolveError::io("chmod", &upper))?;
        std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()))
            .map_err(SolveError::io("chown", &upper))?;
        spec.step_mounts.push(StepMount::Overlay {
            lowers: vec![bind.source],
            upper: Some((upper, work)),
            path: "/".into(),
            destination: bind.destination,
        });
    }
    spec.process.argv = vec!["/bin/sh".into()];
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::BindMount;

    #[test]
    fn kept_paths_become_relative_and_private_mounts_are_left_out() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let staging = store.snapshots_dir().join("tmp-build-x");
        for dir in ["ov/upper", "ov/work/work", "files"] {
            std::fs::create_dir_all(staging.join(dir)).unwrap();
        }
        let lower = root.path().join("lower");
        std::fs::create_dir_all(&lower).unwrap();
        let mut spec = Spec::new(
            Rootfs::Overlay {
                lowers: vec![lower.clone()],
                upper: staging.join("ov/upper"),
                work: staging.join("ov/work"),
            },
            vec!["false".into()],
        );
        spec.mounts = vec![
            BindMount {
                source: staging.join("files/0"),
                destination: "/script".into(),
                readonly: true,
            },
            BindMount {
                source: "/run/kiln/secrets/x/1".into(),
                destination: "/run/secrets/token".into(),
                readonly: true,
            },
        ];
        let omitted = vec![(
            "/run/secrets/token".to_string(),
            "secret token at /run/secrets/token".to_string(),
        )];
        let kept = keep(&store, "[1/1] RUN false", &spec, &staging, omitted).unwrap();
        assert!(!staging.exists());
        assert!(!kept.join("ov/work").exists(), "the work dir is dropped");
        let state = FailedStep::load(&kept).unwrap();
        assert_eq!(state.spec.mounts.len(), 1);
        assert_eq!(state.spec.mounts[0].source, PathBuf::from("files/0"));
        assert_eq!(state.omitted, ["secret token at /run/secrets/token"]);

        let session = root.path().join("session");
        let reopened = session_spec(&state, &kept, &session).unwrap();
        let Rootfs::Overlay { lowers, upper, .. } = &reopened.rootfs else {
            panic!("an overlay root");
        };
        assert_eq!(lowers, &[kept.join(UPPER), lower.clone()]);
        assert!(upper.starts_with(&session) && upper.is_dir());
        assert_eq!(reopened.mounts[0].source, kept.join("files/0"));
        assert_eq!(reopened.process.argv, ["/bin/sh"]);

        std::fs::remove_dir_all(&lower).unwrap();
        let gone = session_spec(&state, &kept, &session).unwrap_err();
        assert!(gone.to_string().contains("pruned"), "{gone}");
    }
}
