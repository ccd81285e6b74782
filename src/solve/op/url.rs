//! `ADD <url>`: the file as a one-layer source, `snapshots-v1/url-<key>/fs/<filename>`.
//!
//! The key is the content digest (with the file name and mtime, which shape the layer), so
//! a URL whose content did not change keeps every later step cached. What the server said
//! about the last download (validators, digest, snapshot) is kept per URL in
//! `cache-v1/urls/<hash of the url>.json`: a later build asks conditionally and a 304 reuses
//! the snapshot without downloading; with `--checksum` and a snapshot of that digest, no
//! request is made at all. As Docker documents, the file gets mode 0600 and, when the
//! server sends `Last-Modified`, that mtime (else the epoch).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cache;
use crate::solve::scheduler::cancelled;
use crate::solve::step::{Task, end_failed};
use crate::solve::{NodeResult, Result, SolveError, blocking, unique_suffix};
use crate::source::http::{self, Fetched, Validators};
use crate::store::Store;

/// What the last download of a URL gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlRecord {
    validators: Validators,
    digest: String,
    /// Seconds since the epoch given to the file.
    mtime: u64,
    filename: String,
    snapshot: String,
}

/// Snapshot directories of downloads are named `url-<key>`.
pub(in crate::solve) const SNAPSHOT_PREFIX: &str = "url-";

/// Where the per-URL records live: `cache-v1/urls/`.
pub(in crate::solve) fn records_dir(store: &Store) -> PathBuf {
    store.cache_dir().join("urls")
}

fn record_path(task: &Task, url: &str) -> PathBuf {
    let name = &cache::key(url.as_bytes(), &[])[..32];
    records_dir(&task.shared.store).join(format!("{name}.json"))
}

fn read_record(path: &Path) -> Option<UrlRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn result(task: &Task, record: &UrlRecord) -> NodeResult {
    let fs = task
        .shared
        .store
        .snapshots_dir()
        .join(&record.snapshot)
        .join("fs");
    NodeResult::source(
        snapshot_key(&record.digest, &record.filename, record.mtime),
        vec![fs],
    )
}

fn snapshot_key(digest: &str, filename: &str, mtime: u64) -> String {
    cache::key(
        format!("url\0{digest}\0{filename}\0{mtime}").as_bytes(),
        &[],
    )
}

/// Resolves the URL source of `task` (see the module docs).
pub(in crate::solve) async fn run(
    task: &Task,
    url: String,
    checksum: Option<String>,
    filename: String,
) -> Result<NodeResult> {
    let vertex = task.vertex();
    let record_file = record_path(task, &url);
    let snapshots = task.shared.store.snapshots_dir();
    let previous = read_record(&record_file).filter(|r| {
        r.filename == filename
            && snapshots
                .join(&r.snapshot)
                .join("fs")
                .join(&filename)
                .is_file()
            && !task.shared.options.no_cache
    });
    if let (Some(previous), Some(checksum)) = (&previous, &checksum)
        && previous.digest == *checksum
    {
        vertex.cached();
        return Ok(result(task, previous));
    }

    let staging = snapshots.join(format!("tmp-url-{}", unique_suffix()));
    let fs = staging.join("fs");
    std::fs::create_dir_all(&fs).map_err(SolveError::io("create", &fs))?;
    let file = fs.join(&filename);
    // With a checksum the stored copy does not match, a 304 would prove nothing.
    let conditional = previous.as_ref().filter(|_| checksum.is_none());
    let mut cancel = task.cancel.clone();
    let outcome = tokio::select! {
        outcome = download(task, &url, &file, conditional, checksum.as_deref()) => outcome,
        _ = cancelled(&mut cancel) => Err(SolveError::Cancelled),
    };
    let finished = match outcome {
        Ok(None) => Ok(previous.clone().expect("304 only with a previous download")),
        Ok(Some((digest, modified, validators))) => {
            let mtime = modified
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let record = UrlRecord {
                validators,
                mtime,
                snapshot: format!(
                    "{SNAPSHOT_PREFIX}{}",
                    snapshot_key(&digest, &filename, mtime)
                ),
                digest,
                filename: filename.clone(),
            };
            let (staging, record_file, snapshots) =
                (staging.clone(), record_file.clone(), snapshots.clone());
            let file = file.clone();
            let kept = record.clone();
            blocking(move || commit(&staging, &file, &snapshots, &record_file, &kept))
                .await
                .and_then(|r| r)
                .map(|()| record)
        }
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_dir_all(&staging);
    match finished {
        Ok(record) => {
            vertex.done();
            Ok(result(task, &record))
        }
        Err(error) => {
            end_failed(vertex, &error);
            Err(error)
        }
    }
}

/// Downloads into `file`; `None` when the server confirmed `previous`.
async fn download(
    task: &Task,
    url: &str,
    file: &Path,
    previous: Option<&UrlRecord>,
    checksum: Option<&str>,
) -> Result<Option<(String, Option<SystemTime>, Validators)>> {
    let client = crate::registry::http_client(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| task.step_failed(e.to_string(), e))?;
    let fetched = http::fetch(
        &client,
        url,
        file,
        previous.map(|p| &p.validators),
        |_, _| {},
    )
    .await
    .map_err(|e| task.step_failed(e.to_string(), e))?;
    match fetched {
        Fetched::NotModified => Ok(None),
        Fetched::Downloaded {
            digest,
            modified,
            validators,
            ..
        } => {
            if let Some(expected) = checksum
                && expected != digest
            {
                return Err(task.step_error(
                    format!("digest mismatch for {url}: expected {expected}, got {digest}"),
                    Vec::new(),
                ));
            }
            Ok(Some((digest, modified, validators)))
        }
    }
}

/// Gives the file its mode and mtime, moves the snapshot into place (unless an identical
/// one is there) and writes the URL's record.
fn commit(
    staging: &Path,
    file: &Path,
    snapshots: &Path,
    record_file: &Path,
    record: &UrlRecord,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .map_err(SolveError::io("chmod", file))?;
    let mtime = UNIX_EPOCH + std::time::Duration::from_secs(record.mtime);
    crate::sys::set_times_nofollow(file, mtime, mtime)?;
    let target = snapshots.join(&record.snapshot);
    if !target.exists() {
        std::fs::rename(staging, &target).map_err(SolveError::io("rename", staging))?;
    }
    let dir = record_file.parent().unwrap_or(snapshots);
    std::fs::create_dir_all(dir).map_err(SolveError::io("create", dir))?;
    let bytes = serde_json::to_vec(record).map_err(|source| SolveError::Encode {
        what: "the URL record",
        source,
    })?;
    Ok(crate::store::write_atomic(record_file, &bytes)?)
}
