//! Progress events and renderers: golden plain output, rawjson round trip, tty smoke test.

use std::io::Write;
use std::sync::{Arc, Mutex};

use indicatif::ProgressDrawTarget;
use kiln::cli::progress::{JsonRenderer, PlainRenderer, Renderer, TtyRenderer, drive, rendered};
use kiln::progress::{Clock, Event, LogStore, Sink, Stream};

fn started(id: u64, name: &str, at: f64) -> Event {
    Event::VertexStarted {
        id,
        name: name.to_string(),
        started_at: at,
    }
}

fn log(id: u64, data: &str, at: f64) -> Event {
    Event::VertexLog {
        id,
        stream: Stream::Stdout,
        data: data.to_string(),
        at,
    }
}

fn err_log(id: u64, data: &str, at: f64) -> Event {
    Event::VertexLog {
        id,
        stream: Stream::Stderr,
        data: data.to_string(),
        at,
    }
}

fn plain(events: &[Event]) -> String {
    let mut r = PlainRenderer::new(Vec::new());
    for e in events {
        r.event(e);
    }
    r.finish();
    String::from_utf8(r.into_inner()).unwrap()
}

#[test]
fn plain_sequence_with_cache_miss_and_partial_lines() {
    let out = plain(&[
        started(1, "[internal] load build definition from Dockerfile", 0.0),
        Event::VertexDone {
            id: 1,
            duration: 0.01,
        },
        started(2, "[base 1/2] FROM docker.io/library/alpine", 0.1),
        Event::VertexCached { id: 2 },
        started(3, "[build 2/3] RUN make", 0.2),
        Event::VertexMiss {
            id: 3,
            reason: "command changed".into(),
        },
        log(3, "cc -c a.c\ncc -c b", 0.512),
        log(3, ".c\n", 0.7),
        err_log(3, "warning: x", 0.9),
        log(3, "linked\r\n", 1.0),
        Event::VertexDone {
            id: 3,
            duration: 1.04,
        },
    ]);
    assert_eq!(
        out,
        "#1 [internal] load build definition from Dockerfile\n\
         #1 DONE 0.0s\n\
         \n\
         #2 [base 1/2] FROM docker.io/library/alpine\n\
         #2 CACHED\n\
         \n\
         #3 [build 2/3] RUN make\n\
         #3 cache miss: command changed\n\
         #3 0.312 cc -c a.c\n\
         #3 0.312 cc -c b.c\n\
         #3 0.800 linked\n\
         #3 0.700 warning: x\n\
         #3 DONE 1.0s\n"
    );
}

#[test]
fn plain_interleaving_repeats_headers() {
    let out = plain(&[
        started(1, "[a 1/2] RUN x", 0.0),
        started(2, "[b 1/2] RUN y", 0.0),
        log(1, "one\n", 0.5),
        log(2, "two\n", 0.6),
        log(2, "two more\n", 0.65),
        Event::VertexDone {
            id: 2,
            duration: 0.7,
        },
        log(1, "three\n", 0.8),
        Event::VertexError {
            id: 1,
            message: "process \"/bin/sh -c x\" did not complete successfully: exit code: 1".into(),
        },
    ]);
    assert_eq!(
        out,
        "#1 [a 1/2] RUN x\n\
         \n\
         #2 [b 1/2] RUN y\n\
         \n\
         #1 [a 1/2] RUN x\n\
         #1 0.500 one\n\
         \n\
         #2 [b 1/2] RUN y\n\
         #2 0.600 two\n\
         #2 0.650 two more\n\
         #2 DONE 0.7s\n\
         \n\
         #1 [a 1/2] RUN x\n\
         #1 0.800 three\n\
         #1 ERROR: process \"/bin/sh -c x\" did not complete successfully: exit code: 1\n"
    );
}

#[test]
fn plain_miss_before_start_warning_progress_and_unterminated_output() {
    let out = plain(&[
        Event::VertexMiss {
            id: 4,
            reason: "1 file changed: src/main.rs".into(),
        },
        started(4, "[build 3/3] COPY . /src", 1.0),
        Event::VertexProgress {
            id: 4,
            current: 1_000,
            total: Some(3_400_000),
        },
        Event::VertexProgress {
            id: 4,
            current: 3_400_000,
            total: Some(3_400_000),
        },
        Event::BuildWarning {
            message: "FROM --platform flag should not use constant value".into(),
        },
        log(4, "no newline at end", 1.25),
    ]);
    assert_eq!(
        out,
        "#4 [build 3/3] COPY . /src\n\
         #4 cache miss: 1 file changed: src/main.rs\n\
         #4 3.40MB / 3.40MB done\n\
         \n\
         WARNING: FROM --platform flag should not use constant value\n\
         \n\
         #4 [build 3/3] COPY . /src\n\
         #4 0.250 no newline at end\n"
    );
}

