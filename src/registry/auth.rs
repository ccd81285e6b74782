//! Credentials: `WWW-Authenticate` challenges, `~/.docker/config.json` and credential helpers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use super::error::{RegistryError, Result};
use super::scheme::{auth_key, key_to_hostname};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Username and password (or personal access token).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>` username).
    IdentityToken(String),
}

// Hand-written so secrets never reach logs or error messages.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

/// Where a [`Client`](super::Client) gets credentials from. Called at most once per registry
/// per client (the answer is cached), from a blocking thread: helpers may spawn processes.
pub trait CredentialSource: Send + Sync {
    /// Credentials for `registry` as written in references (`docker.io`, `host:port`).
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>>;
}

/// No credentials: anonymous access only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn credentials(&self, _registry: &str) -> Result<Option<Credentials>> {
        Ok(None)
    }
}

/// Fixed credentials per registry (tests, `--username/--password` style flags).
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials(pub BTreeMap<String, Credentials>);

impl CredentialSource for StaticCredentials {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        Ok(self.0.get(registry).cloned())
    }
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
/// Returns `None` for schemes we do not speak or a Bearer without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_auth_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm").filter(|r| !r.is_empty())?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

/// `k=v, k="quoted, with \" escapes"` pairs.
fn parse_auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => break,
                        c => val.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
        }
        let key = key.trim().to_string();
        if !key.is_empty() {
            out.push((key, val.trim().to_string()));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Docker config

/// The directory holding `config.json`: `$DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn config_dir(docker_config: Option<OsString>, home: Option<PathBuf>) -> Option<PathBuf> {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => home.map(|h| h.join(".docker")),
    }
}

/// `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) as a credential store.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    /// PATH used to find `docker-credential-*` helpers; `None` = the process's PATH.
    helper_path: Option<OsString>,
}

impl DockerConfig {
    /// The config of the current user, honouring `DOCKER_CONFIG`.
    pub fn from_env() -> DockerConfig {
        let dir = config_dir(
            std::env::var_os("DOCKER_CONFIG"),
            std::env::var_os("HOME").map(PathBuf::from),
        )
        .unwrap_or_else(|| PathBuf::from(".docker"));
        DockerConfig::in_dir(dir)
    }

    /// The `config.json` inside `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            path: dir.into().join("config.json"),
            helper_path: None,
        }
    }

    /// Search this PATH for credential helpers instead of the process's (no global state).
    pub fn with_helper_path(mut self, path: impl Into<OsString>) -> DockerConfig {
        self.helper_path = Some(path.into());
        self
    }

    /// Path of the config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Config {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    fn load(&self) -> Result<Map<String, Value>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(self.err(e.to_string())),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(self.err("not a JSON object")),
            Err(e) => Err(self.err(e.to_string())),
        }
    }

    /// Write atomically (temp file + fsync + rename), mode 0600: it holds secrets.
    fn save(&self, m: &Map<String, Value>) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.err(e.to_string()))?;
        let mut data = serde_json::to_vec_pretty(&Value::Object(m.clone()))
            .map_err(|e| self.err(e.to_string()))?;
        data.push(b'\n');
        let tmp = dir.join(format!(".config.json.kiln-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err(e.to_string())
        })
    }

    /// The helper configured for `key`: `credHelpers[host]`, else `credsStore`.
    fn helper_for(m: &Map<String, Value>, key: &str) -> Option<String> {
        let host = key_to_hostname(key);
        let from_helpers = m
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.get(key).or_else(|| h.get(host)))
            .and_then(Value::as_str);
        from_helpers
            .or_else(|| m.get("credsStore").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn run_helper(&self, helper: &str, action: &'static str, input: &[u8]) -> Result<Vec<u8>> {
        let herr = |message: String| RegistryError::CredentialHelper {
            helper: helper.to_string(),
            action,
            message,
        };
        let mut cmd = Command::new(format!("docker-credential-{helper}"));
        cmd.arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &self.helper_path {
            // Setting PATH on the Command makes std search it for the program too.
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().map_err(|e| herr(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(|e| herr(e.to_string()))?;
        }
        let out = child.wait_with_output().map_err(|e| herr(e.to_string()))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if msg.is_empty() {
                msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            if msg.is_empty() {
                msg = out.status.to_string();
            }
            Err(herr(msg))
        }
    }

    /// Find the `auths` entry for `registry`: the exact key, else one whose host matches.
    fn auths_entry<'a>(
        m: &'a Map<String, Value>,
        registry: &str,
    ) -> Option<&'a Map<String, Value>> {
        let auths = m.get("auths")?.as_object()?;
        let key = auth_key(registry);
        let want = key_to_hostname(&key);
        auths
            .get(&key)
            .or_else(|| {
                auths
                    .iter()
                    .find(|(k, _)| {
                        auth_key(key_to_hostname(k)) == key || key_to_hostname(k) == want
                    })
                    .map(|(_, v)| v)
            })
            .and_then(Value::as_object)
    }

    fn decode_entry(&self, e: &Map<String, Value>) -> Result<Option<Credentials>> {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let token = s("identitytoken");
        if !token.is_empty() {
            return Ok(Some(Credentials::IdentityToken(token)));
        }
        let auth = s("auth");
        if !auth.is_empty() {
            let raw = B64
                .decode(auth.trim())
                .map_err(|e| self.err(format!("invalid base64 in auth field: {e}")))?;
            let raw = String::from_utf8(raw).map_err(|_| self.err("auth field is not UTF-8"))?;
            let (u, p) = raw
                .split_once(':')
                .ok_or_else(|| self.err("auth field is not user:password"))?;
            return Ok(Some(Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        let (u, p) = (s("username"), s("password"));
        if !u.is_empty() || !p.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: u,
                password: p,
            }));
        }
        Ok(None)
    }

    /// Look up credentials for `registry` (`docker.io`, `host:port`).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let m = self.load()?;
        let key = auth_key(registry);
        if let Some(helper) = Self::helper_for(&m, &key) {
            match self.run_helper(&helper, "get", key.as_bytes()) {
                Ok(out) => return parse_helper_get(&helper, &out).map(Some),
                // Helpers say so on stdout and exit 1; fall back to the file like Docker does.
                Err(RegistryError::CredentialHelper { message, .. })
                    if message.contains("credentials not found") => {}
                Err(e) => return Err(e),
            }
        }
        match Self::auths_entry(&m, registry) {
            Some(e) => self.decode_entry(e),
            None => Ok(None),
        }
    }

    /// Store credentials for `registry` (via the helper if one is configured).
    pub fn store(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut m = self.load()?;
        let key = auth_key(registry);
        let mut entry = Map::new();
        if let Some(helper) = Self::helper_for(&m, &key) {
            let (user, secret) = match creds {
                Credentials::Basic { username, password } => (username.as_str(), password.as_str()),
                Credentials::IdentityToken(t) => ("<token>", t.as_str()),
            };
            let input = serde_json::json!({"ServerURL": key, "Username": user, "Secret": secret});
            self.run_helper(&helper, "store", input.to_string().as_bytes())?;
        } else {
            match creds {
                Credentials::Basic { username, password } => {
                    entry.insert(
                        "auth".into(),
                        Value::String(B64.encode(format!("{username}:{password}"))),
                    );
                }
                Credentials::IdentityToken(t) => {
                    entry.insert("identitytoken".into(), Value::String(t.clone()));
                }
            }
        }
        let auths = m
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(a) = auths {
            // Docker keeps an empty entry when a helper holds the secret, so `docker info` lists it.
            a.insert(key, Value::Object(entry));
        }
        self.save(&m)
    }

    /// Remove credentials for `registry`. Returns whether anything was removed.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let mut m = self.load()?;
        let key = auth_key(registry);
        let mut removed = false;
        if let Some(helper) = Self::helper_for(&m, &key) {
            match self.run_helper(&helper, "erase", key.as_bytes()) {
                Ok(_) => removed = true,
                Err(RegistryError::CredentialHelper { message, .. })
                    if message.contains("credentials not found") => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(Value::Object(a)) = m.get_mut("auths") {
            let want = key_to_hostname(&key).to_string();
            let before = a.len();
            a.retain(|k, _| {
                k != &key && auth_key(key_to_hostname(k)) != key && key_to_hostname(k) != want
            });
            if a.len() != before {
                removed = true;
                self.save(&m)?;
            }
        }
        Ok(removed)
    }
}

