//! The HTTP side of the API: the response body (whole, or streamed from a channel), JSON
//! and error responses, the version prefix, query strings and bounded JSON bodies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode, header};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{API_VERSION, DaemonError, MIN_API_VERSION, Result};

/// The largest JSON request body read (Docker's create bodies are a few KiB).
pub(super) const MAX_JSON_BODY: usize = 1 << 20;

/// A response body: whole, or the chunks a task sends until it drops its sender.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(receiver) => receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
}

pub type Response = hyper::Response<Body>;

/// A response with `body` and the headers every response of the API carries.
pub(super) fn respond(status: StatusCode, content_type: &str, body: Body) -> Response {
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = header::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(
        header::SERVER,
        &format!("kiln/{}", env!("CARGO_PKG_VERSION")),
    );
    set(header::HeaderName::from_static("api-version"), API_VERSION);
    set(header::HeaderName::from_static("ostype"), "linux");
    set(
        header::HeaderName::from_static("docker-experimental"),
        "false",
    );
    response
}

pub(super) fn json(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    respond(
        status,
        "application/json",
        Body::Full(Some(Bytes::from(body))),
    )
}

pub(super) fn empty(status: StatusCode) -> Response {
    respond(status, "text/plain; charset=utf-8", Body::Full(None))
}

pub(super) fn error(error: &DaemonError) -> Response {
    json(
        error.status(),
        &serde_json::json!({ "message": error.message() }),
    )
}

/// `101`: the client takes the connection over for a raw stream (attach, exec start).
pub(super) fn hijacked() -> Response {
    use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
    let mut response = respond(
        StatusCode::SWITCHING_PROTOCOLS,
        "application/vnd.docker.raw-stream",
        Body::Full(None),
    );
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("tcp"));
    response
}

/// A streamed response (`content_type`) and the sender that feeds it.
pub(super) fn stream(content_type: &str) -> (Response, mpsc::Sender<Bytes>) {
    let (sender, receiver) = mpsc::channel(64);
    (
        respond(StatusCode::OK, content_type, Body::Stream(receiver)),
        sender,
    )
}

/// One request, its body read (bounded), its version prefix taken off.
pub(super) struct Request {
    pub method: Method,
    /// The path without the version prefix, e.g. `/images/busybox/json`.
    pub path: String,
    /// The API version of the prefix (`/v1.41/…`), when there is one.
    pub version: Option<(u32, u32)>,
    pub query: HashMap<String, String>,
    /// Every query parameter in order, for the repeatable ones (`t` of a build).
    pairs: Vec<(String, String)>,
    headers: hyper::HeaderMap,
    pub body: Bytes,
    /// The body of an upload endpoint ([`is_upload`]), unread: taken once, by the handler.
    upload: std::sync::Mutex<Option<hyper::body::Incoming>>,
    /// The connection after a `101` answer (attach hijacks it).
    pub upgrade: hyper::upgrade::OnUpgrade,
}

impl Request {
    /// Reads `request`: a body over [`MAX_JSON_BODY`] or an unsupported version is a 400.
    /// The body of an upload endpoint is left to its handler.
    pub async fn read(mut request: hyper::Request<hyper::body::Incoming>) -> Result<Request> {
        let upgrade = hyper::upgrade::on(&mut request);
        let (parts, body) = request.into_parts();
        let path = strip_version(parts.uri.path())?.to_string();
        let version = parts
            .uri
            .path()
            .strip_prefix("/v")
            .and_then(|rest| parse_version(rest.split('/').next().unwrap_or("")));
        let headers = parts.headers;
        let pairs: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let query = pairs.iter().cloned().collect();
        let (body, upload) = if is_upload(&parts.method, &path) {
            (Bytes::new(), Some(body))
        } else {
            let bytes = http_body_util::Limited::new(body, MAX_JSON_BODY)
                .collect()
                .await
                .map_err(|error| {
                    DaemonError::BadRequest(format!("reading the request body: {error}"))
                })?
                .to_bytes();
            (bytes, None)
        };
        Ok(Request {
            method: parts.method,
            path,
            version,
            query,
            pairs,
            headers,
            body,
            upload: std::sync::Mutex::new(upload),
            upgrade,
        })
    }

    /// The unread body of an upload endpoint (once).
    pub fn take_upload(&self) -> Result<hyper::body::Incoming> {
        self.upload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| DaemonError::BadRequest("the request body was already read".into()))
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a repeatable query parameter, in order.
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// A boolean query parameter as Docker reads them: absent, empty, `0`, `false` and
    /// `no` are false.
    pub fn flag(&self, name: &str) -> bool {
        self.param(name)
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"))
    }

    /// The `platform` query parameter (`os/arch[/variant]`), when given.
    pub fn platform(&self) -> Result<Option<crate::oci::Platform>> {
        self.param("platform")
            .filter(|p| !p.is_empty())
            .map(crate::oci::Platform::parse_full)
            .transpose()
            .map_err(|error| DaemonError::BadRequest(error.to_string()))
    }

    /// The body as JSON of type `T` (an empty body is `T`'s default).
    pub fn json<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.body).map_err(DaemonError::Json)
    }
}

/// Endpoints whose body is an archive of any size (a build context, images to load, files
/// copied into a container):
/// streamed by the handler instead of read whole.
fn is_upload(method: &Method, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    (method == Method::POST && matches!(path, "/build" | "/images/load"))
        || (method == Method::PUT && path.starts_with("/containers/") && path.ends_with("/archive"))
}

/// Writes `body` into the new file `path`, chunk by chunk.
pub(super) async fn save_upload(body: hyper::body::Incoming, path: &std::path::Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let io = |action| super::error::io_err(action, path);
    let mut file = tokio::fs::File::create_new(path)
        .await
        .map_err(io("create"))?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            DaemonError::BadRequest(format!("reading the request body: {error}"))
        })?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await.map_err(io("write"))?;
        }
    }
    file.flush().await.map_err(io("write"))?;
    Ok(())
}

/// `/v1.43/images/json` → `/images/json`; versions outside what kiln serves are a 400.
fn strip_version(path: &str) -> Result<&str> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (version, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(asked) = parse_version(version) else {
        return Ok(path);
    };
    if asked < parse_version(MIN_API_VERSION).unwrap_or_default() {
        return Err(DaemonError::BadRequest(format!(
            "client version {version} is too old. Minimum supported API version is \
             {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if asked > parse_version(API_VERSION).unwrap_or_default() {
        return Err(DaemonError::BadRequest(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    Ok(tail)
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix() {
        assert_eq!(strip_version("/v1.41/_ping").unwrap(), "/_ping");
        assert_eq!(strip_version("/v1.45/images/json").unwrap(), "/images/json");
        assert_eq!(strip_version("/_ping").unwrap(), "/_ping");
        assert_eq!(strip_version("/version").unwrap(), "/version");
        assert!(strip_version("/v1.40/_ping").is_err());
        assert!(strip_version("/v1.99/_ping").is_err());
    }
}
