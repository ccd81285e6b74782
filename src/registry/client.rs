//! The HTTP side: endpoints, auth, retries and the distribution API operations.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::auth::{Challenge, CredentialSource, Credentials, DockerConfig, parse_challenge};
use super::digest::{Hasher, sha256_digest, validate_digest};
use super::error::{RegistryError, Result, parse_remote_errors};
use super::scheme::{Scheme, api_host, is_loopback, key_to_hostname, scheme_for};
use super::{RegistryRef, Resolved, media, tls};

/// Upload progress callback: total bytes sent so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Manifests bigger than this are refused (containerd uses the same cap): they live in memory.
const MAX_MANIFEST: usize = 4 << 20;
/// Read size for streamed uploads; big reads keep syscalls and chunk overhead low.
const UPLOAD_CHUNK: usize = 256 << 10;

/// Retry policy for connection errors, 5xx and 429.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total tries (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubled each retry.
    pub base_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// How a [`Client`] is set up.
#[derive(Clone)]
pub struct ClientConfig {
    /// `--insecure-registry` hosts (host or host:port).
    pub insecure_registries: Vec<String>,
    /// Where credentials come from.
    pub credentials: Arc<dyn CredentialSource>,
    pub user_agent: String,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Docker config credentials of the current user, `KILN_INSECURE_REGISTRIES`, defaults.
    pub fn from_env() -> ClientConfig {
        ClientConfig::new(
            super::insecure_from_env(),
            Arc::new(DockerConfig::from_env()),
        )
    }

    pub fn new(insecure: Vec<String>, credentials: Arc<dyn CredentialSource>) -> ClientConfig {
        ClientConfig {
            insecure_registries: insecure,
            credentials,
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_string(),
            retry: RetryPolicy::default(),
        }
    }
}

/// What to upload.
pub enum BlobSource {
    /// A file, streamed; reopened if the request must be retried.
    Path(PathBuf),
    /// Any async reader, streamed once (a failed upload is not retried).
    Reader(Box<dyn AsyncRead + Send + Unpin>),
    /// Small in-memory blobs (configs).
    Bytes(Vec<u8>),
}

/// An OCI distribution client. Cheap to clone; clones share connections and tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    secure: reqwest::Client,
    insecure: reqwest::Client,
    config: ClientConfig,
    /// API host → base URL and whether it needs the accept-any-cert client.
    endpoints: Mutex<HashMap<String, (String, bool)>>,
    /// API host → what we learnt about its auth.
    auth: Mutex<HashMap<String, HostAuth>>,
}

#[derive(Default)]
struct HostAuth {
    challenge: Option<Challenge>,
    /// `None` = not looked up yet.
    creds: Option<Option<Credentials>>,
    /// Scope string → bearer token.
    tokens: HashMap<String, String>,
}

/// Who we are talking to, for requests and error messages.
struct Ctx<'a> {
    registry: &'a str,
    host: &'a str,
    repository: &'a str,
    operation: &'static str,
    scopes: Vec<String>,
}

impl Ctx<'_> {
    fn http_error(&self, status: StatusCode, body: &[u8]) -> RegistryError {
        let errors = parse_remote_errors(body);
        let body = if errors.0.is_empty() {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string()
        } else {
            String::new()
        };
        RegistryError::Http {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            operation: self.operation,
            status: status.as_u16(),
            errors,
            body,
        }
    }

    fn transport(&self, source: reqwest::Error) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            operation: self.operation,
            source,
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            operation: self.operation,
            reason: reason.into(),
        }
    }

    /// Turn a non-success response into an error carrying the registry's error JSON.
    async fn fail(&self, resp: Response) -> RegistryError {
        let status = resp.status();
        let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
        self.http_error(status, &body)
    }
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// A request factory: called once per attempt, so bodies can be rebuilt for retries.
type Build<'a> = dyn FnMut(&reqwest::Client, &str) -> Result<RequestBuilder> + Send + 'a;