impl CredentialSource for DockerConfig {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        self.get(registry)
    }
}

fn parse_helper_get(helper: &str, out: &[u8]) -> Result<Credentials> {
    #[derive(serde::Deserialize)]
    struct Out {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let o: Out = serde_json::from_slice(out).map_err(|e| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        action: "get",
        message: format!("invalid JSON output: {e}"),
    })?;
    Ok(if o.username == "<token>" {
        Credentials::IdentityToken(o.secret)
    } else {
        Credentials::Basic {
            username: o.username,
            password: o.secret,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:1/t, service = "a\"b" "#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("a\"b".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn config_dir_resolution() {
        assert_eq!(
            config_dir(Some("/cfg".into()), Some("/home/u".into())),
            Some(PathBuf::from("/cfg"))
        );
        assert_eq!(
            config_dir(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.docker"))
        );
        assert_eq!(config_dir(None, None), None);
    }

    #[test]
    fn reads_auths_variants() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{
              "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
              "https://r.example:5000/v2/":{"username":"u","password":"p"},
              "tok.example":{"auth":"","identitytoken":"rt"},
              "bad.example":{"auth":"!!!"}
            },"other":{"keep":true}}"#,
        )
        .unwrap();
        let c = DockerConfig::in_dir(dir.path());
        let basic = |u: &str, p: &str| {
            Some(Credentials::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(c.get("docker.io").unwrap(), basic("hub", "secret"));
        assert_eq!(c.get("r.example:5000").unwrap(), basic("u", "p"));
        assert_eq!(
            c.get("tok.example").unwrap(),
            Some(Credentials::IdentityToken("rt".into()))
        );
        assert_eq!(c.get("nothing.example").unwrap(), None);
        assert!(c.get("bad.example").is_err());

        c.store(
            "new.example:1",
            &Credentials::Basic {
                username: "a".into(),
                password: "b:c".into(),
            },
        )
        .unwrap();
        assert_eq!(c.get("new.example:1").unwrap(), basic("a", "b:c"));
        let text = std::fs::read_to_string(c.path()).unwrap();
        assert!(text.contains("\"keep\""), "unknown fields are preserved");
        assert!(c.erase("docker.io").unwrap());
        assert_eq!(c.get("docker.io").unwrap(), None);
        assert!(!c.erase("docker.io").unwrap());
    }
}
