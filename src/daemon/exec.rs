//! `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `GET /exec/{id}/json`: a command
//! in a running container (`container::exec_start`). A start that is not detached hijacks
//! the connection (`101`) and sends the command's stdout and stderr in Docker's
//! multiplexed frames; the exit code is kept for the client's inspect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::http::{self, Request};
use super::{Daemon, DaemonError, Result};
use crate::container::{self, ExecOptions};

/// The execs created on this daemon, by id.
#[derive(Clone, Default)]
pub(super) struct Execs(Arc<Mutex<HashMap<String, Exec>>>);

#[derive(Debug, Clone)]
struct Exec {
    container: String,
    options: ExecOptions,
    /// The client asked for a terminal: its output is sent raw, not multiplexed (kiln
    /// allocates no pseudo-terminal, but the client reads the stream as if it had).
    tty: bool,
    running: bool,
    exit_code: Option<i32>,
}

impl Execs {
    fn with<T>(&self, id: &str, change: impl FnOnce(&mut Exec) -> T) -> Result<T> {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let exec = all
            .get_mut(id)
            .ok_or_else(|| DaemonError::NotFound(format!("No such exec instance: {id}")))?;
        Ok(change(exec))
    }
}

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    /// Docker sends `null` for an empty list.
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    #[serde(default)]
    attach_stdin: bool,
    #[serde(default)]
    tty: bool,
}

/// `POST /containers/{id}/exec`: records the command; `201 {"Id"}`.
pub(super) async fn create(
    daemon: &Arc<Daemon>,
    container_id: String,
    request: &Request,
) -> Result<http::Response> {
    let body: CreateBody = request.json()?;
    let argv = body.cmd.unwrap_or_default();
    if argv.is_empty() {
        return Err(DaemonError::BadRequest("No exec command specified".into()));
    }
    let store = daemon.store.clone();
    let query = container_id.clone();
    let found = super::blocking(move || Ok(container::resolve(&store, &query)?)).await?;
    let id = crate::store::random_name() + &crate::store::random_name();
    let exec = Exec {
        container: found.config.id.clone(),
        options: ExecOptions {
            argv,
            env: body.env.unwrap_or_default(),
            user: body.user.filter(|u| !u.is_empty()),
            workdir: body.working_dir.filter(|w| !w.is_empty()),
            stdin: body.attach_stdin,
        },
        tty: body.tty,
        running: false,
        exit_code: None,
    };
    daemon
        .execs
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), exec);
    Ok(http::json(StatusCode::CREATED, &json!({ "Id": id })))
}

/// `/exec/{id}/start`, `/exec/{id}/json`, `/exec/{id}/resize`.
pub(super) async fn route(
    daemon: Arc<Daemon>,
    request: &Request,
    rest: &str,
) -> Result<http::Response> {
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let id = id.to_string();
    match (&request.method, action) {
        (&Method::POST, "start") => start(daemon, id, request),
        (&Method::GET, "json") => {
            let shown = daemon.execs.with(&id, |exec| {
                json!({
                    "ID": id,
                    "ContainerID": exec.container,
                    "Running": exec.running,
                    "ExitCode": exec.exit_code,
                    "ProcessConfig": {
                        "entrypoint": exec.options.argv.first(),
                        "arguments": exec.options.argv.get(1..).unwrap_or_default(),
                        "user": exec.options.user.clone().unwrap_or_default(),
                        "tty": false,
                    },
                })
            })?;
            Ok(http::json(StatusCode::OK, &shown))
        }
        // No terminal is allocated: a resize of an exec that exists has nothing to change.
        (&Method::POST, "resize") => {
            daemon.execs.with(&id, |_| ())?;
            Ok(http::empty(StatusCode::OK))
        }
        _ => Err(DaemonError::NoRoute),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default)]
    detach: bool,
}

/// `POST /exec/{id}/start`: runs the command; detached, answers at once, else hijacks the
/// connection for its output.
fn start(daemon: Arc<Daemon>, id: String, request: &Request) -> Result<http::Response> {
    let body: StartBody = request.json()?;
    let (container_id, options, tty) = daemon.execs.with(&id, |exec| {
        exec.running = true;
        (exec.container.clone(), exec.options.clone(), exec.tty)
    })?;
    let started = container::exec_start(&daemon.store, &container_id, &options);
    let mut entered = match started {
        Ok(entered) => entered,
        Err(error) => {
            daemon.execs.with(&id, |exec| exec.running = false)?;
            return Err(error.into());
        }
    };
    let (stdout, stderr) = (entered.child.stdout.take(), entered.child.stderr.take());
    let stdin = entered.child.stdin.take();
    let (sender, mut frames) = mpsc::channel::<Bytes>(64);
    let readers = [
        stdout.map(|out| tokio::spawn(forward(out, 1, tty, sender.clone()))),
        stderr.map(|err| tokio::spawn(forward(err, 2, tty, sender.clone()))),
    ];
    drop(sender);
    let upgrade = (!body.detach).then(|| request.upgrade.clone());
    let execs = daemon.execs.clone();
    tokio::spawn(async move {
        let io = match upgrade {
            Some(upgrade) => upgrade.await.ok().map(TokioIo::new),
            None => None,
        };
        let (input, mut io) = match io.map(tokio::io::split) {
            Some((input, output)) => (Some(input), Some(output)),
            None => (None, None),
        };
        // The client's input until it half-closes; then the command's stdin closes. With
        // no client, its stdin is closed at once.
        let feeding = match (stdin, input) {
            (Some(mut stdin), Some(mut input)) => Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut input, &mut stdin).await;
            })),
            _ => None,
        };
        while let Some(frame) = frames.recv().await {
            if let Some(connection) = io.as_mut()
                && connection.write_all(&frame).await.is_err()
            {
                io = None; // The client left; the command runs on.
            }
        }
        for reader in readers.into_iter().flatten() {
            let _ = reader.await;
        }
        if let Some(feeding) = feeding {
            feeding.abort();
        }
        let code = entered.finish().await.unwrap_or(126);
        let _ = execs.with(&id, |exec| {
            exec.running = false;
            exec.exit_code = Some(code);
        });
        if let Some(mut connection) = io {
            let _ = connection.shutdown().await;
        }
    });
    if body.detach {
        return Ok(http::empty(StatusCode::OK));
    }
    Ok(http::hijacked())
}

/// Sends what `from` yields as frames of `stream` (1 stdout, 2 stderr), or raw for a
/// client that asked for a terminal.
async fn forward(mut from: impl AsyncRead + Unpin, stream: u8, tty: bool, to: mpsc::Sender<Bytes>) {
    let mut buffer = vec![0u8; 32 << 10];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 || to.send(chunk(tty, stream, &buffer[..read])).await.is_err() {
            break;
        }
    }
}

/// Output as the client reads it: raw when it asked for a terminal (one stream, as a
/// terminal would merge them), else a frame of Docker's multiplexed stream.
pub(super) fn chunk(tty: bool, stream: u8, data: &[u8]) -> Bytes {
    if tty {
        Bytes::copy_from_slice(data)
    } else {
        frame(stream, data)
    }
}

/// One frame of Docker's multiplexed stream: the stream, four bytes of length, the data.
pub(super) fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&[stream, 0, 0, 0]);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    Bytes::from(frame)
}
