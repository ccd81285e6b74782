//! Build progress events: what the solver reports about each step (a *vertex*, `#N` in the
//! output) and a cheap-to-clone [`Sink`] it sends them into. Rendering lives in
//! `cli::progress`; this module only defines the stable event type, which is also the
//! `--progress rawjson` wire format (one JSON object per line).
//!
//! L0: imports nothing of kiln.

mod error;
mod items;
mod logs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use error::ProgressError;
pub use items::{ByteCounter, Items};
pub use logs::LogStore;

/// Which output stream of a step a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One thing that happened during a build. Times are seconds since the build started (as
/// measured by the sender's [`Clock`]), so a recorded stream replays identically.
///
/// The serde form is stable (`{"type":"vertex_started","id":1,...}`): tools read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Step `#id` began; `name` is what people see, e.g. `[build 2/5] RUN make`.
    VertexStarted {
        id: u64,
        name: String,
        started_at: f64,
    },
    /// The step's result came from the cache.
    VertexCached { id: u64 },
    /// Output of the step. `data` is a chunk, not necessarily whole lines.
    VertexLog {
        id: u64,
        stream: Stream,
        data: String,
        at: f64,
    },
    /// The step must run; `reason` explains why the cache missed.
    VertexMiss { id: u64, reason: String },
    /// The step finished successfully after `duration` seconds.
    VertexDone { id: u64, duration: f64 },
    /// The step failed.
    VertexError { id: u64, message: String },
    /// The step was stopped before it finished because another one failed (or the build
    /// was cancelled): BuildKit's `CANCELED`.
    VertexCanceled { id: u64 },
    /// Byte progress of a pull or export; `total` is unknown for some streams.
    VertexProgress {
        id: u64,
        current: u64,
        total: Option<u64>,
    },
    /// How one item of the step (a layer being pulled or pushed) is getting on: its status
    /// in `docker pull`'s words, and the bytes it has moved when that is counted.
    VertexStatus {
        id: u64,
        item: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        at: f64,
    },
    /// A build-wide warning (deprecated syntax, a check rule, …).
    BuildWarning { message: String },
}

impl Event {
    /// The vertex the event belongs to, if any.
    pub fn vertex(&self) -> Option<u64> {
        match self {
            Event::VertexStarted { id, .. }
            | Event::VertexCached { id }
            | Event::VertexLog { id, .. }
            | Event::VertexMiss { id, .. }
            | Event::VertexDone { id, .. }
            | Event::VertexError { id, .. }
            | Event::VertexCanceled { id }
            | Event::VertexProgress { id, .. }
            | Event::VertexStatus { id, .. } => Some(*id),
            Event::BuildWarning { .. } => None,
        }
    }

    /// The vertex the event belongs to, to renumber it.
    fn vertex_mut(&mut self) -> Option<&mut u64> {
        match self {
            Event::VertexStarted { id, .. }
            | Event::VertexCached { id }
            | Event::VertexLog { id, .. }
            | Event::VertexMiss { id, .. }
            | Event::VertexDone { id, .. }
            | Event::VertexError { id, .. }
            | Event::VertexCanceled { id }
            | Event::VertexProgress { id, .. }
            | Event::VertexStatus { id, .. } => Some(id),
            Event::BuildWarning { .. } => None,
        }
    }

    /// One line of `--progress rawjson` (without the newline).
    pub fn to_json_line(&self) -> String {
        // Serializing this enum cannot fail: every field is a plain string or number.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one rawjson line.
    pub fn from_json_line(line: &str) -> Result<Event, ProgressError> {
        Ok(serde_json::from_str(line.trim_end())?)
    }
}

/// Seconds since the build started. A closure so tests can drive time by hand.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Clock {
    /// A clock that starts now.
    pub fn start() -> Clock {
        let start = Instant::now();
        Clock(Arc::new(move || start.elapsed().as_secs_f64()))
    }

    /// A clock that reads `f` (for tests and replays).
    pub fn from_fn(f: impl Fn() -> f64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> f64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({:.3}s)", self.now())
    }
}

/// Where the solver sends events. Cloning is an `Arc` bump; sending never blocks, and a sink
/// whose receiver is gone drops events silently (progress must never fail a build).
#[derive(Clone)]
pub struct Sink(Arc<dyn Fn(Event) + Send + Sync>);

