//! Progress renderers: turn the solver's [`Event`] stream into what people (or tools) see on
//! stderr. `plain` is BuildKit's `--progress=plain`, `tty` an indicatif live view, `rawjson`
//! one event per line, `quiet` nothing.
//!
//! The CLI wires one up like this:
//!
//! ```no_run
//! # async fn build() {
//! use kiln::cli::progress::{self, ProgressMode};
//! use kiln::progress::Clock;
//! let mode = ProgressMode::resolve(None, std::env::var("BUILDKIT_PROGRESS").ok().as_deref(),
//!     progress::stderr_is_terminal());
//! let renderer = progress::stderr_renderer(mode, Clock::start());
//! let outcome: Result<(), String> = progress::rendered(renderer, |sink| async move {
//!     // … the build sends into `sink` (and its clones) …
//!     drop(sink);
//!     Ok(())
//! })
//! .await;
//! # }
//! ```

mod plain;
mod tty;

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::progress::{Clock, Event, Items, LogStore, Sink};

pub use plain::PlainRenderer;
pub use tty::{LineKind, TtyRenderer, template};

/// Something that shows progress events.
pub trait Renderer: Send {
    fn event(&mut self, event: &Event);
    /// Called about ten times a second while the build runs (timers of live views).
    fn tick(&mut self) {}
    /// The work failed, maybe before any step ran (an unknown `--target`, an instruction
    /// refused while planning); called before [`Renderer::finish`].
    fn failed(&mut self) {}
    /// The stream ended: flush, settle the view, report errors.
    fn finish(&mut self);
}

/// `--progress` values, as in `docker buildx build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// tty when stderr is a terminal, else plain.
    Auto,
    Tty,
    Plain,
    Rawjson,
    Quiet,
}

impl FromStr for ProgressMode {
    type Err = String;

    fn from_str(s: &str) -> Result<ProgressMode, String> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "tty" => Ok(ProgressMode::Tty),
            "plain" => Ok(ProgressMode::Plain),
            "rawjson" => Ok(ProgressMode::Rawjson),
            "quiet" => Ok(ProgressMode::Quiet),
            other => Err(format!(
                "invalid progress mode {other:?}: expected auto, tty, plain, rawjson or quiet"
            )),
        }
    }
}

impl ProgressMode {
    /// The concrete mode (never `Auto`): the flag wins, then `BUILDKIT_PROGRESS` (an invalid
    /// value is ignored, so a stale environment cannot break builds), then auto-detection.
    pub fn resolve(
        flag: Option<ProgressMode>,
        env: Option<&str>,
        stderr_tty: bool,
    ) -> ProgressMode {
        let chosen = flag
            .or_else(|| env.and_then(|v| v.trim().parse().ok()))
            .unwrap_or(ProgressMode::Auto);
        match chosen {
            ProgressMode::Auto if stderr_tty => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        }
    }
}

/// Whether output may be coloured: not when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>).
pub fn color_wanted() -> bool {
    color_allowed(std::env::var_os("NO_COLOR").as_deref())
}

/// [`color_wanted`] for a given `NO_COLOR` value.
fn color_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|value| value.is_empty())
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Where a renderer writes: `docker pull` shows its progress on stdout, builds and the
/// pull before a `run` on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

