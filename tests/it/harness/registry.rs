//! A real `docker-registry` (distribution 2.8) on a free loopback port, and a tiny
//! scriptable HTTP server for the cases a real registry cannot produce (wrong content,
//! 503s, bearer tokens).
//!
//! The shared registries run under a small `sh` watchdog that kills them and removes their
//! storage when the test process exits, because fixtures kept in statics are never dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::have;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";
pub const USER: &str = "kiln";
pub const PASSWORD: &str = "s3cret-pass";

/// A running registry. Killed (with its storage removed) on drop or when the tests exit.
pub struct TestRegistry {
    /// `127.0.0.1:<port>`
    pub addr: String,
    /// Its config, storage (`data/`) and access log (`log`).
    dir: PathBuf,
    child: Mutex<Child>,
}

/// One line of a registry's access log (Apache combined format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    /// Path with query, e.g. `/v2/app/blobs/sha256:…`.
    pub path: String,
    pub status: u16,
    /// Bytes of the response body.
    pub bytes: u64,
}

impl Access {
    /// The digest of the blob this request downloaded (a `GET …/blobs/D` answered 200).
    pub fn downloaded_blob(&self) -> Option<&str> {
        if self.method != "GET" || self.status != 200 {
            return None;
        }
        Some(self.path.rsplit_once("/blobs/")?.1)
    }

    /// The request that completes a blob upload (a `PUT …/blobs/uploads/…?…digest=…`, or a
    /// monolithic `POST …/blobs/uploads/?digest=…`): the digest uploaded, if it is one.
    /// Cross-repository mounts (`?mount=`) upload nothing and are not counted.
    pub fn uploaded_blob(&self) -> Option<String> {
        if !(self.status == 201 && self.path.contains("/blobs/uploads/")) {
            return None;
        }
        if !(self.method == "PUT" || self.method == "POST") || self.path.contains("mount=") {
            return None;
        }
        let query = self.path.split_once('?')?.1;
        let digest = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("digest="))?;
        Some(digest.replace("%3A", ":").replace("%3a", ":"))
    }
}

/// The access line `line`, if it is one (the log also holds the registry's own messages).
fn parse_access(line: &str) -> Option<Access> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut request = request.split(' ');
    let method = request.next()?.to_string();
    let path = request.next()?.to_string();
    let mut numbers = rest.split_whitespace();
    let status = numbers.next()?.parse().ok()?;
    let bytes = numbers.next()?.parse().unwrap_or(0);
    Some(Access {
        method,
        path,
        status,
        bytes,
    })
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            // TERM lets the watchdog's trap stop the registry and clean up.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind free port");
    l.local_addr().unwrap().port()
}

/// Status code of `GET /v2/`, or None if nothing answers yet.
pub fn probe(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl TestRegistry {
    /// Start a registry; with `htpasswd` set, it requires basic auth from that file.
    pub fn start(htpasswd: Option<&Path>) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some(p) => format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                p.display()
            ),
            None => String::new(),
        };
        let cfg = write_config(&dir, &addr, &auth);
        let script = r#"
"$1" serve "$2" >"$3/log" 2>&1 &
r=$!
trap 'kill $r 2>/dev/null; wait $r; rm -rf "$3"; exit 0' TERM
while kill -0 "$4" 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done
kill $r 2>/dev/null; wait $r; rm -rf "$3"
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(REGISTRY_BIN)
            .arg(&cfg)
            .arg(&dir)
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn docker-registry");
        let reg = TestRegistry {
            addr: addr.clone(),
            dir: dir.clone(),
            child: Mutex::new(child),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(probe(&addr), Some(200) | Some(401)) {
                return reg;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        panic!("docker-registry did not come up on {addr}: {log}");
    }
}

impl TestRegistry {
    /// A registry of the calling test's own (not shared): its access log holds only that
    /// test's requests. `None` after [`super::skip`].
    pub fn private() -> Option<TestRegistry> {
        have(REGISTRY_BIN).then(|| TestRegistry::start(None))
    }

