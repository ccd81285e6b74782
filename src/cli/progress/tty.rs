//! `--progress=tty`: a live view redrawn in place (indicatif), as BuildKit's tty mode.
//!
//! ```text
//! [+] Building 3.2s (4/7)
//!  => CACHED [base 1/2] FROM docker.io/library/alpine          0.0s
//!  => [build 2/5] RUN make                                       1.2s
//!  => => # cc -c main.c
//! ```
//!
//! The view is computed from a model ([`TtyRenderer::view`]) and mirrored into one indicatif
//! bar per line; `{wide_msg}` truncates each line to the terminal width. Finished steps
//! collapse to one line; errors are printed in full below the view when the build ends.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Output, Renderer, complete_lines, human_size};
use crate::progress::{Clock, Event};

/// Log lines shown under a running step.
const TAIL_LINES: usize = 6;
/// Log lines printed with an error when the build ends.
const ERROR_TAIL_LINES: usize = 20;

pub struct TtyRenderer {
    clock: Clock,
    multi: MultiProgress,
    bars: Vec<(ProgressBar, LineKind)>,
    steps: BTreeMap<u64, Step>,
    started_at: f64,
    finished: bool,
    /// The build failed, whether or not a step did.
    failed: bool,
    /// Where the error report goes once the live view is settled.
    out: Box<dyn Write + Send>,
    warnings: Vec<String>,
    /// Bold header, dim logs; off under `NO_COLOR`.
    color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Header,
    Step,
    Log,
}

/// One line of the view: text on the left, a timer on the right.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewLine {
    pub is_log: bool,
    pub text: String,
    pub time: String,
}

#[derive(Default)]
struct Step {
    name: String,
    /// Renderer clock when the start event arrived (the live timer runs from here).
    seen_at: f64,
    state: State,
    tail: VecDeque<String>,
    /// The last lines for the error report (the full log is in the `LogStore`).
    error_tail: VecDeque<String>,
    partial: String,
    miss: Option<String>,
    progress: Option<(u64, Option<u64>)>,
    /// The items of a pull or push (its layers), by name, as `docker pull` lists them.
    items: BTreeMap<String, Item>,
}

/// One layer of a pull or push: its status, bytes and rate.
#[derive(Default)]
struct Item {
    status: String,
    bytes: Option<(u64, Option<u64>)>,
    /// When the first counted bytes arrived, and how many: the rate is measured from there.
    first: Option<(f64, u64)>,
    rate: Option<f64>,
}

impl Item {
    fn update(&mut self, status: &str, current: Option<u64>, total: Option<u64>, at: f64) {
        self.status = status.to_string();
        let Some(current) = current else {
            return;
        };
        self.bytes = Some((current, total));
        match self.first {
            None => self.first = Some((at, current)),
            Some((since, from)) if at > since => {
                self.rate = Some(current.saturating_sub(from) as f64 / (at - since));
            }
            Some(_) => {}
        }
    }

    fn line(&self, name: &str) -> String {
        let mut text = format!(" => => {name}: {}", self.status);
        if let Some((current, total)) = self.bytes {
            text.push_str(&format!(" {}", human_size(current)));
            if let Some(total) = total {
                text.push_str(&format!(" / {}", human_size(total)));
            }
            if let Some(rate) = self.rate.filter(|_| Some(current) != total) {
                text.push_str(&format!(" {}/s", human_size(rate as u64)));
            }
        }
        text
    }
}

#[derive(Default, Clone, PartialEq)]
enum State {
    #[default]
    Running,
    Cached,
    Done(f64),
    Error(f64, String),
    /// Stopped because another step failed, after this long.
    Canceled(f64),
}

impl TtyRenderer {
    pub fn stderr(clock: Clock) -> TtyRenderer {
        TtyRenderer::to(Output::Stderr, clock)
    }

    /// A live view on `output`'s terminal.
    pub fn to(output: Output, clock: Clock) -> TtyRenderer {
        let target = match output {
            Output::Stdout => ProgressDrawTarget::stdout_with_hz(10),
            Output::Stderr => ProgressDrawTarget::stderr_with_hz(10),
        };
        TtyRenderer::new(target, clock, output.writer()).with_color(super::color_wanted())
    }

