//! Build records: what each build was and every step's complete output, kept in
//! `<root>/builds-v1/<start>-<id>/` (`record.json`, `logs/<step number>.log`, and for a
//! build whose RUN failed, that step kept in `failed-step/` for `kiln debug`). Progress
//! views show only the tail of a step's output; the full text is here, and a failed build
//! names the file. The newest [`KEEP`] records are kept, and the failed steps of the
//! newest [`KEEP_FAILED_STEPS`] of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BuildError;
use crate::store::Store;

/// How many build records are kept.
pub const KEEP: usize = 50;
/// How many records keep their failed step (each holds what the step wrote).
pub const KEEP_FAILED_STEPS: usize = 5;
/// The failed RUN step kept in a record ([`crate::solve::failed`]).
pub const FAILED_STEP: &str = "failed-step";
const DIR: &str = "builds-v1";
const RECORD_FILE: &str = "record.json";

/// What a build record says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    /// Seconds since the epoch when the build started.
    pub started_at: u64,
    pub finished_at: u64,
    pub dockerfile: String,
    pub context: String,
    pub target: Option<String>,
    pub tags: Vec<String>,
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub image_id: Option<String>,
    pub error: Option<String>,
    /// Step number → its display name.
    pub steps: BTreeMap<u64, String>,
    /// The number of the step the build failed at, when a step failed.
    #[serde(default)]
    pub failed_step: Option<u64>,
}

/// A saved record: its id (the part of its directory's name after the start time), its
/// directory and what it says.
#[derive(Debug, Clone)]
pub struct SavedRecord {
    pub id: String,
    pub dir: PathBuf,
    pub record: BuildRecord,
}

impl SavedRecord {
    /// The kept failed step, when the build failed at a RUN and it is still kept.
    pub fn failed_step_dir(&self) -> Option<PathBuf> {
        let dir = self.dir.join(FAILED_STEP);
        dir.is_dir().then_some(dir)
    }

    /// The complete output of step `step`, when it printed anything.
    pub fn log(&self, step: u64) -> Option<PathBuf> {
        let path = log_path(&self.dir, step);
        path.exists().then_some(path)
    }
}

/// The saved records, newest first. Records that do not parse are skipped.
pub fn list(store: &Store) -> Result<Vec<SavedRecord>, BuildError> {
    let root = store.root().join(DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BuildError::record_io("read", &root)(e)),
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    let mut records: Vec<(std::time::SystemTime, SavedRecord)> = names
        .into_iter()
        .filter_map(|name| {
            let dir = root.join(&name);
            let file = dir.join(RECORD_FILE);
            let saved_at = std::fs::metadata(&file).and_then(|m| m.modified()).ok()?;
            let record = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
            let id = name.split_once('-').map_or(name.as_str(), |(_, id)| id);
            let saved = SavedRecord {
                id: id.to_string(),
                dir,
                record,
            };
            Some((saved_at, saved))
        })
        .collect();
    // Start times are in seconds: builds of the same second go by when they were saved.
    records.sort_by(|(a_saved, a), (b_saved, b)| {
        (b.record.started_at, b_saved).cmp(&(a.record.started_at, a_saved))
    });
    Ok(records.into_iter().map(|(_, saved)| saved).collect())
}

/// The record `query` names: an id or a unique prefix of one; `None`, the newest.
pub fn find(store: &Store, query: Option<&str>) -> Result<SavedRecord, BuildError> {
    let records = list(store)?;
    let Some(query) = query else {
        return records.into_iter().next().ok_or(BuildError::NoBuildRecord {
            query: String::new(),
        });
    };
    let mut matching: Vec<SavedRecord> = records
        .into_iter()
        .filter(|saved| !query.is_empty() && saved.id.starts_with(query))
        .collect();
    match matching.len() {
        0 => Err(BuildError::NoBuildRecord {
            query: query.to_string(),
        }),
        1 => Ok(matching.remove(0)),
        n => Err(BuildError::AmbiguousBuildRecord {
            query: query.to_string(),
            count: n,
        }),
    }
}

/// The directory of a step's log in a saved record.
pub fn log_path(record_dir: &Path, step: u64) -> PathBuf {
    record_dir.join("logs").join(format!("{step}.log"))
}