#[test]
fn plain_several_lines_in_one_chunk_and_blank_lines() {
    let out = plain(&[
        started(7, "[2/2] RUN printf", 2.0),
        log(7, "a\n\nb\n", 2.5),
        Event::VertexDone {
            id: 7,
            duration: 0.55,
        },
    ]);
    assert_eq!(
        out,
        "#7 [2/2] RUN printf\n#7 0.500 a\n#7 0.500 \n#7 0.500 b\n#7 DONE 0.6s\n"
    );
}

fn all_events() -> Vec<Event> {
    vec![
        started(1, "[build 2/5] RUN make", 0.25),
        Event::VertexCached { id: 2 },
        log(1, "héllo\n", 0.5),
        err_log(1, "oops", 0.75),
        Event::VertexMiss {
            id: 1,
            reason: "ENV GOFLAGS changed: \"-x\" → \"-v\"".into(),
        },
        Event::VertexDone {
            id: 1,
            duration: 1.5,
        },
        Event::VertexError {
            id: 3,
            message: "exit code: 2".into(),
        },
        Event::VertexProgress {
            id: 4,
            current: 10,
            total: Some(20),
        },
        Event::VertexProgress {
            id: 4,
            current: 10,
            total: None,
        },
        Event::BuildWarning {
            message: "careful".into(),
        },
    ]
}

#[test]
fn rawjson_round_trip() {
    let events = all_events();
    let mut r = JsonRenderer::new(Vec::new());
    for e in &events {
        r.event(e);
    }
    r.finish();
    let text = String::from_utf8(r.into_inner()).unwrap();
    let back: Vec<Event> = text
        .lines()
        .map(|l| Event::from_json_line(l).unwrap())
        .collect();
    assert_eq!(back, events);
    // The wire format is stable: tools parse it.
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"type":"vertex_started","id":1,"name":"[build 2/5] RUN make","started_at":0.25}"#
    );
    assert_eq!(
        text.lines().nth(3).unwrap(),
        r#"{"type":"vertex_log","id":1,"stream":"stderr","data":"oops","at":0.75}"#
    );
    assert!(Event::from_json_line("{\"type\":\"nope\"}").is_err());
}

/// A clock the test moves by hand.
fn manual_clock() -> (Clock, Arc<Mutex<f64>>) {
    let now = Arc::new(Mutex::new(0.0));
    let read = now.clone();
    (Clock::from_fn(move || *read.lock().unwrap()), now)
}

fn collecting_sink() -> (Sink, Arc<Mutex<Vec<Event>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let push = seen.clone();
    (Sink::from_fn(move |e| push.lock().unwrap().push(e)), seen)
}

#[test]
fn vertex_handle_stamps_times_and_keeps_utf8_whole() {
    let (clock, now) = manual_clock();
    let (sink, seen) = collecting_sink();
    *now.lock().unwrap() = 1.0;
    let mut v = sink.clone().vertex(&clock, 5, "[1/1] RUN echo");
    v.miss("command changed");
    *now.lock().unwrap() = 1.5;
    let bytes = "é\n".as_bytes();
    v.log(Stream::Stdout, &bytes[..1]); // half a character: held back
    v.log(Stream::Stdout, &bytes[1..]);
    v.log(Stream::Stderr, &[b'x', 0xE2, 0x82]); // ends inside "€"
    *now.lock().unwrap() = 2.25;
    v.done();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            started(5, "[1/1] RUN echo", 1.0),
            Event::VertexMiss {
                id: 5,
                reason: "command changed".into()
            },
            log(5, "é\n", 1.5),
            err_log(5, "x", 1.5),
            // The unfinished sequence is flushed (lossily) when the step ends.
            err_log(5, "\u{FFFD}", 2.25),
            Event::VertexDone {
                id: 5,
                duration: 1.25
            },
        ]
    );
}

