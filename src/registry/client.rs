//! The HTTP side: endpoints, auth, retries and login; the distribution API operations are
//! in `operations`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use tokio::io::AsyncRead;

use super::auth::{Challenge, CredentialSource, Credentials, DockerConfig, parse_challenge};
use super::error::{RegistryError, Result, parse_remote_errors};
use super::scheme::{Scheme, api_host, is_loopback, key_to_hostname, scheme_for};
use super::{RegistryRef, tls};

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
pub(super) struct Ctx<'a> {
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

    pub(super) fn transport(&self, source: reqwest::Error) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            operation: self.operation,
            source,
        }
    }

    pub(super) fn invalid(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry.to_string(),
            repository: self.repository.to_string(),
            operation: self.operation,
            reason: reason.into(),
        }
    }

    /// Turn a non-success response into an error carrying the registry's error JSON.
    pub(super) async fn fail(&self, resp: Response) -> RegistryError {
        let status = resp.status();
        let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
        self.http_error(status, &body)
    }
}

pub(super) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub(super) fn push_scope(repo: &str) -> String {
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

    pub(super) fn ctx<'a>(
        &self,
        r: &'a RegistryRef,
        operation: &'static str,
        scopes: Vec<String>,
    ) -> Ctx<'a> {
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
    pub(super) async fn send(&self, ctx: &Ctx<'_>, build: &mut Build<'_>) -> Result<Response> {
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

pub(super) fn parse_url(s: &str) -> Result<Url> {
    Url::parse(s).map_err(|e| RegistryError::InvalidResponse {
        registry: String::new(),
        repository: String::new(),
        operation: "build URL",
        reason: format!("{s}: {e}"),
    })
}

pub(super) fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(|s| s.trim().to_string())
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

pub(super) enum ReadErr {
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
pub(super) async fn read_limited(
    mut resp: Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, ReadErr> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn backoff_doubles() {
        let p = RetryPolicy::default();
        assert_eq!(backoff(&p, 1), Duration::from_millis(200));
        assert_eq!(backoff(&p, 3), Duration::from_millis(800));
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
