//! The build context: the files a COPY or bind mount selects, keyed by their content.

use std::sync::Arc;

use crate::cache;
use crate::solve::step::Task;
use crate::solve::{NodeResult, Result, blocking};

/// Selects `include` (everything when empty) minus `exclude` and `.dockerignore`, and
/// digests what it selected.
pub(in crate::solve) async fn run(
    task: &Task,
    include: Vec<String>,
    exclude: Vec<String>,
) -> Result<NodeResult> {
    let vertex = task.vertex();
    let context = task.shared.context.clone();
    let stat = task.shared.stat.clone();
    let outcome = blocking(move || {
        let include = if include.is_empty() {
            vec![".".to_string()]
        } else {
            include
        };
        let selection = context.select(&include, &exclude)?;
        let digest = context.digest(&selection, Some(&stat))?;
        Ok::<_, crate::source::Error>((selection, digest))
    })
    .await?;
    match outcome {
        Ok((selection, digest)) => {
            vertex.done();
            let key = cache::key(format!("context\0{}", digest.digest).as_bytes(), &[]);
            Ok(NodeResult {
                context: Some(Arc::new((selection, digest))),
                ..NodeResult::source(key, Vec::new())
            })
        }
        Err(error) => {
            vertex.error(error.to_string());
            Err(task.step_failed(error.to_string(), error))
        }
    }
}
