//! Reopening the failed RUN step of a build (`kiln build --on-error=shell`, `kiln debug`):
//! the step kept in its build record, run again with a shell or a command of the user's.

use std::path::{Path, PathBuf};

use super::BuildError;
use super::record::{KEEP_FAILED_STEPS, SavedRecord};
use crate::solve::failed::{self, FailedStep};
use crate::store::Store;

/// The failed step kept in `saved`, or why there is none.
pub fn failed_step_dir(saved: &SavedRecord) -> Result<PathBuf, BuildError> {
    if let Some(dir) = saved.failed_step_dir() {
        return Ok(dir);
    }
    let record = &saved.record;
    let reason = match (record.status.as_str(), record.failed_step) {
        ("failed", Some(step)) => format!(
            "failed at step #{step} ({}), which is not a RUN, or whose state is no longer kept \
             (only the newest {KEEP_FAILED_STEPS} failed builds keep it)",
            record.steps.get(&step).map_or("?", String::as_str)
        ),
        ("failed", None) => "failed before any step ran".to_string(),
        (status, _) => format!("{status}: it has no failed step"),
    };
    Err(BuildError::NoFailedStep {
        id: saved.id.clone(),
        reason,
    })
}

/// What the failed step kept in `dir` is (its name, the mounts left out).
pub fn describe(dir: &Path) -> Result<FailedStep, BuildError> {
    FailedStep::load(dir).map_err(|e| BuildError::Debug(Box::new(e)))
}

/// Runs `argv` (default: `/bin/sh`) on the caller's terminal in the failed step kept in
/// `dir`; returns its exit code. Nothing it does is kept.
pub async fn reopen(
    store: &Store,
    dir: &Path,
    argv: Option<Vec<String>>,
) -> Result<i32, BuildError> {
    failed::reopen(store, dir, argv)
        .await
        .map_err(|e| BuildError::Debug(Box::new(e)))
}