    /// The requests answered so far, in order. The registry writes a line just after it
    /// answers, so this first sends a marker request of its own and waits for its line:
    /// every request answered before it is then in the log too. Marker lines are left out.
    pub fn requests(&self) -> Vec<Access> {
        static MARKS: AtomicUsize = AtomicUsize::new(0);
        let marker = format!("/v2/?settled={}", MARKS.fetch_add(1, Ordering::Relaxed));
        let mut conn = TcpStream::connect(&self.addr).expect("connect to the registry");
        write!(
            conn,
            "GET {marker} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all: Vec<Access> = std::fs::read_to_string(self.dir.join("log"))
                .unwrap_or_default()
                .lines()
                .filter_map(parse_access)
                .collect();
            if all.iter().any(|access| access.path == marker) {
                return all
                    .into_iter()
                    .filter(|access| !access.path.starts_with("/v2/?settled="))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "the registry never logged {marker}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Writes `dir/config.yml` for a registry serving `addr` from `dir/data`; `auth` is an
/// extra `auth:` section (or empty).
pub fn write_config(dir: &Path, addr: &str, auth: &str) -> PathBuf {
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    cfg
}

/// The shared anonymous registry of this test process; `None` after [`super::skip`] (on
/// every call, so that under `CI` every test needing it fails).
pub fn plain() -> Option<&'static TestRegistry> {
    if !have(REGISTRY_BIN) {
        return None;
    }
    static R: OnceLock<TestRegistry> = OnceLock::new();
    Some(R.get_or_init(|| TestRegistry::start(None)))
}

/// The shared basic-auth registry (user [`USER`], password [`PASSWORD`]), like [`plain`].
pub fn basic_auth() -> Option<&'static TestRegistry> {
    if !have(REGISTRY_BIN) || !have(HTPASSWD_BIN) {
        return None;
    }
    static R: OnceLock<(TestRegistry, tempfile::TempDir)> = OnceLock::new();
    let (registry, _htpasswd_dir) = R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let st = Command::new(HTPASSWD_BIN)
            .args(["-Bbc"])
            .arg(&file)
            .args([USER, PASSWORD])
            .stderr(Stdio::null())
            .status()
            .expect("run htpasswd");
        assert!(st.success(), "htpasswd failed");
        (TestRegistry::start(Some(&file)), dir)
    });
    Some(registry)
}

// ---------------------------------------------------------------------------------------------
// Fake HTTP server

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path with query.
    pub target: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
}

/// A canned answer.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: vec![],
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Resp {
        self.body = b.into();
        self
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// A thread-per-connection HTTP/1.1 server on a loopback port; one request per connection.
pub struct FakeServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> FakeServer {
        FakeServer::start_on("127.0.0.1", handler)
    }

    /// Listen on `ip` (e.g. a non-loopback address to exercise the insecure fallback).
    pub fn start_on(
        ip: &str,
        handler: impl Fn(&Req) -> Resp + Send + Sync + 'static,
    ) -> FakeServer {
        let l = TcpListener::bind((ip, 0)).expect("bind fake server");
        let addr = l.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let reqs = requests.clone();
        // The accept thread lives as long as the test process; it holds no resources worth freeing.
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (h, r) = (handler.clone(), reqs.clone());
                std::thread::spawn(move || serve_one(conn, &*h, &r));
            }
        });
        FakeServer { addr, requests }
    }

    pub fn count(&self, pred: impl Fn(&Req) -> bool) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| pred(r))
            .count()
    }
}

fn serve_one(mut conn: TcpStream, h: &Handler, log: &Mutex<Vec<Req>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    // A TLS ClientHello on a plain-HTTP port: answer like Go's server does instead of waiting.
    let mut first = [0u8; 1];
    match conn.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {
            let _ = conn.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            return;
        }
        Ok(0) | Err(_) => return,
        _ => {}
    }
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Read the whole body, so that closing the connection never resets it under the client.
    let mut body_read = buf.len() - head_end;
    while body_read < len {
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => body_read += n,
        }
    }
    let req = Req {
        method,
        target,
        headers,
    };
    let resp = h(&req);
    log.lock().unwrap().push(req.clone());
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
    let mut has_len = false;
    for (k, v) in &resp.headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    if req.method != "HEAD" {
        let _ = conn.write_all(&resp.body);
    }
    let _ = conn.flush();
}