/// A plain HTTP(S) client with the host's trust store (for `ADD https://…`), set up as the
/// registry client is: rustls with the ring provider, the same timeouts.
pub fn http_client(user_agent: &str) -> Result<reqwest::Client> {
    let tls = tls::system_roots().map_err(|e| RegistryError::Io {
        context: "setting up TLS".into(),
        source: std::io::Error::other(e),
    })?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| RegistryError::Io {
            context: "setting up HTTP client".into(),
            source: std::io::Error::other(e),
        })
}

impl Client {
    /// A client with the given configuration.
    pub fn new(config: ClientConfig) -> Result<Client> {
        let build = |tls: rustls::ClientConfig| {
            reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .user_agent(config.user_agent.clone())
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .build()
        };
        let tls_err = |e: rustls::Error| RegistryError::Io {
            context: "setting up TLS".into(),
            source: std::io::Error::other(e),
        };
        let http_err = |e: reqwest::Error| RegistryError::Io {
            context: "setting up HTTP client".into(),
            source: std::io::Error::other(e),
        };
        let secure = build(tls::system_roots().map_err(tls_err)?).map_err(http_err)?;
        let insecure = build(tls::accept_any().map_err(tls_err)?).map_err(http_err)?;
        Ok(Client {
            inner: Arc::new(Inner {
                secure,
                insecure,
                config,
                endpoints: Mutex::new(HashMap::new()),
                auth: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A client with insecure hosts and credentials given explicitly (the `--insecure-registry` path).
    pub fn with_insecure(
        insecure: Vec<String>,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Client> {
        Client::new(ClientConfig::new(insecure, credentials))
    }

    fn ctx<'a>(&self, r: &'a RegistryRef, operation: &'static str, scopes: Vec<String>) -> Ctx<'a> {
        Ctx {
            registry: &r.registry,
            host: api_host(&r.registry),
            repository: &r.repository,
            operation,
            scopes,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Endpoint and auth plumbing

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, bool)>> {
        // A poisoned lock only means another task panicked mid-insert; the map is still usable.
        self.inner
            .endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostAuth>> {
        self.inner.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Base URL for an API host (`http://h` or `https://h`) and whether it is the insecure client.
    async fn endpoint(&self, host: &str) -> (String, bool) {
        if let Some(e) = self.lock_endpoints().get(host) {
            return e.clone();
        }
        let e = match scheme_for(host, &self.inner.config.insecure_registries) {
            Scheme::Http => (format!("http://{host}"), false),
            Scheme::Https => (format!("https://{host}"), false),
            Scheme::InsecureHttpsThenHttp => {
                // Any HTTP answer over TLS means the host speaks HTTPS; otherwise fall back.
                let probe = self
                    .inner
                    .insecure
                    .get(format!("https://{host}/v2/"))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                match probe {
                    Ok(_) => (format!("https://{host}"), true),
                    Err(_) => (format!("http://{host}"), false),
                }
            }
        };
        self.lock_endpoints().insert(host.to_string(), e.clone());
        e
    }

    fn http_for(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.inner.insecure
        } else {
            &self.inner.secure
        }
    }

    async fn credentials(&self, ctx: &Ctx<'_>) -> Result<Option<Credentials>> {
        if let Some(Some(c)) = self.lock_auth().get(ctx.host).map(|a| a.creds.clone()) {
            return Ok(c);
        }
        let src = self.inner.config.credentials.clone();
        let registry = ctx.registry.to_string();
        // Credential helpers spawn processes: keep them off the reactor.
        let c = tokio::task::spawn_blocking(move || src.credentials(&registry))
            .await
            .map_err(|e| RegistryError::Auth {
                registry: ctx.registry.to_string(),
                message: format!("credential lookup panicked: {e}"),
            })??;
        self.lock_auth()
            .entry(ctx.host.to_string())
            .or_default()
            .creds = Some(c.clone());
        Ok(c)
    }

    /// Add whatever auth we already know the host wants (basic, or a bearer token for the scope).
    async fn authorize(&self, ctx: &Ctx<'_>, rb: RequestBuilder) -> Result<RequestBuilder> {
        let challenge = self
            .lock_auth()
            .get(ctx.host)
            .and_then(|a| a.challenge.clone());
        match challenge {
            None => Ok(rb),
            Some(Challenge::Basic) => match self.credentials(ctx).await? {
                Some(Credentials::Basic { username, password }) => {
                    Ok(rb.basic_auth(username, Some(password)))
                }
                _ => Ok(rb),
            },
            Some(Challenge::Bearer { .. }) => {
                let key = ctx.scopes.join(" ");
                let cached = self
                    .lock_auth()
                    .get(ctx.host)
                    .and_then(|a| a.tokens.get(&key).cloned());
                let token = match cached {
                    Some(t) => t,
                    None => self.fetch_token(ctx).await?,
                };
                Ok(rb.bearer_auth(token))
            }
        }
    }

    /// Get a bearer token for `ctx.scopes` from the host's realm and cache it.
    async fn fetch_token(&self, ctx: &Ctx<'_>) -> Result<String> {
        let (realm, service, challenge_scope) = match self
            .lock_auth()
            .get(ctx.host)
            .and_then(|a| a.challenge.clone())
        {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => (realm, service, scope),
            _ => {
                return Err(RegistryError::Auth {
                    registry: ctx.registry.to_string(),
                    message: "no bearer challenge".into(),
                });
            }
        };
        let mut scopes = ctx.scopes.clone();
        if let Some(s) = challenge_scope
            && !scopes.contains(&s)
        {
            scopes.push(s);
        }
        let creds = self.credentials(ctx).await?;
        let token = self
            .request_token(
                ctx.registry,
                &realm,
                service.as_deref(),
                &scopes,
                creds.as_ref(),
            )
            .await?;
        self.lock_auth()
            .entry(ctx.host.to_string())
            .or_default()
            .tokens
            .insert(ctx.scopes.join(" "), token.clone());
        Ok(token)
    }

    /// The token endpoint dance: GET with basic creds (or anonymous), or POST a refresh token.
    async fn request_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<String> {
        let aerr = |message: String| RegistryError::Auth {
            registry: registry.to_string(),
            message,
        };
        let mut url =
            Url::parse(realm).map_err(|e| aerr(format!("invalid token realm {realm:?}: {e}")))?;
        let realm_host = url
            .host_str()
            .map(|h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
            .unwrap_or_default();
        let insecure = !is_loopback(&realm_host)
            && scheme_for(&realm_host, &self.inner.config.insecure_registries)
                == Scheme::InsecureHttpsThenHttp;
        let http = self.http_for(insecure);
        let rb = match creds {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh)
                    .append_pair("client_id", "kiln");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                if !scopes.is_empty() {
                    form.append_pair("scope", &scopes.join(" "));
                }
                http.post(url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.finish())
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let rb = http.get(url);
                match creds {
                    Some(Credentials::Basic { username, password }) => {
                        rb.basic_auth(username, Some(password))
                    }
                    _ => rb,
                }
            }
        };
        let resp = rb
            .send()
            .await
            .map_err(|e| aerr(format!("token request to {realm}: {e}")))?;
        let status = resp.status();
        let body = read_limited(resp, 1 << 20)
            .await
            .map_err(|e| aerr(format!("reading token response: {e}")))?;
        if !status.is_success() {
            let errs = parse_remote_errors(&body);
            let detail = if errs.0.is_empty() {
                String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_string()
            } else {
                errs.to_string()
            };
            return Err(aerr(format!(
                "token endpoint {realm} answered HTTP {}{}{}",
                status.as_u16(),
                if detail.is_empty() { "" } else { ": " },
                detail
            )));
        }
        #[derive(serde::Deserialize)]
        struct Tok {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let t: Tok = serde_json::from_slice(&body)
            .map_err(|e| aerr(format!("invalid token response: {e}")))?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(aerr("token response has no token".into()));
        }
        Ok(token)
    }

    /// Send with auth, the 401-once retry and backoff retries for transient failures.
    async fn send(&self, ctx: &Ctx<'_>, build: &mut Build<'_>) -> Result<Response> {
        let policy = &self.inner.config.retry;
        let attempts = policy.attempts.max(1);
        let mut attempt = 0;
        let mut auth_retried = false;
        loop {
            attempt += 1;
            let (base, insecure) = self.endpoint(ctx.host).await;
            let rb = build(self.http_for(insecure), &base)?;
            let rb = self.authorize(ctx, rb).await?;
            let last = attempt >= attempts;
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) if !last && is_retryable_transport(&e) => {
                    tokio::time::sleep(backoff(policy, attempt)).await;
                    continue;
                }
                Err(e) => return Err(ctx.transport(e)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !auth_retried {
                let challenge = resp
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(parse_challenge)
                    .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
                if let Some(c) = challenge {
                    auth_retried = true;
                    {
                        let mut a = self.lock_auth();
                        let e = a.entry(ctx.host.to_string()).or_default();
                        e.challenge = Some(c.clone());
                        // A 401 with a cached token means it expired or lacks scope.
                        e.tokens.remove(&ctx.scopes.join(" "));
                    }
                    if matches!(c, Challenge::Bearer { .. }) {
                        self.fetch_token(ctx).await?;
                    }
                    attempt -= 1;
                    continue;
                }
            }
            if !last && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                let wait = match retry_after(resp.headers()) {
                    Some(d) if d <= policy.max_retry_after => d,
                    Some(_) => return Ok(resp),
                    None => backoff(policy, attempt),
                };
                drop(resp);
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(resp);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    /// GET a manifest or index by tag or digest (accepting OCI and Docker types), verified.
    pub async fn resolve(&self, r: &RegistryRef) -> Result<Resolved> {
        let ctx = self.ctx(r, "resolve manifest", vec![pull_scope(&r.repository)]);
        let reference = match (&r.digest, &r.tag) {
            (Some(d), _) => validate_digest(d)?.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let path = format!("/v2/{}/manifests/{}", r.repository, reference);
        let accept = [
            media::OCI_INDEX,
            media::OCI_MANIFEST,
            media::DOCKER_MANIFEST_LIST,
            media::DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self
            .send(&ctx, &mut |c, base| {
                Ok(c.get(format!("{base}{path}"))
                    .header(header::ACCEPT, &accept))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(ctx.fail(resp).await);
        }
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let content_type = header_str(resp.headers(), header::CONTENT_TYPE.as_str())
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
            .filter(|ct| !ct.is_empty() && ct != "application/json" && ct != "text/plain");
        let bytes = read_limited(resp, MAX_MANIFEST)
            .await
            .map_err(|e| match e {
                ReadErr::TooBig => {
                    ctx.invalid(format!("manifest larger than {MAX_MANIFEST} bytes"))
                }
                ReadErr::Http(e) => ctx.transport(e),
            })?;
        let digest = sha256_digest(&bytes);
        let what = || format!("manifest {r}");
        if let Some(want) = &r.digest
            && *want != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: what(),
                expected: want.clone(),
                actual: digest,
            });
        }
        // Only sha256 headers are comparable; other algorithms are left to the caller.
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:"))
            && h != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("{} (Docker-Content-Digest)", what()),
                expected: h,
                actual: digest,
            });
        }
        let media_type = match content_type {
            Some(ct) => ct,
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                .ok_or_else(|| ctx.invalid("manifest has neither Content-Type nor mediaType"))?,
        };
        Ok(Resolved {
            digest,
            media_type,
            bytes,
        })
    }

    /// HEAD a blob: `true` if the repository has it.
    pub async fn blob_exists(&self, r: &RegistryRef, digest: &str) -> Result<bool> {
        validate_digest(digest)?;
        let ctx = self.ctx(r, "check blob", vec![pull_scope(&r.repository)]);
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let resp = self
            .send(&ctx, &mut |c, base| Ok(c.head(format!("{base}{path}"))))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(ctx.fail(resp).await),
        }
    }

    /// Stream a blob into an async writer, verifying size and digest as it arrives.
    ///
    /// `on_progress` gets the running byte count. On error the writer has received a prefix
    /// (or wrong bytes): the caller must discard it, never commit it.
    pub async fn fetch_blob<W>(
        &self,
        r: &RegistryRef,
        digest: &str,
        size: Option<u64>,
        sink: &mut W,
        on_progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let mut s = AsyncSink(sink);
        self.fetch_into(r, digest, size, &mut s, on_progress).await
    }

    /// Stream a blob into a blocking `std::io::Write` (e.g. a store ingest file), written on a
    /// blocking thread so the reactor never waits on disk. Returns the writer on success;
    /// on error the writer is dropped (the caller must not commit what it wrote).
    pub async fn fetch_blob_to_writer<W>(
        &self,
        r: &RegistryRef,
        digest: &str,
        size: Option<u64>,
        writer: W,
        on_progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<W>
    where
        W: std::io::Write + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
        let thread = tokio::task::spawn_blocking(move || -> std::io::Result<W> {
            let mut w = writer;
            while let Some(b) = rx.blocking_recv() {
                w.write_all(&b)?;
            }
            w.flush()?;
            Ok(w)
        });
        let mut s = ChannelSink(tx);
        let res = self.fetch_into(r, digest, size, &mut s, on_progress).await;
        drop(s);
        let joined = thread
            .await
            .map_err(|e| RegistryError::io("blob writer thread", std::io::Error::other(e)))?;
        match (res, joined) {
            // The writer's own error explains a closed channel better than "sink closed".
            (_, Err(e)) => Err(RegistryError::io(format!("writing blob {digest}"), e)),
            (Err(e), Ok(_)) => Err(e),
            (Ok(()), Ok(w)) => Ok(w),
        }
    }

    async fn fetch_into<S: ChunkSink + Send>(
        &self,
        r: &RegistryRef,
        digest: &str,
        size: Option<u64>,
        sink: &mut S,
        on_progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        validate_digest(digest)?;
        let ctx = self.ctx(r, "fetch blob", vec![pull_scope(&r.repository)]);
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let mut resp = self
            .send(&ctx, &mut |c, base| Ok(c.get(format!("{base}{path}"))))
            .await?;
        if !resp.status().is_success() {
            return Err(ctx.fail(resp).await);
        }
        let what = || format!("blob {digest} of {}/{}", r.registry, r.repository);
        let mut hasher = Hasher::new();
        let mut total: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| ctx.transport(e))? {
            total += chunk.len() as u64;
            if let Some(want) = size
                && total > want
            {
                return Err(RegistryError::SizeMismatch {
                    what: what(),
                    expected: want,
                    actual: total,
                });
            }
            hasher.update(&chunk);
            sink.put(chunk)
                .await
                .map_err(|e| RegistryError::io(format!("writing {}", what()), e))?;
            on_progress(total);
        }
        if let Some(want) = size
            && total != want
        {
            return Err(RegistryError::SizeMismatch {
                what: what(),
                expected: want,
                actual: total,
            });
        }
        let actual = hasher.finish();
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: what(),
                expected: digest.to_string(),
                actual,
            });
        }
        sink.done()
            .await
            .map_err(|e| RegistryError::io(format!("flushing {}", what()), e))
    }

    /// Cross-repository mount. `true` = mounted (201); `false` = the registry declined (202),
    /// the upload session it opened is cancelled and the caller should push the blob.
    pub async fn mount_blob(
        &self,
        target: &RegistryRef,
        from_repository: &str,
        digest: &str,
    ) -> Result<bool> {
        validate_digest(digest)?;
        let ctx = self.ctx(
            target,
            "mount blob",
            vec![push_scope(&target.repository), pull_scope(from_repository)],
        );
        let path = format!("/v2/{}/blobs/uploads/", target.repository);
        let resp = self
            .send(&ctx, &mut |c, base| {
                let mut u = parse_url(&format!("{base}{path}"))?;
                u.query_pairs_mut()
                    .append_pair("mount", digest)
                    .append_pair("from", from_repository);
                Ok(c.post(u).header(header::CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(loc) = location(&ctx, &resp) {
                    // Best effort: an abandoned session only costs the registry a timer.
                    let mut cancel = |c: &reqwest::Client, _: &str| Ok(c.delete(loc.clone()));
                    let _ = self.send(&ctx, &mut cancel).await;
                }
                Ok(false)
            }
            _ => Err(ctx.fail(resp).await),
        }
    }

    /// Upload a blob: POST a session, then one PUT streaming the whole body with `?digest=`.
    /// The caller should check [`blob_exists`](Self::blob_exists) (or mount) first.
    pub async fn push_blob(
        &self,
        r: &RegistryRef,
        digest: &str,
        size: u64,
        source: BlobSource,
        progress: Option<Progress>,
    ) -> Result<()> {
        validate_digest(digest)?;
        let ctx = self.ctx(r, "push blob", vec![push_scope(&r.repository)]);
        let start = format!("/v2/{}/blobs/uploads/", r.repository);
        let resp = self
            .send(&ctx, &mut |c, base| {
                Ok(c.post(format!("{base}{start}"))
                    .header(header::CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(ctx.fail(resp).await);
        }
        let mut put_url = location(&ctx, &resp)?;
        put_url.query_pairs_mut().append_pair("digest", digest);
        drop(resp);

        let mut source = Some(source);
        let mut path_for_retry: Option<PathBuf> = None;
        let resp = self
            .send(&ctx, &mut |c, _| {
                let body = match source.take() {
                    Some(BlobSource::Path(p)) => {
                        path_for_retry = Some(p.clone());
                        file_body(&p, progress.clone())?
                    }
                    Some(BlobSource::Reader(rd)) => stream_body(rd, progress.clone()),
                    Some(BlobSource::Bytes(b)) => {
                        // Re-armed so a retry can send the same bytes again.
                        source = Some(BlobSource::Bytes(b.clone()));
                        if let Some(p) = &progress {
                            p(b.len() as u64);
                        }
                        reqwest::Body::from(b)
                    }
                    None => match &path_for_retry {
                        Some(p) => file_body(p, progress.clone())?,
                        None => {
                            return Err(RegistryError::NotReplayable {
                                registry: r.registry.clone(),
                                repository: r.repository.clone(),
                                operation: "push blob",
                                reason: "the upload was interrupted".into(),
                            });
                        }
                    },
                };
                Ok(c.put(put_url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(body))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(ctx.fail(resp).await);
        }
        Ok(())
    }

    /// PUT a manifest under the reference's tag (or digest). Returns its digest.
    pub async fn push_manifest(
        &self,
        r: &RegistryRef,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let ctx = self.ctx(r, "push manifest", vec![push_scope(&r.repository)]);
        let digest = sha256_digest(bytes);
        let reference = match (&r.tag, &r.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => {
                if *d != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("manifest for {r}"),
                        expected: d.clone(),
                        actual: digest,
                    });
                }
                digest.clone()
            }
            (None, None) => {
                return Err(ctx.invalid("a manifest push needs a tag or digest"));
            }
        };
        let path = format!("/v2/{}/manifests/{reference}", r.repository);
        let resp = self
            .send(&ctx, &mut |c, base| {
                Ok(c.put(format!("{base}{path}"))
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(ctx.fail(resp).await);
        }
        if let Some(h) = header_str(resp.headers(), "docker-content-digest")
            && h.starts_with("sha256:")
            && h != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("pushed manifest {r} (Docker-Content-Digest)"),
                expected: digest,
                actual: h,
            });
        }
        Ok(digest)
    }

    /// All tags of a repository, following `Link: <…>; rel="next"` pagination.
    pub async fn list_tags(&self, r: &RegistryRef) -> Result<Vec<String>> {
        let ctx = self.ctx(r, "list tags", vec![pull_scope(&r.repository)]);
        let mut next = format!("/v2/{}/tags/list", r.repository);
        let mut tags = Vec::new();
        for _ in 0..1000 {
            let resp = self
                .send(&ctx, &mut |c, base| {
                    let u = if next.starts_with('/') {
                        format!("{base}{next}")
                    } else {
                        next.clone()
                    };
                    Ok(c.get(u))
                })
                .await?;
            if !resp.status().is_success() {
                return Err(ctx.fail(resp).await);
            }
            let link = header_str(resp.headers(), "link");
            let body = read_limited(resp, MAX_MANIFEST)
                .await
                .map_err(|_| ctx.invalid("tag list too large or unreadable"))?;
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let t: Tags =
                serde_json::from_slice(&body).map_err(|e| ctx.invalid(format!("tag list: {e}")))?;
            tags.extend(t.tags.unwrap_or_default());
            match link.and_then(|l| parse_next_link(&l)) {
                Some(n) => next = n,
                None => return Ok(tags),
            }
        }
        Err(ctx.invalid("tag list pagination does not end"))
    }

    /// Check credentials against `server` (`docker.io`, `host:port`, or a URL as Docker keys
    /// it), following the bearer flow, then store them in `config`.
    pub async fn login(
        &self,
        config: &DockerConfig,
        server: &str,
        username: &str,
        password: &str,
    ) -> Result<()> {
        let registry = key_to_hostname(server).to_string();
        let creds = Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        self.verify_credentials(&registry, &creds).await?;
        let config = config.clone();
        let reg = registry.clone();
        tokio::task::spawn_blocking(move || config.store(&reg, &creds))
            .await
            .map_err(|e| RegistryError::io("storing credentials", std::io::Error::other(e)))??;
        // Forget what this client cached for the host so the new credentials are used.
        self.lock_auth().remove(api_host(&registry));
        Ok(())
    }

    /// Remove stored credentials for `server`. Returns whether any were stored.
    pub async fn logout(&self, config: &DockerConfig, server: &str) -> Result<bool> {
        let registry = key_to_hostname(server).to_string();
        let config = config.clone();
        let reg = registry.clone();
        let removed = tokio::task::spawn_blocking(move || config.erase(&reg))
            .await
            .map_err(|e| RegistryError::io("erasing credentials", std::io::Error::other(e)))??;
        self.lock_auth().remove(api_host(&registry));
        Ok(removed)
    }

    /// GET /v2/ with the given credentials (basic, or via the token endpoint for bearer).
    async fn verify_credentials(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let host = api_host(registry);
        let ctx = Ctx {
            registry,
            host,
            repository: "",
            operation: "login",
            scopes: vec![],
        };
        let (base, insecure) = self.endpoint(host).await;
        let http = self.http_for(insecure);
        let url = format!("{base}/v2/");
        let resp = http.get(&url).send().await.map_err(|e| ctx.transport(e))?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(ctx.fail(resp).await);
        }
        let challenge = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
        match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = self
                    .request_token(registry, &realm, service.as_deref(), &[], Some(creds))
                    .await?;
                let resp = http
                    .get(&url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| ctx.transport(e))?;
                // Some registries answer 401 on /v2/ for scope-less tokens; the token itself
                // proves the credentials, as in Docker's login.
                if resp.status().is_success() || resp.status() == StatusCode::UNAUTHORIZED {
                    Ok(())
                } else {
                    Err(ctx.fail(resp).await)
                }
            }
            Some(Challenge::Basic) => {
                let Credentials::Basic { username, password } = creds else {
                    return Err(ctx.invalid("basic auth needs a username and password"));
                };
                let resp = http
                    .get(&url)
                    .basic_auth(username, Some(password))
                    .send()
                    .await
                    .map_err(|e| ctx.transport(e))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(ctx.fail(resp).await)
                }
            }
            None => Err(ctx.fail(resp).await),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn parse_url(s: &str) -> Result<Url> {
    Url::parse(s).map_err(|e| RegistryError::InvalidResponse {
        registry: String::new(),
        repository: String::new(),
        operation: "build URL",
        reason: format!("{s}: {e}"),
    })
}

/// The upload `Location`, which may be absolute or relative to the request URL.
fn location(ctx: &Ctx<'_>, resp: &Response) -> Result<Url> {
    let loc = header_str(resp.headers(), header::LOCATION.as_str())
        .ok_or_else(|| ctx.invalid("upload response has no Location header"))?;
    resp.url()
        .join(&loc)
        .map_err(|e| ctx.invalid(format!("bad Location {loc:?}: {e}")))
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn parse_next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn is_retryable_transport(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request()
}

fn backoff(p: &RetryPolicy, attempt: u32) -> Duration {
    p.base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    // Only the delta-seconds form: registries do not send HTTP dates in practice.
    header_str(h, header::RETRY_AFTER.as_str())?
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

enum ReadErr {
    TooBig,
    Http(reqwest::Error),
}

impl std::fmt::Display for ReadErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadErr::TooBig => f.write_str("body too large"),
            ReadErr::Http(e) => e.fmt(f),
        }
    }
}

/// Read a whole (small) body, refusing to buffer more than `limit` bytes.
async fn read_limited(mut resp: Response, limit: usize) -> std::result::Result<Vec<u8>, ReadErr> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(ReadErr::TooBig);
    }
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(ReadErr::Http)? {
        if out.len() + c.len() > limit {
            return Err(ReadErr::TooBig);
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
}

fn file_body(path: &std::path::Path, progress: Option<Progress>) -> Result<reqwest::Body> {
    let f = std::fs::File::open(path)
        .map_err(|e| RegistryError::io(format!("opening {}", path.display()), e))?;
    Ok(stream_body(
        Box::new(tokio::fs::File::from_std(f)),
        progress,
    ))
}

fn stream_body(rd: Box<dyn AsyncRead + Send + Unpin>, progress: Option<Progress>) -> reqwest::Body {
    let counted = Counted {
        inner: rd,
        total: 0,
        progress,
    };
    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        counted,
        UPLOAD_CHUNK,
    ))
}