#[test]
fn log_store_keeps_everything_and_tails() {
    let logs = LogStore::new();
    logs.record(&started(1, "[1/2] RUN x", 0.0));
    for i in 0..1000 {
        logs.record(&log(1, &format!("line {i}\n"), 0.1));
    }
    logs.record(&log(1, "partial", 0.2));
    logs.record(&log(2, "a\r\nb\n", 0.2));
    assert_eq!(logs.full(1).lines().count(), 1001);
    assert!(logs.full(1).starts_with("line 0\nline 1\n"));
    assert_eq!(logs.tail(1, 3), ["line 998", "line 999", "partial"]);
    assert_eq!(logs.tail(2, 10), ["a", "b"]);
    assert!(logs.tail(3, 5).is_empty());
    assert_eq!(logs.name(1).as_deref(), Some("[1/2] RUN x"));
    assert_eq!(logs.all().len(), 2);
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn tty_renderer_smoke() {
    let (clock, now) = manual_clock();
    let out = SharedBuf::default();
    let mut r = TtyRenderer::new(ProgressDrawTarget::hidden(), clock, Box::new(out.clone()));
    r.event(&started(1, "[base 1/3] FROM docker.io/library/alpine", 0.0));
    r.event(&Event::VertexCached { id: 1 });
    *now.lock().unwrap() = 0.5;
    r.event(&started(2, "[build 2/3] RUN make", 0.5));
    r.event(&Event::VertexMiss {
        id: 2,
        reason: "command changed".into(),
    });
    for i in 0..10 {
        r.event(&log(2, &format!("step {i}\n"), 0.6));
    }
    r.event(&log(2, "almost", 0.7));
    r.event(&started(3, "[build 3/3] RUN false", 0.5));
    r.event(&Event::VertexProgress {
        id: 3,
        current: 1_500,
        total: Some(3_000),
    });
    *now.lock().unwrap() = 1.75;
    r.tick();
    let texts: Vec<String> = r.view().iter().map(|l| l.text.clone()).collect();
    assert_eq!(texts[0], "[+] Building 1.8s (1/3)");
    assert!(texts.contains(&" => [build 2/3] RUN make".to_string()));
    assert!(texts.contains(&" => => cache miss: command changed".to_string()));
    assert!(texts.contains(&" => => # almost".to_string()));
    assert!(
        !texts.contains(&" => => # step 4".to_string()),
        "only the tail is shown"
    );
    assert!(texts.contains(&" => [build 3/3] RUN false 1.50kB / 3.00kB".to_string()));
    let running = r
        .view()
        .into_iter()
        .find(|l| l.text == " => [build 2/3] RUN make");
    assert_eq!(running.unwrap().time, "1.2s");

    r.event(&log(2, "\n", 1.8));
    r.event(&Event::VertexDone {
        id: 2,
        duration: 1.3,
    });
    r.event(&log(3, "boom\n", 1.9));
    *now.lock().unwrap() = 2.0;
    r.event(&Event::VertexError {
        id: 3,
        message: "process \"/bin/sh -c false\" did not complete successfully: exit code: 1".into(),
    });
    r.finish();
    let lines: Vec<String> = r
        .view()
        .iter()
        .map(|l| format!("{} {}", l.text, l.time).trim_end().to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "[+] Building 2.0s (3/3) ERROR",
            " => CACHED [base 1/3] FROM docker.io/library/alpine 0.0s",
            " => [build 2/3] RUN make 1.3s",
            " => ERROR [build 3/3] RUN false 1.5s",
        ]
    );
    assert_eq!(
        out.text(),
        "------\n > [build 3/3] RUN false:\nboom\n------\n\
         ERROR: [build 3/3] RUN false: process \"/bin/sh -c false\" did not complete successfully: exit code: 1\n"
    );
}

#[tokio::test]
async fn drive_feeds_logs_and_renderer_until_senders_drop() {
    let (sink, rx) = Sink::channel();
    let logs = LogStore::new();
    let out = SharedBuf::default();
    let task = tokio::spawn(drive(
        rx,
        Box::new(PlainRenderer::new(out.clone())),
        Some(logs.clone()),
    ));
    let other = sink.clone();
    sink.send(started(1, "[1/1] RUN true", 0.0));
    other.send(log(1, "ok\n", 0.125));
    other.send(Event::VertexDone {
        id: 1,
        duration: 0.25,
    });
    drop(sink);
    drop(other);
    task.await.unwrap();
    assert_eq!(out.text(), "#1 [1/1] RUN true\n#1 0.125 ok\n#1 DONE 0.2s\n");
    assert_eq!(logs.full(1), "ok\n");
}

