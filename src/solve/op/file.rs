//! COPY/ADD and WORKDIR: [`fileop`] over the op's inputs, into the step's staging layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fileop;
use crate::plan::FileOp;
use crate::solve::copied;
use crate::solve::scheduler::cancelled;
use crate::solve::step::Task;
use crate::solve::{Result, SolveError};

/// Runs `op` into `staging/fs`. Returns (empty, bytes written). `earlier` is the snapshot
/// of an earlier run of the same step, whose unchanged files may be reused.
pub(in crate::solve) async fn run(
    task: &Task,
    op: FileOp,
    staging: &Path,
    earlier: Option<PathBuf>,
) -> Result<(bool, u64)> {
    let _permit = task.shared.job_permit().await?;
    let upper = staging.join("fs");
    std::fs::create_dir(&upper).map_err(SolveError::io("create", &upper))?;
    let inputs = task.inputs.clone();
    let root = task.shared.context.root().to_path_buf();
    let scratch = staging.to_path_buf();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let work = tokio::task::spawn_blocking(move || {
        let owned: Vec<fileop::Input<'_>> = inputs
            .iter()
            .map(|input| match &input.context {
                Some(context) => fileop::Input::Context {
                    root: &root,
                    selection: &context.0,
                    digests: Some(&context.1.entry_digests),
                },
                None => fileop::Input::Layers(&input.chain),
            })
            .collect();
        let reuse = earlier.as_deref().and_then(copied::read);
        let outcome = fileop::run(&fileop::Request {
            op: &op,
            inputs: &owned,
            upper: &upper,
            scratch: Some(&scratch),
            reuse: reuse.as_ref(),
            cancel: Some(&flag),
        })?;
        if !outcome.copied.is_empty() {
            copied::write(&scratch, &outcome.copied)
                .map_err(fileop::Error::io("write", scratch.join(copied::FILE)))?;
        }
        Ok::<_, fileop::Error>(outcome)
    });
    tokio::pin!(work);
    let mut cancel_rx = task.cancel.clone();
    let joined = tokio::select! {
        joined = &mut work => joined,
        _ = cancelled(&mut cancel_rx) => {
            cancel.store(true, Ordering::Relaxed);
            work.await
        }
    };
    match joined? {
        Ok(outcome) => Ok((outcome.empty, outcome.report.bytes)),
        Err(fileop::Error::Cancelled) => Err(SolveError::Cancelled),
        Err(error) => Err(task.step_failed(error.to_string(), error)),
    }
}