impl Sink {
    /// A sink feeding an unbounded tokio channel; the receiver goes to a renderer.
    pub fn channel() -> (Sink, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Sink(Arc::new(move |event| {
                let _ = tx.send(event);
            })),
            rx,
        )
    }

    /// A sink that calls `f` for every event (on the sender's thread).
    pub fn from_fn(f: impl Fn(Event) + Send + Sync + 'static) -> Sink {
        Sink(Arc::new(f))
    }

    /// A sink that drops everything.
    pub fn discard() -> Sink {
        Sink(Arc::new(|_| {}))
    }

    pub fn send(&self, event: Event) {
        (self.0)(event)
    }

    /// A sink into this one that adds `by` to every vertex number: for a part of the
    /// work (the solver's steps) that numbers its vertices from 1 after others were shown.
    pub fn offset(&self, by: u64) -> Sink {
        let inner = self.clone();
        Sink(Arc::new(move |mut event: Event| {
            if let Some(id) = event.vertex_mut() {
                *id += by;
            }
            inner.send(event);
        }))
    }

    /// A sink into this one that numbers vertices `#1`, `#2`, … in the order they first
    /// appear, as BuildKit does: the senders' numbers only tell vertices apart, and a vertex
    /// that never shows (a step a failure kept from starting) leaves no gap.
    pub fn numbered_in_order(&self) -> Sink {
        let inner = self.clone();
        let numbers: Mutex<HashMap<u64, u64>> = Mutex::new(HashMap::new());
        Sink(Arc::new(move |mut event: Event| {
            // Numbered and sent under the lock: two threads' first events leave in the
            // order their numbers say.
            let mut numbers = numbers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(id) = event.vertex_mut() {
                let next = numbers.len() as u64 + 1;
                *id = *numbers.entry(*id).or_insert(next);
            }
            inner.send(event);
        }))
    }

    /// Starts step `#id`: sends [`Event::VertexStarted`] and returns a handle that stamps the
    /// later events of the step with `clock`.
    pub fn vertex(&self, clock: &Clock, id: u64, name: impl Into<String>) -> Vertex {
        let started_at = clock.now();
        self.send(Event::VertexStarted {
            id,
            name: name.into(),
            started_at,
        });
        Vertex {
            sink: self.clone(),
            clock: clock.clone(),
            id,
            started_at,
            pending: [Vec::new(), Vec::new()],
        }
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// The events of one running step, stamped with the build clock.
#[derive(Debug)]
pub struct Vertex {
    sink: Sink,
    clock: Clock,
    id: u64,
    started_at: f64,
    /// An incomplete UTF-8 sequence at the end of the last chunk, per stream: a character split
    /// across two reads must not turn into two replacement characters.
    pending: [Vec<u8>; 2],
}

impl Vertex {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A handle reporting the step's items (the layers of a pull or push).
    pub fn items(&self) -> Items {
        Items::new(self.sink.clone(), self.clock.clone(), self.id)
    }

    pub fn log(&mut self, stream: Stream, bytes: &[u8]) {
        let pending = &mut self.pending[stream as usize];
        pending.extend_from_slice(bytes);
        let keep = incomplete_utf8_suffix(pending);
        let tail = pending.split_off(pending.len() - keep);
        let chunk = std::mem::replace(pending, tail);
        if !chunk.is_empty() {
            self.send_log(stream, &chunk);
        }
    }

    pub fn miss(&self, reason: impl Into<String>) {
        self.sink.send(Event::VertexMiss {
            id: self.id,
            reason: reason.into(),
        });
    }

    pub fn progress(&self, current: u64, total: Option<u64>) {
        self.sink.send(Event::VertexProgress {
            id: self.id,
            current,
            total,
        });
    }

    pub fn cached(mut self) {
        self.flush();
        self.sink.send(Event::VertexCached { id: self.id });
    }

    pub fn done(mut self) {
        self.flush();
        let duration = (self.clock.now() - self.started_at).max(0.0);
        self.sink.send(Event::VertexDone {
            id: self.id,
            duration,
        });
    }

    pub fn error(mut self, message: impl Into<String>) {
        self.flush();
        self.sink.send(Event::VertexError {
            id: self.id,
            message: message.into(),
        });
    }

    /// The step was stopped because another failed or the build was cancelled.
    pub fn canceled(mut self) {
        self.flush();
        self.sink.send(Event::VertexCanceled { id: self.id });
    }

    fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.send_log(stream, &rest);
            }
        }
    }

    fn send_log(&self, stream: Stream, bytes: &[u8]) {
        self.sink.send(Event::VertexLog {
            id: self.id,
            stream,
            data: String::from_utf8_lossy(bytes).into_owned(),
            at: self.clock.now(),
        });
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 sequence that is not complete yet.
fn incomplete_utf8_suffix(bytes: &[u8]) -> usize {
    // A sequence is at most 4 bytes: look back at most 3 for its lead byte.
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte
        }
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_suffix() {
        assert_eq!(incomplete_utf8_suffix(b"abc"), 0);
        assert_eq!(incomplete_utf8_suffix("é".as_bytes()), 0);
        assert_eq!(incomplete_utf8_suffix(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_utf8_suffix(&"€".as_bytes()[..2]), 2);
        assert_eq!(incomplete_utf8_suffix(&[0xff]), 0);
    }

    #[test]
    fn vertices_are_numbered_in_order_of_appearance() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let seen = seen.clone();
            Sink::from_fn(move |event| seen.lock().unwrap().push(event))
        };
        let numbered = sink.numbered_in_order();
        let clock = Clock::from_fn(|| 0.0);
        // Sender numbers with gaps (7 never shows), out of order, and a warning between.
        numbered.vertex(&clock, 5, "a").done();
        numbered.send(Event::BuildWarning {
            message: "w".into(),
        });
        let b = numbered.vertex(&clock, 9, "b");
        numbered.send(Event::VertexMiss {
            id: 5,
            reason: "r".into(),
        });
        b.canceled();
        numbered.vertex(&clock, 2, "c").error("boom");
        let ids: Vec<Option<u64>> = seen.lock().unwrap().iter().map(Event::vertex).collect();
        assert_eq!(
            ids,
            [
                Some(1),
                Some(1),
                None,
                Some(2),
                Some(1),
                Some(2),
                Some(3),
                Some(3)
            ]
        );
    }
}