#[test]
fn plain_says_canceled_for_a_step_stopped_by_another_failure() {
    let out = plain(&[
        started(1, "[a 1/1] RUN sleep 60", 0.0),
        started(2, "[b 1/1] RUN false", 0.0),
        Event::VertexError {
            id: 2,
            message: "exit code: 1".into(),
        },
        Event::VertexCanceled { id: 1 },
    ]);
    assert_eq!(
        out,
        "#1 [a 1/1] RUN sleep 60\n\
         \n\
         #2 [b 1/1] RUN false\n\
         #2 ERROR: exit code: 1\n\
         \n\
         #1 [a 1/1] RUN sleep 60\n\
         #1 CANCELED\n"
    );
}

#[test]
fn rawjson_carries_canceled() {
    let event = Event::VertexCanceled { id: 4 };
    let line = event.to_json_line();
    assert_eq!(line, r#"{"type":"vertex_canceled","id":4}"#);
    assert_eq!(Event::from_json_line(&line).unwrap(), event);
}

/// The settled tty view of `events`: its lines, and what was printed below it.
fn tty_settled(events: &[Event]) -> (Vec<String>, String) {
    let (clock, _) = manual_clock();
    let out = SharedBuf::default();
    let mut r = TtyRenderer::new(ProgressDrawTarget::hidden(), clock, Box::new(out.clone()));
    for event in events {
        r.event(event);
    }
    r.finish();
    let lines = r.view().into_iter().map(|l| l.text).collect();
    (lines, out.text())
}

#[test]
fn tty_header_tells_how_the_build_ended() {
    let done = [
        started(1, "[1/1] RUN true", 0.0),
        Event::VertexDone {
            id: 1,
            duration: 0.1,
        },
    ];
    let (lines, _) = tty_settled(&done);
    assert_eq!(lines[0], "[+] Building 0.0s (1/1) FINISHED");

    let failed = [
        started(1, "[a 1/1] RUN sleep 60", 0.0),
        started(2, "[b 1/1] RUN false", 0.0),
        Event::VertexError {
            id: 2,
            message: "exit code: 1".into(),
        },
        Event::VertexCanceled { id: 1 },
    ];
    let (lines, report) = tty_settled(&failed);
    assert_eq!(
        lines,
        [
            "[+] Building 0.0s (2/2) ERROR",
            " => CANCELED [a 1/1] RUN sleep 60",
            " => ERROR [b 1/1] RUN false",
        ]
    );
    // Only the failure is reported below the view, not the step it stopped.
    assert!(
        report.contains("ERROR: [b 1/1] RUN false: exit code: 1"),
        "{report}"
    );
    assert!(!report.contains("sleep"), "{report}");

    // Ctrl-C: steps stopped, none failed.
    let (lines, _) = tty_settled(&[
        started(1, "[1/1] RUN sleep 60", 0.0),
        Event::VertexCanceled { id: 1 },
    ]);
    assert_eq!(lines[0], "[+] Building 0.0s (1/1) CANCELED");

    // The build failed while planning (no step ran), or after its steps (exporting).
    for events in [&[][..], &done[..]] {
        let (clock, _) = manual_clock();
        let mut r = TtyRenderer::new(ProgressDrawTarget::hidden(), clock, Box::new(Vec::new()));
        for event in events {
            r.event(event);
        }
        r.failed();
        r.finish();
        let header = &r.view()[0].text;
        assert!(header.ends_with(") ERROR"), "{header}");
    }
}

/// Records the calls a renderer gets.
struct Recorder(Arc<Mutex<Vec<&'static str>>>);

impl Renderer for Recorder {
    fn event(&mut self, _: &Event) {
        self.0.lock().unwrap().push("event");
    }
    fn failed(&mut self) {
        self.0.lock().unwrap().push("failed");
    }
    fn finish(&mut self) {
        self.0.lock().unwrap().push("finish");
    }
}

#[tokio::test]
async fn rendered_tells_the_renderer_a_failed_outcome_before_it_finishes() {
    for (outcome, calls) in [
        (Ok(()), vec!["event", "finish"]),
        (Err("bad target"), vec!["event", "failed", "finish"]),
    ] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let got = rendered(Box::new(Recorder(seen.clone())), |sink| async move {
            sink.send(started(1, "[1/1] RUN true", 0.0));
            outcome
        })
        .await;
        assert_eq!(got, outcome);
        assert_eq!(*seen.lock().unwrap(), calls);
    }
}