    /// A renderer drawing to `target` (`ProgressDrawTarget::hidden()` in tests) and writing
    /// the final error report to `out`.
    pub fn new(target: ProgressDrawTarget, clock: Clock, out: Box<dyn Write + Send>) -> Self {
        let started_at = clock.now();
        TtyRenderer {
            clock,
            multi: MultiProgress::with_draw_target(target),
            bars: Vec::new(),
            steps: BTreeMap::new(),
            started_at,
            finished: false,
            failed: false,
            out,
            warnings: Vec::new(),
            color: true,
        }
    }

    /// Whether the view may style its lines (the header bold, logs dim).
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    /// What the view shows now, top to bottom.
    pub fn view(&self) -> Vec<ViewLine> {
        let now = self.clock.now();
        let done = self
            .steps
            .values()
            .filter(|s| s.state != State::Running)
            .count();
        let mut header = format!(
            "[+] Building {:.1}s ({done}/{})",
            now - self.started_at,
            self.steps.len()
        );
        if self.finished {
            header.push_str(self.outcome());
        }
        let mut lines = vec![ViewLine {
            is_log: false,
            text: header,
            time: String::new(),
        }];
        for step in self.steps.values() {
            let (text, secs) = match &step.state {
                State::Cached => (format!(" => CACHED {}", step.name), 0.0),
                State::Done(d) => (format!(" => {}", step.name), *d),
                State::Error(d, _) => (format!(" => ERROR {}", step.name), *d),
                State::Canceled(d) => (format!(" => CANCELED {}", step.name), *d),
                State::Running => {
                    let mut text = format!(" => {}", step.name);
                    if let Some((current, total)) = step.progress {
                        text.push_str(&format!(" {}", human_size(current)));
                        if let Some(total) = total {
                            text.push_str(&format!(" / {}", human_size(total)));
                        }
                    }
                    (text, now - step.seen_at)
                }
            };
            lines.push(ViewLine {
                is_log: false,
                text,
                time: format!("{:.1}s", secs.max(0.0)),
            });
            if step.state == State::Running {
                if let Some(reason) = &step.miss {
                    lines.push(log_line(format!(" => => cache miss: {reason}")));
                }
                for (name, item) in &step.items {
                    lines.push(log_line(item.line(name)));
                }
                let partial = (!step.partial.is_empty()).then_some(&step.partial);
                let shown: Vec<&String> = step.tail.iter().chain(partial).collect();
                let from = shown.len().saturating_sub(TAIL_LINES);
                for l in &shown[from..] {
                    lines.push(log_line(format!(" => => # {l}")));
                }
            }
        }
        lines
    }

    /// How the build ended, as the settled header says it: `ERROR` when a step failed,
    /// `CANCELED` when steps were stopped without one failing (Ctrl-C), `ERROR` when the
    /// build failed otherwise (while planning, exporting), else `FINISHED`.
    fn outcome(&self) -> &'static str {
        let states = || self.steps.values().map(|s| &s.state);
        if states().any(|s| matches!(s, State::Error(..))) {
            " ERROR"
        } else if states().any(|s| matches!(s, State::Canceled(_))) {
            " CANCELED"
        } else if self.failed {
            " ERROR"
        } else {
            " FINISHED"
        }
    }

    /// The report printed below the view at the end: every failed step with its message and
    /// the last lines of its output, untruncated.
    pub fn error_report(&self) -> String {
        let mut report = String::new();
        for warning in &self.warnings {
            report.push_str(&format!("WARNING: {warning}\n"));
        }
        for step in self.steps.values() {
            let State::Error(_, message) = &step.state else {
                continue;
            };
            report.push_str("------\n");
            report.push_str(&format!(" > {}:\n", step.name));
            for l in &step.error_tail {
                report.push_str(l);
                report.push('\n');
            }
            if !step.partial.is_empty() {
                report.push_str(&step.partial);
                report.push('\n');
            }
            report.push_str("------\n");
            report.push_str(&format!("ERROR: {}: {message}\n", step.name));
        }
        report
    }

    /// Mirrors the view into the indicatif bars.
    fn sync(&mut self) {
        let view = self.view();
        while self.bars.len() > view.len() {
            if let Some((bar, _)) = self.bars.pop() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        for (i, line) in view.iter().enumerate() {
            let kind = match (i, line.is_log) {
                (0, _) => LineKind::Header,
                (_, true) => LineKind::Log,
                _ => LineKind::Step,
            };
            if i == self.bars.len() {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style(kind, self.color));
                self.bars.push((bar, kind));
            } else if self.bars[i].1 != kind {
                self.bars[i].0.set_style(style(kind, self.color));
                self.bars[i].1 = kind;
            }
            let bar = &self.bars[i].0;
            bar.set_prefix(line.time.clone());
            bar.set_message(line.text.clone());
        }
    }
}