impl Output {
    fn is_terminal(self) -> bool {
        match self {
            Output::Stdout => std::io::stdout().is_terminal(),
            Output::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn writer(self) -> Box<dyn Write + Send> {
        match self {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::Stderr => Box::new(std::io::stderr()),
        }
    }
}

/// A renderer for `mode` writing to stderr. `clock` times the live view's timers.
pub fn stderr_renderer(mode: ProgressMode, clock: Clock) -> Box<dyn Renderer> {
    renderer(mode, clock, Output::Stderr)
}

/// A renderer for `mode` writing to `output`.
pub fn renderer(mode: ProgressMode, clock: Clock, output: Output) -> Box<dyn Renderer> {
    match mode {
        ProgressMode::Tty => Box::new(TtyRenderer::to(output, clock)),
        ProgressMode::Auto if output.is_terminal() => Box::new(TtyRenderer::to(output, clock)),
        ProgressMode::Auto | ProgressMode::Plain => Box::new(PlainRenderer::new(output.writer())),
        ProgressMode::Rawjson => Box::new(JsonRenderer::new(output.writer())),
        ProgressMode::Quiet => Box::new(QuietRenderer),
    }
}

/// Runs one transfer (a pull or a push) as vertex `#1`, named `name`, with its layers as
/// the vertex's items, rendered to `output` (the live view on a terminal, else plain lines;
/// nothing when `quiet`).
pub async fn transfer<T, E, F>(
    output: Output,
    quiet: bool,
    name: String,
    work: impl FnOnce(Items) -> F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let mode = if quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::Auto
    };
    let clock = Clock::start();
    rendered(renderer(mode, clock.clone(), output), |sink| async move {
        let vertex = sink.vertex(&clock, 1, name);
        let outcome = work(vertex.items()).await;
        match &outcome {
            Ok(_) => vertex.done(),
            Err(error) => vertex.error(error.to_string()),
        }
        outcome
    })
    .await
}

/// Runs `work` with a sink whose events `renderer` shows; returns `work`'s outcome once
/// every event it sent is rendered (the sink and its clones dropped). A failed outcome is
/// told to the renderer ([`Renderer::failed`]) before it finishes.
pub async fn rendered<T, E, F>(
    mut renderer: Box<dyn Renderer>,
    work: impl FnOnce(Sink) -> F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let (sink, rx) = Sink::channel();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let drive = tokio::spawn(async move {
        feed(rx, renderer.as_mut(), None).await;
        if failed_rx.await == Ok(true) {
            renderer.failed();
        }
        renderer.finish();
    });
    let outcome = work(sink).await;
    let _ = failed_tx.send(outcome.is_err());
    let _ = drive.await;
    outcome
}

/// Feeds every event to `renderer` (and to `logs`, when given) until all senders are
/// dropped, ticking the renderer meanwhile, then finishes it.
pub async fn drive(
    rx: UnboundedReceiver<Event>,
    mut renderer: Box<dyn Renderer>,
    logs: Option<LogStore>,
) {
    feed(rx, renderer.as_mut(), logs).await;
    renderer.finish();
}

/// [`drive`] without the finish.
async fn feed(
    mut rx: UnboundedReceiver<Event>,
    renderer: &mut dyn Renderer,
    logs: Option<LogStore>,
) {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    if let Some(logs) = &logs {
                        logs.record(&event);
                    }
                    renderer.event(&event);
                }
                None => break,
            },
            _ = ticks.tick() => renderer.tick(),
        }
    }
}

/// `--progress rawjson`: one JSON object per line.
pub struct JsonRenderer<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonRenderer<W> {
    pub fn new(out: W) -> Self {
        JsonRenderer { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Renderer for JsonRenderer<W> {
    fn event(&mut self, event: &Event) {
        // A closed stderr must not fail the build.
        let _ = writeln!(self.out, "{}", event.to_json_line());
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

/// `--progress quiet`: nothing; errors reach the user through the CLI's error path.
pub struct QuietRenderer;

impl Renderer for QuietRenderer {
    fn event(&mut self, _: &Event) {}
    fn finish(&mut self) {}
}

/// Byte counts as BuildKit prints them (decimal units): `512B`, `3.40MB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// Splits `data` onto `partial` and returns the lines it completed (without `\n` or `\r\n`).
pub(crate) fn complete_lines(partial: &mut String, data: &str) -> Vec<String> {
    partial.push_str(data);
    let Some(last) = partial.rfind('\n') else {
        return Vec::new();
    };
    let rest = partial.split_off(last + 1);
    let done = std::mem::replace(partial, rest);
    done[..done.len() - 1]
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(3_400_000), "3.40MB");
        assert_eq!(human_size(1_500), "1.50kB");
    }

    #[test]
    fn lines() {
        let mut partial = String::new();
        assert!(complete_lines(&mut partial, "ab").is_empty());
        assert_eq!(
            complete_lines(&mut partial, "c\r\nd\n\ne"),
            ["abc", "d", ""]
        );
        assert_eq!(partial, "e");
    }

    #[test]
    fn no_color() {
        assert!(color_allowed(None));
        assert!(color_allowed(Some("".as_ref())));
        assert!(!color_allowed(Some("1".as_ref())));
        for kind in [LineKind::Header, LineKind::Step, LineKind::Log] {
            assert!(!template(kind, false).contains(":."), "{kind:?}");
        }
        assert!(template(LineKind::Header, true).contains(".bold"));
        assert!(template(LineKind::Log, true).contains(".dim"));
    }

    #[test]
    fn modes() {
        use ProgressMode::*;
        assert_eq!(ProgressMode::resolve(None, None, true), Tty);
        assert_eq!(ProgressMode::resolve(None, None, false), Plain);
        assert_eq!(ProgressMode::resolve(None, Some("rawjson"), true), Rawjson);
        assert_eq!(ProgressMode::resolve(None, Some("bogus"), false), Plain);
        assert_eq!(
            ProgressMode::resolve(Some(Quiet), Some("plain"), true),
            Quiet
        );
        assert_eq!(ProgressMode::resolve(Some(Auto), Some("plain"), true), Tty);
    }
}