/// Counts bytes read for upload progress.
struct Counted {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    total: u64,
    progress: Option<Progress>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.total += n as u64;
            if let Some(p) = &self.progress {
                p(self.total);
            }
        }
        r
    }
}

/// Where downloaded chunks go.
trait ChunkSink {
    async fn put(&mut self, chunk: bytes::Bytes) -> std::io::Result<()>;
    async fn done(&mut self) -> std::io::Result<()>;
}

struct AsyncSink<'a, W: ?Sized>(&'a mut W);

impl<W: AsyncWrite + Unpin + Send + ?Sized> ChunkSink for AsyncSink<'_, W> {
    async fn put(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.0.write_all(&chunk).await
    }
    async fn done(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

struct ChannelSink(tokio::sync::mpsc::Sender<bytes::Bytes>);

impl ChunkSink for ChannelSink {
    async fn put(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.0
            .send(chunk)
            .await
            .map_err(|_| std::io::Error::other("blob writer stopped"))
    }
    async fn done(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn link_and_backoff() {
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(parse_next_link(r#"<x>; rel="prev""#), None);
        let p = RetryPolicy::default();
        assert_eq!(backoff(&p, 1), Duration::from_millis(200));
        assert_eq!(backoff(&p, 3), Duration::from_millis(800));
    }

    /// Compile-time check: the operations can be spawned on a multi-thread runtime.
    #[allow(dead_code)]
    fn futures_are_send(c: &Client) {
        fn is_send<T: Send>(_: T) {}
        let r = RegistryRef::repo("a", "b");
        is_send(c.resolve(&r));
        is_send(c.push_blob(&r, "", 0, BlobSource::Bytes(vec![]), None));
        let mut v: Vec<u8> = Vec::new();
        is_send(c.fetch_blob(&r, "", None, &mut v, &|_| {}));
        is_send(c.fetch_blob_to_writer(&r, "", None, Vec::new(), &|_| {}));
        is_send(c.mount_blob(&r, "x", ""));
    }

    #[test]
    fn hub_basic_header() {
        // The base64 engine used for config files is standard padding, as Docker writes it.
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode("a:b"),
            "YTpi"
        );
    }
}
