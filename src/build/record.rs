//! Build records: what each build was and every step's complete output, kept in
//! `<root>/builds-v1/<id>/` (`record.json` and `logs/<step number>.log`). Progress views show
//! only the tail of a step's output; the full text is here, and a failed build names the
//! file. The newest [`KEEP`] records are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::BuildError;
use crate::store::Store;

/// How many build records are kept.
pub const KEEP: usize = 50;
const DIR: &str = "builds-v1";

/// What a build record says.
#[derive(Debug, Clone, Serialize)]
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
}

/// The directory of a step's log in a saved record.
pub fn log_path(record_dir: &Path, step: u64) -> PathBuf {
    record_dir.join("logs").join(format!("{step}.log"))
}

/// Saves `record` with `logs` (step number → complete output) and drops the oldest records
/// beyond [`KEEP`]. Returns the record's directory.
pub fn save(
    store: &Store,
    record: &BuildRecord,
    logs: &BTreeMap<u64, String>,
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
    let path = staging.join("record.json");
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
        };
        let logs = BTreeMap::from([(3, "line 1\nline 2\n".to_string()), (4, String::new())]);
        let saved = save(&store, &record(1000), &logs).unwrap();
        assert_eq!(
            std::fs::read_to_string(log_path(&saved, 3)).unwrap(),
            "line 1\nline 2\n"
        );
        assert!(!log_path(&saved, 4).exists());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(saved.join("record.json")).unwrap()).unwrap();
        assert_eq!(json["status"], "failed");
        for at in 1001..1001 + KEEP as u64 {
            save(&store, &record(at), &logs).unwrap();
        }
        let left = std::fs::read_dir(dir.path().join(DIR)).unwrap().count();
        assert_eq!(left, KEEP);
        assert!(!saved.exists(), "the oldest record went first");
    }
}
