//! `--progress=plain`: BuildKit's line-oriented output, for CI logs and pipes.
//!
//! ```text
//! #3 [build 2/5] RUN make
//! #3 cache miss: command changed
//! #3 0.312 cc -c main.c
//! #3 DONE 0.4s
//! ```
//!
//! Every line names its step, so concurrent steps can interleave; as in BuildKit a blank line
//! and the `#N [name]` header come again whenever output switches to another step.

use std::collections::HashMap;
use std::io::Write;

use super::{Renderer, complete_lines, human_size};
use crate::progress::Event;

pub struct PlainRenderer<W: Write + Send> {
    out: W,
    steps: HashMap<u64, Step>,
    /// The step whose header the last printed line belongs to.
    current: Option<u64>,
    printed_any: bool,
}

#[derive(Default)]
struct Step {
    name: String,
    started: bool,
    started_at: f64,
    /// Per stream (stdout, stderr): text after the last newline, printed when the line ends
    /// or the step does.
    partial: [String; 2],
    /// When each buffered partial line began: a line's timestamp is that of its first chunk.
    partial_at: [f64; 2],
    /// A miss explained before the start event arrived, printed right after the header.
    early_miss: Option<String>,
    progress_done: bool,
    /// The last status printed for each item (a layer of a pull or push).
    items: HashMap<String, String>,
}

impl<W: Write + Send> PlainRenderer<W> {
    pub fn new(out: W) -> Self {
        PlainRenderer {
            out,
            steps: HashMap::new(),
            current: None,
            printed_any: false,
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn line(&mut self, text: &str) {
        // A closed stderr must not fail the build.
        let _ = writeln!(self.out, "{text}");
        self.printed_any = true;
    }

    /// Makes `id` the current step, repeating its header after another step's output.
    fn switch_to(&mut self, id: u64) {
        if self.current == Some(id) {
            return;
        }
        if self.printed_any {
            self.line("");
        }
        let name = self
            .steps
            .get(&id)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        self.line(&header(id, &name));
        self.current = Some(id);
    }

    fn log_line(&mut self, id: u64, at: f64, text: &str) {
        self.switch_to(id);
        let started_at = self.steps.get(&id).map_or(0.0, |s| s.started_at);
        let t = (at - started_at).max(0.0);
        self.line(&format!("#{id} {t:.3} {text}"));
    }

    /// Prints a step's unfinished last lines (its output ended without a newline).
    fn flush_partial(&mut self, id: u64) {
        for stream in 0..2 {
            let Some(step) = self.steps.get_mut(&id) else {
                return;
            };
            if step.partial[stream].is_empty() {
                continue;
            }
            let text = std::mem::take(&mut step.partial[stream]);
            let at = step.partial_at[stream];
            let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
            self.log_line(id, at, &text);
        }
    }

    fn status(&mut self, id: u64, text: &str) {
        self.flush_partial(id);
        self.switch_to(id);
        self.line(&format!("#{id} {text}"));
    }
}

fn header(id: u64, name: &str) -> String {
    if name.is_empty() {
        format!("#{id}")
    } else {
        format!("#{id} {name}")
    }
}

impl<W: Write + Send> Renderer for PlainRenderer<W> {
    fn event(&mut self, event: &Event) {
        match event {
            Event::VertexStarted {
                id,
                name,
                started_at,
            } => {
                let step = self.steps.entry(*id).or_default();
                step.name = name.clone();
                step.started = true;
                step.started_at = *started_at;
                let early = step.early_miss.take();
                // Always print the header on start, even if this step printed last.
                if self.current == Some(*id) {
                    self.current = None;
                }
                self.switch_to(*id);
                if let Some(reason) = early {
                    self.line(&format!("#{id} cache miss: {reason}"));
                }
            }
            Event::VertexMiss { id, reason } => {
                let step = self.steps.entry(*id).or_default();
                if step.started {
                    self.status(*id, &format!("cache miss: {reason}"));
                } else {
                    step.early_miss = Some(reason.clone());
                }
            }
            Event::VertexLog {
                id,
                stream,
                data,
                at,
            } => {
                let step = self.steps.entry(*id).or_default();
                let s = *stream as usize;
                if step.partial[s].is_empty() {
                    step.partial_at[s] = *at;
                }
                let lines = complete_lines(&mut step.partial[s], data);
                if lines.is_empty() {
                    return;
                }
                // The first completed line began at the buffered time; later ones in this chunk.
                let first_at = step.partial_at[s];
                step.partial_at[s] = *at;
                for (i, text) in lines.iter().enumerate() {
                    self.log_line(*id, if i == 0 { first_at } else { *at }, text);
                }
            }
            Event::VertexCached { id } => self.status(*id, "CACHED"),
            Event::VertexDone { id, duration } => {
                self.status(*id, &format!("DONE {duration:.1}s"));
            }
            Event::VertexError { id, message } => {
                self.status(*id, &format!("ERROR: {message}"));
            }
            Event::VertexCanceled { id } => self.status(*id, "CANCELED"),
            Event::VertexProgress { id, current, total } => {
                // Plain output is a log, not a live view: report a transfer once, when complete.
                let step = self.steps.entry(*id).or_default();
                if *total == Some(*current) && !step.progress_done {
                    step.progress_done = true;
                    let size = human_size(*current);
                    self.status(*id, &format!("{size} / {size} done"));
                }
            }
            Event::VertexStatus {
                id, item, status, ..
            } => {
                // A log, not a live view: an item's line each time its status changes.
                let step = self.steps.entry(*id).or_default();
                if step.items.get(item) != Some(status) {
                    step.items.insert(item.clone(), status.clone());
                    self.status(*id, &format!("{item}: {status}"));
                }
            }
            Event::BuildWarning { message } => {
                if self.printed_any {
                    self.line("");
                }
                self.line(&format!("WARNING: {message}"));
                self.current = None;
            }
        }
    }

    fn finish(&mut self) {
        let mut open: Vec<u64> = self
            .steps
            .iter()
            .filter(|(_, s)| s.partial.iter().any(|p| !p.is_empty()))
            .map(|(id, _)| *id)
            .collect();
        open.sort_unstable();
        for id in open {
            self.flush_partial(id);
        }
        let _ = self.out.flush();
    }
}