fn log_line(text: String) -> ViewLine {
    ViewLine {
        is_log: true,
        text,
        time: String::new(),
    }
}

/// The indicatif template of a line of `kind`; without styles when `color` is off.
pub fn template(kind: LineKind, color: bool) -> &'static str {
    match (kind, color) {
        (LineKind::Header, true) => "{wide_msg:.bold}",
        (LineKind::Log, true) => "{wide_msg:.dim}",
        (LineKind::Header | LineKind::Log, false) => "{wide_msg}",
        (LineKind::Step, _) => "{wide_msg} {prefix:>6}",
    }
}

fn style(kind: LineKind, color: bool) -> ProgressStyle {
    // The templates are constants; a parse failure would be a bug caught by the tests.
    ProgressStyle::with_template(template(kind, color))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Renderer for TtyRenderer {
    fn event(&mut self, event: &Event) {
        let now = self.clock.now();
        match event {
            Event::VertexStarted { id, name, .. } => {
                let step = self.steps.entry(*id).or_default();
                step.name = name.clone();
                step.seen_at = now;
                step.state = State::Running;
            }
            Event::VertexMiss { id, reason } => {
                self.steps.entry(*id).or_default().miss = Some(reason.clone());
            }
            Event::VertexLog { id, data, .. } => {
                let step = self.steps.entry(*id).or_default();
                for line in complete_lines(&mut step.partial, data) {
                    step.tail.push_back(line.clone());
                    if step.tail.len() > TAIL_LINES {
                        step.tail.pop_front();
                    }
                    step.error_tail.push_back(line);
                    if step.error_tail.len() > ERROR_TAIL_LINES {
                        step.error_tail.pop_front();
                    }
                }
            }
            Event::VertexCached { id } => self.steps.entry(*id).or_default().state = State::Cached,
            Event::VertexDone { id, duration } => {
                self.steps.entry(*id).or_default().state = State::Done(*duration);
            }
            Event::VertexError { id, message } => {
                let step = self.steps.entry(*id).or_default();
                step.state = State::Error(now - step.seen_at, message.clone());
            }
            Event::VertexCanceled { id } => {
                let step = self.steps.entry(*id).or_default();
                step.state = State::Canceled(now - step.seen_at);
            }
            Event::VertexProgress { id, current, total } => {
                self.steps.entry(*id).or_default().progress = Some((*current, *total));
            }
            Event::VertexStatus {
                id,
                item,
                status,
                current,
                total,
                at,
            } => {
                let step = self.steps.entry(*id).or_default();
                let item = step.items.entry(item.clone()).or_default();
                item.update(status, *current, *total, *at);
            }
            Event::BuildWarning { message } => self.warnings.push(message.clone()),
        }
        // The bars are redrawn on the next tick, not per event: a chatty step sends
        // thousands of chunks.
    }

    fn tick(&mut self) {
        // Timers move even without events, so a tick always redraws while the build runs.
        if !self.finished {
            self.sync();
        }
    }

    fn failed(&mut self) {
        self.failed = true;
    }

    fn finish(&mut self) {
        self.finished = true;
        self.sync();
        // Leave the settled view on screen, then the full errors below it.
        for (bar, _) in &self.bars {
            bar.finish();
        }
        // The view's last line has no newline of its own: end it, so what is printed next
        // (the image id, a pull's digest) starts on a line of its own.
        if !self.bars.is_empty() && !self.multi.is_hidden() {
            let _ = self.out.write_all(b"\n");
        }
        let report = self.error_report();
        let _ = self.out.write_all(report.as_bytes());
        let _ = self.out.flush();
    }
}
