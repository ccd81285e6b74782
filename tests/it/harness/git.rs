//! Git remotes on loopback for `ADD` from git: one bare repository served by `git daemon`
//! (`git://`) and by `git http-backend` (smart HTTP) behind a small CGI server here, which
//! can require an `Authorization` header. The repository is filled from a work tree the
//! test commits in ([`GitServer::git`], [`GitServer::publish`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::registry::free_port;

pub const GIT: &str = "/usr/bin/git";
const DAEMON: &str = "/usr/lib/git-core/git-daemon";
const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";

/// The servers and the repository `repo.git` they serve.
pub struct GitServer {
    dir: tempfile::TempDir,
    daemon: Child,
    /// `git://127.0.0.1:PORT`.
    pub git_url: String,
    /// `http://127.0.0.1:PORT`.
    pub http_url: String,
    /// The `Authorization` value the HTTP server requires, when set.
    pub required_auth: Arc<Mutex<Option<String>>>,
    /// Every HTTP request line the CGI server answered (`GET /repo.git/info/refs?…`).
    pub http_requests: Arc<Mutex<Vec<String>>>,
}

impl GitServer {
    /// `None` (after [`super::skip`]) when git, its daemon or its HTTP backend is missing.
    pub fn start() -> Option<GitServer> {
        if ![GIT, DAEMON, HTTP_BACKEND]
            .iter()
            .all(|tool| super::have(tool))
        {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kiln-git-")
            .tempdir()
            .unwrap();
        let served = dir.path().join("served");
        std::fs::create_dir_all(&served).unwrap();
        run_git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        run_git(&served, &["init", "-q", "--bare", "-b", "main", "repo.git"]);
        let port = free_port();
        // The daemon itself, not `git daemon`: killing that wrapper would leave it running.
        let daemon = Command::new(DAEMON)
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", served.display()))
            .arg(&served)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let http_url = format!("http://{}", listener.local_addr().unwrap());
        let required_auth = Arc::new(Mutex::new(None));
        let http_requests = Arc::new(Mutex::new(Vec::new()));
        let (auth, log) = (required_auth.clone(), http_requests.clone());
        // The accept thread lives as long as the test process; it holds nothing worth freeing.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (served, auth, log) = (served.clone(), auth.clone(), log.clone());
                std::thread::spawn(move || serve_cgi(conn, &served, &auth, &log));
            }
        });
        Some(GitServer {
            dir,
            daemon,
            git_url: format!("git://127.0.0.1:{port}"),
            http_url,
            required_auth,
            http_requests,
        })
    }

    /// The work tree the test commits in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// `git ARGS` in the work tree; its trimmed standard output.
    pub fn git(&self, args: &[&str]) -> String {
        run_git(&self.work(), args)
    }

    /// Writes `path` (relative to the work tree), creating parents.
    pub fn write(&self, path: &str, content: &str) {
        super::write_file(&self.work(), path, content);
    }

    /// Commits everything; the new commit's id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Serves another repository, `NAME.git`, with one commit of `files`; its git:// URL.
    pub fn publish_other(&self, name: &str, files: &[(&str, &str)]) -> String {
        let work = self.dir.path().join(name);
        run_git(self.dir.path(), &["init", "-q", "-b", "main", name]);
        for (path, content) in files {
            super::write_file(&work, path, content);
        }
        run_git(&work, &["add", "-A"]);
        run_git(&work, &["commit", "-q", "-m", name]);
        let served = self.dir.path().join("served");
        let bare = format!("{name}.git");
        run_git(&served, &["init", "-q", "--bare", "-b", "main", &bare]);
        let target = served.join(&bare);
        run_git(&work, &["push", "-q", "--mirror", target.to_str().unwrap()]);
        format!("{}/{name}.git", self.git_url)
    }

    /// Makes the served repository what the work tree's refs are.
    pub fn publish(&self) {
        let served = self.dir.path().join("served/repo.git");
        self.git(&["push", "-q", "--mirror", served.to_str().unwrap()]);
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// `git ARGS` in `dir` with a fixed identity and no user configuration.
fn run_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(GIT)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "kiln")
        .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
        .env("GIT_COMMITTER_NAME", "kiln")
        .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One HTTP/1.1 request answered by `git http-backend` as a CGI program.
fn serve_cgi(
    conn: TcpStream,
    served: &Path,
    auth: &Mutex<Option<String>>,
    log: &Mutex<Vec<String>>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let body = read_body(&mut reader, &headers);
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    log.lock().unwrap().push(format!("{method} {target}"));
    let required = auth.lock().unwrap().clone();
    if let Some(required) = required
        && headers.get("authorization") != Some(&required)
    {
        respond(
            conn,
            "401 Unauthorized",
            &[("WWW-Authenticate", "Basic realm=\"git\"")],
            b"",
        );
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new(HTTP_BACKEND);
    cgi.env_clear()
        .env("GIT_PROJECT_ROOT", served)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (header, variable) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(value) = headers.get(header) {
            cgi.env(variable, value);
        }
    }
    let mut child = cgi.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, p + 2))
        })
        .unwrap_or((out.stdout.len(), out.stdout.len()));
    let head = String::from_utf8_lossy(&out.stdout[..split.0]).to_string();
    let mut status = "200 OK".to_string();
    let mut cgi_headers = Vec::new();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("status") {
                status = value.trim().to_string();
            } else {
                cgi_headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
    }
    let cgi_headers: Vec<(&str, &str)> = cgi_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    respond(conn, &status, &cgi_headers, &out.stdout[split.1..]);
}

/// The request body: `Content-Length` bytes, or the chunks of a chunked one.
fn read_body(reader: &mut impl BufRead, headers: &HashMap<String, String>) -> Vec<u8> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap_or(0);
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            if size == 0 || reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        return body;
    }
    let len = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    body.resize(len, 0);
    let _ = reader.read_exact(&mut body);
    body
}

fn respond(mut conn: TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}
