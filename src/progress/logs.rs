//! The full output of every step, kept for the build record and for error messages.
//! Renderers may show only a tail; this never clips.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::Event;

/// Each step's complete log (stdout and stderr in arrival order). Clones share the store, so
/// the renderer task can record while the caller later takes the logs.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    inner: Arc<Mutex<BTreeMap<u64, StepLog>>>,
}

#[derive(Debug, Clone, Default)]
struct StepLog {
    name: String,
    text: String,
}

impl LogStore {
    pub fn new() -> LogStore {
        LogStore::default()
    }

    /// Takes what matters from `event` (names and log chunks); ignores the rest.
    pub fn record(&self, event: &Event) {
        let mut steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::VertexStarted { id, name, .. } => {
                steps.entry(*id).or_default().name = name.clone();
            }
            Event::VertexLog { id, data, .. } => {
                steps.entry(*id).or_default().text.push_str(data);
            }
            _ => {}
        }
    }

    /// The whole log of step `id` (empty if it printed nothing).
    pub fn full(&self, id: u64) -> String {
        let steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        steps.get(&id).map(|s| s.text.clone()).unwrap_or_default()
    }

    /// The display name step `id` started with.
    pub fn name(&self, id: u64) -> Option<String> {
        let steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        steps.get(&id).map(|s| s.name.clone())
    }

    /// The last `n` lines of step `id`'s output, for "the last lines of the step's output" in an
    /// error message. A trailing partial line counts as a line; `\r\n` ends a line too.
    pub fn tail(&self, id: u64, n: usize) -> Vec<String> {
        let text = self.full(id);
        let mut lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        if text.ends_with('\n') || text.is_empty() {
            lines.pop();
        }
        let from = lines.len().saturating_sub(n);
        lines[from..].iter().map(|l| l.to_string()).collect()
    }

    /// Every step's display name by step number.
    pub fn names(&self) -> BTreeMap<u64, String> {
        let steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        steps.iter().map(|(id, s)| (*id, s.name.clone())).collect()
    }

    /// Every step's log by step number, for saving with the build record.
    pub fn all(&self) -> BTreeMap<u64, String> {
        let steps = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        steps.iter().map(|(id, s)| (*id, s.text.clone())).collect()
    }
}
