//! `ADD <git repository>`: the checkout as a one-layer source,
//! `snapshots-v1/git-<key>/fs`.
//!
//! The ref is resolved on every build (`git ls-remote`, no clone), and the key is what it
//! resolved to with the options that shape the files (BuildKit's `shaToCacheKey`): the
//! commit, and with `.git` kept the object and ref the `.git` records, the subdirectory and
//! whether submodules are skipped. A checkout of that key already stored is used without
//! fetching. Credentials: the `GIT_AUTH_HEADER.<host>`, `GIT_AUTH_TOKEN.<host>` (`<host>` with the port, if any),
//! `GIT_AUTH_HEADER` or `GIT_AUTH_TOKEN` secret (the first given) for an HTTP(S) remote,
//! and the `default` `--ssh` agent for an SSH one.

use std::path::{Path, PathBuf};

use crate::cache;
use crate::solve::scheduler::cancelled;
use crate::solve::step::{Task, end_failed};
use crate::solve::{NodeResult, Result, SolveError, blocking, unique_suffix};
use crate::source::git::{Auth, Git, Request, Resolved};

/// Snapshot directories of checkouts are named `git-<key>`.
pub(in crate::solve) const SNAPSHOT_PREFIX: &str = "git-";

/// Resolves the git source of `task` (see the module docs).
pub(in crate::solve) async fn run(task: &Task, request: Request<'_>) -> Result<NodeResult> {
    let vertex = task.vertex();
    let mut cancel = task.cancel.clone();
    let outcome = tokio::select! {
        outcome = fetch(task, &request) => outcome,
        _ = cancelled(&mut cancel) => Err(SolveError::Cancelled),
    };
    match outcome {
        Ok((key, fs, cached)) => {
            if cached {
                vertex.cached();
            } else {
                vertex.done();
            }
            Ok(NodeResult::source(key, vec![fs]))
        }
        Err(error) => {
            end_failed(vertex, &error);
            Err(error)
        }
    }
}

/// The key, the checkout's `fs` directory and whether it was stored already.
async fn fetch(task: &Task, request: &Request<'_>) -> Result<(String, PathBuf, bool)> {
    let git = Git::new(request.remote, &auth(task, request.remote)?);
    let failed = |e: crate::source::Error| task.step_failed(e.to_string(), e);
    let resolved = git.resolve(request).await.map_err(failed)?;
    let key = snapshot_key(request, &resolved);
    let snapshots = task.shared.store.snapshots_dir();
    let target = snapshots.join(format!("{SNAPSHOT_PREFIX}{key}"));
    if target.join("fs").is_dir() && !task.shared.options.no_cache {
        return Ok((key, target.join("fs"), true));
    }

    let staging = snapshots.join(format!("tmp-git-{}", unique_suffix()));
    let (fs, scratch) = (staging.join("fs"), staging.join("scratch"));
    for dir in [&fs, &scratch] {
        std::fs::create_dir_all(dir).map_err(SolveError::io("create", dir))?;
    }
    let checked_out = git.checkout(request, &resolved, &scratch, &fs).await;
    let finished = match checked_out {
        Ok(()) => {
            let (staging, target) = (staging.clone(), target.clone());
            blocking(move || commit(&staging, &target))
                .await
                .and_then(|r| r)
        }
        Err(error) => Err(failed(error)),
    };
    let _ = std::fs::remove_dir_all(&staging);
    finished.map(|()| (key, target.join("fs"), false))
}

/// Drops the scratch repository and moves the checkout into place, unless an identical
/// one got there first.
fn commit(staging: &Path, target: &Path) -> Result<()> {
    let scratch = staging.join("scratch");
    std::fs::remove_dir_all(&scratch).map_err(SolveError::io("remove", &scratch))?;
    // Another build may have put the same checkout there meanwhile; then it is used.
    match std::fs::rename(staging, target) {
        Err(_) if target.join("fs").is_dir() => Ok(()),
        renamed => renamed.map_err(SolveError::io("rename", staging)),
    }
}

/// BuildKit's `shaToCacheKey`, hashed: an annotated tag counts as its commit unless the
/// `.git` (which records the tag) is kept.
fn snapshot_key(request: &Request<'_>, resolved: &Resolved) -> String {
    let mut key = if request.keep_git_dir {
        format!("{}.git#{}", resolved.object, resolved.reference)
    } else {
        resolved.commit.clone()
    };
    if !request.subdir.is_empty() {
        key.push(':');
        key.push_str(request.subdir);
    }
    if !request.submodules {
        key.push_str("(skip-submodules)");
    }
    cache::key(format!("git\0{key}").as_bytes(), &[])
}

/// The credentials the build was given for `remote`.
fn auth(task: &Task, remote: &str) -> Result<Auth> {
    let mut auth = Auth::default();
    if let Ok(url) = url::Url::parse(remote)
        && matches!(url.scheme(), "http" | "https")
    {
        // As Go's `url.Host`: with the port when the URL has one.
        let host = match (url.host_str().unwrap_or_default(), url.port()) {
            (host, Some(port)) => format!("{host}:{port}"),
            (host, None) => host.to_string(),
        };
        let names = [
            (format!("GIT_AUTH_HEADER.{host}"), false),
            (format!("GIT_AUTH_TOKEN.{host}"), true),
            ("GIT_AUTH_HEADER".to_string(), false),
            ("GIT_AUTH_TOKEN".to_string(), true),
        ];
        for (name, token) in names {
            let Some(secret) = task.shared.options.secrets.get(&name) else {
                continue;
            };
            let value = secret
                .read()
                .map_err(|e| task.step_failed(format!("reading secret {name}: {e}"), e))?;
            auth.authorization = Some(if token {
                Auth::token(&value)
            } else {
                String::from_utf8_lossy(&value).trim_end().to_string()
            });
            break;
        }
    } else {
        auth.ssh_auth_sock = task.shared.options.ssh.get("default").cloned();
    }
    Ok(auth)
}