/// Saves `record` with `logs` (step number → complete output) and the kept failed step
/// `failed_step` (moved in), and drops the oldest records beyond [`KEEP`] and the failed
/// steps beyond [`KEEP_FAILED_STEPS`]. Returns the record's directory.
pub fn save(
    store: &Store,
    record: &BuildRecord,
    logs: &BTreeMap<u64, String>,
    failed_step: Option<&Path>,
) -> Result<PathBuf, BuildError> {
    let root = store.root().join(DIR);
    let id = format!("{:012}-{}", record.started_at, crate::store::random_name());
    let staging = root.join(format!(".new-{id}"));
    let logs_dir = staging.join("logs");
    std::fs::create_dir_all(&logs_dir).map_err(BuildError::record_io("create", &logs_dir))?;
    for (step, text) in logs {
        if text.is_empty() {
            continue;
        }
        let path = log_path(&staging, *step);
        std::fs::write(&path, text).map_err(BuildError::record_io("write", &path))?;
    }
    if let Some(kept) = failed_step {
        let to = staging.join(FAILED_STEP);
        std::fs::rename(kept, &to).map_err(BuildError::record_io("rename", kept))?;
    }
    let path = staging.join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(record).map_err(BuildError::RecordEncode)?;
    std::fs::write(&path, json).map_err(BuildError::record_io("write", &path))?;
    let dir = root.join(&id);
    std::fs::rename(&staging, &dir).map_err(BuildError::record_io("rename", &staging))?;
    // Oldest first by name (names start with the start time); leftovers of a crash too.
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .map_err(BuildError::record_io("read", &root))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let (stale, records): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.starts_with(".new-"));
    let excess = records.len().saturating_sub(KEEP);
    for name in stale.iter().filter(|n| **n != format!(".new-{id}")) {
        let _ = std::fs::remove_dir_all(root.join(name));
    }
    for name in &records[..excess] {
        let _ = std::fs::remove_dir_all(root.join(name));
    }
    let with_failed_step = records[excess..]
        .iter()
        .rev()
        .map(|name| root.join(name).join(FAILED_STEP))
        .filter(|dir| dir.is_dir());
    for stale in with_failed_step.skip(KEEP_FAILED_STEPS) {
        let _ = std::fs::remove_dir_all(stale);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_logs_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = |at: u64| BuildRecord {
            started_at: at,
            finished_at: at + 1,
            dockerfile: "/ctx/Dockerfile".into(),
            context: "/ctx".into(),
            target: None,
            tags: vec!["docker.io/library/x:latest".into()],
            status: "failed".into(),
            image_id: None,
            error: Some("boom".into()),
            steps: BTreeMap::from([(3, "[2/2] RUN make".to_string())]),
            failed_step: Some(3),
        };
        let logs = BTreeMap::from([(3, "line 1\nline 2\n".to_string()), (4, String::new())]);
        let saved = save(&store, &record(1000), &logs, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(log_path(&saved, 3)).unwrap(),
            "line 1\nline 2\n"
        );
        assert!(!log_path(&saved, 4).exists());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(saved.join("record.json")).unwrap()).unwrap();
        assert_eq!(json["status"], "failed");
        for at in 1001..1001 + KEEP as u64 {
            let kept = dir.path().join(format!("kept-{at}"));
            std::fs::create_dir(&kept).unwrap();
            save(&store, &record(at), &logs, Some(&kept)).unwrap();
            assert!(!kept.exists(), "moved into the record");
        }
        let left = std::fs::read_dir(dir.path().join(DIR)).unwrap().count();
        assert_eq!(left, KEEP);
        assert!(!saved.exists(), "the oldest record went first");

        let records = list(&store).unwrap();
        assert_eq!(records.len(), KEEP);
        assert_eq!(
            records[0].record.started_at,
            1000 + KEEP as u64,
            "newest first"
        );
        let with_failed_step: Vec<u64> = records
            .iter()
            .filter(|r| r.failed_step_dir().is_some())
            .map(|r| r.record.started_at)
            .collect();
        let newest = 1000 + KEEP as u64;
        let expected: Vec<u64> = (0..KEEP_FAILED_STEPS as u64).map(|i| newest - i).collect();
        assert_eq!(with_failed_step, expected);
        assert!(records[0].log(3).is_some() && records[0].log(4).is_none());

        assert_eq!(find(&store, None).unwrap().id, records[0].id);
        let id = &records[1].id;
        assert_eq!(find(&store, Some(&id[..10])).unwrap().dir, records[1].dir);
        assert!(matches!(
            find(&store, Some("zz")),
            Err(BuildError::NoBuildRecord { .. })
        ));
        assert!(matches!(
            find(&store, Some("")),
            Err(BuildError::NoBuildRecord { .. })
        ));
    }
}
